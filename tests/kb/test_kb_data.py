"""The shipped knowledge base: valid, large enough, and sensible on spot checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rs_jax.kb.schema import LEVELS, Entry, load_kb
from rs_jax.kb.validate import validate_kb_file

SHIPPED_KB = Path(__file__).resolve().parents[2] / "rs_jax" / "kb" / "data" / "rs_kb.jsonl"


@pytest.fixture(scope="module")
def kb() -> dict[str, Entry]:
    return {e.id: e for e in load_kb(SHIPPED_KB)}


def test_shipped_kb_validates():
    assert validate_kb_file(SHIPPED_KB) == []


def test_size_and_levels(kb):
    assert len(kb) >= 400
    counts = {lv: sum(e.level == lv for e in kb.values()) for lv in LEVELS}
    assert all(n >= 50 for n in counts.values()), counts


def test_airplane_merges_spellings_across_datasets(kb):
    plane = kb["object/airplane"]
    assert {"plane", "Fixed-wing Aircraft"} <= set(plane.aliases)
    assert {"DOTA-v1.0", "DIOR", "xView"} <= set(plane.sources)


def test_aircraft_models_are_airplanes(kb):
    boeings = [e for e in kb.values() if e.name.startswith("boeing")]
    assert boeings
    assert all(e.parent == "object/airplane" for e in boeings)


def test_fine_grained_parents(kb):
    assert kb["object/oil_tanker"].parent == "object/liquid_cargo_ship"
    assert kb["object/liquid_cargo_ship"].parent == "object/ship"
    assert kb["object/dump_truck"].parent == "object/truck"
    assert kb["object/small_car"].parent == "object/small_vehicle"


def test_airport_contains_runway_and_airplane(kb):
    assert {"object/runway", "object/airplane"} <= set(kb["scene/airport"].contains)


def test_corine_hierarchy(kb):
    # L3 -> L2 -> L1, depth recorded; "Pastures" exists at L2 and L3 and is one entry.
    conif = kb["landcover/coniferous_forest"]
    assert conif.depth == 3 and conif.parent == "landcover/forest"
    assert kb["landcover/forest"].depth == 2
    assert kb["landcover/forest"].parent == "landcover/forest_and_semi_natural_areas"
    assert kb["landcover/pasture"].parent == "landcover/agricultural_areas"
    assert kb["landcover/lake"].parent == "landcover/inland_waters"
    assert kb["landcover/inland_waters"].parent == "landcover/water"


def test_synonyms_merged(kb):
    assert "storagetank" in kb["object/storage_tank"].aliases
    assert "SeaLake" in kb["landcover/lake"].aliases
    assert "groundtrackfield" in kb["object/ground_track_field"].aliases
    assert len(kb["object/storage_tank"].sources) > 5


def test_descriptions_are_specific(kb):
    texts = [e.description for e in kb.values()]
    assert len(set(texts)) == len(texts), "two entries share a description"
    for e in kb.values():
        sentences = len(re.findall(r"[.!?](\s|$)", e.description))
        assert 1 <= sentences <= 3, e.id
        assert not e.description.lower().startswith(("an image of", "a photo of")), e.id


def test_sources_and_sorted_output(kb):
    ids = list(kb)
    assert ids == sorted(ids, key=lambda i: (LEVELS.index(i.split("/")[0]), i))
    assert all(e.sources for e in kb.values())
