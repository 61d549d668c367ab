"""Paths and whole-file writes.

Every user-facing path is an `etils.epath.Path` (Orbax's own type): unlike
`pathlib.Path`, it keeps a `gs://bucket/...` URL intact, so a pod's workdir or data in a
bucket reaches the filesystem layer unchanged. A few readers and writers need a file on
this host (file locks, subprocesses, libraries that take only local paths):
`local_path` names the setting in its error when such a place is given a URL.

Outputs are written whole or not at all: a failure never leaves a half file, and never
takes away the file that was there before.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO

from etils import epath


def is_local(path: epath.PathLike) -> bool:
    """False for a URL such as gs://bucket/x (any scheme epath reads remotely)."""
    return "://" not in os.fspath(path)


def absolute(path: epath.PathLike) -> epath.Path:
    """`path` made absolute; a URL is already (epath's own `absolute()` would turn
    gs://b/x into <cwd>/gs:/b/x)."""
    path = epath.Path(path)
    return path if not is_local(path) else path.expanduser().absolute()


def local_path(path: epath.PathLike, setting: str) -> epath.Path:
    """`path`, which must be on this host: a URL is an error naming `setting`."""
    if not is_local(path):
        raise ValueError(f"{setting}={os.fspath(path)!r}: this must be a local path, not a URL")
    return epath.Path(path)


def stamp(path: epath.PathLike) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of a file. Not `epath.Path.stat()`: on this
    host that looks up the owner's user name (a KeyError for a uid with no passwd entry, as
    in containers) and keeps whole seconds only."""
    if is_local(path):
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    st = epath.Path(path).stat()
    return st.length, st.mtime * 1_000_000_000


@contextlib.contextmanager
def write_whole(path: epath.PathLike, overwrite: bool = True) -> Iterator[IO[str]]:
    """A text file open at a temporary name beside `path`; when the block ends without an
    error it becomes `path` (an existing `path` is replaced only with `overwrite`). On an
    error the temporary file is removed and `path` stays as it was."""
    path = epath.Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with partial.open("w") as out:
            yield out
        if overwrite:
            partial.replace(path)
        elif is_local(path):
            os.link(partial, path)  # FileExistsError if `path` appeared meanwhile
        else:
            # Object stores have no link: a `path` written meanwhile would be replaced.
            if path.exists():
                raise FileExistsError(f"{path} exists")
            partial.rename(path)
    finally:
        partial.unlink(missing_ok=True)


def write_text_whole(path: epath.PathLike, text: str) -> None:
    """`path.write_text(text)`, but whole or not at all."""
    with write_whole(path) as out:
        out.write(text)


@contextlib.contextmanager
def staged_folder(root: epath.PathLike) -> Iterator[epath.Path]:
    """A new folder beside `root` (on this host) to write into; when the block ends without
    an error it becomes `root`, replacing what is there (the caller has checked that it may
    be replaced: empty, or something rs-jax built). On an error it is removed and `root`
    stays as it was."""
    root = epath.Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = epath.Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; outputs are meant to be shared
        yield staging
        if root.exists():
            root.rmtree()
        staging.rename(root)
    except BaseException:
        staging.rmtree(missing_ok=True)
        raise
