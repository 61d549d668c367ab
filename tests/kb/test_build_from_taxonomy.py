"""Building the KB from rs_taxonomies.json: normalisation, determinism, refusals."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from rs_jax.kb import build_from_taxonomy as b
from rs_jax.kb.curation import load_descriptions, load_tables

REPO = Path(__file__).resolve().parents[2]
SHIPPED_KB = REPO / "rs_jax" / "kb" / "data" / "rs_kb.jsonl"
SHARED = Path(os.environ.get("RS_JAX_SHARED_DATA", REPO.parent / "shared" / "data"))
TAXONOMY = SHARED / "rs_taxonomies.json"

needs_taxonomy = pytest.mark.skipif(
    not TAXONOMY.is_file(), reason=f"{TAXONOMY} absent (set RS_JAX_SHARED_DATA)"
)


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("StorageTanks", "storage tank"),
        ("baseball_diamond", "baseball diamond"),
        ("Ground_Track_Field", "ground track field"),
        ("Truck w/Box", "truck with box"),
        ("Shrub & Scrub", "shrub and scrub"),
        ("Estuaries", "estuary"),
        ("Inland marshes", "inland marsh"),
        ("Boeing737", "boeing737"),
        ("glass", "glass"),
    ],
)
def test_normalise(raw, norm):
    assert b.normalise(raw) == norm


def test_canonical_uses_synonym_tables():
    tables = load_tables()
    assert b.canonical("xView", "Fixed-wing Aircraft", tables) == "airplane"
    assert b.canonical("DOTA-v1.0", "plane", tables) == "airplane"
    assert b.canonical("iSAID", "store_tank", tables) == "storage tank"
    assert b.canonical("EuroSAT", "SeaLake", tables) == "lake"
    # Same spelling, different meaning per nomenclature.
    assert b.canonical("CORINE-Land-Cover-L1", "Water bodies", tables) == "water"
    assert b.canonical("CORINE-Land-Cover-L3", "Water bodies", tables) == "lake"


@needs_taxonomy
def test_build_is_deterministic_and_matches_shipped(tmp_path):
    one, two = tmp_path / "a" / "kb.jsonl", tmp_path / "b" / "kb.jsonl"
    assert b.main(["--taxonomy", str(TAXONOMY), "--out", str(one)]) == 0
    b.build(TAXONOMY, two)
    assert one.read_bytes() == two.read_bytes()
    # The shipped file must be regenerated whenever the tables change.
    assert one.read_bytes() == SHIPPED_KB.read_bytes()


@needs_taxonomy
def test_build_refuses_entries_without_description(tmp_path):
    descriptions = load_descriptions()
    del descriptions["object"]["airplane"]
    out = tmp_path / "kb.jsonl"
    with pytest.raises(b.BuildError, match="no description for: object/airplane"):
        b.build(TAXONOMY, out, descriptions=descriptions)
    assert not out.exists()


@needs_taxonomy
def test_build_refuses_descriptions_of_unknown_entries(tmp_path):
    # A description filed under the wrong level would otherwise go unused.
    descriptions = load_descriptions()
    descriptions["scene"]["storage tank"] = descriptions["object"]["storage tank"]
    with pytest.raises(b.BuildError, match="unknown entries: scene/storage tank"):
        b.build(TAXONOMY, tmp_path / "kb.jsonl", descriptions=descriptions)


@needs_taxonomy
def test_build_refuses_invalid_kb(tmp_path):
    # A cycle in the hand parent table must be caught by validation before writing.
    tables = load_tables()
    parents = {**tables.parents, "object/airplane": "object/boeing 737"}
    out = tmp_path / "kb.jsonl"
    with pytest.raises(b.BuildError, match="parent cycle"):
        b.build(TAXONOMY, out, tables=dataclasses.replace(tables, parents=parents))
    assert not out.exists()


@needs_taxonomy
def test_every_taxonomy_class_lands_in_an_entry():
    taxonomy = json.loads(TAXONOMY.read_text())
    entries = b.build_entries(taxonomy, load_tables(), load_descriptions())
    by_name = {e.name for e in entries} | {a for e in entries for a in e.aliases}
    for info in taxonomy["datasets"].values():
        for raw in info["classes"]:
            assert raw in by_name, raw
