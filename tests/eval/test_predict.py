"""`rs-jax predict` and `rs-jax chat` on a tiny run's step-0 checkpoint, through the CLI's
main function: the answers are Session.ask's, a folder answered in batches matches the
images answered one by one, unreadable images and existing outputs are refused (or skipped
and counted), and chat hands each turn the conversation so far."""

import dataclasses
import io
import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from rs_jax import cli
from rs_jax.config_files import load_config
from rs_jax.eval import figures, predict
from rs_jax.eval.session import Session
from rs_jax.train import experiment as experiment_lib
from rs_jax.train.checkpointing import Checkpointer

REPO = Path(__file__).resolve().parents[2]
QUESTION = "Is there a ship in the image?"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(CLI arguments naming a tiny run whose step 0 is saved, a Session on it)."""
    workdir = tmp_path_factory.mktemp("predict")
    overrides = [f"data.data_dir={workdir / 'data'}", "data.num_train=8", "data.num_test=2"]
    config = load_config(str(REPO / "configs/tiny.py"), overrides)
    exp = experiment_lib.setup(config, str(workdir))
    checkpointer = Checkpointer(workdir)
    checkpointer.save(0, exp.state, config=json.loads(exp.config.to_json_best_effort()))
    checkpointer.wait()
    checkpointer.close()
    args = ["--config", "configs/tiny.py", "--workdir", str(workdir)]
    args += [f"--config.{o}" for o in overrides]
    return args, Session(config, str(workdir)), exp.state["params"]


def test_session_loads_the_parameters_alone(run):
    """A Session reads the checkpoint's parameters and nothing else: no optimizer state,
    no random initialisation is allocated beside them."""
    _, session, saved = run
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(session.exp.state))
    leaves = zip(jax.tree.leaves(session.params), jax.tree.leaves(saved), strict=True)
    for loaded, stored in leaves:
        assert isinstance(loaded, jax.Array)
        np.testing.assert_array_equal(np.asarray(loaded), np.asarray(stored))


@pytest.fixture
def loaded(run, monkeypatch):
    """The CLI's argument prefix, with the commands using the module's loaded Session."""
    args, session, _ = run
    monkeypatch.setattr(predict, "open_session", lambda config, workdir: session)
    return args, session


def test_a_run_folder_needs_no_config(run, tmp_path, capsys, monkeypatch):
    """`predict --workdir W --image F` takes the config stored with W's newest checkpoint;
    a --config that changes a model key beside it is named on stderr."""
    args, session, _ = run
    workdir = args[args.index("--workdir") + 1]
    configs = []
    monkeypatch.setattr(
        predict, "open_session", lambda config, workdir: configs.append(config) or session
    )
    image = str(images(tmp_path, 1)[0])
    command = ["predict", "--workdir", workdir, "--image", image, "--question", QUESTION]
    assert cli.main(command) == 0
    out, err = capsys.readouterr()
    assert session.ask(image, QUESTION).text in out and not err
    assert configs[0].to_dict() == session.config.to_dict()
    changed = [*args, "--config.model.experts.top_k=2", "--image", image]
    assert cli.main(["predict", *changed, "--question", QUESTION]) == 0
    (note,) = capsys.readouterr().err.strip().splitlines()
    assert note.startswith("rs-jax: note: --config differs from the config stored in ")
    assert note.endswith("model.experts.top_k: 1 -> 2")


def images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"img{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), np.uint8)).save(path)
        paths.append(path)
    return paths


def cues(retrieved):
    return {level: [c["entry"] for c in found] for level, found in retrieved.items()}


def test_predict_one_image_answers_as_session_ask(run, tmp_path, capsys, monkeypatch):
    args, session, _ = run
    (image,) = images(tmp_path, 1)
    # The real command: loads the run itself; no --question asks the eval split's first.
    assert cli.main(["predict", *args, "--image", str(image), "--json"]) == 0
    printed = capsys.readouterr()
    result = json.loads(printed.out)
    default = session.exp.data.eval_records.qas(0)[0].question
    assert result["question"] == default and repr(default) in printed.err
    expected = session.ask(image, default)
    assert result["answer"] == expected.text
    assert cues(result["retrieved"]) == {
        k: [n for n, _ in v] for k, v in expected.retrieved.items()
    }
    assert result["load_seconds"] > 0 and result["answer_seconds"] > 0

    # Text: the answer, the cues best first per level, the experts' shares, the times.
    monkeypatch.setattr(predict, "open_session", lambda config, workdir: session)
    assert cli.main(["predict", *args, "--image", str(image), "--question", QUESTION]) == 0
    lines = capsys.readouterr().out.splitlines()
    answer = session.ask(image, QUESTION)
    assert f"answer: {answer.text}" in lines
    for level, found in answer.retrieved.items():
        scores = [s for _, s in found]
        assert scores == sorted(scores, reverse=True)
        assert f"  {level}: " + ", ".join(f"{n} ({s:.3f})" for n, s in found) in lines
    assert len(answer.expert_usage) == len(answer.retrieved) == 3
    assert lines[-1].startswith("time: model load")


def test_a_batch_larger_than_the_folder_is_one_batch_of_the_folder(loaded, tmp_path, capsys):
    """--batch-size 10,000,000 on 8 images: one model call of 8 rows, not a batch sized by
    the flag."""
    args, _ = loaded
    images(tmp_path / "in", 8)
    out = tmp_path / "answers.jsonl"
    argv = ["predict", *args, "--images", str(tmp_path / "in"), "--question", QUESTION]
    assert cli.main([*argv, "--out", str(out), "--batch-size", "10000000"]) == 0
    printed = capsys.readouterr().out
    assert "batch 1/1" in printed and "8 images answered" in printed
    assert len(out.read_text().splitlines()) == 8


def test_folder_in_batches_equals_one_by_one(loaded, tmp_path, capsys):
    args, session = loaded
    paths = images(tmp_path / "in", 9)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    out = tmp_path / "answers.jsonl"
    argv = ["predict", *args, "--images", str(tmp_path / "in"), "--question", QUESTION]
    # Two batches of 8 rows: different images side by side, the second padded.
    assert cli.main([*argv, "--out", str(out), "--batch-size", "8"]) == 0
    printed = capsys.readouterr().out
    assert "batch 2/2" in printed and "9 images answered" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["image"] for r in rows] == [str(p) for p in paths]
    for row, path in zip(rows, paths, strict=True):
        alone = session.ask(path, QUESTION)
        assert row["question"] == QUESTION and row["answer"] == alone.text
        assert row["retrieved"] == {
            level: [{"entry": n, "score": pytest.approx(s, abs=1e-4)} for n, s in found]
            for level, found in alone.retrieved.items()
        }
        assert row["expert_usage"] == {
            level: pytest.approx(shares) for level, shares in alone.expert_usage.items()
        }


def test_unreadable_image_is_an_error_naming_it_or_skipped_and_counted(loaded, tmp_path, capsys):
    args, _ = loaded
    folder = tmp_path / "in"
    images(folder, 2)
    (folder / "img00b.jpg").write_bytes(b"no jpeg at all")
    out = tmp_path / "answers.jsonl"
    argv = ["predict", *args, "--images", str(folder), "--out", str(out), "--batch-size", "8"]
    argv += ["--question", QUESTION]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rs-jax: error: Cannot read image") and "img00b.jpg" in err[-1]
    assert not out.exists()  # nothing half-written is left behind

    assert cli.main([*argv, "--skip-unreadable"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "2 images answered" in summary and "skipped 1 unreadable: img00b.jpg" in summary
    assert [json.loads(line)["image"] for line in out.read_text().splitlines()] == [
        str(folder / "img00.png"),
        str(folder / "img01.png"),
    ]

    # One image: refused before the model is loaded.
    assert cli.main(["predict", *args, "--image", str(folder / "img00b.jpg")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("rs-jax: error: Cannot read image") and "img00b.jpg" in line


def test_existing_out_is_refused_and_left_alone(run, tmp_path, capsys, monkeypatch):
    args, session, _ = run
    opened = []
    monkeypatch.setattr(predict, "open_session", lambda c, w: opened.append(1) or session)
    images(tmp_path / "in", 1)
    out = tmp_path / "answers.jsonl"
    out.write_bytes(b"earlier results\n\x00")
    argv = ["predict", *args, "--images", str(tmp_path / "in"), "--out", str(out)]
    argv += ["--batch-size", "8"]
    assert cli.main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("rs-jax: error: --out") and str(out) in line and "--overwrite" in line
    assert out.read_bytes() == b"earlier results\n\x00" and not opened  # before loading

    # --overwrite replaces it only once every answer is written: a run that fails on an
    # unreadable image leaves it as it was.
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    assert cli.main([*argv, "--question", QUESTION, "--overwrite"]) == 2
    assert "broken.png" in capsys.readouterr().err
    assert out.read_bytes() == b"earlier results\n\x00"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.jsonl", "in"]  # no leftovers

    (tmp_path / "in" / "broken.png").unlink()
    assert cli.main([*argv, "--question", QUESTION, "--overwrite"]) == 0
    assert len(out.read_text().splitlines()) == 1


def test_chat_over_piped_stdin_keeps_the_conversation(loaded, tmp_path, capsys, monkeypatch):
    args, session = loaded
    (image,) = images(tmp_path, 1, seed=3)
    encoder = session.exp.data.encoder
    prompts = []

    def spy(text, history=()):
        prompts.append((text, tuple(history)))
        return real_prompt(text, history)

    real_prompt = encoder.prompt
    monkeypatch.setattr(encoder, "prompt", spy)
    first, second, third = QUESTION, "How many ships are there?", "What is the main scene?"
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{first}\n{second}\n/cues\n/reset\n{third}\n"))
    assert cli.main(["chat", *args, "--image", str(image)]) == 0
    lines = capsys.readouterr().out.splitlines()

    answers = [line.removeprefix("model> ") for line in lines if line.startswith("model> ")]
    assert len(answers) == 3
    round1 = ((first, answers[0]),)
    assert prompts == [(first, ()), (second, round1), (third, ())]  # /reset emptied it
    monkeypatch.setattr(encoder, "prompt", real_prompt)
    assert answers[1] == session.ask(image, second, round1).text
    assert answers[2] == session.ask(image, third).text
    assert f"you> {second}" in lines
    cue_lines = lines[lines.index(f"model> {answers[1]}") + 2 :][:3]
    assert [c.split(":")[0].strip() for c in cue_lines] == ["scene", "landcover", "object"]
    assert lines[-1] == "you> "  # end of input ends the conversation


class BoxAnswering:
    """A Session that answers with a fixed text (and the real cues and experts)."""

    def __init__(self, session, text):
        self.session, self.text = session, text

    def __getattr__(self, name):
        return getattr(self.session, name)

    def ask(self, image, question, history=()):
        return dataclasses.replace(self.session.ask(image, question, history), text=self.text)


def test_predict_draws_the_boxes_it_answers_with(run, tmp_path, capsys, monkeypatch):
    args, session, _ = run
    (image,) = images(tmp_path, 1)
    out = tmp_path / "drawn.png"
    draw = ["predict", *args, "--image", str(image), "--question", QUESTION, "--draw", str(out)]
    answer = "the ship {<25><25><75><50>|<0>}"
    monkeypatch.setattr(predict, "open_session", lambda c, w: BoxAnswering(session, answer))
    assert cli.main(draw) == 0
    assert f"drawn: 1 box(es) in red -> {out}" in capsys.readouterr().out.splitlines()
    pixels = np.asarray(Image.open(out).convert("RGB"))
    side = predict.DRAW_SIZE
    assert pixels.shape == (side, side, 3)
    red = (pixels == figures.PREDICTED).all(-1)
    rows, cols = np.flatnonzero(red.any(1)), np.flatnonzero(red.any(0))
    # The outline of x 0.25-0.75, y 0.25-0.5 of the square the model saw (3 px wide).
    assert abs(rows[0] - side / 4) <= 2 and abs(rows[-1] - side / 2) <= 2
    assert abs(cols[0] - side / 4) <= 2 and abs(cols[-1] - 3 * side / 4) <= 2
    assert not red[side // 3, side // 2]  # inside the box: the image

    # An answer without a box draws nothing and says so.
    out.unlink()
    monkeypatch.setattr(predict, "open_session", lambda c, w: BoxAnswering(session, "a ship"))
    assert cli.main(draw) == 0
    assert "holds no box" in capsys.readouterr().err and not out.exists()
    folder = ["predict", *args, "--images", str(tmp_path), "--out", str(tmp_path / "a.jsonl")]
    assert cli.main([*folder, "--draw", str(out)]) == 2
    assert "--draw goes with --image" in capsys.readouterr().err
