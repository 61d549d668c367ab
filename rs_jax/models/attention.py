"""Multi-head attention serving all towers: ViT self-attention, the Semantic Augmentation
cross-attention and the decoder's causal grouped-query attention with RoPE and a KV cache."""

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rs_jax.models.config import Lora, Precision, Rope
from rs_jax.models.layers import Einsum, constrain, matmul

# Added to masked logits: finite, so a row with nothing to attend to stays a uniform
# softmax instead of NaN (padding rows), and far below any real logit.
_MASKED = -1e30


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
        rngs: nnx.Rngs,
    ):
        num_kv_heads = num_kv_heads or num_heads
        if width % num_heads or num_heads % num_kv_heads:
            raise ValueError(
                f"attention: width {width} must divide into num_heads {num_heads}, and "
                f"num_heads into num_kv_heads {num_kv_heads}"
            )
        head_dim = width // num_heads
        context_width = context_width or width
        self.precision = precision
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
    ) -> tuple[jax.Array, KVCache | None]:
        """mask [B, T, S] (True = may attend); positions [B, T] for RoPE.

        With a cache, the new keys/values are written at slots [cache_index, cache_index + T)
        and the queries attend over all S cache slots (mask covers them).
        """
        context = x if context is None else context
        query = constrain(self.query(x), ("batch", "length", "heads", "head_dim"))
        key = constrain(self.key(context), ("batch", "length", "kv_heads", "head_dim"))
        value = constrain(self.value(context), ("batch", "length", "kv_heads", "head_dim"))
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
        out = dot_product_attention(query, key, value, mask, self.precision)
        return self.out(out), cache
