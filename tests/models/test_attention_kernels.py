"""Attention kernels against the einsum reference: the Pallas splash kernel in interpret mode
(forward and gradients, for every mask the towers use) and the fused-attention call cuDNN
runs on GPU, with the reference implementation on CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rs_jax.models.attention import (
    SegmentMask,
    attend,
    dot_product_attention,
    fused_attention,
    resolve_kernel,
)
from rs_jax.models.config import Precision, StackConfig, VisionConfig
from rs_jax.models.decoder import Decoder
from rs_jax.models.vision import VisionEncoder
from rs_jax.sharding import SHARDING_RULES, make_mesh, sharding_context
from tests.models.conftest import decoder_config, randomize

F32 = Precision()
BF16 = Precision(dtype=jnp.bfloat16, param_dtype=jnp.float32)


def dense(segments: SegmentMask) -> np.ndarray:
    """The [B, T, T] mask a SegmentMask describes."""
    ids = np.asarray(segments.segment_ids)
    slots = np.arange(ids.shape[1])
    allowed = ids[:, :, None] == ids[:, None, :]
    distance = slots[:, None] - slots[None, :]
    if segments.causal:
        allowed &= distance >= 0
    if segments.window:
        allowed &= distance < segments.window
    return allowed


# Row 0 left-padded, row 1 right-padded (the unpacked decoder); two packed rows of three and
# two sequences with padding at the end (0); one segment over all slots (the ViT).
UNPACKED = np.array([[0] * 5 + [1] * 15, [1] * 17 + [0] * 3])
PACKED = np.array([[1] * 6 + [2] * 9 + [3] * 3 + [0] * 2, [1] * 12 + [2] * 5 + [0] * 3])
MASKS = {
    "causal_padded": SegmentMask(jnp.asarray(UNPACKED)),
    "packed": SegmentMask(jnp.asarray(PACKED)),
    "packed_window": SegmentMask(jnp.asarray(PACKED), window=4),
    "full": SegmentMask(jnp.zeros((2, 20), jnp.int32), causal=False),
}


@pytest.mark.parametrize("precision", [F32, BF16], ids=["f32", "bf16"])
@pytest.mark.parametrize("kind", list(MASKS))
def test_splash_equals_the_reference_forward_and_gradients(kind, precision):
    """Grouped-query attention (4 query heads on 2 kv heads) through splash in interpret
    mode equals the einsum at every real query, and so do the gradients of q, k and v."""
    segments = MASKS[kind]
    mask = jnp.asarray(dense(segments))
    real = np.asarray(segments.segment_ids) > 0 if kind != "full" else np.ones((2, 20), bool)
    rng = np.random.default_rng(0)
    q, k, v = (
        jnp.asarray(rng.normal(size=(2, 20, heads, 16)), precision.dtype) for heads in (4, 2, 2)
    )
    weight = jnp.asarray(rng.normal(size=(2, 20, 4, 16)) * real[:, :, None, None], jnp.float32)

    def loss(kernel):
        def f(q, k, v):
            out = attend(q, k, v, mask, precision, kernel, segments)
            return (out.astype(jnp.float32) * weight).sum(), out

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(q, k, v)

    splash_jaxpr = jax.make_jaxpr(lambda q: attend(q, k, v, mask, precision, "splash", segments))
    assert "pallas_call" in str(splash_jaxpr(q))
    (_, out), grads = loss("splash")
    (_, expected), expected_grads = loss("xla")
    tolerance = 1e-5 if precision is F32 else 2e-2
    np.testing.assert_allclose(
        np.asarray(out, np.float32)[real], np.asarray(expected, np.float32)[real], atol=tolerance
    )
    for got, want in zip(grads, expected_grads, strict=True):
        scale = float(np.abs(np.asarray(want, np.float32)).max())
        np.testing.assert_allclose(
            np.asarray(got, np.float32), np.asarray(want, np.float32), atol=tolerance * scale
        )


def test_splash_sharded_over_batch_and_heads_equals_one_device():
    """Under a data x tensor mesh the kernel runs per shard (shard_map over the batch and
    the heads) and gives the single-device result."""
    segments = MASKS["packed"]
    rng = np.random.default_rng(4)
    q = jnp.asarray(rng.normal(size=(2, 20, 4, 16)), jnp.float32)
    k, v = (jnp.asarray(rng.normal(size=(2, 20, 2, 16)), jnp.float32) for _ in range(2))
    expected = attend(q, k, v, None, F32, "splash", segments)
    mesh = make_mesh({"data": 2, "fsdp": 1, "expert": 1, "tensor": 2}, jax.devices()[:4])
    with sharding_context(mesh, SHARDING_RULES):
        run = jax.jit(lambda q, k, v: attend(q, k, v, None, F32, "splash", segments))
        lowered = str(run.lower(q, k, v).as_text())
        out = run(q, k, v)
    assert "shard_map" in lowered or "manual" in lowered
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_fused_attention_takes_the_decoder_layout_and_mask():
    """The call cuDNN runs on GPU (here its reference implementation) reads grouped-query
    [B, T, N, H] inputs and the [B, T, S] mask as the einsum does."""
    rng = np.random.default_rng(1)
    q = jnp.asarray(rng.normal(size=(2, 6, 4, 8)), jnp.float32)
    k, v = (jnp.asarray(rng.normal(size=(2, 9, 2, 8)), jnp.float32) for _ in range(2))
    mask = jnp.asarray(rng.random((2, 6, 9)) < 0.7).at[:, :, 0].set(True)
    np.testing.assert_allclose(
        fused_attention(q, k, v, mask, "xla"),
        dot_product_attention(q, k, v, mask, F32),
        atol=1e-5,
    )


def test_auto_picks_the_einsum_on_cpu_and_cudnn_needs_bfloat16():
    assert resolve_kernel("auto", BF16) == "xla"  # the default backend here is the CPU
    assert resolve_kernel("splash", F32) == "splash"


@pytest.mark.usefixtures("model_context")
@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed_window"])
def test_decoder_with_splash_equals_the_einsum_decoder(packed):
    """The decoder's own masks reach the kernel: a padded unpacked batch, and packed rows
    with a sliding window, give the einsum decoder's hidden states at every real slot."""
    window = 4 if packed else 0
    hidden = {}
    rng = np.random.default_rng(2)
    embeds = jnp.asarray(rng.normal(size=(2, 20, 32)), jnp.float32)
    ids = PACKED if packed else UNPACKED
    segments = None
    if packed:
        positions = np.stack([_positions(row) for row in ids])
        segments = (jnp.asarray(ids), jnp.asarray(positions))
    for kernel in ("xla", "splash"):
        decoder = Decoder(
            decoder_config(sliding_window=window),
            F32,
            StackConfig(scan=True, attention=kernel),
            rngs=nnx.Rngs(0),
        )
        out, _, _ = randomize(decoder, 1)(embeds, jnp.asarray(ids > 0), segments=segments)
        hidden[kernel] = np.asarray(out)
    real = ids > 0
    np.testing.assert_allclose(hidden["splash"][real], hidden["xla"][real], atol=1e-5)


def _positions(row: np.ndarray) -> np.ndarray:
    """Each slot's position within its segment (contiguous segments)."""
    starts = np.r_[0, np.flatnonzero(np.diff(row)) + 1]
    lengths = np.diff(np.r_[starts, len(row)])
    return np.concatenate([np.arange(n) for n in lengths])


@pytest.mark.usefixtures("model_context")
def test_vision_encoder_with_splash_equals_the_einsum_encoder():
    """Full (unmasked) self-attention over patches and a class token, not a multiple of the
    kernel's block: padded slots are invisible to the real ones."""
    cfg = VisionConfig(
        image_size=16, patch_size=4, width=32, depth=2, num_heads=4, mlp_dim=48, class_token=True
    )
    pixels = jnp.asarray(np.random.default_rng(3).uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)
    hidden = {}
    for kernel in ("xla", "splash"):
        encoder = VisionEncoder(cfg, F32, StackConfig(attention=kernel), rngs=nnx.Rngs(0))
        hidden[kernel] = np.asarray(randomize(encoder, 1)(pixels, (1,))[1])
    np.testing.assert_allclose(hidden["splash"], hidden["xla"], atol=1e-5)
