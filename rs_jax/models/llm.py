"""LLaMA-family decoder: RMSNorm, RoPE, SwiGLU, grouped-query attention, KV cache.

Optionally MoE-LLaVA style: every Nth block sends the visual tokens (slots 0..V-1 of a
prefix) through a level-grouped mixture of experts; text tokens keep the dense FFN.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rs_jax.models.attention import Attention, KVCache
from rs_jax.models.experts import RoutingStats, SemanticExperts
from rs_jax.models.layers import SwiGLU, rms_norm


class DecoderMoE(NamedTuple):
    """Level-grouped MoE for visual tokens in every `every`th block (SemanticExperts args)."""

    every: int
    num_levels: int
    experts_per_level: int
    shared_experts: int
    top_k: int
    capacity_factor: float
    dispatch: str = "einsum"


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
        moe: DecoderMoE | None = None,
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
        self.moe = (
            SemanticExperts(
                width,
                moe.num_levels,
                moe.experts_per_level,
                moe.shared_experts,
                moe.top_k,
                moe.capacity_factor,
                mlp_dim,
                dispatch=moe.dispatch,
                rngs=rngs,
            )
            if moe is not None
            else None
        )

    def __call__(self, x, *, mask, positions, cache, cache_index, visual_levels=None):
        """x [B, T, D] -> x, cache, RoutingStats (None unless this block's MoE ran).

        visual_levels [V] (static): slots 0..V-1 of x are visual tokens of these levels.
        """
        attended, cache = self.attn(
            self.attn_norm(x), mask=mask, positions=positions, cache=cache, cache_index=cache_index
        )
        x = x + attended
        if self.moe is None or visual_levels is None:
            return x + self.mlp(self.mlp_norm(x)), cache, None
        v = len(visual_levels)
        visual, stats = self.moe(x[:, :v], visual_levels)  # adds its own residual
        text = x[:, v:] + self.mlp(self.mlp_norm(x[:, v:]))
        return jnp.concatenate([visual, text], axis=1), cache, stats


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
        moe: DecoderMoE | None = None,
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
                    width,
                    num_heads,
                    num_kv_heads,
                    mlp_dim,
                    rope_theta,
                    qkv_bias,
                    moe
                    if moe is not None and moe.every > 0 and i % moe.every == moe.every - 1
                    else None,
                    rngs=rngs,
                )
                for i in range(depth)
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
        *,
        visual_levels: np.ndarray | None = None,
    ) -> tuple[jax.Array, DecoderCache | None]:
        """embeds [B, T, D], token_mask [B, T] -> logits [B, T, V] (and the updated cache)."""
        logits, cache, _ = self.forward(
            embeds, token_mask, cache, cache_index, visual_levels=visual_levels
        )
        return logits, cache

    def forward(
        self,
        embeds: jax.Array,
        token_mask: jax.Array,
        cache: DecoderCache | None = None,
        cache_index: jax.Array | int = 0,
        *,
        visual_levels: np.ndarray | None = None,
    ) -> tuple[jax.Array, DecoderCache | None, tuple[RoutingStats, ...]]:
        """Like __call__, plus the RoutingStats of every MoE block that ran.

        visual_levels [V] (static numpy): slots 0..V-1 are visual tokens of these levels, so
        MoE blocks route them. Pass it for a whole sequence or a prefill that starts at slot 0;
        leave it None for decode steps, which hold text tokens only.
        """
        b, t, _ = embeds.shape
        if visual_levels is not None:
            visual_levels = np.asarray(visual_levels)
            if len(visual_levels) > t or (isinstance(cache_index, int) and cache_index != 0):
                raise ValueError(
                    f"visual_levels marks slots 0..{len(visual_levels) - 1} as visual tokens; "
                    f"the call must start at slot 0 and hold them (got {t} tokens)"
                )
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
        new_layers, routing = [], []
        for i, block in enumerate(self.blocks):
            layer_cache = None if cache is None else cache.layers[i]
            x, layer_cache, stats = block(
                x,
                mask=mask,
                positions=positions,
                cache=layer_cache,
                cache_index=cache_index,
                visual_levels=visual_levels,
            )
            new_layers.append(layer_cache)
            if stats is not None:
                routing.append(stats)
        logits = self.logits(x)
        if cache is None:
            return logits, None, tuple(routing)
        new_cache = DecoderCache(
            tuple(new_layers), key_mask, cache.num_tokens + token_mask.sum(1).astype(jnp.int32)
        )
        return logits, new_cache, tuple(routing)
