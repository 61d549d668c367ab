"""Outputs written whole or not at all: a failure never leaves a half file, and never
takes away the file that was there before."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def write_whole(path: Path, overwrite: bool = True) -> Iterator[IO[str]]:
    """A text file open at a temporary name beside `path`; when the block ends without an
    error it becomes `path` (an existing `path` is replaced only with `overwrite`). On an
    error the temporary file is removed and `path` stays as it was."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "w", encoding="utf-8") as out:
            yield out
        if overwrite:
            os.replace(partial, path)
        else:
            os.link(partial, path)  # FileExistsError if `path` appeared meanwhile
    finally:
        partial.unlink(missing_ok=True)


def write_text_whole(path: Path, text: str) -> None:
    """`path.write_text(text)`, but whole or not at all."""
    with write_whole(path) as out:
        out.write(text)
