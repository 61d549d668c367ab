"""What a run trains on, file by file: a digest of every training image with its texts.

The trainer stores the manifest's hash with each checkpoint and the manifest itself in the
workdir, named by that hash, so it is written once and never replaced. A resumed run whose
data differ can then say which files were added, removed or edited.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from etils import epath

from rs_jax.files import write_whole

SHOWN = 5  # files named per kind of change; the rest are counted


def _digest(image: str, texts: str) -> str:
    """sha256 (first 16 hex digits) of an image file's bytes and its record's texts."""
    digest = hashlib.sha256(epath.Path(image).read_bytes())
    digest.update(texts.encode())
    return digest.hexdigest()[:16]


def training_manifest(splits: Iterable[tuple[str, Any]], num_threads: int = 8) -> dict[str, str]:
    """{"<source>:<image path under the split's folder>": digest} of every training item.

    splits: (source name, sources.Split) pairs. An image asked about by several records
    gets one key per record ("#2", "#3", ...)."""
    keys, jobs, seen = [], [], collections.Counter()
    for name, split in splits:
        for item in split.items:
            key = f"{name}:{os.path.relpath(item.image, split.base_dir)}"
            seen[key] += 1
            keys.append(f"{key}#{seen[key]}" if seen[key] > 1 else key)
            texts = json.dumps([list(qa) for qa in item.qas] + [list(item.classes)])
            jobs.append((item.image, texts))
    with ThreadPoolExecutor(num_threads) as pool:  # hashlib releases the GIL on large reads
        digests = list(pool.map(lambda job: _digest(*job), jobs))
    return dict(zip(keys, digests, strict=True))


def manifest_sha256(manifest: dict[str, str]) -> str | None:
    """The hash of a whole manifest; None for data generated from the config (no files)."""
    if not manifest:
        return None
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def manifest_path(workdir: epath.PathLike, sha256: str) -> epath.Path:
    return epath.Path(workdir) / f"data_manifest-{sha256[:16]}.json"


def write_manifest(workdir: epath.PathLike, manifest: dict[str, str]) -> None:
    """<workdir>/data_manifest-<hash>.json, unless it is there already (same hash, same
    content: an existing one is never rewritten)."""
    sha256 = manifest_sha256(manifest)
    if sha256 is None or manifest_path(workdir, sha256).exists():
        return
    with write_whole(manifest_path(workdir, sha256)) as out:
        json.dump(manifest, out, indent=0, sort_keys=True)


def describe_change(workdir: epath.PathLike, old_sha256: str, new: dict[str, str]) -> str:
    """ "2 files added (a, b), 1 edited (c)" between the manifest stored as `old_sha256` in
    `workdir` and `new`; a count-free note when the old one is not there any more."""
    path = manifest_path(workdir, old_sha256)
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return f"its manifest {path.name} is missing or unreadable, so the files are not named"
    changes = {
        "added": sorted(new.keys() - old.keys()),
        "removed": sorted(old.keys() - new.keys()),
        "edited": sorted(k for k in old.keys() & new.keys() if old[k] != new[k]),
    }
    parts = []
    for kind, files in changes.items():
        if files:
            more = f", and {len(files) - SHOWN} more" if len(files) > SHOWN else ""
            noun = "file" if len(files) == 1 else "files"
            parts.append(f"{len(files)} {noun} {kind} ({', '.join(files[:SHOWN])}{more})")
    return "; ".join(parts) or "the same files, in another order"
