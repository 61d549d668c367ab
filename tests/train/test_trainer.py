"""End-to-end: training runs, checkpoints, survives a kill, resumes exactly; eval reports."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from rs_jax.config_files import load_config
from rs_jax.train import experiment as experiment_lib
from rs_jax.train import trainer as trainer_lib
from rs_jax.train.checkpointing import TOKENIZER_SHA256, Checkpointer
from rs_jax.train.progress import read_scalars
from rs_jax.train.trainer import HEADLINE_METRICS, NonFiniteError, train
from tests.chat_tokenizers import make_tokenizer

REPO = Path(__file__).resolve().parents[2]


def tiny(variant: str = "", **overrides):
    return load_config(
        str(REPO / f"configs/tiny.py{variant}"), [f"{k}={v}" for k, v in overrides.items()]
    )


def final_params(config, workdir):
    exp = experiment_lib.setup(config, str(workdir))
    checkpointer = Checkpointer(workdir)
    state = checkpointer.restore(checkpointer.latest_step(), exp.abstract_state())
    checkpointer.close()
    return state


def metrics_of(stdout: str) -> dict[int, str]:
    """Step -> the metrics of its progress line (rates and ETA left out: they are timings)."""
    steps = {}
    for line in stdout.splitlines():
        if line.startswith("step "):
            parts = line.split(" | ")
            step = int(parts[0].split()[1].split("/")[0])
            steps[step] = [p for p in parts[1:] if p.split()[0] in HEADLINE_METRICS]
    return steps


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def test_killed_or_stopped_run_resumes_with_the_data_stream(tmp_path, data_dir):
    """SIGKILL a run between checkpoints; the same command resumes, and SIGTERM (a
    scheduler's preemption) stops that resumed run with its step in flight saved; the same
    command again ends exactly where an uninterrupted run does (same weights, so the same
    batches were seen in order). On the baseline, whose step compiles in half the full
    model's time: checkpoints, signals and the data stream are the same for both."""
    args = [
        "--config",
        str(REPO / "configs/tiny.py:baseline"),
        f"--config.data.data_dir={data_dir}",
        "--config.train.steps=8",
        "--config.train.checkpoint_every=3",
        # Synchronous saves make "checkpoint 3 is complete at step 5" certain.
        "--config.train.async_checkpoints=false",
    ]
    env = {**os.environ, "RS_JAX_CPU_DEVICES": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "rs_jax.cli", "train", *args]

    def start(workdir):
        return subprocess.Popen(
            [*command, "--workdir", str(workdir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=REPO,
        )

    killed = tmp_path / "killed"
    proc = start(killed)
    printed_before_kill = ""
    for line in proc.stdout:
        printed_before_kill += line
        if line.startswith("step 5/8"):  # checkpoint 3 exists; steps 4-5 will be lost
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert Checkpointer(killed).latest_step() == 3

    # The resumed run, preempted: the step in flight finishes, is saved, and the run exits
    # with 75.
    proc = start(killed)
    resumed = ""
    for line in proc.stdout:
        resumed += line
        if line.startswith("step 4/8"):  # between the checkpoints of steps 3 and 6
            proc.send_signal(signal.SIGTERM)
    assert proc.wait() == 75, resumed
    assert "Resumed from" in resumed and "(step 3)" in resumed
    assert "step 4/8" in resumed and "step 1/8" not in resumed
    saved = Checkpointer(killed).latest_step()
    assert saved in (4, 5) and f"Stopped by SIGTERM after step {saved}: saved" in resumed
    final = subprocess.run(
        [*command, "--workdir", str(killed)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=True,
    )
    assert f"(step {saved})" in final.stdout and "step 8/8" in final.stdout

    straight = tmp_path / "straight"
    straight_out = subprocess.run(
        [*command, "--workdir", str(straight)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=True,
    )

    config = tiny(":baseline", **{"data.data_dir": data_dir})
    a, b = final_params(config, killed), final_params(config, straight)
    assert int(a["step"]) == int(b["step"]) == 8
    # Bit-exact, as the docs promise: the same seed on the same machine, the same numbers.
    leaves = zip(jax.tree.leaves(a["params"]), jax.tree.leaves(b["params"]), strict=True)
    for x, y in leaves:
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # The loss curves too: every loss logged in the killed workdir (by the three processes;
    # whatever the killed one flushed before it died) equals the uninterrupted run's at that
    # step, and the printed metrics of steps 1-5 before the kill equal those of the same
    # steps run again with the same seed.
    straight_loss = dict(read_scalars(straight / "tensorboard")["loss"])
    assert sorted(straight_loss) == list(range(1, 9))
    killed_loss = read_scalars(killed / "tensorboard")["loss"]
    assert {step for step, _ in killed_loss} >= set(range(4, 9))
    for step, loss in killed_loss:
        assert loss == straight_loss[step], step
    before, again = metrics_of(printed_before_kill), metrics_of(straight_out.stdout)
    assert [before[step] for step in range(1, 6)] == [again[step] for step in range(1, 6)]
    assert before[1]  # the loss is among the printed metrics


@pytest.mark.parametrize(
    "variant, overrides",
    [
        # Acceptance: bf16 end to end (train, eval, generation); an untied LM head.
        (":baseline", {"model.dtype": "bfloat16", "model.llm.tie_embeddings": False}),
        # The number of levels is the length of config.model.levels (3 elsewhere, 4 here);
        # bf16 with full remat, gradient accumulation and tensor parallelism on the full
        # model, in a decoder's conversation format (ChatML with its tokenizer: text before
        # the image).
        (
            ":levels4",
            {
                "data.template": "chatml",
                "data.max_prompt_len": 40,
                "data.max_answer_len": 12,
                "model.dtype": "bfloat16",
                "model.remat_policy": "full",
                "model.llm.tie_embeddings": False,
                "train.grad_accum_steps": 2,
                "mesh.tensor": 2,  # 4 batch shards x 2 micro-batches of the 8 rows
            },
        ),
    ],
)
def test_train_then_eval_writes_reports(tmp_path, data_dir, variant, overrides, capsys):
    from rs_jax.config_files import config_changes
    from rs_jax.eval.evaluate import evaluate
    from rs_jax.train import run_config

    values = {"data.data_dir": data_dir, **overrides}
    if "data.template" in overrides:
        make_tokenizer("qwen2", tmp_path / "tokenizer")
        values["data.tokenizer"] = tmp_path / "tokenizer"
    config = load_config(
        str(REPO / f"configs/tiny.py{variant}"), [f"{k}={v}" for k, v in values.items()]
    )
    level_names = {level[0] for level in config.model.levels}
    summary = train(config, str(tmp_path))
    printed = capsys.readouterr().out
    # The start-up report comes before step 0.
    assert (
        printed.index("Parameters: ")
        < printed.index("Compiled train step per device")
        < (printed.index("step 1/8"))
    )
    assert summary["step"] == 8 and np.isfinite(summary["loss"])
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    scalars = read_scalars(tmp_path / "tensorboard")
    if variant != ":baseline":  # routing statistics per level and expert, and the usage chart
        for tag in (
            "moe/balance_loss",
            "moe/z_loss",
            "moe/dropped_fraction",
            "moe/scene/expert_0",
            "moe/object/expert_1",
        ):
            assert scalars[tag][-1][0] == 8, tag
        assert any(b"moe/expert_usage" in path.read_bytes() for path in events)
    # The run folder describes itself: evaluated with the config stored with its checkpoint.
    stored = run_config.load(str(tmp_path), [])
    assert not {k: v for k, v in config_changes(config.to_dict(), stored.to_dict()).items()}
    results = evaluate(stored, str(tmp_path))
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["count"] == results["count"] > 0
    assert set(saved["tasks"]) <= set(config.data.tasks)
    for row in saved["tasks"].values():
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 < row["chance"] <= 1.0
    if variant == ":baseline":
        assert "retrieval" not in saved or not saved["retrieval"]
    else:
        assert set(saved["retrieval"]) == level_names
        assert set(saved["expert_usage"]) == level_names
        assert (tmp_path / "expert_usage.png").stat().st_size > 0
        assert 0.0 <= saved["expert_dropped_fraction"] <= 1.0

    # The notebook path: ask one question about one image of the eval split.
    from rs_jax.eval.session import Session

    session = Session(config, str(tmp_path))
    image = np.random.default_rng(0).integers(0, 256, (40, 40, 3), np.uint8)
    answer = session.ask(image, "Is there a ship in the image?")
    assert isinstance(answer.text, str) and answer.image.shape == (16, 16, 3)
    if variant == ":baseline":
        assert answer.retrieved == {} and answer.expert_usage == {}
    else:
        top_k = config.model.kb.top_k
        assert [len(v) for v in answer.retrieved.values()] == [top_k] * len(level_names)
        scene_names = {e.name for e in session.exp.knowledge.entries if e.level == "scene"}
        assert {name for name, _ in answer.retrieved["scene"]} <= scene_names
        assert all(abs(sum(shares) - 1) < 1e-6 for shares in answer.expert_usage.values())


@pytest.mark.parametrize("mode", ["stop", "skip"])
def test_a_diverging_run_never_applies_or_saves_non_finite_numbers(
    tmp_path, data_dir, mode, monkeypatch
):
    """A learning rate beyond float32's range (3.4e38) makes every update infinite. "stop":
    an error naming step 1, no checkpoint, the batch written; "skip": every step dropped and
    counted, and the saved parameters are the finite initial ones. The host reads the
    guard's verdicts only at log steps and before checkpoints, not after every step. On
    the baseline: the guard does not depend on the model."""
    config = tiny(
        ":baseline",
        **{
            "data.data_dir": data_dir,
            "train.learning_rate": 1e39,
            "train.warmup_steps": 0,
            "train.steps": 5,
            "train.log_every": 3,
            "train.checkpoint_every": 4,
            "train.on_nonfinite": mode,
        },
    )
    checked = []
    check = trainer_lib._check_nonfinite
    monkeypatch.setattr(
        trainer_lib,
        "_check_nonfinite",
        lambda config, workdir, unchecked, ckpt: (
            checked.append([step for step, _, _ in unchecked])
            or check(config, workdir, unchecked, ckpt)
        ),
    )
    if mode == "stop":
        # Loss and gradients are finite here: the message names the update as the culprit.
        message = r"step 1: the update \(the optimizer state or the parameters: .*\) not finite "
        message += r"\(loss=[\d.]+, grad_norm=[\d.]+\); .* and no checkpoint was saved\."
        with pytest.raises(NonFiniteError, match=message):
            train(config, str(tmp_path))
        assert Checkpointer(tmp_path).latest_step() is None
        batch = np.load(tmp_path / "nonfinite_batch_step1.npz")
        assert batch["image"].shape[0] == config.data.batch_size
        return
    summary = train(config, str(tmp_path))
    assert summary["nonfinite_steps"] == 5
    # Read at step 1 (the first log line), 3 (log), 4 (checkpoint) and 5 (the last).
    assert checked == [[1], [2, 3], [4], [5]]
    exp = experiment_lib.setup(config, str(tmp_path))  # its state: the initial parameters
    checkpointer = Checkpointer(tmp_path)
    saved = checkpointer.restore(5, exp.abstract_state())
    checkpointer.close()
    initial = exp.state["params"]
    for x, y in zip(jax.tree.leaves(saved["params"]), jax.tree.leaves(initial), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resuming_with_a_changed_config_is_refused_unless_allowed(
    tmp_path, data_dir, capsys, monkeypatch
):
    """The config that wrote a checkpoint is stored with it: a resume that changes the
    model or optimizer stops before touching anything (config.json kept; a longer
    train.steps is not among the changes), and --allow_config_change goes on with the
    change printed. A resume restores into shapes: no fresh initialisation is made. On the
    baseline: the checks read the stored config, not the model."""
    base = {"data.data_dir": data_dir, "train.steps": 2, "train.checkpoint_every": 2}
    train(tiny(":baseline", **base), str(tmp_path))
    record = (tmp_path / "config.json").read_text()
    changed = tiny(":baseline", **{**base, "seed": 1, "model.llm.mlp_dim": 96, "train.steps": 3})
    with pytest.raises(ValueError, match=r"model.llm.mlp_dim: 64 -> 96; seed: 0 -> 1\. The"):
        train(changed, str(tmp_path))
    assert (tmp_path / "config.json").read_text() == record
    assert Checkpointer(tmp_path).all_steps() == [2]
    # Allowed (already at its last step here, which spares the test a second compilation).
    monkeypatch.setattr(experiment_lib, "initialise", lambda exp: pytest.fail("initialised"))
    summary = train(
        tiny(":baseline", **{**base, "seed": 1}), str(tmp_path), allow_config_change=True
    )
    assert summary["step"] == 2
    assert "resuming" in capsys.readouterr().out
    # The new record replaced config.json; the one that wrote step 2 is kept beside it.
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 1
    (kept,) = tmp_path.glob("config.*.json")
    assert kept.read_text().replace(" ", "") == record.replace(" ", "")


def test_resuming_on_changed_training_texts_names_the_change():
    """The tokenizer's hash is stored with each checkpoint: a resume whose training texts
    changed (so would its token ids) is refused naming that, not a shape mismatch;
    checkpoints written before the hash was stored resume as they are."""

    class Stored:
        def __init__(self, config):
            self.config = config

        def stored_config(self, step):
            return self.config

        def step_dir(self, step):
            return Path("w/checkpoints") / str(step)

    resolved = {"seed": 0, TOKENIZER_SHA256: "b" * 64}
    allowed = trainer_lib.Allowed()
    with pytest.raises(ValueError, match=r"the training texts changed \(its tokenizer a{16} -> b"):
        trainer_lib._check_resume(
            Stored({"seed": 0, TOKENIZER_SHA256: "a" * 64}), 4, resolved, {}, allowed
        )
    trainer_lib._check_resume(Stored({"seed": 0}), 4, resolved, {}, allowed)


def test_the_summary_counts_and_names_the_records_the_stream_skipped(capsys):
    skipped = {"train/pack-00000-of-00002 record 3": "RuntimeError: bad chunk", "x record 9": "y"}
    summary = trainer_lib._summary(5, 5, {"loss": np.float32(1.5)}, [], skipped, None, None)
    assert summary["skipped_records"] == 2 and summary["loss"] == 1.5
    line = capsys.readouterr().out.strip()
    assert line == (
        "Skipped 2 damaged training record(s) (config.data.allow_skips), the first "
        "train/pack-00000-of-00002 record 3: RuntimeError: bad chunk."
    )
