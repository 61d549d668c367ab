"""Dataset formats -> one split as a list of `Item`s (an image file, its questions, its
classes). Each format is a module here that declares itself as `FORMAT = Format(...)`: its
name, its own config keys, its evaluation protocol and its `load`; `formats()` finds them.

  folder     <root>/<split>/<class>/<image>: scene classification (EuroSAT, UC Merced, AID,
             NWPU-RESISC45, WHU-RS19, RSSCN7, PatternNet)            sources/classification.py
  rsvqa      RSVQA-LR / RSVQA-HR official JSON files                  sources/rsvqa.py
  vqa_jsonl  one question per line (RSIVQA as rs-jax's shared data has it)  sources/vqa_jsonl.py
  captions   RSICD / UCM-captions / Sydney-captions dataset_*.json, or captions JSONL
                                                                     sources/captions.py
  instruct   LLaVA / GeoChat conversation JSON (multi-turn)           sources/instruct.py
  detection  DOTA labelTxt / DIOR, DIOR-R, DIOR-RSVG xml annotations -> grounding questions
                                                                     sources/detection.py
  referring  one referring expression and its box per record (VRSBench's evaluation JSON)
                                                                     sources/referring.py

A bad record (a missing image, an unknown question type, a conversation without its image
placeholder) is a ValueError naming the file and record, or with `allow_skips` a counted
skip that the split's report lists. Images are checked once, up front (data/images.py).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib
import json
import math
import os
import pkgutil
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

import pydantic
from etils import epath

from rs_jax.data.images import Bands, check_images
from rs_jax.data.tasks import QA
from rs_jax.files import is_local

# The keys every source has (config.data.sources.<name>), with their defaults; a format
# adds its own (Format.keys). configs/common.py:source() makes one.
COMMON_KEYS: dict[str, Any] = dict(
    format="", path="", weight=1.0, train_split="train", eval_split="test"
)


class Protocol(enum.StrEnum):
    """How a source's eval split is scored (rs_jax/eval/protocols.py)."""

    VQA = "vqa"
    CLASSIFICATION = "classification"
    CAPTIONING = "captioning"
    GROUNDING = "grounding"


@dataclasses.dataclass(frozen=True)
class Format:
    """A dataset format, declared as `FORMAT` by the module that reads it.

    name: config.data.sources.<name>.format. protocol: how its eval split is scored.
    keys: its own keys besides COMMON_KEYS, with their defaults. load: (train split, eval
    split) of one source."""

    name: str
    protocol: Protocol
    keys: dict[str, Any]
    load: Callable[[SourceConfig, LoadContext], tuple[Split, Split]]


@functools.cache
def formats() -> dict[str, Format]:
    """Every format by name: the `FORMAT` of each module of this package that has one."""
    found: dict[str, Format] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        declared = getattr(module, "FORMAT", None)
        if declared is None:
            continue
        if declared.name in found:
            raise ValueError(f"{module.__name__}: format {declared.name!r} is declared twice")
        found[declared.name] = declared
    return found


def each_split(
    load_split: Callable[[SourceConfig, str, LoadContext], Split],
) -> Callable[[SourceConfig, LoadContext], tuple[Split, Split]]:
    """A format's `load` from its reader of one split, for formats whose splits are read
    independently of each other."""

    def load(source: SourceConfig, ctx: LoadContext) -> tuple[Split, Split]:
        return load_split(source, source.train_split, ctx), load_split(
            source, source.eval_split, ctx
        )

    return load


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """config.data.sources.<name> as read by the loaders; `options` holds the format's
    own keys (Format.keys)."""

    name: str
    format: str
    path: str
    weight: float
    train_split: str
    eval_split: str
    options: dict[str, Any]

    @classmethod
    def from_config(cls, name: str, values: dict[str, Any]) -> SourceConfig:
        key = f"config.data.sources.{name}"
        fmt = values.get("format", "")
        if fmt not in formats():
            raise ValueError(f"{key}.format={fmt!r}; choose from {sorted(formats())}")
        own_keys = formats()[fmt].keys
        allowed = COMMON_KEYS | own_keys
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ValueError(
                f"{key}: unknown key(s) {unknown} for format {fmt!r}; it has {sorted(allowed)}"
            )
        values = allowed | dict(values)
        if not values["path"]:
            raise ValueError(f"{key}.path is not set")
        weight = float(values["weight"])
        if not 0 < weight < math.inf:
            raise ValueError(f"{key}.weight={values['weight']!r}: must be a finite number > 0")
        options = {k: values[k] for k in own_keys}
        if "question_types" in options:
            options["question_types"] = tuple(options["question_types"])
        return cls(
            name=name,
            format=fmt,
            path=os.path.expanduser(str(values["path"])),
            weight=weight,
            train_split=str(values["train_split"]),
            eval_split=str(values["eval_split"]),
            options=options,
        )

    @property
    def protocol(self) -> Protocol:
        return formats()[self.format].protocol

    def image_root(self) -> str:
        root = self.options.get("image_root", "")
        if root:
            return os.path.expanduser(root)
        path = epath.Path(self.path)
        return self.path if path.is_dir() else str(path.parent)

    def split_path(self, split: str) -> str:
        """path with `{split}` filled in (a file per split), else path itself."""
        return self.path.replace("{split}", split)


@dataclasses.dataclass(frozen=True)
class Item:
    """One image and what is asked about it. classes: the image's scene classes (readable
    names; they become KB labels), possibly none. record: where it came from, for errors."""

    image: str
    qas: tuple[QA, ...]
    classes: tuple[str, ...]
    record: str


@dataclasses.dataclass
class Split:
    """One split of one source. class_names: every class of a classification source (its
    prompt lists them; the confusion matrix has a row each); () for other formats.
    skipped: record or image -> why it was left out (allow_skips); unsupported: files that
    are not images of a supported type."""

    items: list[Item]
    base_dir: str
    class_names: tuple[str, ...] = ()
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    unsupported: list[str] = dataclasses.field(default_factory=list)
    # Readable class name -> the spellings the data uses for it (folder names, labels);
    # they become the KB entry's aliases, which link it to a curated KB.
    aliases: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def report(self, split: str) -> dict:
        """What indexing left out, for results files."""
        return {
            "split": split,
            "images": len(self.items),
            "skipped": dict(self.skipped),
            "unsupported": list(self.unsupported),
        }


@dataclasses.dataclass(frozen=True)
class LoadContext:
    """What every loader needs from config.data besides its source's own keys."""

    image_size: int
    allow_skips: bool
    cache_dir: str  # image verification results (data/images.py)
    bands: Bands
    box_format: str = "geochat"  # config.data.box_format: how grounding answers are written


# No RS question, answer or caption comes near this; a longer one is a broken record (a
# file pasted into a field) that the tokenizer would cut to its first tokens or one [UNK].
MAX_TEXT_CHARS = 4000
Text = Annotated[
    str, pydantic.StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_CHARS)
]
# A caption list may hold empty strings (left out); each is bounded all the same.
LongText = Annotated[str, pydantic.StringConstraints(max_length=MAX_TEXT_CHARS)]


class Record(pydantic.BaseModel):
    """The fields a reader takes from one record, by type (JSON's own: no string is read as
    a number or the reverse, no null where a value belongs); other fields are ignored."""

    model_config = pydantic.ConfigDict(strict=True, extra="ignore", frozen=True)


R = TypeVar("R", bound=Record)
_TAGS = {"str", "int", "float", "bool", "list", "dict"}


def parse_record(model: type[R], row: Any, where: str, bad: BadRecords) -> R | None:
    """`row` as `model`, or None once `bad` has the first problem: the field, what it must
    be and what it was (an error, or a counted skip under allow_skips)."""
    try:
        return model.model_validate(row)
    except pydantic.ValidationError as e:
        bad(where, _record_problem(e.errors()[0]))
        return None


def _record_problem(error: Any) -> str:
    # A union's member names its branch ('constrained-str', 'int'): not a field.
    path = [p for p in error["loc"] if isinstance(p, int) or p.isidentifier()]
    path = [p for i, p in enumerate(path) if i == 0 or not isinstance(p, str) or p not in _TAGS]
    field = ".".join(str(p) for p in path) or "the record"
    value = error.get("input")
    if error["type"] == "missing" or error["type"] in ("string_too_short", "too_short"):
        return f"no {field}"
    if error["type"] == "string_too_long":
        return f'"{field}" has {len(value):,} characters, more than {MAX_TEXT_CHARS:,}'
    if value is None:
        got = "null"
    else:
        text = repr(value)
        got = f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
    return f'"{field}": {error["msg"].lower()} (got {got})'


class BadRecords:
    """One place for the rule on bad records: an error naming file and record, or, when
    config.data.allow_skips is set, a skip that is counted and listed."""

    def __init__(self, allow_skips: bool):
        self.allow_skips = allow_skips
        self.skipped: dict[str, str] = {}

    def __call__(self, where: str, reason: str) -> None:
        if not self.allow_skips:
            raise ValueError(
                f"{where}: {reason}; fix the record, or set config.data.allow_skips=True to "
                "skip such records (counted and listed in the log and eval.json)"
            )
        self.skipped[where] = reason


def read_json(path: str, what: str) -> Any:
    """A JSON file, or a one-line error naming it (and the line of a syntax error)."""
    try:
        with epath.Path(path).open() as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what}: {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{what}: {path} line {e.lineno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{what}: {path} is not UTF-8 text ({_where(path, e)})") from None


def _where(path: str, e: UnicodeDecodeError) -> str:
    """The line (and byte) of an encoding error in `path`, and its reason."""
    with epath.Path(path).open("rb") as f:
        line = f.read(e.start).count(b"\n") + 1
    return f"line {line}, byte {e.start}: {e.reason}"


def read_jsonl(path: str, what: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-empty line; a bad line is an error naming it."""
    try:
        f = epath.Path(path).open("rb")  # closed below; lines are yielded
    except FileNotFoundError:
        raise FileNotFoundError(f"{what}: {path} does not exist") from None
    with f:
        for number, raw in enumerate(f, start=1):
            try:  # decoded line by line, so an encoding error names its line
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"{what}: {path} line {number}: not UTF-8 text ({e.reason})"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{what}: {path} line {number}: not valid JSON ({e.msg})"
                ) from None
            if not isinstance(row, dict):
                raise ValueError(f"{what}: {path} line {number}: expected an object")
            yield number, row


def rows_of_split(source: SourceConfig, split: str) -> tuple[str, list[tuple[str, dict]]]:
    """(file, [(where, row)]) of one split: the `{split}` file, or the rows whose "split" is
    `split`. The file is JSON lines (where = "line N"), or, named *.json, one JSON list of
    objects (where = "record N", from 1)."""
    path = source.split_path(split)
    what = f"config.data.sources.{source.name}.path"
    if path.endswith(".json"):
        records = read_json(path, what)
        if not isinstance(records, list):
            raise ValueError(f"{what}: {path} holds a JSON {type(records).__name__}, not a list")
        rows = [(f"record {i}", row) for i, row in enumerate(records, start=1)]
        for where, row in rows:
            if not isinstance(row, dict):
                raise ValueError(f"{what}: {path} {where}: expected an object")
    else:
        rows = [(f"line {n}", row) for n, row in read_jsonl(path, what)]
    if "{split}" in source.path:
        return path, rows
    for where, row in rows:
        if "split" not in row:
            raise ValueError(
                f'{path} {where}: no "split" (a file without one per record needs '
                f"{{split}} in {what})"
            )
    return path, [(where, r) for where, r in rows if r["split"] == split]


def image_path(image_root: str, name: str) -> str:
    """`name` under `image_root`, unless it is absolute or a URL (gs://...)."""
    if os.path.isabs(name) or not is_local(name):
        return name
    return str(epath.Path(image_root) / name)


def with_readable_images(
    items: list[Item],
    base_dir: str,
    ctx: LoadContext,
    bad: BadRecords,
    aliases: dict[str, list[str]] | None = None,
    read_from: str = "",
) -> Split:
    """The split of `items` whose images decode; the others are an error naming the image
    and its record, or (allow_skips) listed in the split's `skipped`. read_from: the file
    and split the records came from, for the error when none is left."""
    referenced_by = {}
    for item in items:
        referenced_by.setdefault(item.image, item.record)
    unreadable = check_images(
        list(referenced_by),
        base_dir,
        allow_skips=ctx.allow_skips,
        cache_dir=ctx.cache_dir,
        bands=ctx.bands,
        referenced_by=referenced_by,
    )
    kept = [item for item in items if item.image not in unreadable]
    if not kept:
        skipped = bad.skipped | unreadable
        why = (
            f"skipped: {skipped}"
            if skipped
            else "no record of this split and its filters (split name, question types, "
            "format's own fields) was found"
        )
        raise ValueError(f"No usable records left in {read_from or base_dir} ({why})")
    return Split(kept, base_dir, skipped=bad.skipped | unreadable, aliases=aliases or {})


def load(source: SourceConfig, ctx: LoadContext) -> tuple[Split, Split]:
    """(train split, eval split) of one source."""
    return formats()[source.format].load(source, ctx)
