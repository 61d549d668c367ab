"""A built knowledge base on disk: entries, their embeddings, ScaNN searchers, metadata.

Layout of a built-KB directory::

    metadata.json     encoder name + fingerprint, dim, count, level counts, KB sha256, ...
    entries.jsonl     the KB rows, in embedding order (row i <-> embeddings[i])
    embeddings.npy    [N, D] float32, L2-normalised
    scann/levels.json row counts and index settings per level
    scann/<level>/    one serialized ScaNN searcher per level (+ row_ids.npy)

Embeddings only make sense next to the encoder that produced them, so loading checks the
recorded encoder against the one the caller will query with.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
from etils import epath

from rs_jax import __version__
from rs_jax.files import local_path, staged_folder
from rs_jax.kb.index import LevelIndex
from rs_jax.kb.schema import Entry, load_kb, write_kb

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
ENTRIES_FILE = "entries.jsonl"
EMBEDDINGS_FILE = "embeddings.npy"
INDEX_DIR = "scann"
REQUIRED_FILES = (METADATA_FILE, ENTRIES_FILE, EMBEDDINGS_FILE)


class EncoderLike(Protocol):
    """What the store needs to know about an encoder (e.g. `SentenceEncoder`)."""

    name: str
    dim: int
    fingerprint: str


class Hit(NamedTuple):
    """One search result: 1-based rank, score, KB row and its entry."""

    rank: int
    score: float
    row: int
    entry: Entry


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with epath.Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class BuiltKB:
    """A loaded built-KB directory; see the module docstring for the layout."""

    path: epath.Path
    entries: list[Entry]
    embeddings: np.ndarray
    metadata: dict[str, Any]
    index: LevelIndex | None = None

    @property
    def encoder_name(self) -> str:
        return self.metadata["encoder"]["name"]

    @property
    def encoder_source(self) -> str:
        """What to pass to the encoder loader to get this KB's encoder back."""
        return self.metadata["encoder"].get("source") or self.encoder_name

    @property
    def dim(self) -> int:
        return int(self.metadata["dim"])

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(self.metadata["levels"])

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        expect_encoder: EncoderLike | str | None = None,
        expect_dim: int | None = None,
        *,
        load_index: bool = True,
        dim_key: str = "",
    ) -> BuiltKB:
        """Read a built KB, refusing one made by another encoder or of another dimension.

        `expect_encoder` is an encoder (name and fingerprint are compared) or an encoder
        name; `dim_key` the setting `expect_dim` came from, named on a mismatch. Raises
        FileNotFoundError naming missing files, ValueError on mismatches.
        """
        root = epath.Path(path)
        if not root.is_dir():
            raise FileNotFoundError(f"built KB directory not found: {root}")
        missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
        if load_index and not (root / INDEX_DIR).is_dir():
            missing.append(INDEX_DIR + "/")
        if missing:
            raise FileNotFoundError(
                f"{root} is not a complete built KB: missing {', '.join(missing)} "
                "(rebuild it with `rs-jax kb build`)"
            )
        try:
            metadata = json.loads((root / METADATA_FILE).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{root / METADATA_FILE}: not valid JSON ({e})") from e
        for key in ("encoder", "dim", "count", "levels"):
            if key not in metadata:
                raise ValueError(f"{root / METADATA_FILE}: missing field {key!r}")
        if metadata.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
            raise ValueError(
                f"{root} uses built-KB format {metadata['format_version']}; this rs-jax "
                f"reads up to {FORMAT_VERSION}"
            )
        check_encoder(metadata, expect_encoder, expect_dim, root, dim_key)
        for name, sha256 in metadata.get("files_sha256", {}).items():  # older builds: none
            if file_sha256(root / name) != sha256:
                raise ValueError(
                    f"{root / name} changed since the knowledge base was built (its sha256 is "
                    f"not the one in {METADATA_FILE}); rebuild it with `rs-jax kb build`"
                )

        with (root / EMBEDDINGS_FILE).open("rb") as f:
            embeddings = np.load(f)
        entries = load_kb(root / ENTRIES_FILE)
        expected_shape = (int(metadata["count"]), int(metadata["dim"]))
        if embeddings.shape != expected_shape or len(entries) != expected_shape[0]:
            raise ValueError(
                f"{root} is inconsistent: metadata says {expected_shape[0]} x "
                f"{expected_shape[1]}, {EMBEDDINGS_FILE} is {embeddings.shape} and "
                f"{ENTRIES_FILE} has {len(entries)} rows (rebuild it)"
            )
        index = LevelIndex.load(root / INDEX_DIR) if load_index else None
        return cls(root, entries, embeddings.astype(np.float32, copy=False), metadata, index)

    def search(
        self, query_embeddings: np.ndarray, level: str | None = None, k: int = 5
    ) -> list[list[Hit]]:
        """Top-`k` entries of `level` (all levels when None) for each query row."""
        if self.index is None:
            raise ValueError(f"{self.path} was loaded without its index (load_index=False)")
        q = np.atleast_2d(np.asarray(query_embeddings, np.float32))
        if q.shape[1] != self.dim:
            raise ValueError(
                f"query dimension {q.shape[1]} does not match the built KB's {self.dim} "
                f"({self.path})"
            )
        ids, scores = self.index.search(q, level, k)
        return [
            [
                Hit(rank + 1, float(score), int(row), self.entries[row])
                for rank, (row, score) in enumerate(zip(row_ids, row_scores, strict=True))
                if row >= 0
            ]
            for row_ids, row_scores in zip(ids, scores, strict=True)
        ]


def check_encoder(
    metadata: dict[str, Any],
    expect_encoder: EncoderLike | str | None,
    expect_dim: int | None,
    path: str | os.PathLike,
    dim_key: str = "",
) -> None:
    """Raise ValueError naming both sides when a built KB does not fit the encoder (and
    `dim_key`, the setting an expected dimension came from)."""
    built_name = metadata["encoder"]["name"]
    built_fp = metadata["encoder"].get("fingerprint")
    built_dim = int(metadata["dim"])
    if expect_encoder is not None:
        if isinstance(expect_encoder, str):
            name, fingerprint, dim = expect_encoder, None, None
        else:
            name, fingerprint = expect_encoder.name, expect_encoder.fingerprint
            dim = int(expect_encoder.dim)
        if name != built_name or (fingerprint is not None and fingerprint != built_fp):
            raise ValueError(
                f"{path} was built with encoder {built_name!r} (fingerprint {built_fp}), "
                f"but the query encoder is {name!r} (fingerprint {fingerprint}); rebuild "
                f"with `rs-jax kb build --encoder {name}` or query with {built_name!r}"
            )
        if dim is not None and expect_dim is None:
            expect_dim = dim
    if expect_dim is not None and int(expect_dim) != built_dim:
        fix = "rebuild it with the encoder you query with"
        if dim_key:
            fix = f"set {dim_key}={built_dim} to use it, or {fix}"
        raise ValueError(
            f"{path} holds {built_dim}-dimensional embeddings, but {dim_key or 'the query'} "
            f"{'is' if dim_key else 'expects'} {expect_dim}; {fix}"
        )


_BUILT_FILES = {METADATA_FILE, ENTRIES_FILE, EMBEDDINGS_FILE, INDEX_DIR}
_BUILT_METADATA = {"format_version", "encoder", "dim", "count", "levels", "kb_sha256", "index"}


def check_output_dir(root: epath.Path, overwrite: bool) -> None:
    """A build may write `root` if it is new or empty, or if `overwrite` is set and it
    holds exactly a KB built by this project (its files and their metadata): a folder that
    merely has a metadata.json (a dataset's, say) is never replaced."""
    for parent in root.parents:  # before any entry is embedded
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(f"--out {root}: {parent} is a file, not a folder")
    if not root.exists() or (root.is_dir() and not any(root.iterdir())):
        return
    if not root.is_dir():
        raise ValueError(f"--out {root} is a file; choose a new folder")
    try:
        metadata = json.loads((root / METADATA_FILE).read_text())
    except (OSError, ValueError):
        metadata = None
    built = (
        isinstance(metadata, dict)
        and set(metadata) >= _BUILT_METADATA
        and {p.name for p in root.iterdir()} == _BUILT_FILES
    )
    if not built:
        raise ValueError(
            f"--out {root} exists and is not a knowledge base built by rs-jax; nothing was "
            f"changed: choose a new folder"
        )
    if not overwrite:
        raise ValueError(
            f"--out {root} holds a built knowledge base; pass --overwrite to replace it"
        )


def write_built_kb(
    out: str | os.PathLike,
    entries: Sequence[Entry],
    embeddings: np.ndarray,
    *,
    encoder: EncoderLike,
    encoder_source: str | None = None,
    kb_path: str | os.PathLike | None = None,
    build_seconds: float | None = None,
    index_kwargs: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> BuiltKB:
    """Write a built-KB directory at `out` and return it loaded (index included).

    The directory is assembled next to `out` and moved into place, so an interrupted
    build never leaves a half-written KB. `out` must be new or empty, or (with
    `overwrite`) a KB this project built and nothing else (`check_output_dir`).
    `encoder_source` is what loaded the encoder (e.g. "minilm" or a model folder), recorded
    so that queries can load the same one.
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != len(entries):
        raise ValueError(f"embeddings {x.shape} do not match {len(entries)} entries")
    if x.shape[1] != int(encoder.dim):
        raise ValueError(
            f"embeddings are {x.shape[1]}-d but encoder {encoder.name!r} is {encoder.dim}-d"
        )
    # Assembled with a rename, and ScaNN writes local files only.
    root = local_path(out, "--out")
    check_output_dir(root, overwrite)

    levels: dict[str, int] = {}
    for entry in entries:
        levels[entry.level] = levels.get(entry.level, 0) + 1
    index = LevelIndex.build(x, [e.level for e in entries], **(index_kwargs or {}))
    metadata = {
        "format_version": FORMAT_VERSION,
        "encoder": {
            "name": encoder.name,
            "fingerprint": encoder.fingerprint,
            "source": encoder_source,
        },
        "dim": int(x.shape[1]),
        "count": int(x.shape[0]),
        "levels": levels,
        "kb_file": str(kb_path) if kb_path is not None else None,
        "kb_sha256": file_sha256(kb_path) if kb_path is not None else None,
        "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "build_seconds": round(build_seconds, 3) if build_seconds is not None else None,
        "rs_jax_version": __version__,
        "index": {level: cfg.__dict__ for level, cfg in index.configs.items()},
    }

    with staged_folder(root) as staging:
        np.save(staging / EMBEDDINGS_FILE, x)
        write_kb(entries, staging / ENTRIES_FILE)
        index.save(staging / INDEX_DIR)
        # Row i of the entries belongs to row i of the embeddings: an edited or reordered
        # file would silently serve the wrong entries, so loading checks both.
        metadata["files_sha256"] = {
            name: file_sha256(staging / name) for name in (ENTRIES_FILE, EMBEDDINGS_FILE)
        }
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return BuiltKB(root, list(entries), x, metadata, index)
