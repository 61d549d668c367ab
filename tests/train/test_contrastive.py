"""The sigmoid image-text loss: a numpy reference, and the chunked ring equal to the whole
batch on 8 simulated devices, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rs_jax.sharding import make_mesh
from rs_jax.train.contrastive import chunked_sigmoid_loss, sigmoid_loss


def numpy_sigmoid_loss(images, texts, image_labels, text_labels, log_t, bias):
    """SigLIP's loss written out pair by pair."""
    images = images / np.linalg.norm(images, axis=-1, keepdims=True)
    texts = texts / np.linalg.norm(texts, axis=-1, keepdims=True)
    total = 0.0
    for i, image in enumerate(images):
        for j, text in enumerate(texts):
            if image_labels[i] < 0 or text_labels[j] < 0:
                continue  # no label: in no pair
            logit = np.exp(log_t) * float(image @ text) + bias
            sign = 1.0 if image_labels[i] == text_labels[j] else -1.0
            total += np.log1p(np.exp(-sign * logit))  # -log sigmoid(sign * logit)
    return total / np.sum(image_labels >= 0)


def _batch(seed, n=16, dim=8):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, dim)).astype(np.float32)
    texts = rng.normal(size=(n, dim)).astype(np.float32)
    # Classes shared by several images; an image and a text without a label.
    labels = rng.integers(0, 5, n).astype(np.int32)
    image_labels, text_labels = labels.copy(), labels.copy()
    image_labels[3] = text_labels[9] = -1
    return images, texts, image_labels, text_labels


@pytest.mark.parametrize("log_t, bias", [(np.log(10.0), -10.0), (0.5, 1.5)])
def test_loss_equals_the_numpy_reference(log_t, bias):
    images, texts, image_labels, text_labels = _batch(0)
    got = sigmoid_loss(images, texts, image_labels, text_labels, jnp.float32(log_t), bias)
    want = numpy_sigmoid_loss(images, texts, image_labels, text_labels, log_t, bias)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_paired_texts_at_init_give_siglips_starting_loss():
    """Unrelated embeddings, SigLIP's init (t = 10, b = -10), one positive per image: about
    log(1 + e^10) for the positive and log(1 + e^-10) for each of the B - 1 negatives."""
    n = 16
    images, texts, _, _ = _batch(1, n=n, dim=256)
    ids = np.arange(n, dtype=np.int32)
    loss = float(sigmoid_loss(images, texts, ids, ids, jnp.log(10.0), -10.0))
    assert loss == pytest.approx(np.log1p(np.exp(10.0)) + (n - 1) * np.log1p(np.exp(-10.0)), 0.1)


@pytest.mark.parametrize("mesh_shape", [{"data": 8}, {"data": 2, "fsdp": 4}])
def test_chunked_over_8_devices_equals_the_whole_batch(mesh_shape):
    mesh = make_mesh({"fsdp": 1, "expert": 1, "tensor": 1} | mesh_shape)
    axes = tuple(mesh_shape)
    images, texts, image_labels, text_labels = _batch(2)
    log_t, bias = jnp.float32(np.log(10.0)), jnp.float32(-10.0)

    def whole(images, texts, log_t, bias):
        return sigmoid_loss(images, texts, image_labels, text_labels, log_t, bias)

    def chunked(images, texts, log_t, bias):
        return chunked_sigmoid_loss(
            images, texts, image_labels, text_labels, log_t, bias, mesh=mesh, axes=axes
        )

    args = (images, texts, log_t, bias)
    want, want_grads = jax.value_and_grad(whole, argnums=(0, 1, 2, 3))(*args)
    with jax.set_mesh(mesh):
        sharded = jax.sharding.NamedSharding(mesh, jax.P(axes))
        placed = (jax.device_put(images, sharded), jax.device_put(texts, sharded), log_t, bias)
        got, got_grads = jax.jit(jax.value_and_grad(chunked, argnums=(0, 1, 2, 3)))(*placed)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    for g, w in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-6)


def test_a_batch_that_does_not_split_over_the_ring_is_named():
    mesh = make_mesh({"data": 8, "fsdp": 1, "expert": 1, "tensor": 1})
    images, texts, image_labels, text_labels = _batch(3, n=12)
    with pytest.raises(ValueError, match="batch 12 images / 12 texts must divide over the 8"):
        chunked_sigmoid_loss(
            images, texts, image_labels, text_labels, 0.0, 0.0, mesh=mesh, axes=("data",)
        )
