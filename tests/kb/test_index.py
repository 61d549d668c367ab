"""ScaNN index wrapper, per-level search and the built-KB directory."""

from __future__ import annotations

import numpy as np
import pytest

from rs_jax.kb import index as kb_index


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
