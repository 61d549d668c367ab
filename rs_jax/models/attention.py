"""Multi-head attention serving all towers: ViT self-attention, the Semantic Augmentation
cross-attention and the decoder's causal grouped-query attention with RoPE and a KV cache.

The attention itself is the einsum reference (`xla`), the Pallas splash kernel on TPU or
cuDNN's fused kernel on GPU (`config.model.attention`). Splash builds its mask block by block
from a `SegmentMask`, so it serves self-attention without a cache; cached decoding and the
knowledge cross-attention (a handful of keys) keep the einsum there.
"""

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as splash_mask

from rs_jax import sharding
from rs_jax.models.config import Lora, Precision, Rope
from rs_jax.models.layers import Einsum, constrain, matmul

# Added to masked logits: finite, so a row with nothing to attend to stays a uniform
# softmax instead of NaN (padding rows), and far below any real logit.
_MASKED = -1e30


# Splash tiles: sequences are padded to a multiple of the smallest, the TPU's lane width.
_SPLASH_BLOCKS = (512, 256, 128)


class SegmentMask(NamedTuple):
    """A self-attention mask by its structure, as kernels build it block by block: slot t
    may attend slot s when segment_ids [B, T] agree, s <= t (causal) and t - s < window
    (window > 0). Wherever the query is a real token it equals the dense mask."""

    segment_ids: jax.Array
    causal: bool = True
    window: int = 0


class KVCache(NamedTuple):
    """Keys/values of one decoder layer for every slot: [B, S, kv_heads, head_dim]."""

    key: jax.Array
    value: jax.Array

    @classmethod
    def zeros(cls, batch: int, length: int, num_kv_heads: int, head_dim: int, dtype) -> "KVCache":
        shape = (batch, length, num_kv_heads, head_dim)
        return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))


def rope_frequencies(head_dim: int, rope: Rope) -> np.ndarray:
    """Inverse frequencies [H/2] of `rope` (float64 numpy: computed once, at trace time)."""
    half = head_dim // 2
    freq = rope.theta ** (-np.arange(half, dtype=np.float64) / half)
    if rope.scaling == "linear":
        return freq / rope.factor
    if rope.scaling == "llama3":
        wavelength = 2 * np.pi / freq
        low_freq_wavelength = rope.original_max_positions / rope.low_freq_factor
        high_freq_wavelength = rope.original_max_positions / rope.high_freq_factor
        smooth = (rope.original_max_positions / wavelength - rope.low_freq_factor) / (
            rope.high_freq_factor - rope.low_freq_factor
        )
        interpolated = (1 - smooth) * freq / rope.factor + smooth * freq
        return np.where(
            wavelength > low_freq_wavelength,
            freq / rope.factor,
            np.where(wavelength < high_freq_wavelength, freq, interpolated),
        )
    return freq


def rotary_embedding(x: jax.Array, positions: jax.Array, freq: Sequence[float]) -> jax.Array:
    """Rotate pairs of channels (i, i + H/2) of x [B, T, N, H] by angles positions [B, T] *
    freq [H/2], in float32."""
    half = x.shape[-1] // 2
    angle = positions[..., None].astype(jnp.float32) * jnp.asarray(freq, jnp.float32)
    sin, cos = jnp.sin(angle)[:, :, None, :], jnp.cos(angle)[:, :, None, :]
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.astype(x.dtype)


def dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    mask: jax.Array | None,
    precision: Precision,
) -> jax.Array:
    """query [B, T, N, H] over key/value [B, S, K, H] (N a multiple of K: grouped-query),
    mask [B, T, S] (True = may attend) -> [B, T, N, H]. Logits and softmax in float32."""
    b, t, n, h = query.shape
    k = key.shape[2]
    grouped = query.reshape(b, t, k, n // k, h)
    logits = matmul("btkgh,bskh->bkgts", grouped, key, precision) * h**-0.5
    if mask is not None:
        logits = jnp.where(mask[:, None, None], logits, _MASKED)
    probs = jax.nn.softmax(logits, axis=-1)
    out = matmul("bkgts,bskh->btkgh", probs, value, precision)
    return out.astype(precision.dtype).reshape(b, t, n, h)


def resolve_kernel(kernel: str, precision: Precision) -> str:
    """`kernel` with "auto" resolved for the platform compiled for."""
    if kernel != "auto":
        return kernel
    platform = sharding.target_platform()
    if platform == "tpu":
        return "splash"
    if platform in ("gpu", "cuda") and precision.dtype == jnp.bfloat16:
        return "cudnn"
    return "xla"


def fused_attention(
    query: jax.Array, key: jax.Array, value: jax.Array, mask: jax.Array | None, implementation
) -> jax.Array:
    """`jax.nn.dot_product_attention` on our layout: query [B, T, N, H], key/value
    [B, S, K, H], mask [B, T, S] -> [B, T, N, H]; implementation "cudnn" is the fused GPU
    kernel (tests run the same call with "xla")."""
    mask = None if mask is None else mask[:, None]
    return jax.nn.dot_product_attention(query, key, value, mask=mask, implementation=implementation)


def _splash_mask(length: int, segments: SegmentMask) -> splash_mask.Mask:
    shape = (length, length)
    if segments.window:
        return splash_mask.LocalMask(shape, window_size=(segments.window - 1, 0), offset=0)
    return splash_mask.CausalMask(shape) if segments.causal else splash_mask.FullMask(shape)


def splash_attention(
    query: jax.Array, key: jax.Array, value: jax.Array, segments: SegmentMask
) -> jax.Array:
    """Self-attention by the Pallas splash kernel: query [B, T, N, H], key/value [B, T, K, H]
    -> [B, T, N, H]. Sharded like the activations (batch and heads; the kernel holds whole
    sequences); interpreted off TPU, which is how it is tested."""
    b, t, n, h = query.shape
    length = -(-t // _SPLASH_BLOCKS[-1]) * _SPLASH_BLOCKS[-1]
    block = next(size for size in _SPLASH_BLOCKS if length % size == 0)
    block_sizes = splash.BlockSizes(
        block_q=block,
        block_kv=block,
        block_q_dkv=block,
        block_kv_dkv=block,
        block_kv_dkv_compute=block,
        use_fused_bwd_kernel=True,
    )
    interpret = sharding.target_platform() != "tpu"

    def per_shard(query, key, value, segment_ids):
        heads = query.shape[2]
        kernel = splash.make_splash_mha(
            mask=splash_mask.MultiHeadMask((_splash_mask(length, segments),) * heads),
            block_sizes=block_sizes,
            head_shards=1,
            q_seq_shards=1,
            interpret=interpret,
        )

        def one_example(query, key, value, ids):  # heads first: [N, T, H]
            ids = splash.SegmentIds(q=ids, kv=ids)
            out = kernel(query.swapaxes(0, 1), key.swapaxes(0, 1), value.swapaxes(0, 1), ids)
            return out.swapaxes(0, 1)

        return jax.vmap(one_example)(query, key, value, segment_ids)

    pad = ((0, 0), (0, length - t))
    # Padded slots form their own segment, which no real token attends to.
    segment_ids = jnp.pad(segments.segment_ids.astype(jnp.int32), pad, constant_values=-1)
    query, key, value = (jnp.pad(x, pad + ((0, 0), (0, 0))) for x in (query, key, value))
    # The kernel does not scale its logits.
    query = (query.astype(jnp.float32) * h**-0.5).astype(query.dtype)
    if sharding.rules_in_scope() and not jax.sharding.get_abstract_mesh().empty:
        q_spec = sharding.resolve(("act_batch", None, "act_heads", None))
        kv_spec = sharding.resolve(("act_batch", None, "act_kv_heads", None))
        per_shard = jax.shard_map(
            per_shard,
            in_specs=(q_spec, kv_spec, kv_spec, jax.P(q_spec[0], None)),
            out_specs=q_spec,
            check_vma=False,
        )
    return per_shard(query, key, value, segment_ids)[:, :t]


def attend(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    mask: jax.Array | None,
    precision: Precision,
    kernel: str = "xla",
    segments: SegmentMask | None = None,
) -> jax.Array:
    """query [B, T, N, H] over key/value [B, S, K, H] -> [B, T, N, H] by `kernel`; mask
    [B, T, S] (True = may attend; None = everything). Splash needs self-attention whose mask
    `segments` describes (None with no mask: full attention); elsewhere the einsum runs."""
    kernel = resolve_kernel(kernel, precision)
    if kernel == "cudnn":
        return fused_attention(query, key, value, mask, "cudnn")
    if kernel == "splash" and query.shape[1] == key.shape[1]:
        if mask is None and segments is None:
            segments = SegmentMask(jnp.zeros(query.shape[:2], jnp.int32), causal=False)
        if segments is not None:
            out = splash_attention(query, key, value, segments)
            return out.astype(precision.dtype)
    return dot_product_attention(query, key, value, mask, precision)


class Attention(nnx.Module):
    """Attention of queries x [B, T, D] over context [B, S, Dc] (x itself by default).

    num_kv_heads < num_heads gives grouped-query attention; `rope` enables RoPE.
    """

    def __init__(
        self,
        width: int,
        num_heads: int,
        *,
        precision: Precision,
        num_kv_heads: int | None = None,
        context_width: int | None = None,
        qkv_bias: bool = True,
        out_bias: bool = True,
        rope: Rope | None = None,
        lora: Lora | None = None,
        kernel: str = "xla",
        rngs: nnx.Rngs,
    ):
        """kernel: how the attention is computed (`attend`; config.model.attention)."""
        num_kv_heads = num_kv_heads or num_heads
        if width % num_heads or num_heads % num_kv_heads:
            raise ValueError(
                f"attention: width {width} must divide into num_heads {num_heads}, and "
                f"num_heads into num_kv_heads {num_kv_heads}"
            )
        head_dim = width // num_heads
        context_width = context_width or width
        self.precision, self.kernel = precision, kernel
        # A tuple: static (part of the graph definition), not a parameter.
        self.rope_freq = None if rope is None else tuple(rope_frequencies(head_dim, rope).tolist())

        def projection(spec, shape, axes, tag, use_bias=qkv_bias):
            return Einsum(
                spec,
                shape,
                axes,
                precision=precision,
                use_bias=use_bias,
                tag=tag,
                lora=lora,
                rngs=rngs,
            )

        self.query = projection(
            "btd,dnh->btnh", (width, num_heads, head_dim), ("embed", "heads", "head_dim"), "query"
        )
        kv_shape = (context_width, num_kv_heads, head_dim)
        kv_axes = ("embed", "kv_heads", "head_dim")
        self.key = projection("bsd,dkh->bskh", kv_shape, kv_axes, "key")
        self.value = projection("bsd,dkh->bskh", kv_shape, kv_axes, "value")
        self.out = projection(
            "btnh,nhd->btd",
            (num_heads, head_dim, width),
            ("heads", "head_dim", "embed"),
            "attention_out",
            use_bias=out_bias,
        )

    def __call__(
        self,
        x: jax.Array,
        *,
        context: jax.Array | None = None,
        mask: jax.Array | None = None,
        positions: jax.Array | None = None,
        cache: KVCache | None = None,
        cache_index: jax.Array | int = 0,
        segments: SegmentMask | None = None,
    ) -> tuple[jax.Array, KVCache | None]:
        """mask [B, T, S] (True = may attend); positions [B, T] for RoPE; segments: the
        same mask's structure, for kernels (self-attention without a cache).

        With a cache, the new keys/values are written at slots [cache_index, cache_index + T)
        and the queries attend over all S cache slots (mask covers them).
        """
        context = x if context is None else context
        query = constrain(self.query(x), ("act_batch", "act_length", "act_heads", "act_head_dim"))
        key = constrain(
            self.key(context), ("act_batch", "act_length", "act_kv_heads", "act_head_dim")
        )
        value = constrain(
            self.value(context), ("act_batch", "act_length", "act_kv_heads", "act_head_dim")
        )
        if self.rope_freq is not None:
            query = rotary_embedding(query, positions, self.rope_freq)
            key = rotary_embedding(key, positions, self.rope_freq)
        if cache is not None:
            start = (0, cache_index, 0, 0)
            cache = KVCache(
                jax.lax.dynamic_update_slice(cache.key, key.astype(cache.key.dtype), start),
                jax.lax.dynamic_update_slice(cache.value, value.astype(cache.value.dtype), start),
            )
            key, value = cache.key, cache.value
        if cache is not None:
            segments = None
        out = attend(query, key, value, mask, self.precision, self.kernel, segments)
        return self.out(out), cache
