"""The answer loss: vocabulary-chunked cross-entropy against optax on full logits."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rs_jax.models.config import Precision
from rs_jax.train.losses import vocab_cross_entropy


def problem(n=24, d=16, v=50, seed=0):
    rng = np.random.default_rng(seed)
    hidden = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
    head = jnp.asarray(rng.normal(size=(d, v)) / 4, jnp.float32)
    labels = jnp.asarray(rng.integers(0, v, n), jnp.int32)
    return hidden, head, labels


def reference(hidden, head, labels):
    logits = hidden @ head
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels), logits.argmax(-1)


# 0 and 50: one chunk; 7 does not divide 50 (the last chunk overlaps and is masked).
@pytest.mark.parametrize("chunk", [0, 7, 16, 50, 64])
def test_chunked_cross_entropy_equals_full_logits(chunk):
    hidden, head, labels = problem()
    loss, prediction = vocab_cross_entropy(hidden, head, labels, Precision(), chunk)
    want_loss, want_prediction = reference(hidden, head, labels)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(prediction, want_prediction)

    def total(fn):
        return lambda h, w: fn(h, w)[0].sum()

    grads = jax.grad(
        total(lambda h, w: vocab_cross_entropy(h, w, labels, Precision(), chunk)), argnums=(0, 1)
    )(hidden, head)
    want = jax.grad(total(lambda h, w: reference(h, w, labels)), argnums=(0, 1))(hidden, head)
    for got, expected in zip(grads, want, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_chunks_never_hold_the_whole_vocabulary():
    """With chunk 16 of 4096 entries no [N, V] array appears in the compiled gradient."""
    hidden, head, labels = problem(n=8, d=16, v=4096)
    grad = jax.jit(
        jax.grad(lambda h: vocab_cross_entropy(h, head, labels, Precision(), 16)[0].sum())
    )
    hlo = grad.lower(hidden).compile().as_text()
    assert "f32[8,4096]" not in hlo and "f32[8,16]" in hlo


def test_bfloat16_operands_accumulate_in_float32():
    hidden, head, labels = problem(v=300)
    bf16 = Precision(jnp.bfloat16, jnp.float32)
    loss, _ = vocab_cross_entropy(hidden, head, labels, bf16, 64)
    assert loss.dtype == jnp.float32
    rounded = reference(
        hidden.astype(jnp.bfloat16).astype(jnp.float32),
        head.astype(jnp.bfloat16).astype(jnp.float32),
        labels,
    )[0]
    np.testing.assert_allclose(loss, rounded, rtol=1e-4, atol=1e-4)
