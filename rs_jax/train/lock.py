"""One run per workdir: two trainings writing the same checkpoints would corrupt both.

`<workdir>/.rs_jax.lock` holds the host and process id of the run. A lock whose process is
gone (on this host) is stale and taken over with a warning; one held on another host is an
error, since nothing here can tell whether that process still runs (remove the file when
it does not).

On a bucket (gs://) the lock is checked, then written: object stores have no exclusive
create, so two runs starting at the same moment could both take it.
"""

from __future__ import annotations

import json
import os
import socket

import jax
from etils import epath

from rs_jax.files import is_local

LOCK_FILE = ".rs_jax.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class WorkdirLock:
    """Context manager held by process 0 of a run (the other hosts share its workdir)."""

    def __init__(self, workdir: epath.PathLike):
        self.path = epath.Path(workdir) / LOCK_FILE
        self._held = False

    def __enter__(self) -> WorkdirLock:
        if jax.process_index() != 0:
            return self
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(2):  # a second try after clearing a stale lock
            try:
                self._create(json.dumps(me))
                self._held = True
                return self
            except FileExistsError:
                holder = self._holder()
                if holder is None or holder["host"] != me["host"] or _alive(holder["pid"]):
                    where = "?" if holder is None else f"{holder['host']} pid {holder['pid']}"
                    raise FileExistsError(
                        f"Another run ({where}) is using {self.path.parent}: two runs on one "
                        f"workdir would overwrite each other's checkpoints. Wait for it, or "
                        f"remove {self.path} if that run is gone."
                    ) from None
                print(f"rs-jax: warning: removing the stale lock of pid {holder['pid']}")
                self.path.unlink(missing_ok=True)
        raise FileExistsError(f"Could not take the lock {self.path}")

    def _create(self, text: str) -> None:
        """Writes the lock file; FileExistsError if there is one."""
        if is_local(self.path):
            with open(self.path, "x") as f:
                f.write(text)
        elif self.path.exists():
            raise FileExistsError(self.path)
        else:
            self.path.write_text(text)

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
            return {"host": str(holder["host"]), "pid": int(holder["pid"])}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def __exit__(self, *exc: object) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False
