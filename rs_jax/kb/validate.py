"""Validate a JSONL knowledge-base file and report every problem with its line.

Rules (also in docs/knowledge_base.md):
  * each line is a JSON object with the `Entry` fields; id, level, name and
    description are required, the rest optional; no other keys;
  * level is one of LEVELS and the id starts with "<level>/";
  * ids are unique; names are unique within a level (case and punctuation
    ignored), and a name may not equal another same-level entry's alias;
  * name and description are non-empty, name is lower case;
  * parent and contains ids exist; parent links have no cycles;
  * a parent has the same level as its child (parent means "is a"; a scene is
    never a kind of object), while `contains` may cross levels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from etils import epath

from rs_jax.kb.schema import FIELD_NAMES, LEVELS, REQUIRED_FIELDS

_STR_LIST = ("aliases", "contains", "sources")
_STR = ("id", "level", "name", "description")


@dataclass(frozen=True)
class Problem:
    """One validation problem. line is 1-based (0: the file as a whole)."""

    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field '{self.field}'" if self.field else "")
        return f"{where}: {self.message}"


class KBValidationError(ValueError):
    """A knowledge-base file failed validation; `problems` lists why."""

    def __init__(self, path: epath.PathLike, problems: Sequence[Problem]):
        self.path = str(path)
        self.problems = list(problems)
        super().__init__(f"{path}: {len(self.problems)} problem(s)\n{format_problems(problems)}")


def format_problems(problems: Sequence[Problem], path: epath.PathLike | None = None) -> str:
    """One problem per line, optionally prefixed by the file path."""
    prefix = f"{path}: " if path is not None else ""
    return "\n".join(prefix + str(p) for p in problems)


def _fold(s: str) -> str:
    # Names differing only by case or separators ("Storage-Tank") are the same name.
    return re.sub(r"[^0-9a-z]+", " ", s.lower()).strip()


def _type_problems(lineno: int, d: dict) -> list[Problem]:
    out = []
    for k in _STR:
        if k in d and not isinstance(d[k], str):
            out.append(Problem(lineno, k, f"must be a string, got {type(d[k]).__name__}"))
    for k in _STR_LIST:
        if k in d and not (isinstance(d[k], list) and all(isinstance(x, str) for x in d[k])):
            out.append(Problem(lineno, k, "must be a list of strings"))
    if "parent" in d and d["parent"] is not None and not isinstance(d["parent"], str):
        out.append(Problem(lineno, "parent", "must be a string id or null"))
    depth = d.get("depth")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        out.append(Problem(lineno, "depth", "must be a positive integer or null"))
    return out


def validate_kb_file(path: epath.PathLike, *, known_ids: Iterable[str] = ()) -> list[Problem]:
    """All problems in a JSONL KB file, in line order; [] if it is valid.

    known_ids: ids defined elsewhere (e.g. the shipped KB when validating an
    extension file) that parent/contains may refer to.
    """
    problems: list[Problem] = []
    rows: list[tuple[int, dict]] = []
    try:
        with epath.Path(path).open() as f:
            lines = list(enumerate(f, start=1))
    except UnicodeDecodeError as e:
        # The decoder's own message names neither the file nor what to do.
        raise ValueError(
            f"{path}: not UTF-8 text ({e.reason}); a knowledge base is JSON lines in UTF-8"
        ) from None
    for lineno, line in lines:
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(Problem(lineno, None, f"bad JSON: {e.msg} (column {e.colno})"))
            continue
        if not isinstance(d, dict):
            problems.append(Problem(lineno, None, "line is not a JSON object"))
            continue
        for k in REQUIRED_FIELDS:
            if k not in d:
                problems.append(Problem(lineno, k, "missing required field"))
        for k in sorted(set(d) - set(FIELD_NAMES)):
            problems.append(Problem(lineno, k, "unknown field"))
        bad_types = _type_problems(lineno, d)
        problems += bad_types
        bad = {p.field for p in bad_types}
        # Keep only well-typed fields for the cross-entry checks below.
        rows.append((lineno, {k: v for k, v in d.items() if k in FIELD_NAMES and k not in bad}))
    if not rows and not problems:
        problems.append(Problem(0, None, "file has no entries"))

    first_line: dict[str, int] = {}
    level_of: dict[str, str] = {}
    for lineno, d in rows:
        level, eid, name = d.get("level"), d.get("id"), d.get("name")
        if level is not None and level not in LEVELS:
            problems.append(Problem(lineno, "level", f"unknown level {level!r}; one of {LEVELS}"))
        if eid is not None:
            if not eid.strip():
                problems.append(Problem(lineno, "id", "empty id"))
            elif eid in first_line:
                problems.append(
                    Problem(lineno, "id", f"duplicate id {eid!r} (first on line {first_line[eid]})")
                )
            else:
                first_line[eid] = lineno
                level_of[eid] = level
            if level in LEVELS and not eid.startswith(f"{level}/"):
                problems.append(Problem(lineno, "id", f"id must start with '{level}/'"))
        if name is not None:
            if not name.strip():
                problems.append(Problem(lineno, "name", "empty name"))
            elif name != name.lower():
                problems.append(Problem(lineno, "name", "name must be lower case"))
        if "description" in d and not d["description"].strip():
            problems.append(Problem(lineno, "description", "empty description"))
        if any(not a.strip() for a in d.get("aliases", [])):
            problems.append(Problem(lineno, "aliases", "empty alias"))

    problems += _name_conflicts(rows)
    problems += _link_problems(rows, first_line, level_of, set(known_ids))
    problems.sort(key=lambda p: p.line)
    return problems


def _name_conflicts(rows: list[tuple[int, dict]]) -> list[Problem]:
    out = []
    names: dict[tuple[str, str], tuple[int, str]] = {}  # (level, folded) -> (line, id)
    for lineno, d in rows:
        name = d.get("name")
        if not name or not name.strip():
            continue
        key = (d.get("level"), _fold(name))
        if key in names:
            out.append(
                Problem(
                    lineno,
                    "name",
                    f"duplicate name {name!r} at level {key[0]!r} (first on line {names[key][0]})",
                )
            )
        else:
            names[key] = (lineno, d.get("id"))
    for lineno, d in rows:
        for a in d.get("aliases", []):
            hit = names.get((d.get("level"), _fold(a)))
            if hit is not None and hit[1] != d.get("id") and hit[0] != lineno:
                out.append(
                    Problem(
                        lineno, "aliases", f"alias {a!r} is the name of {hit[1]!r} (line {hit[0]})"
                    )
                )
    return out


def _link_problems(
    rows: list[tuple[int, dict]],
    first_line: dict[str, int],
    level_of: dict[str, str],
    known: set[str],
) -> list[Problem]:
    out = []
    parent_of: dict[str, str] = {}
    for lineno, d in rows:
        eid, parent = d.get("id"), d.get("parent")
        if parent is not None:
            if parent == eid:
                out.append(Problem(lineno, "parent", "entry is its own parent"))
            elif parent not in first_line and parent not in known:
                out.append(Problem(lineno, "parent", f"unknown parent id {parent!r}"))
            elif (
                level_of.get(parent) in LEVELS
                and d.get("level") in LEVELS
                and level_of[parent] != d.get("level")
            ):
                out.append(
                    Problem(
                        lineno,
                        "parent",
                        f"parent {parent!r} is at level "
                        f"{level_of[parent]!r}, entry at "
                        f"{d.get('level')!r}; parent means 'is a' "
                        "and must share the level",
                    )
                )
            if eid is not None and first_line.get(eid) == lineno:
                parent_of[eid] = parent
        for c in d.get("contains", []):
            if c == eid:
                out.append(Problem(lineno, "contains", "entry contains itself"))
            elif c not in first_line and c not in known:
                out.append(Problem(lineno, "contains", f"unknown id {c!r}"))
    # Cycle detection: walk up from each entry; report each cycle once, on its first line.
    reported: set[str] = set()
    for start in parent_of:
        seen: list[str] = []
        node: str | None = start
        while node is not None and node in parent_of and node not in seen:
            seen.append(node)
            node = parent_of[node]
        if node is not None and node in seen:
            cycle = seen[seen.index(node) :]
            if not reported & set(cycle) and len(cycle) > 1:
                reported |= set(cycle)
                first = min(cycle, key=lambda i: first_line[i])
                path = " -> ".join(
                    [*cycle[cycle.index(first) :], *cycle[: cycle.index(first)], first]
                )
                out.append(Problem(first_line[first], "parent", f"parent cycle: {path}"))
    return out


def check_kb_file(path: epath.PathLike, *, known_ids: Iterable[str] = ()) -> None:
    """Raise KBValidationError listing every problem if the file is invalid."""
    problems = validate_kb_file(path, known_ids=known_ids)
    if problems:
        raise KBValidationError(path, problems)
