"""The hand-curated data the KB build reads: descriptions and the merge/link tables.

Both are JSON files in rs_jax/kb/data/ (docs/knowledge_base.md explains every table).
Loading checks their shape and stops at the first bad value with a one-line error that
names the file and the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etils import epath

from rs_jax.kb.schema import LEVELS

DATA_DIR = Path(__file__).parent / "data"
DESCRIPTIONS_FILE = DATA_DIR / "descriptions.json"
TABLES_FILE = DATA_DIR / "tables.json"

# Shapes: "text" a non-empty string, "level" one of LEVELS, "id" a "level/name" reference,
# "id?" an id or null; [shape] a list; {key_kind: shape} an object.
_DESCRIPTIONS_SHAPE = {"level": {"text": "text"}}
_TABLE_SHAPES: dict[str, Any] = {
    "synonyms": {"text": "text"},
    "dataset_synonyms": {"text": {"text": "text"}},
    "level_overrides": {"text": "level"},
    "superclass_names": {"text": "text"},
    "parents": {"id": "id?"},
    "contains": {"id": ["id"]},
    "extras": {"level": {"text": ["text"]}},
    "aliases": {"id": ["text"]},
}


class CurationError(ValueError):
    """A curation file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Tables:
    """The hand tables of tables.json, one attribute per table."""

    synonyms: dict[str, str]  # normalised class name -> canonical name
    dataset_synonyms: dict[str, dict[str, str]]  # dataset -> raw class -> canonical name
    level_overrides: dict[str, str]  # canonical name -> level
    superclass_names: dict[str, str]  # FAIR1M superclass -> canonical name
    parents: dict[str, str | None]  # "level/name" -> "level/name", None drops the link
    contains: dict[str, list[str]]  # "level/name" -> ["level/name", ...]
    extras: dict[str, dict[str, list[str]]]  # level -> name -> aliases
    aliases: dict[str, list[str]]  # "level/name" -> extra aliases


def load_descriptions(path: epath.PathLike = DESCRIPTIONS_FILE) -> dict[str, dict[str, str]]:
    """level -> canonical name -> description."""
    return _check(_read(path), _DESCRIPTIONS_SHAPE, "", path)


def load_tables(path: epath.PathLike = TABLES_FILE) -> Tables:
    """The hand tables, checked against their shapes."""
    pairs = _read(path)
    if not isinstance(pairs, _Pairs):
        raise CurationError(f"{path}: expected an object of tables, got {_kind(pairs)}")
    names = [k for k, _ in pairs]
    for name in names:
        if name not in _TABLE_SHAPES:
            raise CurationError(
                f"{path}: {name}: unknown table (known: {', '.join(_TABLE_SHAPES)})"
            )
        if names.count(name) > 1:
            raise CurationError(f"{path}: {name}: duplicate key")
    missing = [n for n in _TABLE_SHAPES if n not in names]
    if missing:
        raise CurationError(f"{path}: missing table(s) {', '.join(missing)}")
    return Tables(**{k: _check(v, _TABLE_SHAPES[k], k, path) for k, v in pairs})


class _Pairs(list):
    """A JSON object as its (key, value) pairs, so duplicate keys survive parsing."""


def _read(path: epath.PathLike) -> Any:
    try:
        return json.loads(epath.Path(path).read_text(), object_pairs_hook=_Pairs)
    except json.JSONDecodeError as e:
        raise CurationError(f"{path}: line {e.lineno}: invalid JSON: {e.msg}") from None


def _check(value: Any, shape: Any, where: str, path: epath.PathLike) -> Any:
    """`value` as plain dicts and lists if it has `shape`; raises naming `where` if not."""
    if isinstance(shape, dict):
        ((key_kind, inner),) = shape.items()
        if not isinstance(value, _Pairs):
            raise CurationError(
                f"{path}: {where or 'top level'}: expected an object, got {_kind(value)}"
            )
        out = {}
        for key, item in value:
            at = f"{where}[{key!r}]"
            if key in out:
                raise CurationError(f"{path}: {at}: duplicate key")
            _check_scalar(key, key_kind, at, path)
            out[key] = _check(item, inner, at, path)
        return out
    if isinstance(shape, list):
        if not isinstance(value, list) or isinstance(value, _Pairs):
            raise CurationError(f"{path}: {where}: expected a list, got {_kind(value)}")
        return [_check(item, shape[0], f"{where}[{i}]", path) for i, item in enumerate(value)]
    return _check_scalar(value, shape, where, path)


def _check_scalar(value: Any, kind: str, where: str, path: epath.PathLike) -> Any:
    if kind == "id?" and value is None:
        return None
    if not isinstance(value, str) or not value:
        raise CurationError(f"{path}: {where}: expected a non-empty string, got {_kind(value)}")
    if kind == "level" and value not in LEVELS:
        raise CurationError(f"{path}: {where}: unknown level {value!r} (levels: {LEVELS})")
    level, slash, name = value.partition("/")
    if kind in ("id", "id?") and (not slash or level not in LEVELS or not name):
        raise CurationError(
            f"{path}: {where}: {value!r} is not 'level/name' with a level in {LEVELS}"
        )
    return value


def _kind(value: Any) -> str:
    if isinstance(value, _Pairs):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else f"{type(value).__name__} {value!r:.60}"
