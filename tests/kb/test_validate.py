"""KB schema round trip and every validation rule, with line numbers and fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rs_jax.kb.schema import Entry, entry_text, load_kb, make_id, write_kb
from rs_jax.kb.validate import (
    KBValidationError,
    Problem,
    check_kb_file,
    format_problems,
    validate_kb_file,
)


def _e(level: str, name: str, /, **kw) -> dict:
    d = {
        "id": make_id(level, name),
        "level": level,
        "name": name,
        "description": f"How a {name} looks from above.",
    }
    d.update(kw)
    return d


GOOD = [
    _e("scene", "airport", contains=["object/airplane", "object/runway"]),
    _e("object", "airplane", aliases=["plane"]),
    _e("object", "boeing 737", parent="object/airplane", sources=["FAIR1M"]),
    _e("object", "runway"),
]


def _write(tmp_path: Path, rows: list) -> Path:
    path = tmp_path / "kb.jsonl"
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, format_problems(problems)
    return problems[0]


def test_good_file_has_no_problems_and_round_trips(tmp_path):
    path = _write(tmp_path, GOOD)
    assert validate_kb_file(path) == []
    check_kb_file(path)
    entries = load_kb(path)
    assert [e.id for e in entries] == [r["id"] for r in GOOD]
    assert entries[2].parent == "object/airplane" and entries[1].aliases == ["plane"]
    out = tmp_path / "again.jsonl"
    write_kb(entries, out)
    assert load_kb(out) == entries


def test_entry_text_has_name_aliases_description_once():
    e = Entry(
        id="object/storage_tank",
        level="object",
        name="storage tank",
        description="A white circle.",
        aliases=["storage-tank", "Oiltank", "oiltank"],
    )
    assert entry_text(e) == "storage tank (also: Oiltank). A white circle."


@pytest.mark.parametrize(
    ("rows", "line", "field", "needle"),
    [
        ([GOOD[1], "{not json"], 2, None, "bad JSON"),
        ([GOOD[1], "[1, 2]"], 2, None, "not a JSON object"),
        (
            [GOOD[1], {k: v for k, v in _e("object", "ship").items() if k != "description"}],
            2,
            "description",
            "missing",
        ),
        ([GOOD[1], _e("object", "ship", colour="grey")], 2, "colour", "unknown field"),
        ([GOOD[1], _e("object", "ship", aliases="boat")], 2, "aliases", "list of strings"),
        ([GOOD[1], _e("object", "ship", name=3)], 2, "name", "must be a string"),
        ([GOOD[1], _e("object", "ship", parent=["object/airplane"])], 2, "parent", "string id"),
        ([GOOD[1], _e("object", "ship", depth="2")], 2, "depth", "positive integer"),
        (
            [GOOD[1], _e("object", "ship"), _e("object", "boat", id="object/ship")],
            3,
            "id",
            "duplicate id",
        ),
        ([GOOD[1], _e("object", "Boat", id="object/boat")], 2, "name", "lower case"),
        (
            [GOOD[1], _e("object", "storage tank"), _e("object", "storage-tank", id="object/st2")],
            3,
            "name",
            "duplicate name",
        ),
        ([GOOD[1], _e("object", "aircraft", aliases=["Airplane"])], 2, "aliases", "is the name of"),
        (
            [GOOD[1], _e("object", "ship", level="thing", id="thing/ship")],
            2,
            "level",
            "unknown level",
        ),
        ([GOOD[1], _e("object", "ship", id="scene/ship")], 2, "id", "must start with"),
        ([GOOD[1], _e("object", "ship", parent="object/boat")], 2, "parent", "unknown parent"),
        ([GOOD[1], _e("scene", "port", contains=["object/crane"])], 2, "contains", "unknown id"),
        ([GOOD[1], _e("object", "ship", parent="object/ship")], 2, "parent", "its own parent"),
        (
            [GOOD[1], _e("object", "ship", contains=["object/ship"])],
            2,
            "contains",
            "contains itself",
        ),
        (
            [GOOD[1], _e("scene", "airfield", parent="object/airplane")],
            2,
            "parent",
            "must share the level",
        ),
        ([GOOD[1], _e("object", "ship", name="  ")], 2, "name", "empty name"),
        ([GOOD[1], _e("object", "ship", description="")], 2, "description", "empty description"),
        ([GOOD[1], _e("object", "ship", aliases=[""])], 2, "aliases", "empty alias"),
    ],
)
def test_each_problem_is_reported_at_its_line_and_field(tmp_path, rows, line, field, needle):
    p = _only(validate_kb_file(_write(tmp_path, rows)))
    assert (p.line, p.field) == (line, field)
    assert needle in p.message


def test_parent_cycle_reported_once_on_first_line(tmp_path):
    rows = [
        GOOD[1],
        _e("object", "a", parent="object/c"),
        _e("object", "b", parent="object/a"),
        _e("object", "c", parent="object/b"),
    ]
    p = _only(validate_kb_file(_write(tmp_path, rows)))
    assert (p.line, p.field) == (2, "parent")
    assert "cycle" in p.message and "object/a" in p.message


def test_same_name_at_different_levels_is_allowed(tmp_path):
    rows = [_e("scene", "forest"), _e("landcover", "forest")]
    assert validate_kb_file(_write(tmp_path, rows)) == []


def test_known_ids_resolve_references_to_another_kb(tmp_path):
    path = _write(tmp_path, [_e("object", "boeing 737", parent="object/airplane")])
    assert _only(validate_kb_file(path)).field == "parent"
    assert validate_kb_file(path, known_ids={"object/airplane"}) == []


def test_empty_file_is_a_problem(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    assert _only(validate_kb_file(path)).line == 0


def test_problems_sorted_by_line_and_all_listed_in_error(tmp_path):
    rows = [
        _e("object", "ship", parent="object/nope"),
        "{",
        _e("object", "boat", id="object/ship"),
    ]
    path = _write(tmp_path, rows)
    problems = validate_kb_file(path)
    assert [p.line for p in problems] == [1, 2, 3]
    with pytest.raises(KBValidationError) as info:
        check_kb_file(path)
    assert isinstance(info.value, ValueError)
    assert info.value.problems == problems
    text = str(info.value)
    assert "line 1, field 'parent'" in text and "line 2" in text and "line 3, field 'id'" in text
    assert format_problems(problems, "kb.jsonl").startswith("kb.jsonl: line 1")
