"""The rs-jax command line: override parsing, dispatch, one-line errors, device simulation."""

import os
import subprocess
import sys
import types

import pytest

# Loaded up front so _fake_module can patch their attributes.
import rs_jax.eval  # noqa: F401
import rs_jax.train  # noqa: F401
from rs_jax import cli


def _fake_module(monkeypatch, name: str, module) -> None:
    """Replace rs_jax.<package>.<name> for `from rs_jax.<package> import <name>` too."""
    package, attr = name.rsplit(".", 1)
    monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(sys.modules[package], attr, module, raising=False)


@pytest.fixture
def fake_trainer(monkeypatch):
    calls = []
    module = types.ModuleType("rs_jax.train.trainer")
    module.train = lambda config, workdir, allow_config_change, allow_data_change: (
        calls.append((config, workdir, allow_config_change, allow_data_change)) or {"step": 1}
    )
    _fake_module(monkeypatch, "rs_jax.train.trainer", module)
    return calls


def test_train_dispatch_with_overrides(fake_trainer, tmp_path):
    argv = [
        "train",
        "--config",
        "configs/demo.py:baseline",
        "--workdir",
        str(tmp_path),
        "--config.train.steps=10",
        "--config.mesh.data",
        "-1",
        "--config.data.tasks",
        "scene,count",
    ]
    assert cli.main(argv) == 0
    ((config, workdir, allow_config_change, allow_data_change),) = fake_trainer
    assert allow_config_change is False and allow_data_change is False
    assert cli.main([*argv, "--allow_config_change"]) == 0
    assert fake_trainer[1][2:] == (True, False)
    assert cli.main([*argv, "--allow_data_change"]) == 0
    assert fake_trainer[2][2:] == (False, True)
    assert workdir == str(tmp_path)
    assert config.train.steps == 10 and config.model.baseline is True
    assert config.mesh.data == -1 and config.data.tasks == ("scene", "count")


def test_eval_dispatch(monkeypatch, tmp_path):
    calls = []
    module = types.ModuleType("rs_jax.eval.evaluate")
    module.evaluate = lambda config, workdir: calls.append(workdir)
    _fake_module(monkeypatch, "rs_jax.eval.evaluate", module)
    assert cli.main(["eval", "--config", "configs/demo.py", "--workdir", str(tmp_path)]) == 0
    assert calls == [str(tmp_path)]


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--config.train.stpes=10"],
            "rs-jax: error: Unknown config key 'train.stpes'; did you mean 'train.steps'?",
        ),
        (["--config.train.steps=abc"], "rs-jax: error: config.train.steps expects int, got 'abc'"),
    ],
)
def test_config_errors_are_one_line(fake_trainer, capsys, extra, message):
    argv = ["train", "--config", "configs/demo.py", "--workdir", "w", *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip() == message and "Traceback" not in err
    assert not fake_trainer


def test_errors_from_training_are_one_line(monkeypatch, capsys):
    def train(config, workdir, allow_config_change=False, allow_data_change=False):
        raise ValueError(
            "mesh {data: 3, fsdp: 1, expert: 1, tensor: 1} needs 3 devices but 8 are available"
        )

    _fake_module(monkeypatch, "rs_jax.train.trainer", types.SimpleNamespace(train=train))
    assert cli.main(["train", "--config", "configs/demo.py", "--workdir", "w"]) == 2
    assert capsys.readouterr().err.startswith("rs-jax: error: mesh {data: 3")


def test_missing_config_file_and_bad_args(capsys):
    assert cli.main(["eval", "--config", "configs/nope.py", "--workdir", "w"]) == 2
    assert "Config file 'configs/nope.py' not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--config", "configs/demo.py", "--workdir", "w", "--bogus"])
    assert info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_cpu_device_simulation_env():
    code = (
        "from rs_jax import cli; cli._simulate_cpu_devices(); import jax; "
        "import os; jax.device_put(1.0).block_until_ready(); "
        "xla_threads = sum(open(f'/proc/self/task/{t}/comm').read().startswith('tf_XLAEigen') "
        "for t in os.listdir('/proc/self/task')); "
        "print(jax.device_count(), jax.default_backend(), xla_threads)"
    )
    env = dict(
        os.environ, RS_JAX_CPU_DEVICES="3", XLA_FLAGS="--xla_force_host_platform_device_count=8"
    )
    env.pop("NPROC", None)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    # Four pool threads per simulated device (at least the cores): collectives cannot starve.
    assert out.stdout.split() == ["3", "cpu", str(max(12, os.cpu_count()))]


def test_orbax_background_tracebacks_are_left_to_the_one_line(capsys):
    """Orbax's save thread logs its exception with a traceback and re-raises it in the main
    thread; the CLI keeps only the latter. Other errors, and Orbax's own lines without a
    traceback, still reach the log."""
    import logging

    assert cli.main(["config", "--config", "configs/tiny.py"]) == 0
    absl = logging.getLogger("absl")

    def record(path, exc_info):
        return logging.LogRecord("absl", logging.ERROR, path, 1, "save failed", (), exc_info)

    try:
        raise OSError("No space left on device")
    except OSError:
        failure = sys.exc_info()
    orbax = "/venv/site-packages/orbax/checkpoint/_src/checkpointers/async_checkpointer.py"
    assert not absl.filter(record(orbax, failure))
    assert absl.filter(record(orbax, None))
    assert absl.filter(record("/work/rs_jax/train/trainer.py", failure))


def test_data_pack_writes_resumes_and_refuses(tmp_path, capsys):
    out = tmp_path / "pack"
    argv = ["data", "pack", "--config", "configs/tiny.py", "--out", str(out), "--workers", "0"]
    argv += [f"--config.data.data_dir={tmp_path / 'data'}"]  # keeps the rendered images
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "record 64/64 |" in printed and "ex/s" in printed  # progress with its rate
    assert "train: 64 records in 1 shards" in printed and "test: 8 records" in printed
    written = {p: p.stat().st_mtime_ns for p in out.rglob("*.array_record-*")}
    assert cli.main([*argv, "--split", "train"]) == 0  # complete: nothing is rewritten
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.array_record-*")} == written
    capsys.readouterr()
    assert cli.main([*argv[:5], str(tmp_path), *argv[6:]]) == 2  # holds data/, not a pack
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {tmp_path} is not empty" in err
