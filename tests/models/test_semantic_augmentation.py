"""Semantic augmentation: the retrieval query from the level's tokens and the prompt (a
numpy reference), padding in the prompt ignored, host-chosen entries used as given."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rs_jax.models.config import KnowledgeConfig, Precision
from rs_jax.models.retrieval import KnowledgeBase
from rs_jax.models.semantic_augmentation import SemanticAugmentation

LEVELS = ("scene",) * 3 + ("object",) * 4
KB = KnowledgeConfig(
    dim=6,
    top_k=2,
    approx=False,
    recall_target=0.95,
    trainable=True,
    adapter=False,
    retrieval_loss_weight=1.0,
)


@pytest.fixture
def parts(model_context):
    rngs = nnx.Rngs(0)
    kb = KnowledgeBase(LEVELS, KB, Precision(), rngs=rngs)
    augment = SemanticAugmentation(8, 5, KB, 2, Precision(), rngs=rngs)
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(3, 4, 8)).astype(np.float32)
    prompt = rng.normal(size=(3, 6, 5)).astype(np.float32)
    mask = np.ones((3, 6), np.int32)
    mask[0, :2] = 0  # left padding
    mask[2, :5] = 0
    return kb, augment, tokens, prompt, mask


def dense(layer, x):
    return x @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])


def test_query_and_scores_equal_numpy(parts):
    """query = W [mean of the level's tokens; masked mean of the projected prompt]; scores
    are cosine similarities times exp(logit_scale) within the level; top-k by score."""
    kb, augment, tokens, prompt, mask = parts
    _, found = augment(jnp.asarray(tokens), jnp.asarray(prompt), jnp.asarray(mask), kb, "object")
    projected = dense(augment.prompt_proj, prompt)
    prompt_mean = (projected * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    query = dense(augment.query_proj, np.concatenate([tokens.mean(1), prompt_mean], -1))
    table = np.asarray(kb.embeddings[...])
    cosine = (query / np.linalg.norm(query, axis=-1, keepdims=True)) @ (
        table / np.linalg.norm(table, axis=-1, keepdims=True)
    ).T
    scores = cosine * np.exp(float(kb.logit_scale[...]))
    objects = np.flatnonzero(np.asarray(LEVELS) == "object")
    best = objects[np.argsort(-scores[:, objects], axis=1)[:, :2]]
    np.testing.assert_array_equal(np.asarray(found.ids), best)
    np.testing.assert_allclose(
        np.asarray(found.scores), np.take_along_axis(scores, best, 1), atol=1e-5
    )
    assert np.isneginf(np.asarray(found.all_scores)[:, :3]).all()  # other levels' entries


def test_padded_prompt_positions_change_nothing(parts):
    kb, augment, tokens, prompt, mask = parts
    out, found = augment(jnp.asarray(tokens), jnp.asarray(prompt), jnp.asarray(mask), kb, "scene")
    noisy = np.where(mask[..., None] > 0, prompt, 100.0).astype(np.float32)
    out2, found2 = augment(jnp.asarray(tokens), jnp.asarray(noisy), jnp.asarray(mask), kb, "scene")
    np.testing.assert_allclose(np.asarray(out2), np.asarray(out), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(found2.ids), np.asarray(found.ids))
    changed = prompt.copy()
    changed[1, 0] += 1.0  # a real token of row 1
    out3, _ = augment(jnp.asarray(tokens), jnp.asarray(changed), jnp.asarray(mask), kb, "scene")
    assert np.abs(np.asarray(out3)[1] - np.asarray(out)[1]).max() > 1e-4


def test_host_chosen_entries_are_used_and_scored(parts):
    kb, augment, tokens, prompt, mask = parts
    args = (jnp.asarray(tokens), jnp.asarray(prompt), jnp.asarray(mask), kb, "scene")
    own_out, own = augment(*args)
    chosen = np.array([[2, 0], [1, 2], [0, 1]], np.int32)
    out, found = augment(*args, ids=jnp.asarray(chosen))
    np.testing.assert_array_equal(np.asarray(found.ids), chosen)
    np.testing.assert_allclose(
        np.asarray(found.scores), np.take_along_axis(np.asarray(own.all_scores), chosen, 1)
    )
    # Other cues, other result: the cues reach the tokens.
    assert np.abs(np.asarray(out) - np.asarray(own_out)).max() > 1e-4
