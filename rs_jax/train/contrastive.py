"""The sigmoid (SigLIP) image-text loss, whole or chunked across the data-parallel devices.

Every image is scored against every text of the batch: logit = exp(t) * cos(image, text) +
b, and each pair is a binary problem, positive where the two carry the same label (an
image and the embedding of its class name or description). The loss is the sum of
-log sigmoid(sign * logit) over all pairs, divided by the number of images (Zhai et al.
2023, "Sigmoid Loss for Language Image Pre-Training"). An image or text whose label is < 0
(no label at this level, a padding row) takes part in no pair and is not counted.

`chunked_sigmoid_loss` computes the same number as big_vision does on a pod: each device
keeps its own images and passes its texts around the ring of data-parallel devices
(`ppermute`), scoring one chunk at a time, so no device ever holds the [B, B] logits or the
other devices' texts all at once.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P


def normalize(x: jax.Array) -> jax.Array:
    """x [..., D] scaled to unit length along D (float32)."""
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)


def _pair_loss_sum(
    images: jax.Array,
    texts: jax.Array,
    image_labels: jax.Array,
    text_labels: jax.Array,
    log_temperature: jax.Array,
    bias: jax.Array,
) -> jax.Array:
    """Summed sigmoid loss of every (image, text) pair: images [Bi, D], texts [Bt, D]
    (unit length), labels [Bi] / [Bt]."""
    logits = jnp.exp(log_temperature) * jnp.einsum("id,td->it", images, texts) + bias
    signs = jnp.where(image_labels[:, None] == text_labels[None, :], 1.0, -1.0)
    counted = (image_labels[:, None] >= 0) & (text_labels[None, :] >= 0)
    return -jnp.sum(jnp.where(counted, jax.nn.log_sigmoid(signs * logits), 0.0))


def _labelled(labels: jax.Array) -> jax.Array:
    return jnp.sum(labels >= 0).astype(jnp.float32)


def sigmoid_loss(
    images: jax.Array,
    texts: jax.Array,
    image_labels: jax.Array,
    text_labels: jax.Array,
    log_temperature: jax.Array,
    bias: jax.Array,
) -> jax.Array:
    """The whole batch at once: images [B, D], texts [B, D] (any scale), labels [B]."""
    total = _pair_loss_sum(
        normalize(images), normalize(texts), image_labels, text_labels, log_temperature, bias
    )
    return total / jnp.maximum(_labelled(image_labels), 1.0)


def chunked_sigmoid_loss(
    images: jax.Array,
    texts: jax.Array,
    image_labels: jax.Array,
    text_labels: jax.Array,
    log_temperature: jax.Array,
    bias: jax.Array,
    *,
    mesh: jax.sharding.Mesh | jax.sharding.AbstractMesh,
    axes: tuple[str, ...],
) -> jax.Array:
    """`sigmoid_loss`, with the batch split over the mesh `axes` (the data-parallel ones):
    each device scores its images against one device's texts at a time, the texts moving
    one step around the ring between chunks. Equal to the whole loss up to float rounding.
    Without a mesh or axes (eager code), the whole loss."""
    if mesh.empty or not axes:
        return sigmoid_loss(images, texts, image_labels, text_labels, log_temperature, bias)
    ring = math.prod(mesh.shape[a] for a in axes)
    if images.shape[0] % ring or texts.shape[0] % ring:
        raise ValueError(
            f"chunked sigmoid loss: batch {images.shape[0]} images / {texts.shape[0]} texts "
            f"must divide over the {ring} devices of mesh axes {axes}"
        )
    to_next = [(i, (i + 1) % ring) for i in range(ring)]

    def local(images, texts, image_labels, text_labels, log_temperature, bias):
        images, texts = normalize(images), normalize(texts)

        def chunk(_, carry):
            texts, text_labels, total = carry
            total += _pair_loss_sum(images, texts, image_labels, text_labels, log_temperature, bias)
            texts = jax.lax.ppermute(texts, axes, to_next)
            text_labels = jax.lax.ppermute(text_labels, axes, to_next)
            return texts, text_labels, total

        # The running sum differs per device (varying over the ring's axes), as texts do.
        total = jax.lax.pcast(jnp.zeros((), jnp.float32), axes, to="varying")
        carry = (texts, text_labels, total)
        _, _, total = jax.lax.fori_loop(0, ring, chunk, carry)
        labelled = jax.lax.psum(_labelled(image_labels), axes)
        return jax.lax.psum(total, axes) / jnp.maximum(labelled, 1.0)

    batch = P(axes)
    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(batch, batch, batch, batch, P(), P()),
        out_specs=P(),
    )(images, texts, image_labels, text_labels, log_temperature, bias)
