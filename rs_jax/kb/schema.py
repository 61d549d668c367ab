"""Knowledge-base entry schema and JSONL reading/writing.

One entry per line. Every line carries exactly the fields of `Entry`; see
docs/knowledge_base.md for their meaning.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from etils import epath

# Coarse to fine. Finer nomenclature depth (e.g. CORINE level 1/2/3) lives in
# `depth`, not in extra levels, so that consumers only ever see three levels.
LEVELS: tuple[str, ...] = ("scene", "landcover", "object")


@dataclass
class Entry:
    """One concept of the remote-sensing knowledge base."""

    id: str
    level: str
    name: str
    description: str
    aliases: list[str] = field(default_factory=list)
    parent: str | None = None
    contains: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    # Depth in a hierarchical nomenclature (CORINE 1..3); None where flat.
    depth: int | None = None

    def to_dict(self) -> dict:
        """Plain dict in a fixed key order (keeps JSONL diffs stable)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> Entry:
        """Build from a dict; missing optional fields take their defaults."""
        return cls(**{k: d[k] for k in FIELD_NAMES if k in d})


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Entry))
REQUIRED_FIELDS: tuple[str, ...] = ("id", "level", "name", "description")


def make_id(level: str, name: str) -> str:
    """Slug id "<level>/<name>" with non-alphanumerics collapsed to '_'."""
    slug = "".join(c if c.isalnum() else "_" for c in name.lower())
    slug = "_".join(p for p in slug.split("_") if p)
    return f"{level}/{slug}"


def entry_text(entry: Entry) -> str:
    """Text to embed for retrieval: name, distinct aliases, description."""
    seen = {_fold(entry.name)}
    aliases = []
    for a in entry.aliases:
        # Dataset spellings often differ only by case/punctuation; embed each form once.
        k = _fold(a)
        if k not in seen:
            seen.add(k)
            aliases.append(a)
    head = entry.name if not aliases else f"{entry.name} (also: {', '.join(aliases)})"
    return f"{head}. {entry.description}"


def _fold(s: str) -> str:
    return "".join(c for c in s.lower() if c.isalnum())


def load_kb(path: epath.PathLike) -> list[Entry]:
    """Read a JSONL knowledge base (no validation; see `validate.check_kb_file`)."""
    entries = []
    with epath.Path(path).open() as f:
        for line in f:
            if line.strip():
                entries.append(Entry.from_dict(json.loads(line)))
    return entries


def write_kb(entries: Iterable[Entry], path: epath.PathLike) -> None:
    """Write entries as JSONL, one compact object per line, in the given order."""
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for e in entries:
            f.write(json.dumps(e.to_dict(), ensure_ascii=False) + "\n")
