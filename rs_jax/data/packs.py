"""ArrayRecord packs: a config's data written once as ready examples (`rs-jax data pack`),
then read lazily by every host with `config.data.pack` (docs/data.md, "Packs").

A pack is a folder, local or gs://:
  dataset_info.json    what it holds (below); a folder with it is a pack, and `rs-jax data
                       pack` writes into no other non-empty folder
  corpus.json          the texts the tokenizer trains on (train split texts, class names)
  manifest.json        digests of the training files packed (data/manifest.py): a resumed
                       run compares them as it compares files
  train/<source>.array_record-SSSSS-of-NNNNN   one record set per source, mixed by weight
  test/eval.array_record-SSSSS-of-NNNNN        the eval records of every source
  (each shard with <shard>.json beside it: its records, questions per task and sha256)
A record: the length of a JSON header (uint32, little-endian), the header (questions and
KB labels), then the image, decoded and resized once, as PNG (lossless: a run from a pack
sees the pixels a run from the files sees).
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import hashlib
import io
import json
import math
import multiprocessing
import os
import struct
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from etils import epath
from PIL import Image

from rs_jax.data.tasks import QA
from rs_jax.files import is_local, write_text_whole

FORMAT = "rs-jax pack 1"
INFO = "dataset_info.json"
CORPUS = "corpus.json"
MANIFEST = "manifest.json"
SPLITS = ("train", "test")  # config.data.train_split's records, config.data.eval_split's
RECORDS_PER_SHARD = 10_000  # --shards' default: about 100 MB a shard at 64 px
# config.data keys that say how data are read, not what they are: a pack serves any value.
# Every other key must match the config the pack was written with.
READ_KEYS = ("pack", "data_dir", "worker_count", "batch_size", "packing", "allow_skips")
_HEADER = struct.Struct("<I")
# What reading a damaged record raises: riegeli's errors (RuntimeError, OSError), a
# truncated header (struct.error), bad JSON or UTF-8 (ValueError), a bad PNG (OSError),
# a header without its fields (KeyError, TypeError, IndexError).
_DAMAGE = (RuntimeError, OSError, ValueError, struct.error, KeyError, TypeError, IndexError)


class CorruptRecordError(ValueError):
    """A pack record that cannot be read; the message names its shard and record."""


def described_data(data_config: Any) -> dict:
    """The config.data keys a pack is bound to, as JSON values."""
    values = {k: v for k, v in data_config.to_dict().items() if k not in READ_KEYS}
    return json.loads(json.dumps(values, sort_keys=True))


def encode_record(record: dict) -> tuple[bytes, list[str]]:
    """(record bytes, the tasks of its questions) of {"image", "qas", "kb_labels"}."""
    header = json.dumps(
        {
            "qas": [
                [qa.question, qa.answer, qa.task, qa.history, qa.references] for qa in record["qas"]
            ],
            "kb_labels": np.asarray(record["kb_labels"]).tolist(),
        }
    ).encode()
    png = io.BytesIO()
    Image.fromarray(np.asarray(record["image"], np.uint8)).save(png, "PNG", compress_level=1)
    raw = _HEADER.pack(len(header)) + header + png.getvalue()
    return raw, [qa.task for qa in record["qas"]]


def _header(raw: bytes) -> tuple[dict, int]:
    if len(raw) < _HEADER.size:  # what a truncated shard's reader returns
        raise ValueError(f"a record of {len(raw)} bytes (is the shard truncated?)")
    (length,) = _HEADER.unpack_from(raw)
    end = _HEADER.size + length
    if end > len(raw):
        raise ValueError(f"header of {length} bytes in a record of {len(raw)}")
    return json.loads(raw[_HEADER.size : end].decode("utf-8")), end


def _qas(header: dict) -> list[QA]:
    return [
        QA(
            str(q),
            str(a),
            str(t),
            tuple((str(hq), str(ha)) for hq, ha in history),
            tuple(str(r) for r in refs),
        )
        for q, a, t, history, refs in header["qas"]
    ]


def decode_record(raw: bytes) -> dict:
    """The record encode_record wrote: {"image": uint8 [S, S, 3], "qas", "kb_labels"}."""
    header, end = _header(raw)
    with Image.open(io.BytesIO(raw[end:])) as png:
        image = np.asarray(png.convert("RGB"), np.uint8)
    return {
        "image": image,
        "qas": _qas(header),
        "kb_labels": np.asarray(header["kb_labels"], np.int32),
    }


@dataclasses.dataclass(frozen=True)
class SkippedRecord:
    """What reading a damaged record gives under allow_skips, in place of the record: it
    travels with the stream (from a worker too) to the process that counts it."""

    where: str
    reason: str


class PackRecords:
    """One record set of a pack as a record source ({"image", "qas", "kb_labels"} per
    index, decoded on access) over Grain's ArrayRecord source. A damaged record is a
    CorruptRecordError naming its shard and record, or with allow_skips a SkippedRecord
    (its questions None), noted in `skipped`."""

    def __init__(self, shards: Sequence[str], counts: Sequence[int], allow_skips: bool):
        self.shards = list(shards)
        self.counts = [int(c) for c in counts]
        self.allow_skips = allow_skips
        self.skipped: dict[str, str] = {}
        self._starts = [0, *np.cumsum(self.counts)[:-1].tolist()]
        self._source = None  # opened on first read, in the process that reads

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_source": None}  # each Grain worker opens its own readers

    def __len__(self) -> int:
        return sum(self.counts)

    def _where(self, index: int) -> str:
        shard = bisect.bisect_right(self._starts, index) - 1
        return f"{self.shards[shard]} record {index - self._starts[shard]}"

    def _raw(self, index: int) -> bytes:
        if self._source is None:
            import grain

            # "file[0:n]": the counts come from the pack, so no shard is opened up front.
            self._source = grain.sources.ArrayRecordDataSource(
                [f"{s}[0:{n}]" for s, n in zip(self.shards, self.counts, strict=True)]
            )
        return self._source[index]

    def _read(self, index: int, parse: Callable[[bytes], Any]) -> Any:
        index = int(index)
        try:
            return parse(self._raw(index))
        except _DAMAGE as e:
            where = self._where(index)
            reason = f"{type(e).__name__}: {e}".splitlines()[0]
            if not self.allow_skips:
                raise CorruptRecordError(
                    f"{where}: corrupt ({reason}); write the pack again (rs-jax data pack), "
                    "or set config.data.allow_skips=True to skip such records (counted and "
                    "logged)"
                ) from None
            self.skipped[where] = reason
            return SkippedRecord(where, reason)

    def __getitem__(self, index: int) -> dict | SkippedRecord:
        return self._read(index, decode_record)

    def qas(self, index: int) -> list[QA] | None:
        """Questions without decoding the image (None for a damaged record)."""
        qas = self._read(index, lambda raw: _qas(_header(raw)[0]))
        return None if isinstance(qas, SkippedRecord) else qas


def read_info(pack: epath.PathLike) -> dict | None:
    """The pack's dataset_info.json, or None where there is none."""
    path = epath.Path(pack) / INFO
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ValueError(f"{path}: not a dataset_info.json of {FORMAT!r}")
    return info


def _mismatch(packed: dict, wanted: dict) -> str | None:
    for key in sorted(packed.keys() | wanted.keys()):
        if packed.get(key) != wanted.get(key):
            return (
                f"config.data.{key}={wanted.get(key)!r}, but the pack was written with "
                f"{packed.get(key)!r}"
            )
    return None


class Pack:
    """A written pack, checked against the config.data that reads it."""

    def __init__(self, path: str, data_config: Any):
        self.path = epath.Path(path)
        info = read_info(self.path)
        if info is None:
            raise FileNotFoundError(
                f"config.data.pack={path!r} is not a pack (no {INFO}); write one with "
                "`rs-jax data pack --config C --out DIR`"
            )
        mismatch = _mismatch(info["data"], described_data(data_config))
        if mismatch:
            raise ValueError(f"config.data.pack={path!r}: {mismatch}; pack the data again")
        missing = [s for s in SPLITS if not info["splits"].get(s, {}).get("complete")]
        if missing:
            raise ValueError(
                f"config.data.pack={path!r} has no complete {' and '.join(missing)} split; "
                f"run `rs-jax data pack` with --split {missing[0]} (it resumes)"
            )
        self.info = info

    def record_sets(self, split: str, allow_skips: bool) -> list[tuple[str, float, PackRecords]]:
        """(name, weight, records) of each record set of `split`."""
        return [
            (
                entry["name"],
                float(entry["weight"]),
                PackRecords(
                    [str(self.path / split / s["file"]) for s in entry["shards"]],
                    [s["records"] for s in entry["shards"]],
                    allow_skips,
                ),
            )
            for entry in self.info["splits"][split]["sets"]
        ]

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text())


# --- writing -------------------------------------------------------------------------

_WORKER_RECORDS: Any = None


def _start_worker(records: Any) -> None:
    global _WORKER_RECORDS
    _WORKER_RECORDS = records


def _encode_in_worker(index: int) -> tuple[bytes, list[str]]:
    return encode_record(_WORKER_RECORDS[index])


def _encoded(records: Any, indices: range, workers: int) -> Iterator[tuple[bytes, list[str]]]:
    """encode_record of each of `indices`, in order; decoded in `workers` processes."""
    if workers == 0:
        yield from (encode_record(records[i]) for i in indices)
        return
    # spawn: a fork of a process that runs JAX's threads may deadlock.
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_start_worker, initargs=(records,)) as pool:
        yield from pool.imap(_encode_in_worker, indices, chunksize=16)


def _shard_names(name: str, num_shards: int) -> list[str]:
    return [f"{name}.array_record-{i:05d}-of-{num_shards:05d}" for i in range(num_shards)]


def _write_shard(
    path: epath.Path, encoded: Iterator[tuple[bytes, list[str]]], step: Callable[[], None]
) -> dict:
    """Writes one shard whole (at a temporary name, then renamed; on a bucket, uploaded
    when complete) and its .json; its stats."""
    from array_record.python.array_record_module import ArrayRecordWriter

    with tempfile.TemporaryDirectory(prefix="rs_jax_pack_") as scratch:
        local = f"{path}.partial" if is_local(path) else os.path.join(scratch, path.name)
        writer = ArrayRecordWriter(local, "group_size:1")
        digest, tasks, records = hashlib.sha256(), collections.Counter(), 0
        try:
            for raw, record_tasks in encoded:
                writer.write(raw)
                digest.update(raw)
                tasks.update(record_tasks)
                records += 1
                step()
        finally:
            writer.close()
        stats = {
            "file": path.name,
            "records": records,
            "sha256": digest.hexdigest(),
            "tasks": dict(sorted(tasks.items())),
        }
        # The .json first: a shard under its final name always has its stats beside it.
        write_text_whole(f"{path}.json", json.dumps(stats, indent=1))
        if is_local(path):
            os.replace(local, path)
        else:
            epath.Path(local).copy(path)
    return stats


def _merged_tasks(shards: list[dict]) -> dict[str, int]:
    total = collections.Counter()
    for shard in shards:
        total.update(shard["tasks"])
    return dict(sorted(total.items()))


class PackWriter:
    """Writes a DataBundle's records into the pack folder `out` (see the module docstring).

    A folder that is neither empty nor a pack is refused, and so is a pack of other data;
    finished shards of an interrupted pack are kept, and only the missing ones written.
    """

    def __init__(self, out: epath.PathLike, data_config: Any, bundle: Any):
        self.out = epath.Path(out)
        self.bundle = bundle
        info = read_info(self.out)
        wanted = described_data(data_config)
        if info is None:
            if self.out.exists() and any(self.out.iterdir()):
                raise FileExistsError(
                    f"--out {self.out} is not empty and holds no pack ({INFO}); "
                    "name a new or empty folder"
                )
            info = self._new_info(wanted)
        else:
            mismatch = _mismatch(info["data"], wanted)
            if mismatch is None and self._read(MANIFEST) != bundle.manifest:
                mismatch = "training files were added, removed or edited since"
            if mismatch:
                raise ValueError(
                    f"--out {self.out} holds a pack of other data ({mismatch}); name another folder"
                )
        self.info = info

    def _read(self, name: str) -> Any:
        return json.loads((self.out / name).read_text())

    def _new_info(self, data: dict) -> dict:
        b = self.bundle
        info = {
            "format": FORMAT,
            "data": data,
            "image_size": b.image_size,
            "tasks": list(b.tasks),
            "eval_sources": [
                {
                    "name": s.name,
                    "protocol": str(s.protocol),
                    "tasks": list(s.tasks),
                    "class_names": list(s.class_names),
                }
                for s in b.eval_sources
            ],
            "kb_entries": [e.to_dict() for e in b.kb_entries],
            "splits": {},
        }
        self.out.mkdir(parents=True, exist_ok=True)
        write_text_whole(self.out / CORPUS, json.dumps(b.corpus))
        write_text_whole(self.out / MANIFEST, json.dumps(b.manifest, sort_keys=True))
        write_text_whole(self.out / INFO, json.dumps(info, indent=1))  # last: now a pack
        return info

    def record_sets(self, split: str) -> list[tuple[str, float, Any]]:
        b = self.bundle
        if split == "train":
            names = [s.name for s in b.eval_sources]
            return list(zip(names, b.train_weights, b.train_records, strict=True))
        return [("eval", 1.0, b.eval_records)]

    def write(
        self,
        split: str,
        num_shards: int = 0,
        workers: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict:
        """Writes `split` (what is missing of it); its entry in dataset_info.json.
        progress(records done, records in the split) after each record."""
        sets = self.record_sets(split)
        total = sum(len(records) for _, _, records in sets)
        if num_shards <= 0:
            num_shards = math.ceil(total / RECORDS_PER_SHARD)
        folder = self.out / split
        folder.mkdir(parents=True, exist_ok=True)
        done = [0]

        def step() -> None:
            done[0] += 1
            if progress:
                progress(done[0], total)

        entries = []
        for name, weight, records in sets:
            # Shards in proportion to the set's records, at least one each.
            shares = max(1, min(len(records), round(num_shards * len(records) / total)))
            bounds = np.linspace(0, len(records), shares + 1).astype(int)
            shards = []
            for file, lo, hi in zip(_shard_names(name, shares), bounds, bounds[1:], strict=False):
                path = folder / file
                if path.exists():  # finished by an earlier, interrupted run
                    shards.append(json.loads(epath.Path(f"{path}.json").read_text()))
                    done[0] += hi - lo
                    continue
                indices = range(int(lo), int(hi))
                shards.append(_write_shard(path, _encoded(records, indices, workers), step))
            entries.append(
                {
                    "name": name,
                    "weight": weight,
                    "records": len(records),
                    "tasks": _merged_tasks(shards),
                    "shards": shards,
                }
            )
        return self._finish(split, entries)

    def _finish(self, split: str, entries: list[dict]) -> dict:
        skips = self.bundle.skips.get("train" if split == "train" else "eval")
        self.info["splits"][split] = {
            "complete": True,
            "records": sum(e["records"] for e in entries),
            "skipped": skips or {},
            "sets": entries,
        }
        digest = hashlib.sha256()
        for name in SPLITS:
            for entry in self.info["splits"].get(name, {}).get("sets", []):
                for shard in entry["shards"]:
                    digest.update(shard["sha256"].encode())
        self.info["sha256"] = digest.hexdigest()
        write_text_whole(self.out / INFO, json.dumps(self.info, indent=1))
        return self.info["splits"][split]
