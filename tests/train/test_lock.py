"""One run per workdir: a live holder is refused, a dead one's lock is taken over."""

import json
import socket
import subprocess
from pathlib import Path

import pytest

from rs_jax import cli
from rs_jax.train.lock import LOCK_FILE, WorkdirLock

TINY = str(Path(__file__).resolve().parents[2] / "configs" / "tiny.py")


def write_lock(folder, host, pid):
    (folder / LOCK_FILE).write_text(json.dumps({"host": host, "pid": pid}))


def test_a_held_workdir_is_refused_and_released_after(tmp_path):
    with WorkdirLock(tmp_path):
        assert (tmp_path / LOCK_FILE).exists()
        with pytest.raises(FileExistsError, match="Another run .* is using"), WorkdirLock(tmp_path):
            pass
        assert (tmp_path / LOCK_FILE).exists()  # the refused one leaves the holder's lock
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_dead_process_lock_is_taken_over(tmp_path, capsys):
    gone = subprocess.Popen(["true"])
    gone.wait()
    write_lock(tmp_path, socket.gethostname(), gone.pid)
    with WorkdirLock(tmp_path):
        holder = json.loads((tmp_path / LOCK_FILE).read_text())
        assert holder["pid"] != gone.pid
    assert f"removing the stale lock of pid {gone.pid}" in capsys.readouterr().out


def test_another_hosts_lock_is_not_guessed_at(tmp_path):
    write_lock(tmp_path, "some-other-host", 1)
    with pytest.raises(FileExistsError, match=r"some-other-host pid 1"), WorkdirLock(tmp_path):
        pass
    assert (tmp_path / LOCK_FILE).exists()


def test_train_on_a_busy_or_impossible_workdir_is_a_one_line_error(tmp_path, capsys):
    write_lock(tmp_path, socket.gethostname(), 1)  # pid 1 is always alive
    command = ["train", "--config", TINY, "--workdir", str(tmp_path)]
    assert cli.main(command) == 2
    assert "Another run" in capsys.readouterr().err
    (tmp_path / "file").write_text("not a folder")
    command[-1] = str(tmp_path / "file")
    assert cli.main(command) == 2
    assert "cannot create it" in capsys.readouterr().err
