"""ScaNN index wrapper, per-level search and the built-KB directory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rs_jax.kb import index as kb_index
from rs_jax.kb.schema import Entry
from rs_jax.kb.store import BuiltKB, write_built_kb
from tests.fakes import FakeEncoder


def clustered(n: int, dim: int = 32, centres: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim))
    x = c[rng.integers(0, centres, n)] + 0.4 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact(db: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(q @ db.T), axis=1, kind="stable")[:, :k]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])


@pytest.fixture(scope="module")
def table() -> tuple[np.ndarray, np.ndarray]:
    db = clustered(3000)
    return db, clustered(50, seed=1)


def test_tree_ah_recall_vs_brute_force(table):
    db, q = table
    searcher = kb_index.build_index(db, brute_force=False, num_leaves=30, num_leaves_to_search=6)
    ids, scores = kb_index.search(searcher, q, 10)
    assert ids.shape == scores.shape == (50, 10)
    assert recall(ids, exact(db, q, 10)) >= 0.9
    # Reordering is exact, so reported scores are true dot products, best first.
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", q, db[ids]), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_small_tables_are_exact_and_padded():
    db = clustered(40)
    searcher = kb_index.build_index(db)
    assert kb_index.resolve_config(40).kind == "brute_force"
    ids, scores = kb_index.search(searcher, db[:3], 50)
    np.testing.assert_array_equal(ids[:, :40], exact(db, db[:3], 40))
    assert np.all(ids[:, 40:] == -1) and np.all(np.isneginf(scores[:, 40:]))


def test_default_config_scales_with_n():
    big = kb_index.default_config(1_000_000)
    assert big.kind == "tree_ah" and big.num_leaves == 1000
    assert 0 < big.num_leaves_to_search < big.num_leaves and big.reorder >= 10
    assert big.training_sample_size <= 250_000


def test_level_index_returns_only_that_level(table, tmp_path):
    db, q = table
    levels = np.array(["scene", "landcover", "object"])[np.arange(len(db)) % 3]
    index = kb_index.LevelIndex.build(db, levels)
    for level in ("scene", "landcover", "object"):
        ids, _ = index.search(q, level, 10)
        assert (levels[ids] == level).all()
        rows = np.flatnonzero(levels == level)
        assert recall(ids, rows[exact(db[rows], q, 10)]) == 1.0  # 1000 rows: brute force
    merged, merged_scores = index.search(q, None, 10)
    np.testing.assert_array_equal(merged, exact(db, q, 10))
    with pytest.raises(ValueError, match="unknown level 'water'"):
        index.search(q, "water", 3)

    index.save(tmp_path / "idx")
    loaded = kb_index.LevelIndex.load(tmp_path / "idx")
    assert loaded.levels == ("scene", "landcover", "object")
    ids2, scores2 = loaded.search(q, None, 10)
    np.testing.assert_array_equal(ids2, merged)
    np.testing.assert_allclose(scores2, merged_scores, rtol=1e-6)


# ---------------------------------------------------------------------------- store


ENTRIES = [
    Entry("scene/airport", "scene", "airport", "Runways, taxiways and terminals."),
    Entry("scene/farmland", "scene", "farmland", "Fields of crops in regular parcels."),
    Entry("landcover/water", "landcover", "water", "Open water: lakes, rivers, sea."),
    Entry("object/runway", "object", "runway", "Long paved strip where aircraft land."),
    Entry("object/ship", "object", "ship", "A vessel on water."),
]


@pytest.fixture
def built(tmp_path) -> tuple[BuiltKB, FakeEncoder]:
    kb_file = tmp_path / "kb.jsonl"
    kb_file.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in ENTRIES))
    encoder = FakeEncoder()
    emb = encoder.encode([f"{e.name}. {e.description}" for e in ENTRIES])
    kb = write_built_kb(tmp_path / "built", ENTRIES, emb, encoder=encoder, kb_path=kb_file)
    return kb, encoder


def test_store_round_trip(built):
    kb, encoder = built
    names = sorted(p.name for p in kb.path.iterdir())
    assert names == ["embeddings.npy", "entries.jsonl", "metadata.json", "scann"]
    loaded = BuiltKB.load(kb.path, expect_encoder=encoder, expect_dim=64)
    np.testing.assert_array_equal(loaded.embeddings, kb.embeddings)
    assert loaded.entries == ENTRIES
    meta = loaded.metadata
    assert meta["encoder"] == {"name": "fake", "fingerprint": "fp-1", "source": None}
    assert loaded.encoder_source == "fake"
    assert meta["count"] == 5 and meta["dim"] == 64
    assert meta["levels"] == {"scene": 2, "landcover": 1, "object": 2}
    assert len(meta["kb_sha256"]) == 64 and meta["rs_jax_version"]
    hits = loaded.search(encoder.encode(["ship"]), level="object", k=5)[0]
    assert [h.entry.id for h in hits] == ["object/ship", "object/runway"]
    assert hits[0].rank == 1 and hits[0].score == pytest.approx(hits[0].score)
    # Rebuilding over an existing built KB replaces it.
    write_built_kb(kb.path, ENTRIES[:2], kb.embeddings[:2], encoder=encoder)
    assert BuiltKB.load(kb.path).metadata["count"] == 2


def test_encoder_mismatch_names_both_and_the_path(built):
    kb, _ = built
    with pytest.raises(ValueError) as err:
        BuiltKB.load(kb.path, expect_encoder=FakeEncoder(name="other"))
    assert "'fake'" in str(err.value) and "'other'" in str(err.value)
    assert str(kb.path) in str(err.value)
    with pytest.raises(ValueError, match="fingerprint fp-1.*fingerprint fp-2"):
        BuiltKB.load(kb.path, expect_encoder=FakeEncoder(fingerprint="fp-2"))
    with pytest.raises(ValueError, match="'other'"):
        BuiltKB.load(kb.path, expect_encoder="other")


def test_dimension_mismatch(built):
    kb, _ = built
    with pytest.raises(ValueError, match=r"64-dimensional.*but 384 were expected") as err:
        BuiltKB.load(kb.path, expect_dim=384)
    assert str(kb.path) in str(err.value)
    with pytest.raises(ValueError, match="64-dimensional"):
        BuiltKB.load(kb.path, expect_encoder=FakeEncoder(dim=384))


def test_missing_files_are_named(built, tmp_path):
    kb, _ = built
    (kb.path / "embeddings.npy").unlink()
    with pytest.raises(FileNotFoundError, match="missing embeddings.npy"):
        BuiltKB.load(kb.path)
    with pytest.raises(FileNotFoundError, match="not found"):
        BuiltKB.load(tmp_path / "nowhere")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a built KB"):
        write_built_kb(tmp_path / "notes", ENTRIES, kb.embeddings, encoder=FakeEncoder())
