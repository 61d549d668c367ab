"""LLaMA-family decoder: RMSNorm, RoPE, SwiGLU, grouped-query attention, KV cache."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from rs_jax.models.attention import Attention, KVCache
from rs_jax.models.layers import SwiGLU, rms_norm


class DecoderCache(NamedTuple):
    """Per-layer KV caches plus which slots hold real tokens [B, S] and how many [B]."""

    layers: tuple[KVCache, ...]
    key_mask: jax.Array
    num_tokens: jax.Array


class DecoderBlock(nnx.Module):
    def __init__(
        self,
        width: int,
        num_heads: int,
        num_kv_heads: int,
        mlp_dim: int,
        rope_theta: float,
        qkv_bias: bool,
        *,
        rngs: nnx.Rngs,
    ):
        self.attn_norm = rms_norm(width, rngs=rngs)
        self.attn = Attention(
            width,
            num_heads,
            num_kv_heads=num_kv_heads,
            use_bias=qkv_bias,
            rope_theta=rope_theta,
            rngs=rngs,
        )
        self.mlp_norm = rms_norm(width, rngs=rngs)
        self.mlp = SwiGLU(width, mlp_dim, rngs=rngs)

    def __call__(self, x, *, mask, positions, cache, cache_index):
        attended, cache = self.attn(
            self.attn_norm(x), mask=mask, positions=positions, cache=cache, cache_index=cache_index
        )
        x = x + attended
        return x + self.mlp(self.mlp_norm(x)), cache


class Decoder(nnx.Module):
    """Token embeddings [B, T, D] -> logits [B, T, vocab].

    Sequences live in slots 0..S-1. `token_mask` [B, T] marks real tokens (prompts are
    left-padded, answers right-padded); RoPE positions count real tokens only, so padding
    never shifts them. Slot s attends to slots <= s that hold real tokens.
    """

    def __init__(
        self,
        vocab_size: int,
        width: int,
        depth: int,
        num_heads: int,
        num_kv_heads: int,
        mlp_dim: int,
        rope_theta: float,
        qkv_bias: bool = False,
        tie_embeddings: bool = True,
        *,
        rngs: nnx.Rngs,
    ):
        self.num_kv_heads, self.head_dim = num_kv_heads, width // num_heads
        self.embedding = nnx.Embed(
            vocab_size,
            width,
            embedding_init=nnx.with_partitioning(
                nnx.initializers.normal(width**-0.5), ("vocab", "embed")
            ),
            rngs=rngs,
        )
        self.blocks = nnx.List(
            [
                DecoderBlock(
                    width, num_heads, num_kv_heads, mlp_dim, rope_theta, qkv_bias, rngs=rngs
                )
                for _ in range(depth)
            ]
        )
        self.final_norm = rms_norm(width, rngs=rngs)
        self.lm_head = None
        if not tie_embeddings:
            self.lm_head = nnx.Param(
                nnx.initializers.normal(width**-0.5)(rngs.params(), (width, vocab_size)),
                out_sharding=("embed", "vocab"),
            )

    def embed(self, ids: jax.Array) -> jax.Array:
        return self.embedding(ids)

    def logits(self, x: jax.Array) -> jax.Array:
        x = self.final_norm(x)
        if self.lm_head is None:
            return self.embedding.attend(x)
        return jnp.einsum("btd,dv->btv", x, self.lm_head[...])

    def init_cache(self, batch: int, length: int, dtype=jnp.float32) -> DecoderCache:
        layers = tuple(
            KVCache.zeros(batch, length, self.num_kv_heads, self.head_dim, dtype)
            for _ in self.blocks
        )
        return DecoderCache(
            layers, jnp.zeros((batch, length), bool), jnp.zeros((batch,), jnp.int32)
        )

    def __call__(
        self,
        embeds: jax.Array,
        token_mask: jax.Array,
        cache: DecoderCache | None = None,
        cache_index: jax.Array | int = 0,
    ) -> tuple[jax.Array, DecoderCache | None]:
        """embeds [B, T, D], token_mask [B, T] -> logits [B, T, V] (and the updated cache)."""
        b, t, _ = embeds.shape
        token_mask = token_mask.astype(bool)
        positions = jnp.cumsum(token_mask, axis=1) - 1
        if cache is not None:  # continue counting after the real tokens already cached
            positions = positions + cache.num_tokens[:, None]
        query_slots = cache_index + jnp.arange(t)
        if cache is None:
            key_mask, key_slots = token_mask, jnp.arange(t)
        else:
            key_mask = jax.lax.dynamic_update_slice(cache.key_mask, token_mask, (0, cache_index))
            key_slots = jnp.arange(key_mask.shape[1])
        mask = (key_slots[None, None, :] <= query_slots[None, :, None]) & key_mask[:, None, :]

        x = embeds
        new_layers = []
        for i, block in enumerate(self.blocks):
            layer_cache = None if cache is None else cache.layers[i]
            x, layer_cache = block(
                x, mask=mask, positions=positions, cache=layer_cache, cache_index=cache_index
            )
            new_layers.append(layer_cache)
        logits = self.logits(x)
        if cache is None:
            return logits, None
        return logits, DecoderCache(
            tuple(new_layers), key_mask, cache.num_tokens + token_mask.sum(1).astype(jnp.int32)
        )
