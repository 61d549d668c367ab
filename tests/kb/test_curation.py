"""Loading the hand-curated KB data: the shipped files, and one-line errors for bad ones."""

from __future__ import annotations

import json
import re

import pytest

from rs_jax.kb import curation
from rs_jax.kb.schema import LEVELS


def _tables(**changes) -> dict:
    tables = json.loads(curation.TABLES_FILE.read_text(encoding="utf-8"))
    return {**tables, **changes}


def _write(tmp_path, content) -> str:
    path = tmp_path / "data.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def _error(load, path) -> str:
    with pytest.raises(curation.CurationError) as e:
        load(path)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def test_shipped_files_load():
    descriptions = curation.load_descriptions()
    assert set(descriptions) == set(LEVELS)
    assert "runway" in descriptions["object"]
    tables = curation.load_tables()
    assert tables.dataset_synonyms["CORINE-Land-Cover-L3"]["Water bodies"] == "lake"
    assert tables.parents["object/bridge"] is None
    assert tables.extras["landcover"]["salt flat"] == ["salt pan", "playa"]


@pytest.mark.parametrize(
    ("content", "where", "problem"),
    [
        ({"scenes": {"airport": "Runways."}}, "['scenes']", "unknown level 'scenes'"),
        ({"object": {"ship": 3}}, "['object']['ship']", "expected a non-empty string, got int 3"),
        ({"object": {"ship": ""}}, "['object']['ship']", "expected a non-empty string"),
        ({"object": ["ship"]}, "['object']", "expected an object, got a list"),
        ('{"object": {"ship": "A hull.", "ship": "A boat."}}', "['object']['ship']", "duplicate"),
    ],
)
def test_bad_descriptions_name_file_and_key(tmp_path, content, where, problem):
    message = _error(curation.load_descriptions, _write(tmp_path, content))
    assert f": {where}: " in message and problem in message


@pytest.mark.parametrize(
    ("changes", "where", "problem"),
    [
        ({"level_overrides": {"runway": "objects"}}, "level_overrides['runway']", "unknown level"),
        ({"parents": {"object/ship": 7}}, "parents['object/ship']", "got int 7"),
        ({"parents": {"ship": None}}, "parents['ship']", "is not 'level/name'"),
        ({"contains": {"scene/port": ["harbor"]}}, "contains['scene/port'][0]", "'level/name'"),
        ({"extras": {"object": {"pier": "jetty"}}}, "extras['object']['pier']", "expected a list"),
        ({"dataset_synonyms": {"EuroSAT": {"SeaLake": None}}}, "['SeaLake']", "got null"),
        ({"colours": {}}, "colours", "unknown table"),
    ],
)
def test_bad_tables_name_file_and_key(tmp_path, changes, where, problem):
    message = _error(curation.load_tables, _write(tmp_path, _tables(**changes)))
    assert where in message and problem in message


def test_tables_duplicates_missing_tables_and_bad_json(tmp_path):
    text = json.dumps(_tables())
    dup = text[:-1] + ', "synonyms": {}}'
    assert "synonyms: duplicate key" in _error(curation.load_tables, _write(tmp_path, dup))
    within = text.replace('"plane": "airplane"', '"plane": "airplane", "plane": "aircraft"')
    message = _error(curation.load_tables, _write(tmp_path, within))
    assert "synonyms['plane']: duplicate key" in message
    tables = _tables()
    del tables["contains"]
    assert "missing table(s) contains" in _error(curation.load_tables, _write(tmp_path, tables))
    message = _error(curation.load_tables, _write(tmp_path, '{"synonyms": {'))
    assert re.search(r": line 1: invalid JSON", message)
