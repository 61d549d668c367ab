"""Fault suite: what a new user or a hostile tester tries, and what rs-jax does about it.

Each case runs `rs-jax` in-process (`cli.main`) and expects either an error of exactly one
line, `rs-jax: error: ...`, that names the config key, file or value at fault (exit code 2;
`kb validate` problems: exit code 1 with the problems on stdout), or the right handling
(exit code 0). Where data could be lost, the files are checked to be byte-for-byte intact.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rs_jax import cli
from rs_jax.config_files import load_config
from rs_jax.data.pipeline import build_data
from rs_jax.kb import store
from rs_jax.sharding import SHARDING_RULES
from rs_jax.train.lock import LOCK_FILE

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.py")
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# Placeholders in a case's arguments: {case} is the case's own folder, {data} the dataset
# folder all cases share (generated once), {run} a copy of a workdir trained for 2 steps.
# A case whose data_dir is {case}/data must stop before preparing any data: that folder
# must not exist afterwards.


@dataclasses.dataclass(frozen=True)
class Fault:
    id: str
    argv: tuple[str, ...]
    message: str  # regex searched in the single stderr line (exit 0: in stdout)
    setup: Callable[[Path], None] | None = None  # writes the case's files under {case}
    code: int = 2
    stdout: str = ""  # regex searched in stdout
    keep: tuple[str, ...] = ()  # paths under {case} that must be byte-identical afterwards
    read_only: tuple[str, ...] = ()  # paths under {case} made read-only (skipped as root)
    env: tuple[tuple[str, str], ...] = ()
    check: Callable[[Path], None] | None = None  # further checks on {case} afterwards


def command(
    name: str, *extra: str, config: str = TINY, workdir: str = "{case}/w", data: str = "{case}/data"
) -> tuple:
    """`rs-jax NAME` (train, eval) on a workdir with a data folder and overrides."""
    return (
        name,
        "--config",
        config,
        "--workdir",
        workdir,
        f"--config.data.data_dir={data}",
        *extra,
    )


def train(*extra: str, **kwargs: str) -> tuple:
    return command("train", *extra, **kwargs)


def evaluate(*extra: str, **kwargs: str) -> tuple:
    return command("eval", *extra, **kwargs)


# The trained run: the baseline model (the smallest train step to compile), 2 steps.
RUN_CONFIG = f"{TINY}:baseline"
RUN_ARGS = ("--config.train.steps=2", "--config.train.checkpoint_every=2")


def resume(*extra: str) -> tuple:
    """`rs-jax train` again on (a copy of) the trained run, as it was trained but `extra`."""
    return train(*RUN_ARGS, *extra, config=RUN_CONFIG, workdir="{run}", data="{data}")


# A run trained on a folder dataset, with paths relative to the case's folder (its cwd), so
# that every case resumes its own copy of the data with the config that trained it.
FOLDER_RUN_ARGS = ("--config.data.name=folder", "--config.data.root=root")


def resume_folder_run(*extra: str) -> tuple:
    """`rs-jax train` again on a copy of the folder-trained run and of its data."""
    return train(
        *RUN_ARGS, *FOLDER_RUN_ARGS, *extra, config=RUN_CONFIG, workdir="{folder_run}", data="data"
    )


def bad(key: str, value: str, message: str, name: str = "") -> Fault:
    """`--config.KEY=VALUE` stops before any data is prepared, naming the key."""
    return Fault(name or f"{key}={value}", train(f"--config.{key}={value}"), message)


# ---------------------------------------------------------------------------- case files


def write(path: str, text: str | bytes) -> Callable[[Path], None]:
    def setup(case: Path) -> None:
        target = case / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text)

    return setup


def mkdirs(*paths: str) -> Callable[[Path], None]:
    def setup(case: Path) -> None:
        for path in paths:
            (case / path).mkdir(parents=True, exist_ok=True)

    return setup


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(case: Path) -> None:
        for step in setups:
            step(case)

    return setup


def image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(path)


def folders(**splits: dict[str, list[str]]) -> Callable[[Path], None]:
    """A folder dataset under {case}/root: split -> class -> file names. Names ending in
    .png are images; `bad.png` holds no image, `gone.png` is a dangling link, others are
    text files."""

    def setup(case: Path) -> None:
        for split, classes in splits.items():
            for name, files in classes.items():
                folder = case / "root" / split / name
                folder.mkdir(parents=True, exist_ok=True)
                for file in files:
                    if file == "bad.png":
                        (folder / file).write_bytes(b"not an image at all")
                    elif file == "gone.png":
                        os.symlink(folder / "missing.png", folder / file)
                    elif file.endswith(".png"):
                        image(folder / file)
                    else:
                        (folder / file).write_text("notes")

    return setup


GOOD = {"forest": ["a.png", "b.png"], "river": ["c.png", "d.png"]}


def _png_of_another_image() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(out, format="PNG")
    return out.getvalue()


PNG_OF_ANOTHER_IMAGE = _png_of_another_image()


def folder_train(*extra: str) -> tuple:
    return train(
        "--config.data.name=folder", "--config.data.root={case}/root", *extra, data="{data}"
    )


def entry(eid: str = "scene/airport", **fields) -> str:
    level, name = eid.split("/", 1)
    row = {"id": eid, "level": level, "name": name, "description": f"a {name}"} | fields
    return json.dumps({k: v for k, v in row.items() if v is not None})


def kb_file(*lines: str) -> Callable[[Path], None]:
    return write("kb.jsonl", "\n".join(lines) + "\n")


def validate(*lines: str, stdout: str, name: str) -> Fault:
    """`kb validate` on a file with problems: exit 1, each problem on stdout by line."""
    return Fault(
        f"kb-validate-{name}",
        ("kb", "validate", "{case}/kb.jsonl"),
        r"kb\.jsonl: \d+ problem\(s\)$",
        setup=kb_file(*lines),
        code=1,
        stdout=stdout,
    )


def built_kb(path: str, metadata: str | None = None) -> Callable[[Path], None]:
    """A folder shaped like `rs-jax kb build` output (no real index: enough for the checks
    that run before one is read)."""
    fields = ("format_version", "encoder", "dim", "count", "levels", "kb_sha256", "index")
    text = metadata if metadata is not None else json.dumps(dict.fromkeys(fields, 1))
    return both(
        write(f"{path}/{store.METADATA_FILE}", text),
        write(f"{path}/{store.ENTRIES_FILE}", entry() + "\n"),
        write(f"{path}/{store.EMBEDDINGS_FILE}", b""),
        mkdirs(f"{path}/{store.INDEX_DIR}"),
    )


def config_file(body: str) -> Callable[[Path], None]:
    return write("cfg.py", "import ml_collections\n\n" + body)


def hf_folder(path: str, **config) -> Callable[[Path], None]:
    return write(f"{path}/config.json", json.dumps(config))


def lock(host: str | None, pid: int) -> Callable[[Path], None]:
    text = json.dumps({"host": host or socket.gethostname(), "pid": pid})
    return write(f"run/{LOCK_FILE}", text)


def dead_pid() -> int:
    # Linux hands out pids below pid_max only: this one belongs to no process.
    return int(Path("/proc/sys/kernel/pid_max").read_text())


def lock_released(case: Path) -> None:
    assert not (case / "run" / LOCK_FILE).exists()


def old_record_kept(case: Path) -> None:
    """--allow_config_change replaced config.json; the record of the run that wrote the
    checkpoints is kept beside it."""

    def capacity(path: Path) -> float:
        return json.loads(path.read_text())["model"]["experts"]["capacity_factor"]

    (old,) = (case / "run").glob("config.*.json")
    assert capacity(old) == 1.5 and capacity(case / "run" / "config.json") == 2.0


def nothing_written(case: Path) -> None:
    assert not any(case.iterdir()), sorted(p.name for p in case.iterdir())


def remove(path: str) -> Callable[[Path], None]:
    return lambda case: (case / path).unlink()


def absent(path: str) -> Callable[[Path], None]:
    def check(case: Path) -> None:
        assert not (case / path).exists(), f"{path} was created"

    return check


def rules(**changes: object) -> str:
    """config.sharding_rules as a literal, with some logical axes remapped or dropped."""
    table = [(n, changes.get(n, m)) for n, m in SHARDING_RULES if changes.get(n, m) != "DROP"]
    return repr(tuple(table))


# A dataset in one of the record formats (config.data.sources), read by a config file in
# the case's folder; its paths are relative to the case's folder (the cwd). The bad record
# comes first in the train split, which is read first: no image needs to exist for it.
DROP = object()  # a field left out of a record


def source_config(fmt: str, path: str, **options: object) -> Callable[[Path], None]:
    values = "".join(f", {key}={value!r}" for key, value in options.items())
    return config_file(
        "from configs import common, tiny\n\n\ndef get_config(arg=None):\n"
        "    config = tiny.get_config(arg)\n    config.data.name = 'sources'\n"
        f"    config.data.sources.s = common.source({fmt!r}, {path!r}{values})\n"
        "    return config\n"
    )


def record(base: dict, changes: dict) -> dict:
    return {k: v for k, v in (base | changes).items() if v is not DROP}


def sources_fault(
    name: str,
    fmt: str,
    path: str,
    text: str | bytes,
    message: str,
    *extra: str,
    options: dict | None = None,
    setup: Callable[[Path], None] | None = None,
    source_path: str = "",
) -> Fault:
    """`rs-jax train` on one source (at `source_path`, default `path`) whose file `path`
    holds `text`; the file is never changed (keep), and the error names it."""
    return Fault(
        f"{fmt}-{name}",
        train(*extra, config="{case}/cfg.py", data="{case}/prep"),
        message,
        setup=both(
            source_config(fmt, source_path or path, **(options or {})),
            write(path, text),
            setup or (lambda case: None),
        ),
        keep=(path,),
    )


VQA_ROW = {"image": "a.png", "question": "Is there a road?", "answer": "yes", "split": "train"}


def vqa(name: str, message: str, *extra: str, lines: tuple | None = None, **changes) -> Fault:
    """vqa_jsonl: q.jsonl whose first line is VQA_ROW with `changes` (or the raw `lines`)."""
    rows = lines if lines is not None else (json.dumps(record(VQA_ROW, changes)),)
    return sources_fault(name, "vqa_jsonl", "q.jsonl", "\n".join(rows) + "\n", message, *extra)


CAPTION_ROW = {"image": "a.png", "captions": ["a road"], "split": "train"}


def captions(name: str, message: str, **changes) -> Fault:
    """captions JSONL: c.jsonl whose one line is CAPTION_ROW with `changes`."""
    line = json.dumps(record(CAPTION_ROW, changes)) + "\n"
    return sources_fault(name, "captions", "c.jsonl", line, message)


KARPATHY_IMAGE = {"filename": "a.png", "split": "train", "sentences": [{"raw": "a road"}]}


def karpathy(name: str, message: str, data: object = DROP, **changes) -> Fault:
    """captions dataset_*.json: {"images": [KARPATHY_IMAGE with `changes`]} (or `data`)."""
    body = {"images": [record(KARPATHY_IMAGE, changes)]} if data is DROP else data
    return sources_fault(name, "captions", "dataset_x.json", json.dumps(body), message)


HUMAN = {"from": "human", "value": "<image>\nWhat is there?"}
GPT = {"from": "gpt", "value": "A road."}
CONVERSATION = {"id": "p1", "image": "a.png", "conversations": [HUMAN, GPT], "split": "train"}


def instruct(name: str, message: str, records: object = DROP, **changes) -> Fault:
    """instruct (LLaVA/GeoChat): conv.json, [CONVERSATION with `changes`] (or `records`)."""
    body = [record(CONVERSATION, changes)] if records is DROP else records
    return sources_fault(name, "instruct", "conv.json", json.dumps(body), message)


RSVQA_QUESTION = {"id": 0, "img_id": 1, "question": "Is there a road?", "type": "presence"}
RSVQA_ANSWERS = json.dumps({"answers": [{"id": 0, "answer": "yes", "active": True}]})


def rsvqa(
    name: str,
    message: str,
    questions: object = DROP,
    answers: str = RSVQA_ANSWERS,
    options: dict | None = None,
    **changes,
) -> Fault:
    """rsvqa: LR_split_train_{questions,answers}.json in rsvqa/; the questions file holds
    RSVQA_QUESTION with `changes` (or `questions`)."""
    body = {"questions": [record(RSVQA_QUESTION, changes)]} if questions is DROP else questions
    return sources_fault(
        name,
        "rsvqa",
        "rsvqa/LR_split_train_questions.json",
        json.dumps(body),
        message,
        options=options,
        setup=write("rsvqa/LR_split_train_answers.json", answers),
        source_path="rsvqa",
    )


def score(name: str, message: str, pred: list, ref: list, *flags: str, **kwargs) -> Fault:
    """`rs-jax score` of answers `pred` against references `ref` (JSON lines; a str is a
    raw line, bytes are written as they are); neither file is changed."""

    def lines(rows: list) -> bytes:
        raw = [r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r)).encode()
               for r in rows]  # fmt: skip
        return b"".join(line + b"\n" for line in raw)

    protocol = kwargs.pop("protocol", "rsvqa")
    return Fault(
        f"score-{name}",
        ("score", "--protocol", protocol, "--pred", "{case}/p.jsonl", "--ref", "{case}/r.jsonl")
        + flags,
        message,
        setup=both(write("p.jsonl", lines(pred)), write("r.jsonl", lines(ref))),
        keep=("p.jsonl", "r.jsonl"),
        **kwargs,
    )


ANSWER_1, ANSWER_2 = {"id": 1, "answer": "yes"}, {"id": 2, "answer": "no"}
REFERENCE_1 = {"id": 1, "answer": "yes", "question_type": "presence"}
REFERENCE_2 = {"id": 2, "answer": "no", "question_type": "presence"}


def on_run(command: str, *extra: str) -> tuple:
    """`rs-jax predict|chat` on (a copy of) the trained run; these cases stop before the
    model is loaded, and the run is left as it was."""
    return (command, "--workdir", "{run}", *extra)


def an_image(path: str) -> Callable[[Path], None]:
    return lambda case: image(case / path)


def truncated_png(path: str) -> Callable[[Path], None]:
    """An image cut off half-way: its header reads, its pixels do not."""

    def setup(case: Path) -> None:
        write(path, PNG_OF_ANOTHER_IMAGE[: len(PNG_OF_ANOTHER_IMAGE) // 2])(case)

    return setup


def dangling(path: str) -> Callable[[Path], None]:
    return lambda case: os.symlink(case / "nowhere.png", case / path)


# ---------------------------------------------------------------------------- the cases

FAULTS = [
    # --- 1. Values out of range, named by key; all before any data is prepared.
    bad("train.steps", "0", r"config\.train\.steps must be positive, got 0"),
    bad("train.log_every", "-1", r"config\.train\.log_every must be positive"),
    bad("train.checkpoint_every", "0", r"config\.train\.checkpoint_every must be positive"),
    bad("train.keep_checkpoints", "0", r"config\.train\.keep_checkpoints must be positive"),
    bad("train.on_nonfinite", "ignore", r"config\.train\.on_nonfinite must be 'stop' or 'skip'"),
    bad("train.warmup_steps", "-1", r"config\.train\.warmup_steps must be >= 0"),
    bad("train.grad_accum_steps", "0", r"config\.train\.grad_accum_steps must be >= 1"),
    bad("train.learning_rate", "nan", r"config\.train\.learning_rate must be a finite number"),
    bad("train.learning_rate", "-0.1", r"config\.train\.learning_rate must be .* >= 0, got -0\.1"),
    bad("train.loss_vocab_chunk", "-1", r"config\.train\.loss_vocab_chunk must be >= 0"),
    bad("train.freeze", "visoin", r"config\.train\.freeze: 'visoin' names no parameter"),
    bad("data.batch_size", "0", r"config\.data\.batch_size must be positive"),
    bad("data.image_size", "0", r"config\.data\.image_size must be positive, got 0"),
    bad("data.image_size", "8", r"config\.data\.image_size=8: .*at least 16"),
    bad("data.num_train", "0", r"config\.data\.num_train must be positive"),
    bad("data.num_test", "-3", r"config\.data\.num_test must be positive"),
    bad("data.worker_count", "-2", r"config\.data\.worker_count must be >= -1"),
    bad("data.seed", "-1", r"config\.data\.seed must be in \[0, 2\*\*32\), got -1"),
    bad("seed", "-1", r"config\.seed must be in \[0, 2\*\*32\), got -1"),
    bad("data.tasks", "", r"config\.data\.tasks is empty; choose from \('scene'"),
    bad("data.tasks", "scene,weather", r"config\.data\.tasks: unknown task\(s\) \['weather'\]"),
    bad(
        "data.name",
        "imagenet",
        r"config\.data\.name='imagenet'; choose 'rs_synth', 'folder' or 'sources'",
    ),
    bad("eval.batch_size", "0", r"config\.eval\.batch_size must be positive"),
    bad("eval.max_new_tokens", "0", r"config\.eval\.max_new_tokens must be positive"),
    bad("eval.num_examples", "0", r"config\.eval\.num_examples must be positive, or -1"),
    bad("model.dtype", "float16", r"config\.model\.dtype='float16': expected one of"),
    bad("model.param_dtype", "int8", r"config\.model\.param_dtype='int8'"),
    bad("model.remat_policy", "everything", r"config\.model\.remat_policy='everything'"),
    bad("model.vision.patch_size", "5", r"vision\.patch_size=5: must divide config\.data\.image"),
    bad("model.vision.patch_size", "0", r"config\.model\.vision\.patch_size=0: must be >= 1"),
    bad("model.vision.num_heads", "3", r"vision\.num_heads=3: must divide vision\.width=32"),
    bad("model.vision.activation", "relu", r"config\.model\.vision\.activation='relu'"),
    bad("model.vision.norm_eps", "0", r"config\.model\.vision\.norm_eps=0\.0: must be > 0"),
    bad("model.vision.pixel_mean", "0.5,0.5", r"vision\.pixel_mean=\(0\.5, 0\.5\): expected 3"),
    bad("model.vision.pixel_std", "0.5,0,0.5", r"config\.model\.vision\.pixel_std=.*must be > 0"),
    bad("model.levels", "()", r"config\.model\.levels=\(\): a tuple of \(name, block, grid"),
    bad("model.levels", "(('scene', 7, 1),)", r"levels\[0\].*block 7 is outside the ViT's 3"),
    bad("model.levels", "(('scene', 2, 3),)", r"levels\[0\].*grid must be >= 1 and divide"),
    bad("model.levels", "(('scene', 2, 1), ('scene', 1, 2))", r"level names must be unique"),
    bad("model.levels", "scene", r"config\.model\.levels expects a Python tuple literal"),
    bad("model.kb.dim", "0", r"config\.model\.kb\.dim=0: must be >= 1"),
    bad("model.kb.top_k", "0", r"config\.model\.kb\.top_k=0: must be >= 1"),
    bad("model.kb.recall_target", "1.5", r"config\.model\.kb\.recall_target=1\.5"),
    bad("model.kb.retrieval_loss_weight", "-0.1", r"kb\.retrieval_loss_weight=-0\.1"),
    bad("model.kb.retrieval", "cloud", r"config\.model\.kb\.retrieval='cloud': expected one of"),
    bad("model.kb.retrieval", "host", r"retrieval='host'.*set config\.model\.kb\.source"),
    bad(
        "model.kb.source",
        "{case}/nowhere",
        r"config\.model\.kb\.source='.*nowhere': no such folder",
        name="model.kb.source-missing",
    ),
    bad("model.augment.num_heads", "3", r"config\.model\.augment\.num_heads=3: must divide"),
    bad("model.experts.experts_per_level", "0", r"experts\.experts_per_level=0: must be >= 1"),
    bad("model.experts.top_k", "3", r"experts\.top_k=3: exceeds experts_per_level=2"),
    bad("model.experts.capacity_factor", "0", r"experts\.capacity_factor=0\.0: must be > 0"),
    bad("model.experts.dispatch", "magic", r"config\.model\.experts\.dispatch='magic'"),
    bad("model.experts.router_jitter", "1", r"experts\.router_jitter=1\.0: must be in \[0, 1\)"),
    bad("model.experts.shared_experts", "-1", r"experts\.shared_experts=-1: must be >= 0"),
    bad("model.experts.z_loss_weight", "-1", r"config\.model\.experts\.z_loss_weight=-1\.0"),
    bad("model.llm.width", "0", r"config\.model\.llm\.width=0: must be >= 1"),
    bad("model.llm.num_heads", "3", r"llm\.num_heads=3: must divide llm\.width=32"),
    bad("model.llm.num_kv_heads", "3", r"llm\.num_kv_heads=3: must divide llm\.num_heads=4"),
    bad("model.llm.vocab_size", "-1", r"config\.model\.llm\.vocab_size=-1: must be >= 0"),
    bad("model.llm.rope_theta", "0", r"config\.model\.llm\.rope_theta=0\.0: must be > 0"),
    bad("model.llm.norm_eps", "-1", r"config\.model\.llm\.norm_eps=-1\.0: must be > 0"),
    bad("model.llm.sliding_window", "-1", r"llm\.sliding_window=-1: must be >= 0"),
    bad("model.llm.moe_every", "3", r"llm\.moe_every=3: must be 0 or divide llm\.depth=2"),
    bad("model.llm.lora.rank", "-1", r"config\.model\.llm\.lora\.rank=-1: must be >= 0"),
    bad("model.llm.lora.alpha", "0", r"config\.model\.llm\.lora\.alpha=0\.0: must be > 0"),
    bad("model.llm.lora.targets", "query,bogus", r"config\.model\.llm\.lora\.targets=.*bogus"),
    bad("model.llm.rope_scaling.type", "ntk", r"llm\.rope_scaling\.type='ntk'"),
    bad("model.llm.rope_scaling.factor", "0.5", r"llm\.rope_scaling\.factor=0\.5: must be >= 1"),
    bad("model.llm.rope_scaling.low_freq_factor", "5", r"rope_scaling\.low_freq_factor=5\.0"),
    bad("model.llm.rope_scaling.original_max_positions", "0", r"original_max_positions=0"),
    # ... and those only the prepared data can tell (the shared data folder).
    Fault(
        "data.template=alpaca",
        train("--config.data.template=alpaca", data="{data}"),
        r"config\.data\.template='alpaca' is not a template",
    ),
    Fault(
        "data.template=chatml-with-wordpiece",
        train("--config.data.template=chatml", data="{data}"),
        r"config\.data\.template='chatml' needs the token '<\|im_end\|>'",
    ),
    Fault(
        "data.max_prompt_len=2",
        train("--config.data.max_prompt_len=2", data="{data}"),
        r"needs \d+ tokens .* config\.data\.max_prompt_len is 2; raise the limit",
    ),
    Fault(
        "data.max_answer_len=1",
        train("--config.data.max_answer_len=1", data="{data}"),
        r"config\.data\.max_answer_len is 1; raise the limit",
    ),
    Fault(
        "model.llm.vocab_size-below-tokenizer",
        train("--config.model.llm.vocab_size=10", data="{data}"),
        r"config\.model\.llm\.vocab_size=10: smaller than the tokenizer's \d+ tokens",
    ),
    Fault(
        "model.levels-kb-level-unknown",
        train("--config.model.levels=(('scene', 2, 1), ('object', 0, 4, 'parcel'))", data="{data}"),
        r"config\.model\.levels\[1\] retrieves from knowledge-base level 'parcel'",
    ),
    Fault(
        "data.batch_size-above-the-train-split",
        # The run's model: its initialisation is compiled once for all cases.
        train("--config.data.batch_size=128", config=RUN_CONFIG, data="{data}"),
        r"Train split has 64 images.* fewer than one batch.*config\.data\.batch_size=128",
    ),
    # --- Values of the wrong type: the override's own key and the type it expects.
    bad("train.steps", "abc", r"config\.train\.steps expects int, got 'abc'"),
    bad("train.steps", "1.5", r"config\.train\.steps expects int, got '1\.5'"),
    bad("train.learning_rate", "fast", r"config\.train\.learning_rate expects float"),
    bad("model.baseline", "maybe", r"config\.model\.baseline expects bool \(true/false/1/0\)"),
    bad("mesh.data", "two", r"config\.mesh\.data expects int, got 'two'"),
    bad("model.vision.pixel_mean", "a,b,c", r"vision\.pixel_mean expects a comma-separated list"),
    bad("sharding_rules", "garbage", r"config\.sharding_rules expects a Python tuple literal"),
    bad("train", "5", r"config\.train is a group; set one of its fields, e\.g\. 'train\.\w+="),
    bad("train.steps.max", "5", r"config\.train\.steps is a value, not a group"),
    Fault("empty-key", train("--config.=5"), r"Config override '=5' is not of the form key"),
    # --- 2. Unknown keys (with the nearest known one), variants and config files.
    bad("train.stpes", "10", r"Unknown config key 'train\.stpes'; did you mean 'train\.steps'"),
    bad("trian.steps", "10", r"Unknown config key 'trian\.steps'; did you mean 'train\.steps'"),
    bad("model.llm.widht", "8", r"did you mean 'model\.llm\.width'\?"),
    bad("data.bach_size", "8", r"did you mean 'data\.batch_size'\?"),
    bad("mesh.pipeline", "2", r"Unknown config key 'mesh\.pipeline'"),
    bad("frobnicate", "1", r"Unknown config key 'frobnicate'$"),
    Fault(
        "unknown-variant",
        ("config", "--config", f"{TINY}:huge"),
        r"get_config\('huge'\) in '.*tiny\.py' failed: Unknown config variant\(s\) \['huge'\]",
    ),
    Fault(
        "unknown-variant-among-good",
        ("config", "--config", f"{TINY}:baseline,levels9"),
        r"Unknown config variant\(s\) \['levels9'\]; allowed: baseline, levels2, levels4",
    ),
    Fault(
        "variant-value-of-the-wrong-type",
        ("config", "--config", f"{TINY}:baseline=maybe"),
        r"failed: config variant baseline expects bool \(true/false/1/0\), got 'maybe'",
    ),
    Fault(
        "missing-config-file",
        ("config", "--config", "{case}/nope.py"),
        r"Config file '.*nope\.py' not found",
    ),
    Fault(
        "config-file-is-a-folder",
        ("config", "--config", "{case}"),
        r"Config file '.*' not found",
    ),
    Fault(
        "config-file-syntax-error",
        ("config", "--config", "{case}/cfg.py"),
        r"Importing config file '.*cfg\.py' failed: SyntaxError",
        setup=config_file("def get_config(:\n"),
    ),
    Fault(
        "config-file-import-error",
        ("config", "--config", "{case}/cfg.py"),
        r"Importing config file '.*cfg\.py' failed: ModuleNotFoundError: .*no_such_module",
        setup=config_file("import no_such_module\n"),
    ),
    Fault(
        "config-file-without-get_config",
        ("config", "--config", "{case}/cfg.py"),
        r"'.*cfg\.py' does not define get_config\(arg\)",
        setup=config_file("CONFIG = 1\n"),
    ),
    Fault(
        "get_config-returns-a-dict",
        ("config", "--config", "{case}/cfg.py"),
        r"get_config\(None\) in '.*cfg\.py' returned dict, expected a ConfigDict",
        setup=config_file("def get_config(arg=None):\n    return {'a': 1}\n"),
    ),
    Fault(
        "get_config-raises",
        ("config", "--config", "{case}/cfg.py"),
        r"get_config\(None\) in '.*cfg\.py' failed: 'broken on purpose'",
        setup=config_file("def get_config(arg=None):\n    raise KeyError('broken on purpose')\n"),
    ),
    Fault(
        "predict-a-workdir-alone-without-a-checkpoint",
        ("predict", "--workdir", "{case}/w", "--image", "{case}/x.png"),
        r"No checkpoint in .*/w; run `rs-jax train` with this workdir first",
        check=absent("w"),
    ),
    Fault(
        "compile-without-config-or-workdir",
        ("compile", "--topology", "v5p-8"),
        r"--config is required \(or --workdir of a trained run\)",
    ),
    Fault(
        "get_config-calls-sys-exit",
        ("train", "--config", "{case}/cfg.py", "--workdir", "{case}/w"),
        r"get_config\(None\) in '.*cfg\.py' called sys\.exit\(0\)",
        setup=config_file("import sys\n\ndef get_config(arg=None):\n    sys.exit(0)\n"),
        check=absent("w"),
    ),
    Fault(
        "config-file-exits-on-import",
        ("config", "--config", "{case}/cfg.py"),
        r"Importing config file '.*cfg\.py' failed: SystemExit: 3",
        setup=config_file("raise SystemExit(3)\n"),
    ),
    Fault(
        "get_config-returns-an-empty-configdict",
        ("config", "--config", "{case}/cfg.py"),
        r"'.*cfg\.py' gives no seed, mesh, .*: start from configs/common\.py's base_config",
        setup=config_file("def get_config(arg=None):\n    return ml_collections.ConfigDict()\n"),
    ),
    Fault(
        "get_config-returns-a-frozen-configdict",
        ("config", "--config", "{case}/cfg.py", "--config.seed=7"),
        r"seed: 7",
        setup=config_file(
            "from configs import tiny\n\ndef get_config(arg=None):\n"
            "    return ml_collections.FrozenConfigDict(tiny.get_config(arg))\n"
        ),
        code=0,
    ),
    bad("seed", str(2**64), r"config\.seed must be in \[0, 2\*\*32\), got 18446744073709551616"),
    Fault(
        "variant-for-a-config-without-argument",
        ("config", "--config", "{case}/cfg.py:big"),
        r"'.*cfg\.py' takes no argument but got ':big'",
        setup=config_file("def get_config():\n    return ml_collections.ConfigDict()\n"),
    ),
    Fault(
        "config-file-not-python",
        ("config", "--config", "{case}/cfg.json"),
        r"'.*cfg\.json' cannot be imported as a Python module",
        setup=write("cfg.json", "{}"),
    ),
    # --- The command line itself.
    Fault(
        "RS_JAX_CPU_DEVICES-not-a-number",
        ("config", "--config", TINY),
        r"RS_JAX_CPU_DEVICES must be a positive integer, got 'eight'",
        env=(("RS_JAX_CPU_DEVICES", "eight"),),
    ),
    Fault(
        "RS_JAX_CPU_DEVICES-zero",
        ("config", "--config", TINY),
        r"RS_JAX_CPU_DEVICES must be a positive integer, got '0'",
        env=(("RS_JAX_CPU_DEVICES", "0"),),
    ),
    Fault(
        "RS_JAX_NUM_PROCESSES-not-a-number",
        ("config", "--config", TINY),
        r"RS_JAX_NUM_PROCESSES must be a non-negative integer, got 'two'",
        env=(("RS_JAX_DISTRIBUTED", "1"), ("RS_JAX_NUM_PROCESSES", "two")),
    ),
    Fault("unknown-argument", (*train(), "--bogus"), r"unrecognized arguments: --bogus"),
    Fault(
        "override-without-value",
        train("--config.train.steps"),
        r"--config\.train\.steps needs a value: --config\.train\.steps=VALUE",
    ),
    Fault(
        "missing-workdir",
        ("train", "--config", TINY),
        r"the following arguments are required: --workdir.*rs-jax train --help",
    ),
    Fault("no-command", (), r"the following arguments are required: COMMAND"),
    Fault("unknown-command", ("fit",), r"invalid choice: 'fit'"),
    Fault("kb-without-action", ("kb",), r"the following arguments are required: KB_COMMAND"),
    # --- 3. Meshes the 8 devices or the model cannot have.
    bad("mesh.data", "3", r"mesh \{data: 3, .*\} needs 3 devices but 8 are available"),
    bad("mesh.data", "0", r"axis 'data' must be a positive size or -1"),
    bad("mesh.fsdp", "-2", r"axis 'fsdp' must be a positive size or -1"),
    bad("mesh.fsdp", "-1", r"only one axis may be -1 \(fill\), got \['data', 'fsdp'\]"),
    bad("mesh.fsdp", "3", r"cannot fill 'data', 8 devices are not divisible by .* 3"),
    Fault(
        "mesh.tensor=8-vs-2-kv-heads",
        train("--config.mesh.data=1", "--config.mesh.tensor=8"),
        r"Parameter .*\('kv_heads', size 2\) cannot be split over config\.mesh\.tensor=8",
    ),
    Fault(
        "mesh.expert=8-vs-6-experts",
        train("--config.mesh.data=1", "--config.mesh.expert=8"),
        r"6 experts is not divisible by the mesh expert axis size 8.*config\.mesh\.expert",
    ),
    bad("data.batch_size", "4", r"config\.data\.batch_size=4 must be divisible by the 8 batch"),
    bad("eval.batch_size", "12", r"config\.eval\.batch_size=12 must be divisible by the 8"),
    bad("train.grad_accum_steps", "3", r"config\.data\.batch_size=8 .*grad_accum_steps=3"),
    bad(
        "sharding_rules",
        rules(embed="DROP"),
        r"config\.sharding_rules has no rule for logical axis 'embed'",
        name="sharding_rules-without-embed",
    ),
    bad(
        "sharding_rules",
        rules(mlp="pipeline"),
        r"config\.sharding_rules: .*'pipeline'",
        name="sharding_rules-unknown-mesh-axis",
    ),
    bad(
        "sharding_rules",
        "(('batch',),)",
        r"config\.sharding_rules: .*\('batch',\)",
        name="sharding_rules-rule-without-axes",
    ),
    # --- 4. Paths that are not what they should be.
    Fault(
        "workdir-is-a-file",
        train(),
        r"--workdir .*/w: cannot create it \(File exists\)",
        setup=write("w", "my notes"),
        keep=("w",),
    ),
    Fault(
        "workdir-empty",
        train(workdir=""),
        r"--workdir is empty; name a folder for the run",
        check=nothing_written,
    ),
    Fault(
        "workdir-under-a-file",
        train(workdir="{case}/notes/w"),
        r"--workdir .*/notes/w: cannot create it \(Not a directory\)",
        setup=write("notes", "my notes"),
        keep=("notes",),
    ),
    Fault(
        "workdir-in-read-only-folder",
        train(workdir="{case}/ro/w"),
        r"--workdir .*/ro/w: cannot create it \(Permission denied\)",
        setup=mkdirs("ro"),
        read_only=("ro",),
    ),
    Fault(
        "workdir-read-only",
        train(),
        r"--workdir .*/w is not writable",
        setup=mkdirs("w"),
        read_only=("w",),
    ),
    Fault(
        "data_dir-under-a-file",
        train(data="{case}/notes/data"),
        r"notes/data",
        setup=write("notes", "my notes"),
        keep=("notes",),
    ),
    Fault(
        "tokenizer-folder-missing",
        train("--config.data.tokenizer={case}/tok", data="{data}"),
        r"config\.data\.tokenizer='.*/tok': .*does not exist",
    ),
    Fault(
        "tokenizer-folder-not-a-tokenizer",
        train("--config.data.tokenizer={case}/tok", data="{data}"),
        r"config\.data\.tokenizer='.*/tok': .*holds no tokenizer transformers can load",
        setup=write("tok/readme.txt", "nothing here"),
    ),
    bad(
        "init.vision",
        "{case}/nowhere",
        r"config\.init\.vision='.*nowhere': no config\.json there",
        name="init.vision-missing",
    ),
    bad(
        "init.llm",
        "{case}/nowhere",
        r"config\.init\.llm='.*nowhere': no config\.json there",
        name="init.llm-missing",
    ),
    Fault(
        "init.vision-is-a-decoder",
        train("--config.init.vision={case}/hf"),
        r"hf/config\.json: model_type='llama' is not supported",
        setup=hf_folder("hf", model_type="llama"),
    ),
    Fault(
        "init.vision-of-another-preset-type",
        train("--config.init.vision={case}/hf", "--config.init.vision_types=clip_vision_model"),
        r"config\.init\.vision='.*hf' holds a siglip_vision_model; .*init\.vision_types",
        setup=hf_folder("hf", model_type="siglip_vision_model"),
    ),
    Fault(
        "init.llm-config-not-json",
        train("--config.init.llm={case}/hf"),
        r"hf/config\.json",
        setup=write("hf/config.json", "{not json"),
    ),
    Fault(
        "init.from_checkpoint-missing",
        # The run's model: its initialisation is compiled once for all cases.
        train("--config.init.from_checkpoint={case}/nowhere", config=RUN_CONFIG, data="{data}"),
        r"config\.init\.from_checkpoint='.*nowhere': no checkpoint there",
    ),
    Fault(
        "model.kb.source-not-a-built-kb",
        train("--config.model.kb.source={case}/kb", data="{data}"),
        r".*/kb is not a complete built KB: missing metadata\.json",
        setup=write("kb/notes.txt", "mine"),
        keep=("kb",),
    ),
    # --- 5. Workdir state: what a run finds there, and what it must not destroy.
    Fault("eval-no-workdir", evaluate(), r"No checkpoint in .*/w; run `rs-jax train`"),
    Fault(
        "eval-no-checkpoint",
        evaluate(),
        r"No checkpoint in .*/w/checkpoints; run `rs-jax train`",
        setup=mkdirs("w/checkpoints"),
    ),
    Fault(
        "eval-workdir-is-a-file",
        evaluate(),
        r"No checkpoint in .*/w;",
        setup=write("w", "my notes"),
        keep=("w",),
    ),
    Fault(
        "eval-read-only-workdir",
        evaluate(config=RUN_CONFIG, workdir="{run}"),
        r"--workdir .*/run is not writable; eval writes eval\.json",
        keep=("run",),
        read_only=("run",),
    ),
    Fault(
        "lock-held-by-a-live-process",
        resume(),
        rf"Another run \({re.escape(socket.gethostname())} pid {os.getpid()}\) is using",
        setup=lock(None, os.getpid()),
        keep=("run",),
    ),
    Fault(
        "lock-held-on-another-host",
        resume(),
        r"Another run \(gpu-node-7 pid 1\) is using .*remove .*\.rs_jax\.lock",
        setup=lock("gpu-node-7", 1),
        keep=("run",),
    ),
    Fault(
        "lock-file-garbage",
        resume(),
        r"Another run \(\?\) is using",
        setup=write(f"run/{LOCK_FILE}", "\x00\x01"),
        keep=("run",),
    ),
    Fault(
        "stale-lock-is-taken-over",
        resume(),
        r"Already trained: step 2",
        setup=lock(None, dead_pid()),
        code=0,
        stdout=rf"removing the stale lock of pid {dead_pid()}",
        keep=("run/checkpoints", "run/config.json"),
        check=lock_released,
    ),
    Fault(
        "resume-with-changed-experts",
        resume("--config.model.experts.capacity_factor=2"),
        r"changes the model, data or optimizer: model\.experts\.capacity_factor: 1\.5 -> 2\.0",
        keep=("run",),
    ),
    Fault(
        "resume-with-changed-shapes",
        resume("--config.model.llm.mlp_dim=48"),
        r"changes the model, data or optimizer: model\.llm\.mlp_dim: 64 -> 48\..*config",
        keep=("run",),
    ),
    Fault(
        "resume-with-changed-optimizer",
        resume("--config.train.learning_rate=0.01"),
        r"train\.learning_rate: 0\.001 -> 0\.01\..*--allow_config_change",
        keep=("run",),
    ),
    Fault(
        "keep_checkpoints=0-on-a-run",
        resume("--config.train.keep_checkpoints=0"),
        r"config\.train\.keep_checkpoints must be positive, got 0",
        keep=("run",),
    ),
    Fault(
        "allow_config_change-keeps-the-old-record",
        (*resume("--config.model.experts.capacity_factor=2"), "--allow_config_change"),
        r"Already trained: step 2",
        code=0,
        stdout=r"warning: resuming .* model\.experts\.capacity_factor: 1\.5 -> 2\.0",
        keep=("run/checkpoints",),
        check=old_record_kept,
    ),
    # --- Training files changed under a run: named, and the run left as it was.
    Fault(
        "resume-on-an-edited-image",
        resume_folder_run(),
        r"the training data changed since it was saved: 1 file edited \(root:train/forest/a\.png\)"
        r".*--allow_data_change",
        setup=write("root/train/forest/a.png", PNG_OF_ANOTHER_IMAGE),
        keep=("run",),
    ),
    Fault(
        "resume-on-an-added-and-a-removed-image",
        resume_folder_run(),
        r"1 file added \(root:train/river/x\.png\); 1 file removed \(root:train/forest/b\.png\)\.",
        setup=both(
            remove("root/train/forest/b.png"), write("root/train/river/x.png", PNG_OF_ANOTHER_IMAGE)
        ),
        keep=("run",),
    ),
    Fault(
        "allow_data_change-resumes-and-says-what-changed",
        (*resume_folder_run(), "--allow_data_change"),
        r"Already trained: step 2",
        setup=write("root/train/forest/a.png", PNG_OF_ANOTHER_IMAGE),
        code=0,
        stdout=r"warning: resuming .* on changed training data: 1 file edited \(root:train/forest",
        keep=("run/checkpoints",),
    ),
    # --- 6. Folder datasets with bad files.
    Fault(
        "folder-without-root",
        train("--config.data.name=folder"),
        r"config\.data\.root is not set",
    ),
    Fault(
        "folder-root-missing",
        folder_train(),
        r"config\.data\.root='.*/root' does not exist",
    ),
    Fault(
        "folder-root-is-a-file",
        folder_train(),
        r"config\.data\.root='.*/root' does not exist",
        setup=write("root", "not a folder"),
    ),
    Fault(
        "folder-split-missing",
        folder_train(),
        r"Split folder '.*/root/test' does not exist \(folders in root: \['train'\]\)",
        setup=folders(train=GOOD),
    ),
    Fault(
        "folder-split-without-classes",
        folder_train(),
        r"Split folder '.*/root/train' has no class folders",
        setup=both(folders(test=GOOD), mkdirs("root/train")),
    ),
    Fault(
        "folder-class-without-images",
        folder_train(),
        r"Class folder '.*/root/train/river' contains no images",
        setup=folders(train={"forest": ["a.png"], "river": ["notes.txt"]}, test=GOOD),
    ),
    Fault(
        "folder-eval-split-unknown-class",
        folder_train(),
        r"'.*/root/test' has class folders \['lake'\] that are not among the known classes",
        setup=folders(train=GOOD, test={"forest": ["e.png"], "lake": ["f.png"]}),
    ),
    Fault(
        "folder-corrupt-image",
        folder_train(),
        r"1 unreadable image\(s\) in .*/train, first .*/forest/bad\.png: .*allow_skips",
        setup=folders(train={"forest": ["a.png", "bad.png"], "river": ["c.png"]}, test=GOOD),
        keep=("root",),
    ),
    Fault(
        "folder-dangling-link",
        folder_train(),
        r"first .*/river/gone\.png: missing \(a dangling link\)",
        setup=folders(train={"forest": ["a.png"], "river": ["c.png", "gone.png"]}, test=GOOD),
    ),
    # --- 7. Knowledge-base files and folders.
    validate(
        entry(),
        "{not json",
        name="bad-json",
        stdout=r"kb\.jsonl: line 2: bad JSON: Expecting property name",
    ),
    validate(
        entry(),
        "[1, 2]",
        name="not-an-object",
        stdout=r"line 2: line is not a JSON object",
    ),
    validate(
        json.dumps({"id": "scene/port", "level": "scene", "name": "port"}),
        name="missing-field",
        stdout=r"line 1, field 'description': missing required field",
    ),
    validate(
        entry("city/port"),
        name="unknown-level",
        stdout=r"line 1, field 'level': unknown level 'city'",
    ),
    validate(
        entry(), entry(), name="duplicate-id", stdout=r"line 2, field 'id': duplicate id 'scene/"
    ),
    validate(
        entry(parent="scene/nowhere"),
        name="unknown-parent",
        stdout=r"line 1, field 'parent': unknown parent id 'scene/nowhere'",
    ),
    validate(
        entry("scene/a", parent="scene/b"),
        entry("scene/b", parent="scene/a"),
        name="parent-cycle",
        stdout=r"field 'parent': parent cycle: scene/a -> scene/b -> scene/a",
    ),
    validate(
        entry(colour="red"), name="unknown-field", stdout=r"line 1, field 'colour': unknown field"
    ),
    validate(
        entry(name="Airport"),
        name="upper-case-name",
        stdout=r"line 1, field 'name': name must be lower case",
    ),
    validate(
        entry(level="object"),
        name="id-of-another-level",
        stdout=r"line 1, field 'id': id must start with 'object/'",
    ),
    validate("", name="empty-file", stdout=r"line 0: file has no entries"),
    Fault(
        "kb-validate-missing-file",
        ("kb", "validate", "{case}/kb.jsonl"),
        r"No such file or directory: '.*kb\.jsonl'",
    ),
    Fault(
        "kb-validate-a-folder",
        ("kb", "validate", "{case}/kb.jsonl"),
        r"Is a directory: '.*kb\.jsonl'",
        setup=mkdirs("kb.jsonl"),
    ),
    Fault(
        "kb-validate-not-utf8",
        ("kb", "validate", "{case}/kb.jsonl"),
        r".*kb\.jsonl: not UTF-8 text",
        setup=write("kb.jsonl", b"\xff\xfe\x00binary"),
    ),
    Fault(
        "kb-build-out-is-a-file",
        ("kb", "build", "--kb", "{case}/kb.jsonl", "--out", "{case}/out"),
        r"--out .*/out is a file; choose a new folder",
        setup=both(kb_file(entry()), write("out", "precious")),
        keep=("out",),
    ),
    Fault(
        "kb-build-out-is-a-dataset",
        ("kb", "build", "--kb", "{case}/kb.jsonl", "--out", "{case}/out"),
        r"--out .*/out exists and is not a knowledge base built by rs-jax; nothing was changed",
        setup=both(kb_file(entry()), write("out/metadata.json", "{}"), write("out/a.png", b"x")),
        keep=("out",),
    ),
    Fault(
        "kb-build-over-a-kb-without-overwrite",
        ("kb", "build", "--kb", "{case}/kb.jsonl", "--out", "{case}/out"),
        r"--out .*/out holds a built knowledge base; pass --overwrite to replace it",
        setup=both(kb_file(entry()), built_kb("out")),
        keep=("out",),
    ),
    Fault(
        "kb-build-batch-size-0",
        ("kb", "build", "--kb", "{case}/kb.jsonl", "--out", "{case}/out", "--batch-size", "0"),
        r"--batch-size must be >= 1, got 0",
        setup=kb_file(entry()),
    ),
    Fault(
        "kb-build-invalid-kb",
        ("kb", "build", "--kb", "{case}/kb.jsonl", "--out", "{case}/out"),
        r"refusing to build .*kb\.jsonl: fix the problems above",
        setup=kb_file(entry(), entry()),
        code=1,
        stdout=r"line 2, field 'id': duplicate id",
        check=absent("out"),
    ),
    Fault(
        "kb-build-missing-kb",
        ("kb", "build", "--kb", "{case}/kb.jsonl", "--out", "{case}/out"),
        r"No such file or directory: '.*kb\.jsonl'",
    ),
    Fault(
        "kb-search-missing-folder",
        ("kb", "search", "{case}/built", "airport"),
        r"built KB directory not found: .*/built",
    ),
    Fault(
        "kb-search-not-a-built-kb",
        ("kb", "search", "{case}/built", "airport"),
        r".*/built is not a complete built KB: missing metadata\.json",
        setup=write("built/notes.txt", "mine"),
    ),
    Fault(
        "kb-search-metadata-not-json",
        ("kb", "search", "{case}/built", "airport"),
        r"built/metadata\.json: not valid JSON",
        setup=built_kb("built", metadata="{"),
    ),
    Fault(
        "kb-search-k-0",
        ("kb", "search", "{case}/built", "airport", "-k", "0"),
        r"-k must be >= 1, got 0",
    ),
    Fault(
        "kb-search-unknown-level",
        ("kb", "search", "{case}/built", "airport", "--level", "city"),
        r"argument --level: invalid choice: 'city'",
    ),
    # --- 8. Converting to and from Hugging Face folders.
    Fault(
        "convert-check-missing-folder",
        ("convert", "check", "--hf", "{case}/hf"),
        r".*/hf: no config\.json \(expected a Hugging Face model folder\)",
    ),
    Fault(
        "convert-check-unsupported-model",
        ("convert", "check", "--hf", "{case}/hf"),
        r"hf/config\.json: model_type='bert': convert check compares",
        setup=hf_folder("hf", model_type="bert"),
    ),
    Fault(
        "convert-check-unknown-model-type",
        ("convert", "check", "--hf", "{case}/hf"),
        r"hf/config\.json: transformers cannot read it \(.*model type `nonsense`",
        setup=hf_folder("hf", model_type="nonsense"),
    ),
    Fault(
        "convert-check-config-not-json",
        ("convert", "check", "--hf", "{case}/hf"),
        r"hf/config\.json",
        setup=write("hf/config.json", "{not json"),
    ),
    Fault(
        "hf-to-orbax-without-towers",
        ("convert", "hf-to-orbax", "--config", TINY, "--workdir", "{case}/w"),
        r"hf-to-orbax needs config\.init\.vision and/or config\.init\.llm",
        check=absent("w"),
    ),
    Fault(
        "hf-to-orbax-over-a-run",
        (
            *("convert", "hf-to-orbax", "--config", TINY, "--workdir", "{run}"),
            "--config.init.vision={case}/hf",
        ),
        r"--workdir .*/run already holds a run \(checkpoints or config\.json\)",
        keep=("run",),
    ),
    Fault(
        "hf-to-orbax-tower-missing",
        (
            *("convert", "hf-to-orbax", "--config", TINY, "--workdir", "{case}/w"),
            "--config.init.llm={case}/hf",
        ),
        r"config\.init\.llm='.*/hf': no config\.json there",
    ),
    Fault(
        "orbax-to-hf-out-not-empty",
        (
            *("convert", "orbax-to-hf", "--config", TINY, "--workdir", "{case}/w"),
            *("--out", "{case}/out"),
        ),
        r"--out .*/out exists and is not an empty folder",
        setup=write("out/model.safetensors", b"weights"),
        keep=("out",),
    ),
    Fault(
        "orbax-to-hf-out-is-a-file",
        (
            *("convert", "orbax-to-hf", "--config", TINY, "--workdir", "{case}/w"),
            *("--out", "{case}/out"),
        ),
        r"--out .*/out exists and is not an empty folder",
        setup=write("out", "precious"),
        keep=("out",),
    ),
    Fault(
        "orbax-to-hf-without-checkpoint",
        (
            *("convert", "orbax-to-hf", "--config", TINY, "--workdir", "{case}/w"),
            *("--out", "{case}/out", "--config.data.data_dir={case}/data"),
        ),
        r"No checkpoint in .*/w; run `rs-jax train`",
        check=absent("w"),
    ),
    # ---------------------------------------------------------------- issue 20, round 2
    # --- 9. Every numeric key with a range, out of it: named before any data is prepared.
    bad("train.weight_decay", "-0.01", r"config\.train\.weight_decay must be a finite number >= 0"),
    bad("train.weight_decay", "nan", r"config\.train\.weight_decay must be .*, got nan"),
    bad("train.b1", "1", r"config\.train\.b1 must be in \[0, 1\), got 1\.0"),
    bad("train.b1", "-0.1", r"config\.train\.b1 must be in \[0, 1\), got -0\.1"),
    bad("train.b2", "1.5", r"config\.train\.b2 must be in \[0, 1\), got 1\.5"),
    bad("train.eps", "0", r"config\.train\.eps must be a finite number > 0, got 0\.0"),
    bad("train.eps", "inf", r"config\.train\.eps must be a finite number > 0, got inf"),
    bad("train.grad_clip", "-1", r"config\.train\.grad_clip must be .*>= 0 \(0 = no clipping\)"),
    bad("train.grad_clip", "inf", r"config\.train\.grad_clip must be a finite number"),
    bad("train.learning_rate", "inf", r"config\.train\.learning_rate must be a finite number"),
    bad("data.max_prompt_len", "-1", r"config\.data\.max_prompt_len must be positive, got -1"),
    bad("data.max_answer_len", "0", r"config\.data\.max_answer_len must be positive, got 0"),
    bad("data.packing.slots", "-1", r"config\.data\.packing\.slots must be >= 0 \(0 = off\)"),
    bad("data.band_max", "-1", r"config\.data\.band_max must be a finite number >= 0"),
    bad("data.band_max", "nan", r"config\.data\.band_max must be .*, got nan"),
    bad("data.bands", "1,2", r"config\.data\.bands=\(1, 2\): give three band indices"),
    bad("data.bands", "3,2,-1", r"config\.data\.bands=\(3, 2, -1\): give three band indices >= 0"),
    bad("data.train_split", "", r"config\.data\.train_split is empty; name a split"),
    bad("data.eval_split", " ", r"config\.data\.eval_split is empty; name a split"),
    bad("data.tasks", "scene,count,scene", r"config\.data\.tasks lists \['scene'\] more than once"),
    bad("data.box_format", "yolo", r"config\.data\.box_format='yolo'; choose from"),
    bad("data.image_size", "-32", r"config\.data\.image_size must be positive, got -32"),
    bad("model.attention", "flash", r"config\.model\.attention='flash': expected one of"),
    bad("model.vision.width", "0", r"config\.model\.vision\.width=0: must be >= 1"),
    bad("model.vision.depth", "0", r"config\.model\.vision\.depth=0: must be >= 1"),
    bad("model.vision.mlp_dim", "0", r"config\.model\.vision\.mlp_dim=0: must be >= 1"),
    bad("model.llm.depth", "0", r"config\.model\.llm\.depth=0: must be >= 1"),
    bad("model.llm.mlp_dim", "-1", r"config\.model\.llm\.mlp_dim=-1: must be >= 1"),
    bad("model.llm.num_kv_heads", "0", r"config\.model\.llm\.num_kv_heads=0: must be >= 1"),
    bad("model.llm.rope_theta", "inf", r"config\.model\.llm\.rope_theta=inf: must be > 0 and fin"),
    bad("model.llm.rope_scaling.high_freq_factor", "0.5", r"low_freq_factor=1\.0: must be in \(0"),
    bad("model.llm.lora.alpha", "nan", r"config\.model\.llm\.lora\.alpha=nan: must be > 0"),
    bad("model.experts.mlp_dim", "0", r"config\.model\.experts\.mlp_dim=0: must be >= 1"),
    bad("model.experts.top_k", "0", r"config\.model\.experts\.top_k=0: must be >= 1"),
    bad("model.experts.balance_loss_weight", "nan", r"experts\.balance_loss_weight=nan: must be"),
    bad("model.experts.capacity_factor", "nan", r"experts\.capacity_factor=nan: must be > 0"),
    bad("model.experts.router_jitter", "-0.5", r"experts\.router_jitter=-0\.5: must be in \[0"),
    bad("model.kb.recall_target", "0", r"config\.model\.kb\.recall_target=0\.0: must be in \(0"),
    bad("model.kb.retrieval_loss_weight", "nan", r"kb\.retrieval_loss_weight=nan: must be >= 0"),
    bad("model.augment.num_heads", "0", r"config\.model\.augment\.num_heads=0: must be >= 1"),
    bad("model.vision.norm_eps", "nan", r"config\.model\.vision\.norm_eps=nan: must be > 0"),
    bad("model.levels", "(('scene', 2),)", r"levels\[0\]=\('scene', 2\): a tuple of \(name, block"),
    bad("model.levels", "((1, 2, 1),)", r"levels\[0\]=\(1, 2, 1\): the name must be a string"),
    bad("mesh.tensor", "-3", r"axis 'tensor' must be a positive size or -1"),
    bad("eval.num_examples", "-5", r"config\.eval\.num_examples must be positive, or -1 for all"),
    bad("seed", str(2**32), r"config\.seed must be in \[0, 2\*\*32\), got 4294967296"),
    bad("data.seed", str(2**32), r"config\.data\.seed must be in \[0, 2\*\*32\), got 4294967296"),
    # ... and of the wrong type.
    bad("seed", "1.5", r"config\.seed expects int, got '1\.5'"),
    bad("data.allow_skips", "maybe", r"config\.data\.allow_skips expects bool"),
    bad("train.async_checkpoints", "2", r"config\.train\.async_checkpoints expects bool"),
    bad("data.worker_count", "1.5", r"config\.data\.worker_count expects int, got '1\.5'"),
    # --- 10. Records of every format with wrong JSON types, nulls, strings for lists, text
    # too long, bad encodings: the file, the line (or record) and the field.
    vqa(
        "question-a-list", r'q\.jsonl line 1: "question": .*valid string \(got list', question=["a"]
    ),
    vqa("image-a-number", r'q\.jsonl line 1: "image": .*valid string \(got int 7\)', image=7),
    vqa("answer-null", r'q\.jsonl line 1: "answer": .*\(got null\).*allow_skips', answer=None),
    vqa("answer-an-object", r'q\.jsonl line 1: "answer": .*\(got dict', answer={"text": "yes"}),
    vqa("question_type-a-number", r'line 1: "question_type": .*valid string', question_type=3),
    vqa("label-a-list", r'q\.jsonl line 1: "label": .*valid string \(got list', label=["road"]),
    vqa("question-missing", r"q\.jsonl line 1: no question; fix the record", question=DROP),
    vqa("question-blank", r"q\.jsonl line 1: no question; fix the record", question="   "),
    vqa("question-too-long", r'line 1: "question" has 5,000 characters', question="word " * 1000),
    vqa("line-a-list", r"q\.jsonl line 2: expected an object", lines=(json.dumps(VQA_ROW), "[1]")),
    vqa("line-not-json", r"q\.jsonl line 2: not valid JSON", lines=(json.dumps(VQA_ROW), '{"i')),
    vqa(
        "without-split",
        r'q\.jsonl line 1: no "split" .*\{split\} in config\.data\.sources\.s\.path',
        split=DROP,
    ),  # fmt: skip
    vqa("image-missing", r"unreadable image\(s\) .*a\.png \(q\.jsonl line 1\): missing"),
    vqa(
        "empty-train-split",
        r"No usable records left in q\.jsonl \(split 'train'\) \(no record",
        split="val",
    ),  # fmt: skip
    sources_fault(
        "latin-1",
        "vqa_jsonl",
        "q.jsonl",
        json.dumps(VQA_ROW).encode() + b'\n{"question": "Caf\xe9?"}\n',
        r"q\.jsonl line 2: not UTF-8 text",
    ),
    sources_fault(
        "truncated-image",
        "vqa_jsonl",
        "q.jsonl",
        json.dumps(VQA_ROW),
        r"1 unreadable image\(s\) .*a\.png \(q\.jsonl line 1\): .*truncated",
        setup=truncated_png("a.png"),
    ),
    sources_fault(
        "dangling-image",
        "vqa_jsonl",
        "q.jsonl",
        json.dumps(VQA_ROW),
        r"a\.png \(q\.jsonl line 1\): missing \(a dangling link\)",
        setup=dangling("a.png"),
    ),
    captions(
        "captions-a-string",
        r'c\.jsonl line 1: "captions": .*valid list \(got str',
        captions="a road by a river",
    ),  # fmt: skip
    captions("captions-null", r'c\.jsonl line 1: "captions": .*\(got null\)', captions=None),
    captions("captions-of-numbers", r'line 1: "captions\.0": .*valid string', captions=[1, 2]),
    captions("captions-all-blank", r"c\.jsonl line 1: no captions", captions=["", "  "]),
    captions(
        "caption-too-long",
        r'c\.jsonl line 1: "captions\.0" has 5,000 characters',
        captions=["word " * 1000],
    ),  # fmt: skip
    captions("image-a-list", r'c\.jsonl line 1: "image": .*valid string', image=["a.png"]),
    karpathy("dataset-a-list", r'dataset_x\.json: expected \{"images"', data=[KARPATHY_IMAGE]),
    karpathy(
        "sentences-a-string",
        r'images\[0\] \(a\.png\): "sentences": .*valid list',
        sentences="a road",
    ),  # fmt: skip
    karpathy(
        "raw-a-number",
        r'images\[0\] \(a\.png\): "sentences\.0\.raw": .*valid string',
        sentences=[{"raw": 5}],
    ),  # fmt: skip
    karpathy("filename-null", r'images\[0\] \(None\): "filename": .*\(got null\)', filename=None),
    karpathy(
        "image-entry-a-string",
        r"images\[0\] \(None\): .*valid dictionary",
        data={"images": ["a.png"]},
    ),  # fmt: skip
    sources_fault(
        "truncated-json",
        "captions",
        "dataset_x.json",
        '{"images": [{"filename": "a.png"',
        r"config\.data\.sources\.s\.path: dataset_x\.json line 1: not valid JSON",
    ),
    instruct(
        "conversations-a-string",
        r"record 0 \(id 'p1'\): \"conversations\": .*valid list",
        conversations="hello",
    ),  # fmt: skip
    instruct(
        "turn-a-string",
        r'record 0 .*"conversations\.0": .*valid dictionary',
        conversations=["<image> hi", "hello"],
    ),  # fmt: skip
    instruct(
        "turn-value-null",
        r'"conversations\.1\.value": .*\(got null\)',
        conversations=[HUMAN, GPT | {"value": None}],
    ),  # fmt: skip
    instruct(
        "turn-without-from",
        r"record 0 \(id 'p1'\): no conversations\.0\.from",
        conversations=[{"value": "<image> hi"}, GPT],
    ),  # fmt: skip
    instruct(
        "roles-swapped",
        r"turns 0, 1 are from 'gpt', 'human'",
        conversations=[GPT | {"value": "<image> hi"}, HUMAN | {"value": "ok"}],
    ),  # fmt: skip
    instruct(
        "no-image-placeholder",
        r"has 0 image placeholders '<image>'; expected exactly one",
        conversations=[HUMAN | {"value": "hi"}, GPT],
    ),  # fmt: skip
    instruct(
        "odd-turns",
        r"has 3 turns; expected human, gpt pairs",
        conversations=[HUMAN, GPT, HUMAN | {"value": "more?"}],
    ),  # fmt: skip
    instruct("record-a-number", r"conv\.json record 0: expected an object, got int", records=[5]),
    instruct(
        "not-a-list",
        r"conv\.json: expected a list of conversation records",
        records={"data": [CONVERSATION]},
    ),  # fmt: skip
    instruct("task-a-list", r'record 0 .*"task": .*valid string \(got list', task=["vqa"]),
    instruct("without-split", r"conv\.json record 0 \(id 'p1'\): no \"split\"", split=DROP),
    instruct("text-only", r"no image \(text-only conversations are not supported\)", image=DROP),
    rsvqa("img_id-a-string", r'questions\.json question 0: "img_id": .*valid integer', img_id="1"),
    rsvqa(
        "questions-file-a-list",
        r'train_questions\.json: expected \{"questions": \[\.\.\.\]\}',
        questions=[RSVQA_QUESTION],
    ),  # fmt: skip
    rsvqa(
        "question-a-string",
        r"train_questions\.json: questions\[0\] is str, not an object",
        questions={"questions": ["Is there a road?"]},
    ),  # fmt: skip
    rsvqa("answers_ids-a-string", r'question 0: "answers_ids": .*valid list', answers_ids="0"),
    rsvqa("unknown-type", r"question 0: unknown question type 'colour'", type="colour"),
    rsvqa(
        "no-active-answer", r"question 0: no active answer among answers_ids \[5\]", answers_ids=[5]
    ),  # fmt: skip
    rsvqa(
        "answers-of-strings",
        r"train_answers\.json: answers\[0\] is str, not an object",
        answers=json.dumps({"answers": ["yes"]}),
    ),  # fmt: skip
    rsvqa("answers-not-json", r"train_answers\.json line 1: not valid JSON", answers="{"),
    rsvqa(
        "unknown-question_types",
        r"sources\.s\.question_types: unknown \['colour'\]",
        options={"question_types": ("colour",)},
    ),  # fmt: skip
    # --- 11. rs-jax score: missing ids, bad lines, --allow-missing.
    score(
        "answer-missing",
        r"id 2 of --ref .*r\.jsonl is not in --pred .*--allow-missing",
        [ANSWER_1],
        [REFERENCE_1, REFERENCE_2],
    ),  # fmt: skip
    score(
        "reference-missing",
        r"id 2 of --pred .*p\.jsonl is not in --ref",
        [ANSWER_1, ANSWER_2],
        [REFERENCE_1],
    ),  # fmt: skip
    score(
        "allow-missing-counts-them",
        r"overall",
        [ANSWER_1],
        [REFERENCE_1, REFERENCE_2],
        "--allow-missing",
        code=0,
        stdout=r"Left out \(--allow-missing\): 1 references without an answer, 0 answers",
    ),
    score(
        "allow-missing-with-nothing-in-common",
        r"no id of --pred .* is in --ref .*nothing to",
        [ANSWER_2],
        [REFERENCE_1],
        "--allow-missing",
    ),  # fmt: skip
    score("empty-files", r"--ref .*r\.jsonl holds no records", [], []),
    score(
        "line-not-json",
        r"--pred: .*p\.jsonl line 2: not valid JSON",
        [ANSWER_1, "{"],
        [REFERENCE_1],
    ),  # fmt: skip
    score(
        "answer-a-number",
        r'--pred .*p\.jsonl line 1: "answer": .*valid string',
        [{"id": 1, "answer": 3}],
        [REFERENCE_1],
    ),  # fmt: skip
    score(
        "id-null",
        r'--pred .*p\.jsonl line 1: "id": .*\(got null\)',
        [{"id": None, "answer": "yes"}],
        [REFERENCE_1],
    ),  # fmt: skip
    score(
        "id-repeated",
        r"--pred .*p\.jsonl line 2: id 1 again \(first on line 1\)",
        [ANSWER_1, ANSWER_1],
        [REFERENCE_1],
    ),  # fmt: skip
    score(
        "reference-without-answer",
        r"--ref .*line 1: no answer \(nor class, references\)",
        [ANSWER_1],
        [{"id": 1}],
    ),  # fmt: skip
    score(
        "references-of-numbers",
        r'--ref .*r\.jsonl line 1: "references\.0": .*valid string',
        [ANSWER_1],
        [{"id": 1, "references": [1, 2]}],
        protocol="captions",
    ),  # fmt: skip
    score(
        "reference-without-a-box",
        r"--ref .*line 1 \(id 1\): reference 'no box' holds no",
        [{"id": 1, "answer": "{<1><2><3><4>|<0>}"}],
        [{"id": 1, "answer": "no box"}],
        protocol="grounding",
    ),  # fmt: skip
    score(
        "not-utf8", r"--pred: .*p\.jsonl line 1: not UTF-8 text", [b'{"id": "\xff"}'], [REFERENCE_1]
    ),  # fmt: skip
    Fault(
        "score-pred-missing",
        ("score", "--protocol", "rsvqa", "--pred", "{case}/p.jsonl", "--ref", "{case}/r.jsonl"),
        r"--ref: .*r\.jsonl does not exist",
    ),  # fmt: skip
    Fault(
        "score-unknown-protocol",
        ("score", "--protocol", "bleu", "--pred", "p", "--ref", "r"),
        r"argument --protocol: invalid choice: 'bleu'",
    ),  # fmt: skip
    # --- 12. predict and chat with bad arguments: before the model is loaded.
    Fault(
        "predict-image-missing",
        on_run("predict", "--image", "{case}/x.png"),
        r"Cannot read image .*x\.png: missing",
    ),  # fmt: skip
    Fault(
        "predict-image-a-folder",
        on_run("predict", "--image", "{case}"),
        r"--image .* is a folder; use --images DIR",
    ),  # fmt: skip
    Fault(
        "predict-image-truncated",
        on_run("predict", "--image", "{case}/x.png"),
        r"Cannot read image .*x\.png: .*truncated",
        setup=truncated_png("x.png"),
    ),  # fmt: skip
    Fault(
        "predict-image-not-an-image",
        on_run("predict", "--image", "{case}/x.png"),
        r"Cannot read image .*x\.png: UnidentifiedImageError",
        setup=write("x.png", "hello"),
    ),  # fmt: skip
    Fault(
        "predict-image-dangling-link",
        on_run("predict", "--image", "{case}/x.png"),
        r"Cannot read image .*x\.png: missing \(a dangling link\)",
        setup=dangling("x.png"),
    ),  # fmt: skip
    Fault(
        "predict-images-empty-folder",
        on_run("predict", "--images", "{case}/imgs", "--out", "{case}/o.jsonl"),
        r"--images .*imgs holds no images",
        setup=mkdirs("imgs"),
        check=absent("o.jsonl"),
    ),  # fmt: skip
    Fault(
        "predict-images-a-file",
        on_run("predict", "--images", "{case}/o.jsonl", "--out", "{case}/x.jsonl"),
        r"--images .*o\.jsonl is not a folder",
        setup=write("o.jsonl", "x"),
        keep=("o.jsonl",),
    ),  # fmt: skip
    Fault(
        "predict-out-exists",
        on_run("predict", "--images", "{case}/imgs", "--out", "{case}/o.jsonl"),
        r"--out .*o\.jsonl already exists; pass --overwrite to replace it",
        setup=both(an_image("imgs/a.png"), write("o.jsonl", "precious\n")),
        keep=("o.jsonl",),
    ),  # fmt: skip
    Fault(
        "predict-out-a-folder",
        on_run("predict", "--images", "{case}/imgs", "--out", "{case}/o"),
        r"--out .*/o is a folder; name a \.jsonl file",
        setup=both(an_image("imgs/a.png"), write("o/mine.txt", "mine")),
        keep=("o",),
    ),  # fmt: skip
    Fault(
        "predict-out-with-image",
        on_run("predict", "--image", "x.png", "--out", "o.jsonl"),
        r"--out goes with --images DIR",
    ),  # fmt: skip
    Fault(
        "predict-images-without-out",
        on_run("predict", "--images", "{case}"),
        r"--images needs --out FILE\.jsonl",
    ),  # fmt: skip
    Fault(
        "predict-images-json",
        on_run("predict", "--images", "{case}", "--out", "o", "--json"),
        r"--json goes with --image; --images writes JSON lines",
    ),  # fmt: skip
    Fault(
        "predict-batch-size-0",
        on_run("predict", "--images", "{case}", "--out", "o", "--batch-size", "0"),
        r"--batch-size must be positive, got 0",
    ),  # fmt: skip
    Fault(
        "predict-batch-size-not-a-number",
        on_run("predict", "--images", "{case}", "--out", "o", "--batch-size", "all"),
        r"argument --batch-size: invalid int value: 'all'",
    ),  # fmt: skip
    Fault(
        "predict-image-and-images",
        on_run("predict", "--image", "a", "--images", "b"),
        r"argument --images: not allowed with argument --image",
    ),  # fmt: skip
    Fault(
        "chat-image-missing",
        on_run("chat", "--image", "{case}/x.png"),
        r"Cannot read image .*x\.png: missing",
    ),  # fmt: skip
    Fault("chat-without-image", on_run("chat"), r"the following arguments are required: --image"),
    # --- 13. compile and convert with bad arguments.
    Fault(
        "compile-unknown-chip",
        ("compile", "--config", TINY, "--topology", "v9z:1x1"),
        r"--topology v9z:1x1: unknown TPU chip 'v9z'",
    ),  # fmt: skip
    Fault(
        "compile-slices-0",
        ("compile", "--config", TINY, "--topology", "v5p-8", "--slices", "0"),
        r"--slices must be >= 1, got 0",
    ),  # fmt: skip
    Fault(
        "compile-batch-negative",
        ("compile", "--config", TINY, "--topology", "v5p-8", "--batch", "-8"),
        r"--batch must be >= 1, got -8",
    ),  # fmt: skip
    Fault(
        "compile-unknown-step",
        ("compile", "--config", TINY, "--topology", "v5p-8", "--step", "decode"),
        r"argument --step: invalid choice: 'decode'",
    ),  # fmt: skip
    Fault(
        "convert-check-hf-a-file",
        ("convert", "check", "--hf", "{case}/hf"),
        r".*/hf: no config\.json",
        setup=write("hf", "x"),
        keep=("hf",),
    ),  # fmt: skip
    Fault("convert-unknown-action", ("convert", "export"), r"invalid choice: 'export'"),
    # --- 14. Knowledge-base files: wrong types, and what a build or search must refuse early.
    validate(entry(name=5), name="name-a-number", stdout=r"line 1, field 'name'"),
    validate(entry(aliases="airfield"), name="aliases-a-string", stdout=r"line 1, field 'aliases'"),
    validate(
        entry(description=""), name="description-empty", stdout=r"line 1, field 'description'"
    ),  # fmt: skip
    validate(entry(), '"scene/port"', name="line-a-string", stdout=r"line 2: line is not a JSON"),
    Fault(
        "kb-validate-utf8-bom",
        ("kb", "validate", "{case}/kb.jsonl"),
        r"kb\.jsonl: 1 problem\(s\)$",
        setup=write("kb.jsonl", ("\ufeff" + entry()).encode()),
        code=1,
        stdout=r"line 1: bad JSON: Unexpected UTF-8 BOM",
    ),  # fmt: skip
    Fault(
        "kb-search-k-negative",
        ("kb", "search", "{case}/built", "airport", "-k", "-1"),
        r"-k must be >= 1, got -1",
    ),  # fmt: skip
    Fault(
        "kb-search-empty-query",
        ("kb", "search", "{case}/built", " "),
        r"the query is empty",
        setup=built_kb("built"),
    ),  # fmt: skip
    Fault(
        "kb-search-metadata-a-list",
        ("kb", "search", "{case}/built", "airport"),
        r"built/metadata\.json: missing field",
        setup=built_kb("built", metadata="[1]"),
    ),  # fmt: skip
    Fault(
        "kb-build-out-under-a-file",
        ("kb", "build", "--kb", "{case}/kb.jsonl", "--out", "{case}/notes/out"),
        r"--out .*notes/out: .*notes is a file, not a folder",
        setup=both(kb_file(entry()), write("notes", "mine")),
        keep=("notes",),
    ),  # fmt: skip
    # --- 15. Workdir states: the checkpoint folder a file; locks held by others.
    Fault(
        "resume-checkpoints-a-file",
        resume(),
        r"run/checkpoints is a file, not the run's checkpoint folder",
        setup=both(
            lambda case: shutil.rmtree(case / "run" / "checkpoints"),
            write("run/checkpoints", "mine"),
        ),
        keep=("run",),
        check=lock_released,
    ),  # fmt: skip
    Fault(
        "eval-checkpoints-a-file",
        evaluate(config=RUN_CONFIG, workdir="{run}"),
        r"No checkpoint in .*/run",
        setup=both(
            lambda case: shutil.rmtree(case / "run" / "checkpoints"),
            write("run/checkpoints", "mine"),
        ),
        keep=("run",),
    ),  # fmt: skip
    Fault(
        "lock-held-by-the-parent-process",
        resume(),
        rf"Another run \(.* pid {os.getppid()}\) is using .*run",
        setup=lock(None, os.getppid()),
        keep=("run",),
    ),  # fmt: skip
]


# ---------------------------------------------------------------------------- the runner


@pytest.fixture(scope="module")
def shared_data(tmp_path_factory) -> Path:
    """The tiny config's dataset and tokenizer, prepared before any case uses them (the
    generator's progress bars would be on the case's stderr)."""
    folder = tmp_path_factory.mktemp("shared_data")
    build_data(load_config(TINY, [f"data.data_dir={folder}"]), str(folder))
    return folder


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, shared_data) -> Path:
    workdir = tmp_path_factory.mktemp("trained") / "run"
    argv = train(*RUN_ARGS, config=RUN_CONFIG, workdir=str(workdir), data=str(shared_data))
    assert cli.main(argv) == 0
    return workdir


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> Path:
    """A folder holding a folder dataset (root/), its data_dir (data/) and a run trained on
    it for 2 steps (run/); the paths in its config are relative to this folder."""
    base = tmp_path_factory.mktemp("folder_run")
    eight = {
        "forest": ["a.png", "b.png", "e.png", "f.png"],
        "river": ["c.png", "d.png", "g.png", "h.png"],
    }
    folders(train=eight, test=GOOD)(base)
    argv = train(*RUN_ARGS, *FOLDER_RUN_ARGS, config=RUN_CONFIG, workdir="run", data="data")
    cwd = os.getcwd()
    os.chdir(base)
    try:
        assert cli.main(list(argv)) == 0
    finally:
        os.chdir(cwd)
    return base


def _fill(argv: tuple[str, ...], values: dict[str, str]) -> list[str]:
    out = []
    for arg in argv:
        for key, value in values.items():
            arg = arg.replace("{" + key + "}", value)
        out.append(arg)
    return out


def _contents(path: Path) -> dict[str, bytes] | None:
    """Every file under `path` (or `path` itself) by relative name; None if it is gone."""
    if path.is_file():
        return {".": path.read_bytes()}
    if not path.is_dir():
        return None
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: fault.id)
def test_fault(fault: Fault, tmp_path, request, capsys, monkeypatch):
    if fault.read_only and AS_ROOT:
        pytest.skip("root ignores file permissions")
    values = {"case": str(tmp_path), "data": str(request.getfixturevalue("shared_data"))}
    if any("{run}" in arg for arg in fault.argv):
        shutil.copytree(request.getfixturevalue("trained_run"), tmp_path / "run", symlinks=True)
        values["run"] = str(tmp_path / "run")
    if any("{folder_run}" in arg for arg in fault.argv):
        shutil.copytree(request.getfixturevalue("folder_run"), tmp_path, dirs_exist_ok=True)
        values["folder_run"] = str(tmp_path / "run")
    if fault.setup:
        fault.setup(tmp_path)
    monkeypatch.chdir(tmp_path)  # relative and empty paths then point into the case's folder
    monkeypatch.delenv("RS_JAX_TRACEBACK", raising=False)
    for name, value in fault.env:
        monkeypatch.setenv(name, value)
    before = {path: _contents(tmp_path / path) for path in fault.keep}
    for path in fault.read_only:
        (tmp_path / path).chmod(0o555)
        request.addfinalizer(lambda p=tmp_path / path: p.chmod(0o755))
    capsys.readouterr()

    try:
        code = cli.main(_fill(fault.argv, values))
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    out, err = capsys.readouterr()

    assert "Traceback" not in out + err, err
    assert code == fault.code, f"exit code {code}\nstdout: {out[-2000:]}\nstderr: {err}"
    if fault.code == 0:
        assert "error" not in err.lower(), err
        assert re.search(fault.message, out), out[-2000:]
    else:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        if fault.code == 2:
            assert lines[0].startswith("rs-jax: error: "), lines[0]
        assert re.search(fault.message, lines[0]), lines[0]
    if fault.stdout:
        assert re.search(fault.stdout, out), out[-2000:]
    if "{case}/data" in " ".join(fault.argv):
        assert not (tmp_path / "data").exists(), "data was prepared before the error"
    for path, contents in before.items():
        assert _contents(tmp_path / path) == contents, f"{path} changed"
    if fault.check:
        fault.check(tmp_path)


@pytest.mark.parametrize(
    "command, signum, code",
    [
        ("train", "SIGTERM", 75),
        ("train", "SIGINT", 75),
        ("eval", "SIGINT", 130),
        ("predict", "SIGTERM", 130),
        ("chat", "SIGINT", 130),
    ],
)
def test_a_signal_before_training_stops_cleanly(
    command, signum, code, tmp_path, shared_data, request, capsys, monkeypatch
):
    """SIGTERM or SIGINT while the data are prepared: one line, exit 75 for a run that can
    start again (130 for another command on the trained run: eval, or predict and chat
    while the model loads), and the workdir lock released."""
    import signal

    from rs_jax.train import experiment

    config, extra = TINY, []
    if command != "train":  # (the trained run is built before build_data is replaced)
        shutil.copytree(request.getfixturevalue("trained_run"), tmp_path / "w", symlinks=True)
        config = RUN_CONFIG
    if command in ("predict", "chat"):
        image(tmp_path / "x.png")
        extra = ["--image", str(tmp_path / "x.png")]

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), getattr(signal, signum))
        raise AssertionError("the signal did not stop the command")

    monkeypatch.setattr(experiment, "build_data", interrupted)
    argv = [command, "--config", config, "--workdir", str(tmp_path / "w")]
    argv += [f"--config.data.data_dir={shared_data}", *extra]
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    assert cli.main(argv) == code
    out, err = capsys.readouterr()
    (line,) = err.strip().splitlines()
    assert "Traceback" not in out + err and signum in line
    assert not (tmp_path / "w" / LOCK_FILE).exists()
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # restored


def test_a_step_larger_than_the_memory_stops_before_step_1(
    tmp_path, shared_data, capsys, monkeypatch
):
    """The compiled step's peak set against what a device has (host RAM on CPU, here made
    1 MiB): one line naming the knobs, before any step runs or anything is saved."""
    from rs_jax.train import report

    monkeypatch.setattr(report, "device_memory_bytes", lambda device: (2**20, "a test limit"))
    argv = train(config=RUN_CONFIG, workdir=str(tmp_path / "w"), data=str(shared_data))
    assert cli.main(list(argv)) == 2
    out, err = capsys.readouterr()
    (line,) = err.strip().splitlines()
    assert re.search(r"needs .* a device at its peak, more than 1\.0 MiB \(a test limit\)", line)
    assert "config.data.batch_size" in line and "config.model.remat_policy=full" in line
    assert "step 1/" not in out and not list((tmp_path / "w").glob("checkpoints/*"))


def test_an_unexpected_exception_is_one_line_and_debug_shows_it(capsys, monkeypatch):
    from rs_jax import config_files as config_lib

    def broken(*args, **kwargs):
        raise RuntimeError("something deep\nand more")

    monkeypatch.setattr(config_lib, "validate_config", broken)
    assert cli.main(["config", "--config", TINY]) == 1
    out, err = capsys.readouterr()
    (line,) = err.strip().splitlines()
    assert line == (
        "rs-jax: error: config failed: RuntimeError: something deep "
        "(run again with --debug for the traceback)"
    )
    with pytest.raises(RuntimeError, match="something deep"):
        cli.main(["config", "--config", TINY, "--debug"])


def test_there_are_enough_distinct_cases():
    # 199 cases when issue 20 was filed (commit a9248af), and at least 100 new ones since.
    ids = [fault.id for fault in FAULTS]
    assert len(ids) == len(set(ids)) and len(ids) >= 360


def test_allow_skips_leaves_bad_images_out(tmp_path):
    """With config.data.allow_skips the corrupt and dangling files are left out and listed,
    the good images are kept, and the files themselves are not touched."""
    bad_files = {"forest": ["a.png", "bad.png"], "river": ["c.png", "gone.png"]}
    folders(train=bad_files, test=GOOD)(tmp_path)
    before = _contents(tmp_path / "root")
    overrides = [
        "data.name=folder",
        f"data.root={tmp_path / 'root'}",
        f"data.data_dir={tmp_path / 'data'}",
        "data.allow_skips=true",
    ]
    data = build_data(load_config(TINY, overrides), str(tmp_path / "w"))
    skipped = data.skips["train"]["skipped"]
    assert sorted(Path(p).name for p in skipped) == ["bad.png", "gone.png"]
    assert data.num_train_images == 2 and data.num_eval_examples == 4
    assert _contents(tmp_path / "root") == before


def test_a_resume_prints_no_library_noise(tmp_path, shared_data, trained_run, capsys, caplog):
    """Issue 20 part 4: a resume that restores the checkpoint and trains one more step
    says nothing on stderr, raises no Python warning (Orbax's "Sharding info not provided"
    among them) and logs nothing at WARNING or above through absl, Orbax or tensorboardX."""
    import logging
    import warnings

    shutil.copytree(trained_run, tmp_path / "run", symlinks=True)
    argv = train(
        "--config.train.steps=3",
        "--config.train.checkpoint_every=2",
        config=RUN_CONFIG,
        workdir=str(tmp_path / "run"),
        data=str(shared_data),
    )
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        assert cli.main(list(argv)) == 0
    out, err = capsys.readouterr()
    assert "Resumed from" in out and "step 3/3" in out, out[-2000:]
    assert err == "", err
    # Each names where it was raised: flax's '.value' and optax.global_norm deprecations were.
    assert [f"{w.filename}:{w.lineno}: {w.message}" for w in caught] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
