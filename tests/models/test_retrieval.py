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
    cfg = KnowledgeConfig(dim, k, approx, 0.95, True, False, 0.1)
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
