"""``rs-jax predict`` and ``rs-jax chat``: ask a trained model about images.

  rs-jax predict --workdir W --image FILE [--question "..."] [--json] [--draw OUT.png]
  rs-jax predict --workdir W --images DIR [--question "..."] --out FILE.jsonl
                 [--batch-size N] [--skip-unreadable] [--overwrite]
  rs-jax chat --workdir W --image FILE      # questions from stdin, one a line

(--config C: the config stored with W's newest checkpoint unless given.)

Without --question, predict asks the first question of the eval split (the classification
prompt the model was trained with) and says so. Folder mode answers the folder's images
(sorted; not its subfolders) in batches and writes one JSON object a line:
{"image", "question", "answer", "retrieved", "expert_usage"}. --draw writes the image with
the boxes of the answer (config.data.box_format) drawn in red, as the model saw it (squashed
to a square), DRAW_SIZE px a side.

Only argparse is imported at the top: the CLI builds its parser from this module.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from etils import epath

from rs_jax.files import write_whole

DRAW_SIZE = 512

CHAT_HELP = (
    "empty line or end of input ends; /reset forgets the conversation; "
    "/cues shows the last answer's retrieved cues"
)


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--image", metavar="FILE", help="one image")
    which.add_argument(
        "--images", metavar="DIR", help="every image in a folder (sorted); needs --out"
    )
    parser.add_argument(
        "--question",
        default=None,
        help="what to ask (default: the eval split's first question, the classification "
        "prompt the model was trained with)",
    )
    parser.add_argument("--json", action="store_true", help="--image: print one JSON object")
    parser.add_argument("--out", metavar="FILE.jsonl", help="--images: one JSON line an image")
    parser.add_argument(
        "--draw",
        metavar="OUT.png",
        help="--image: write the image with the answer's boxes drawn in red (when it holds any)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="--images: skip (and count) images that cannot be decoded instead of stopping",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="N",
        help="--images: images per model call (default: config.eval.batch_size; rounded up "
        "to a multiple of the mesh's batch shards)",
    )


def add_chat_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", metavar="FILE", required=True, help="the image to talk about")


def open_session(config: Any, workdir: str) -> Any:
    """The trained model in `workdir` (a Session; tests substitute a loaded one)."""
    from rs_jax.eval.session import Session

    return Session(config, workdir)


# --------------------------------------------------------------------------- predict


def run_predict(config: Any, args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """The `predict` subcommand. Problems the user can fix raise ValueError / OSError
    (one line from the CLI)."""
    out = out or sys.stdout
    if args.images is None:
        for flag, given in (
            ("--out", args.out),
            ("--skip-unreadable", args.skip_unreadable),
            ("--overwrite", args.overwrite),
            ("--batch-size", args.batch_size),
        ):
            if given:
                raise ValueError(f"{flag} goes with --images DIR (a folder of images)")
        _check_image(config, args.image)
        if args.draw and epath.Path(args.draw).is_dir():
            raise IsADirectoryError(f"--draw {args.draw} is a folder; name a .png file")
        session = open_session(config, args.workdir)
        question = _question(session, args.question)
        answer = session.ask(args.image, question)
        result = {
            **answer_record(args.image, question, answer),
            "load_seconds": session.load_seconds,
            "answer_seconds": answer.seconds,
        }
        if args.draw:
            boxes = draw_answer(config, args.image, answer.text, args.draw)
            result["drawn"] = {"file": args.draw if boxes else None, "boxes": boxes}
        if args.json:
            print(json.dumps(result), file=out)
        else:
            print(format_answer(result), file=out)
        return 0

    if args.draw:
        raise ValueError("--draw goes with --image (one image)")
    if args.json:
        raise ValueError("--json goes with --image; --images writes JSON lines to --out")
    if not args.out:
        raise ValueError("--images needs --out FILE.jsonl (one JSON line an image)")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    files = list_images(args.images)
    out_path = epath.Path(args.out)
    _check_out(out_path, args.overwrite)
    session = open_session(config, args.workdir)
    question = _question(session, args.question)
    summary = predict_folder(
        session,
        files,
        question,
        out_path,
        batch_size=args.batch_size,
        skip_unreadable=args.skip_unreadable,
        overwrite=args.overwrite,
        print_fn=lambda line: print(line, file=out, flush=True),
    )
    answered, skipped = summary["answered"], summary["skipped"]
    line = (
        f"predict: {answered} image{'s' * (answered != 1)} answered -> {out_path} "
        f"(model load {session.load_seconds:.1f} s, answers {summary['seconds']:.1f} s)"
    )
    if skipped:
        line += f"; skipped {len(skipped)} unreadable: {', '.join(skipped)}"
    print(line, file=out)
    return 0


def draw_answer(config: Any, image: str, answer: str, out_path: str) -> int:
    """Writes `image` with the boxes of `answer` drawn to out_path (PNG); returns how many
    boxes, and writes nothing when there are none."""
    from rs_jax.data.boxes import parse
    from rs_jax.data.images import bands_of, load_image
    from rs_jax.eval.figures import draw_boxes

    found = parse(answer, config.data.get("box_format", "geochat"))
    if not found:
        print(f"rs-jax: the answer holds no box: nothing drawn to {out_path}", file=sys.stderr)
        return 0
    pixels = load_image(image, DRAW_SIZE, bands_of(config.data))
    drawn = draw_boxes(pixels, (DRAW_SIZE, DRAW_SIZE), predicted=found, width=3)
    with epath.Path(out_path).open("wb") as f:
        drawn.save(f, format="png")
    return len(found)


def _check_image(config: Any, path: str) -> None:
    """Fails before the model is loaded when `path` is no readable image."""
    from rs_jax.data.images import UnreadableImageError, bands_of, decode_error

    if epath.Path(path).is_dir():
        raise IsADirectoryError(f"--image {path} is a folder; use --images DIR for a folder")
    why = decode_error(path, bands_of(config.data))
    if why is not None:
        raise UnreadableImageError(f"Cannot read image {path}: {why}")


def _question(session: Any, question: str | None) -> str:
    if question is not None:
        if not question.strip():
            raise ValueError("--question is empty")
        return question
    records = session.exp.data.eval_records
    qas = records.qas(0) if len(records) else []
    if not qas:
        raise ValueError("no --question given and the eval split has no questions to borrow")
    question = qas[0].question
    print(
        f"rs-jax: no --question: asking the eval split's first question: {question!r}",
        file=sys.stderr,
    )
    return question


def list_images(folder: str) -> list[epath.Path]:
    """The image files directly in `folder` (extensions of data.images), sorted by name."""
    from rs_jax.data.images import IMAGE_EXTENSIONS

    root = epath.Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"--images {folder} is not a folder")
    files = sorted(
        p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    if not files:
        raise FileNotFoundError(
            f"--images {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
        )
    return files


def _check_out(path: epath.Path, overwrite: bool) -> None:
    if path.is_dir():
        raise IsADirectoryError(f"--out {path} is a folder; name a .jsonl file")
    if path.exists() and not overwrite:
        raise FileExistsError(f"--out {path} already exists; pass --overwrite to replace it")


def predict_folder(
    session: Any,
    files: Sequence[epath.Path],
    question: str,
    out_path: epath.Path,
    *,
    batch_size: int | None = None,
    skip_unreadable: bool = False,
    overwrite: bool = False,
    print_fn: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Answers `question` for every file, `batch_size` images a model call, one JSON line
    each in `out_path` (created; replaced only with `overwrite`, and only once every answer
    is written). Returns {"answered", "skipped": [file names], "seconds"}. An unreadable
    file raises UnreadableImageError naming it unless `skip_unreadable`; `out_path` is then
    left as it was."""
    from rs_jax.data.images import UnreadableImageError
    from rs_jax.eval.session import Question
    from rs_jax.train.progress import ProgressLine

    divisor = session.batch_divisor
    rows = session.batch_size if batch_size is None else batch_size
    # No more rows than files (a batch is compiled for its size), whole batch shards.
    rows = -(-min(rows, max(len(files), 1)) // divisor) * divisor
    batches = [files[i : i + rows] for i in range(0, len(files), rows)]
    progress = ProgressLine(
        len(batches),
        every=max(len(batches) // 20, 1),
        print_fn=lambda line: print_fn("predict: " + line.replace("step", "batch")),
    )
    _check_out(out_path, overwrite)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    answered = 0
    start = time.perf_counter()
    # Written whole or not at all: a failure leaves an existing --out as it was.
    with write_whole(out_path, overwrite) as out:
        for step, batch in enumerate(batches, start=1):
            loaded = []
            for path in batch:
                try:
                    loaded.append((path, session.load(path)))
                except UnreadableImageError as e:
                    if not skip_unreadable:
                        raise UnreadableImageError(
                            f"{e} (--skip-unreadable skips such files)"
                        ) from e
                    print(f"rs-jax: warning: skipped: {e}", file=sys.stderr)
                    skipped.append(path.name)
            questions = [Question(pixels, question) for _, pixels in loaded]
            for (path, _), answer in zip(loaded, session.ask_batch(questions, rows)):
                out.write(json.dumps(answer_record(str(path), question, answer)) + "\n")
            out.flush()
            answered += len(loaded)
            progress.update(step, {}, len(loaded))
    return {"answered": answered, "skipped": skipped, "seconds": time.perf_counter() - start}


def answer_record(image: str, question: str, answer: Any) -> dict[str, Any]:
    """The JSON form of an Answer: retrieved cues as {"entry", "score"}, best first."""
    return {
        "image": str(image),
        "question": question,
        "answer": answer.text,
        "retrieved": {
            level: [{"entry": name, "score": score} for name, score in cues]
            for level, cues in answer.retrieved.items()
        },
        "expert_usage": answer.expert_usage,
    }


def format_answer(result: dict[str, Any]) -> str:
    lines = [
        f"image: {result['image']}",
        f"question: {result['question']}",
        f"answer: {result['answer']}",
    ]
    if result["retrieved"]:
        lines.append("retrieved cues (best first):")
        lines += format_cues(result["retrieved"])
    if result["expert_usage"]:
        lines.append("experts used (share of the level's tokens per expert):")
        for level, shares in result["expert_usage"].items():
            lines.append(f"  {level}: " + " ".join(f"{s:.2f}" for s in shares))
    if result.get("drawn", {}).get("file"):
        lines.append(
            f"drawn: {result['drawn']['boxes']} box(es) in red -> {result['drawn']['file']}"
        )
    lines.append(
        f"time: model load {result['load_seconds']:.1f} s, answer "
        f"{result['answer_seconds']:.2f} s (the first answer includes compiling)"
    )
    return "\n".join(lines)


def format_cues(retrieved: dict[str, list[dict[str, Any]]]) -> list[str]:
    return [
        f"  {level}: " + ", ".join(f"{c['entry']} ({c['score']:.3f})" for c in cues)
        for level, cues in retrieved.items()
    ]


# --------------------------------------------------------------------------- chat


def run_chat(
    config: Any,
    args: argparse.Namespace,
    stdin: IO[str] | None = None,
    out: IO[str] | None = None,
) -> int:
    """The `chat` subcommand: questions from `stdin` (one a line), answers after the
    conversation so far."""
    _check_image(config, args.image)
    session = open_session(config, args.workdir)
    chat(session, args.image, stdin or sys.stdin, out or sys.stdout)
    return 0


def chat(session: Any, image: str, stdin: IO[str], out: IO[str]) -> list[tuple[str, str]]:
    """A conversation about `image`; returns the history at the end (oldest round first)."""
    pixels = session.load(image)
    print(
        f"chat about {image} (step {session.step}, loaded in {session.load_seconds:.1f} s): "
        f"{CHAT_HELP}",
        file=out,
    )
    history: list[tuple[str, str]] = []
    try:
        _converse(session, image, pixels, stdin, out, history)
    except KeyboardInterrupt:  # Ctrl-C ends the conversation like end of input
        out.write("\n")
    return history


def _converse(
    session: Any,
    image: str,
    pixels: Any,
    stdin: IO[str],
    out: IO[str],
    history: list[tuple[str, str]],
) -> None:
    last = None
    while True:
        out.write("you> ")
        out.flush()
        line = stdin.readline()
        question = line.strip()
        if question and not stdin.isatty():
            print(question, file=out)  # piped: the transcript shows what was asked
        if not question:
            if not line.endswith("\n"):
                out.write("\n")  # end of input after the prompt
            break
        if question == "/reset":
            history.clear()
            print("(conversation forgotten)", file=out)
            continue
        if question == "/cues":
            if last is None:
                print("(no answer yet)", file=out)
            elif not last["retrieved"]:
                print("(this model retrieves no cues)", file=out)
            else:
                print("\n".join(format_cues(last["retrieved"])), file=out)
            continue
        if question.startswith("/"):
            print(f"(unknown command {question}: {CHAT_HELP})", file=out)
            continue
        try:
            answer = session.ask(pixels, question, tuple(history))
        except ValueError as e:  # e.g. the conversation outgrew config.data.max_prompt_len
            print(f"rs-jax: error: {e} (/reset starts a new conversation)", file=sys.stderr)
            continue
        print(f"model> {answer.text}", file=out)
        out.flush()
        history.append((question, answer.text))
        last = answer_record(image, question, answer)
