"""Building the KB from rs_taxonomies.json: normalisation, determinism, refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rs_jax.kb import build_from_taxonomy as b

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
    assert b.canonical("xView", "Fixed-wing Aircraft") == "airplane"
    assert b.canonical("DOTA-v1.0", "plane") == "airplane"
    assert b.canonical("iSAID", "store_tank") == "storage tank"
    assert b.canonical("EuroSAT", "SeaLake") == "lake"
    # Same spelling, different meaning per nomenclature.
    assert b.canonical("CORINE-Land-Cover-L1", "Water bodies") == "water"
    assert b.canonical("CORINE-Land-Cover-L3", "Water bodies") == "lake"


@needs_taxonomy
def test_build_is_deterministic_and_matches_shipped(tmp_path):
    one, two = tmp_path / "a" / "kb.jsonl", tmp_path / "b" / "kb.jsonl"
    assert b.main(["--taxonomy", str(TAXONOMY), "--out", str(one)]) == 0
    b.build(TAXONOMY, two)
    assert one.read_bytes() == two.read_bytes()
    # The shipped file must be regenerated whenever the tables change.
    assert one.read_bytes() == SHIPPED_KB.read_bytes()


@needs_taxonomy
def test_build_refuses_entries_without_description(tmp_path, monkeypatch):
    desc = dict(b.DESCRIPTIONS)
    del desc["airplane"]
    monkeypatch.setattr(b, "DESCRIPTIONS", desc)
    out = tmp_path / "kb.jsonl"
    with pytest.raises(b.BuildError, match="object/airplane"):
        b.build(TAXONOMY, out)
    assert not out.exists()


@needs_taxonomy
def test_build_refuses_invalid_kb(tmp_path, monkeypatch):
    # A cycle in the hand parent table must be caught by validation before writing.
    parents = dict(b.tables.PARENTS)
    parents["object/airplane"] = "object/boeing 737"
    monkeypatch.setattr(b.tables, "PARENTS", parents)
    out = tmp_path / "kb.jsonl"
    with pytest.raises(b.BuildError, match="parent cycle"):
        b.build(TAXONOMY, out)
    assert not out.exists()


@needs_taxonomy
def test_every_taxonomy_class_lands_in_an_entry():
    taxonomy = json.loads(TAXONOMY.read_text())
    entries = b.build_entries(taxonomy)
    by_name = {e.name for e in entries} | {a for e in entries for a in e.aliases}
    for info in taxonomy["datasets"].values():
        for raw in info["classes"]:
            assert raw in by_name, raw
