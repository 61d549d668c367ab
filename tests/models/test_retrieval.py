import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rs_jax.models.config import KnowledgeConfig, Precision
from rs_jax.models.retrieval import KnowledgeBase, hits_at_k, retrieval_loss
from tests.models.conftest import KB_LEVELS

pytestmark = pytest.mark.usefixtures("model_context")
NAMES = ("scene", "landcover", "object")


def planted_kb(dim: int = 32, k: int = 2, approx: bool = False):
    """12 entries over 3 levels with well-separated random unit embeddings."""
    cfg = KnowledgeConfig(dim=dim, top_k=k, approx=approx, trainable=True)
    kb = KnowledgeBase(KB_LEVELS, cfg, Precision(), rngs=nnx.Rngs(0))
    levels = np.array([NAMES.index(level) for level in KB_LEVELS])
    table = np.random.default_rng(1).normal(size=(len(levels), dim)).astype(np.float32)
    kb.embeddings[...] = jnp.asarray(table)
    return kb, levels, table


@pytest.mark.parametrize("approx", [False, True])
def test_retrieval_returns_planted_entries(approx):
    kb, levels, table = planted_kb(approx=approx)
    rng = np.random.default_rng(2)
    for level in range(3):
        members = np.flatnonzero(levels == level)
        planted = rng.choice(members, size=6)
        query = table[planted] + 0.05 * rng.normal(size=(6, table.shape[1]))
        found = kb.retrieve(jnp.asarray(query, jnp.float32), NAMES[level])
        np.testing.assert_array_equal(np.asarray(found.ids[:, 0]), planted)
        # Only entries of the asked level ever come back.
        assert set(np.asarray(found.ids).ravel()) <= set(members)


def test_retrieval_masks_other_levels():
    kb, levels, table = planted_kb(k=3)
    # The query is an object entry, but asking the scene level must return a scene entry.
    found = kb.retrieve(jnp.asarray(table[9:10]), "scene")
    assert set(np.asarray(found.ids).ravel()) <= set(np.flatnonzero(levels == 0))
    assert np.isneginf(np.asarray(found.all_scores)[0, levels != 0]).all()


def test_retrieval_loss_prefers_the_labelled_entry():
    kb, _, table = planted_kb()
    query = jnp.asarray(table[[1, 2]])
    scores = kb.scores(query, "scene")
    right = retrieval_loss(scores, jnp.array([[1, -1], [2, -1]]))
    wrong = retrieval_loss(scores, jnp.array([[3, -1], [0, -1]]))
    unlabelled = retrieval_loss(scores, jnp.full((2, 2), -1))
    assert float(right) < float(wrong)
    assert float(unlabelled) == 0.0
    grads = jax.grad(
        lambda q: retrieval_loss(kb.scores(q, "scene"), jnp.array([[1, -1], [2, -1]]))
    )(query)
    assert np.isfinite(np.asarray(grads)).all()


def test_hits_at_k():
    ids = jnp.array([[3, 5], [1, 2], [0, 4]])
    labels = jnp.array([[5, -1], [7, 8], [-1, -1]])
    np.testing.assert_array_equal(np.asarray(hits_at_k(ids, labels)), [True, False, False])


def test_hit_at_1_and_hit_at_k_on_hand_made_rows():
    """hit@1 looks at the first retrieved id only, hit@k at all k; -1 label padding never
    matches, not even a retrieved id of -1; a row without labels is never a hit."""
    ids = jnp.array(
        [
            [4, 9, 2],  # label 4 first: hit@1 and hit@k
            [9, 2, 7],  # label 7 third: hit@k only
            [9, 2, 3],  # labels 5, 6: neither
            [0, 1, 2],  # no label at all
            [-1, 8, 2],  # a -1 id against -1 label padding: still no hit at 1; 8 at k
            [6, 6, 6],  # repeated id equal to the second label
        ]
    )
    labels = jnp.array([[4, -1, -1], [1, 7, -1], [5, 6, -1], [-1, -1, -1], [8, -1, -1], [0, 6, 1]])
    hit_1 = np.asarray(hits_at_k(ids[:, :1], labels))
    hit_k = np.asarray(hits_at_k(ids, labels))
    np.testing.assert_array_equal(hit_1, [True, False, False, False, False, True])
    np.testing.assert_array_equal(hit_k, [True, True, False, False, True, True])
    # Aggregated as the evaluator does: over rows with a label (5 of 6).
    labelled = np.asarray((labels >= 0).any(-1))
    assert (hit_1 & labelled).sum() / labelled.sum() == 2 / 5
    assert (hit_k & labelled).sum() / labelled.sum() == 4 / 5


@pytest.mark.parametrize("level", range(3))
def test_exact_top_k_equals_numpy_argsort(level):
    """Exact retrieval (kb.approx off) returns numpy's descending argsort of the scaled cosine
    scores within the level, for every k up to the level's size (the documented maximum:
    build_model rejects a larger top_k), with those scores."""
    _, levels, table = planted_kb()
    members = np.flatnonzero(levels == level)
    query = np.random.default_rng(3).normal(size=(5, table.shape[1]))
    # Logit scale starts at log(10): scores are 10 x cosine similarity.
    cosine = (query / np.linalg.norm(query, axis=1, keepdims=True)) @ (
        table / np.linalg.norm(table, axis=1, keepdims=True)
    ).T
    want_order = members[np.argsort(-cosine[:, members], axis=1, kind="stable")]
    for k in range(1, len(members) + 1):
        kb, _, _ = planted_kb(k=k)
        found = kb.retrieve(jnp.asarray(query, jnp.float32), NAMES[level])
        np.testing.assert_array_equal(np.asarray(found.ids), want_order[:, :k])
        want_scores = 10 * np.take_along_axis(cosine, want_order[:, :k], axis=1)
        np.testing.assert_allclose(np.asarray(found.scores), want_scores, rtol=1e-4, atol=1e-4)
