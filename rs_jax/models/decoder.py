"""LLaMA-family decoder: RMSNorm, RoPE, SwiGLU, grouped-query attention, KV cache.

Optionally MoE-LLaVA style: every Nth block sends the visual tokens (slots 0..V-1 of a
prefix) through a level-grouped mixture of experts; text tokens keep the dense FFN. Blocks
are stacked in groups of N (the last of each group has the MoE) and scanned group by group.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rs_jax.models.attention import Attention, KVCache, SegmentMask
from rs_jax.models.config import DecoderConfig, ExpertsConfig, Precision, StackConfig
from rs_jax.models.experts import RoutingStats, SemanticExperts
from rs_jax.models.layers import Embed, RMSNorm, SwiGLU, constrain, matmul, param
from rs_jax.models.stack import LayerStack


class DecoderCache(NamedTuple):
    """Keys/values of every layer [L, B, S, kv_heads, head_dim], which slots hold real tokens
    [B, S] and how many [B]."""

    key: jax.Array
    value: jax.Array
    key_mask: jax.Array
    num_tokens: jax.Array


class Masks(NamedTuple):
    """What each query slot may attend to, and where it is."""

    dense: jax.Array  # [B, T, S] True = may attend (the einsum's mask)
    segments: SegmentMask | None  # the same by its structure, for kernels (None: no kernel)
    positions: jax.Array  # [B, T] RoPE positions
    key_mask: jax.Array  # [B, S] slots that hold real tokens


def attention_masks(
    token_mask: jax.Array,
    cache: DecoderCache | None,
    cache_index: jax.Array | int,
    segments: tuple[jax.Array, jax.Array] | None,
    sliding_window: int,
) -> Masks:
    """token_mask [B, T] of the slots being run -> their masks and positions: slot s attends
    to slots <= s that hold real tokens (in the cache too), within its packed sequence, and
    within the last `sliding_window` positions (counted in real tokens, not slots)."""
    t = token_mask.shape[1]
    positions = jnp.cumsum(token_mask, axis=1) - 1
    if segments is not None:
        segment_ids, positions = segments
    if cache is not None:  # continue counting after the real tokens already cached
        positions = positions + cache.num_tokens[:, None]
    query_slots = cache_index + jnp.arange(t)
    if cache is None:
        key_mask, key_slots = token_mask, jnp.arange(t)
    else:
        key_mask = jax.lax.dynamic_update_slice(cache.key_mask, token_mask, (0, cache_index))
        key_slots = jnp.arange(key_mask.shape[1])
    dense = (key_slots[None, None, :] <= query_slots[None, :, None]) & key_mask[:, None, :]
    if segments is not None:
        dense &= segment_ids[:, :, None] == segment_ids[:, None, :]
    if sliding_window:
        key_positions = positions if segments is not None else jnp.cumsum(key_mask, 1) - 1
        dense &= positions[:, :, None] - key_positions[:, None, :] < sliding_window
    # A kernel's window counts slots, equal to positions only where real tokens are
    # contiguous: in packed rows, not in unpacked ones (padding between image and prompt).
    by_structure = None
    if cache is None and (segments is not None or not sliding_window):
        ids = segment_ids if segments is not None else token_mask.astype(jnp.int32)
        by_structure = SegmentMask(ids, causal=True, window=sliding_window)
    return Masks(dense, by_structure, positions, key_mask)


class DecoderBlock(nnx.Module):
    """One LLaMA block; with `moe`, the visual tokens go through a level-grouped MoE."""

    def __init__(
        self,
        cfg: DecoderConfig,
        precision: Precision,
        moe: ExpertsConfig | None,
        kernel: str,
        *,
        rngs: nnx.Rngs,
    ):
        self.attn_norm = RMSNorm(cfg.width, precision=precision, eps=cfg.norm_eps, rngs=rngs)
        self.attn = Attention(
            cfg.width,
            cfg.num_heads,
            precision=precision,
            num_kv_heads=cfg.num_kv_heads,
            qkv_bias=cfg.qkv_bias,
            out_bias=False,
            rope=cfg.rope,
            lora=cfg.lora,
            kernel=kernel,
            rngs=rngs,
        )
        self.mlp_norm = RMSNorm(cfg.width, precision=precision, eps=cfg.norm_eps, rngs=rngs)
        self.mlp = SwiGLU(cfg.width, cfg.mlp_dim, precision=precision, lora=cfg.lora, rngs=rngs)
        self.moe = SemanticExperts(cfg.width, moe, precision, rngs=rngs) if moe else None

    def __call__(
        self,
        x,
        *,
        mask,
        positions,
        cache,
        cache_index,
        segments=None,
        visual_levels=None,
        visual_start=0,
        jitter_key=None,
    ):
        """x [B, T, D] -> x, cache, RoutingStats (None unless this block's MoE ran).

        visual_levels [V] (static): slots visual_start.. visual_start + V - 1 of x are visual
        tokens of these levels.
        """
        x = constrain(x, ("act_batch", "act_length", "act_embed"))
        attended, cache = self.attn(
            self.attn_norm(x),
            mask=mask,
            segments=segments,
            positions=positions,
            cache=cache,
            cache_index=cache_index,
        )
        x = constrain(x + attended, ("act_batch", "act_length", "act_embed"))
        if self.moe is None or visual_levels is None:
            return x + self.mlp(self.mlp_norm(x)), cache, None
        start, end = visual_start, visual_start + len(visual_levels)
        visual, stats = self.moe(x[:, start:end], visual_levels, jitter_key=jitter_key)
        text = jnp.concatenate([x[:, :start], x[:, end:]], axis=1)
        text = text + self.mlp(self.mlp_norm(text))
        x = jnp.concatenate([text[:, :start], visual, text[:, start:]], axis=1)
        return x, cache, stats


class BlockGroup(nnx.Module):
    """`size` consecutive blocks, the last with the visual-token MoE when `moe` is given."""

    def __init__(self, cfg, precision, moe: ExpertsConfig | None, size: int, kernel, *, rngs):
        self.blocks = nnx.List(
            [
                DecoderBlock(cfg, precision, moe if i == size - 1 else None, kernel, rngs=rngs)
                for i in range(size)
            ]
        )

    def __call__(self, x, caches, *, jitter_key=None, **kwargs):
        """caches: None or (key, value) [size, B, S, K, H]."""
        new_keys, new_values, stats = [], [], None
        for i, block in enumerate(self.blocks):
            cache = None if caches is None else KVCache(caches[0][i], caches[1][i])
            x, cache, block_stats = block(x, cache=cache, jitter_key=jitter_key, **kwargs)
            stats = block_stats if block_stats is not None else stats
            if cache is not None:
                new_keys.append(cache.key)
                new_values.append(cache.value)
        caches = None if caches is None else (jnp.stack(new_keys), jnp.stack(new_values))
        return x, caches, stats


class Decoder(nnx.Module):
    """Token embeddings [B, T, D] -> final-normed hidden states [B, T, D]; `logits` maps
    chosen positions to the vocabulary (the loss asks only for the ones it scores).

    Sequences live in slots 0..S-1. `token_mask` [B, T] marks real tokens (prompts are
    left-padded, answers right-padded); RoPE positions count real tokens only, so padding
    never shifts them. Slot s attends to slots <= s that hold real tokens.
    """

    def __init__(
        self,
        cfg: DecoderConfig,
        precision: Precision,
        stack: StackConfig,
        moe: ExpertsConfig | None = None,
        *,
        rngs: nnx.Rngs,
    ):
        """moe: the routing settings of the visual-token MoE blocks (every cfg.moe_every-th
        block; None: every block is dense)."""
        self.cfg, self.precision = cfg, precision
        moe_every = cfg.moe_every if moe is not None else 0
        self.group_size = max(moe_every, 1)
        moe = moe if moe_every else None
        self.embedding = Embed(cfg.vocab_size, cfg.width, precision=precision, rngs=rngs)
        self.groups = LayerStack(
            lambda r: BlockGroup(cfg, precision, moe, self.group_size, stack.attention, rngs=r),
            cfg.depth // self.group_size,
            stack,
            rngs=rngs,
        )
        self.final_norm = RMSNorm(cfg.width, precision=precision, eps=cfg.norm_eps, rngs=rngs)
        self.lm_head = (
            None
            if cfg.tie_embeddings
            else param(
                nnx.initializers.normal(cfg.width**-0.5),
                (cfg.width, cfg.vocab_size),
                ("embed", "vocab"),
                precision,
                rngs,
            )
        )

    def embed(self, ids: jax.Array) -> jax.Array:
        return self.embedding(ids)

    def head(self) -> jax.Array:
        """The output projection [D, V]: the embedding table's transpose when tied."""
        if self.lm_head is None:
            return self.embedding.embedding[...].T
        return self.lm_head[...]

    def logits(self, hidden: jax.Array) -> jax.Array:
        """hidden [..., D] (from __call__) -> float32 logits [..., V]."""
        return matmul("...d,dv->...v", hidden, self.head(), self.precision)

    def init_cache(self, batch: int, length: int) -> DecoderCache:
        cfg = self.cfg
        shape = (cfg.depth, batch, length, cfg.num_kv_heads, cfg.head_dim)
        zeros = jnp.zeros(shape, self.precision.dtype)
        return DecoderCache(
            zeros, zeros, jnp.zeros((batch, length), bool), jnp.zeros((batch,), jnp.int32)
        )

    def __call__(
        self,
        embeds: jax.Array,
        token_mask: jax.Array,
        cache: DecoderCache | None = None,
        cache_index: jax.Array | int = 0,
        *,
        visual_levels: np.ndarray | None = None,
        visual_start: int = 0,
        segments: tuple[jax.Array, jax.Array] | None = None,
        jitter_key: jax.Array | None = None,
    ) -> tuple[jax.Array, DecoderCache | None, RoutingStats | None]:
        """embeds [B, T, D], token_mask [B, T] -> hidden [B, T, D], the updated cache, and
        the RoutingStats of the MoE blocks stacked on a leading block axis (None if none ran).

        segments: (segment ids [B, T], positions [B, T]) of a packed row (several sequences
        one after another; 0 marks padding): a token attends only within its own sequence,
        and RoPE counts from 0 in each. Training only (no cache, no visual-token MoE).

        visual_levels [V] (static numpy): slots visual_start..visual_start + V - 1 (static
        int: after the template's text before the image) are visual tokens of these levels, so
        MoE blocks route them. Pass it for a whole sequence or a prefill that starts at slot 0;
        leave it None for decode steps, which hold text tokens only. jitter_key: router jitter
        (training only).
        """
        b, t, _ = embeds.shape
        if visual_levels is not None:
            visual_levels = np.asarray(visual_levels)
            end = visual_start + len(visual_levels)
            if end > t or (isinstance(cache_index, int) and cache_index != 0):
                raise ValueError(
                    f"visual_levels marks slots {visual_start}..{end - 1} as visual tokens; "
                    f"the call must start at slot 0 and hold them (got {t} tokens)"
                )
        if segments is not None and (cache is not None or visual_levels is not None):
            raise ValueError("packed sequences take no cache and no visual-token MoE")
        masks = attention_masks(
            token_mask.astype(bool), cache, cache_index, segments, self.cfg.sliding_window
        )

        num_groups = self.cfg.depth // self.group_size
        caches = None
        if cache is not None:
            grouped = (num_groups, self.group_size) + cache.key.shape[1:]
            caches = (cache.key.reshape(grouped), cache.value.reshape(grouped))

        def run_group(group, x, inputs):
            index, group_caches = inputs
            key = None if jitter_key is None else jax.random.fold_in(jitter_key, index)
            x, group_caches, stats = group(
                x,
                group_caches,
                mask=masks.dense,
                segments=masks.segments,
                positions=masks.positions,
                cache_index=cache_index,
                visual_levels=visual_levels,
                visual_start=visual_start,
                jitter_key=key,
            )
            return x, (group_caches, stats)

        x, (caches, routing) = self.groups(
            run_group, embeds.astype(self.precision.dtype), (jnp.arange(num_groups), caches)
        )
        hidden = self.final_norm(x)
        if cache is None:
            return hidden, None, routing
        new_cache = DecoderCache(
            caches[0].reshape(cache.key.shape),
            caches[1].reshape(cache.value.shape),
            masks.key_mask,
            cache.num_tokens + token_mask.astype(bool).sum(1).astype(jnp.int32),
        )
        return hidden, new_cache, routing
