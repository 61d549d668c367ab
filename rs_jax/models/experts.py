"""Semantic experts: a level-grouped mixture-of-experts FFN.

Experts are laid out level by level: experts [l * E_l, (l + 1) * E_l) belong to level l.
A token of level l is routed (fp32 router, top-k) among its level's experts only; shared
experts see every token. Dispatch is GShard-style: one-hot dispatch/combine tensors and
einsums, with a per-expert capacity derived from that level's token count. With
`coarse_to_fine`, the mean of level l - 1's tokens, through a learned projection, is added to
level l's router and expert input (docs/experts.md).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rs_jax.models import moe_dispatch
from rs_jax.models.config import ExpertsConfig, Precision
from rs_jax.models.layers import RMSNorm, SwiGLU, default_kernel_init, linear, param


class RoutingStats(NamedTuple):
    balance_loss: jax.Array  # scalar: load-balance loss averaged over levels
    z_loss: jax.Array  # scalar: router z-loss
    expert_counts: jax.Array  # [L, E_l] token assignments per level and expert (pre-capacity)
    dropped_fraction: jax.Array  # scalar: assignments over capacity / all assignments


class SemanticExperts(nnx.Module):
    """x [B, S, D] with token_levels [S] (static) -> y [B, S, D], RoutingStats."""

    def __init__(self, width: int, cfg: ExpertsConfig, precision: Precision, *, rngs: nnx.Rngs):
        moe_dispatch.check_expert_parallel(cfg.num_levels, cfg.experts_per_level)
        self.cfg, self.precision = cfg, precision
        e, f = cfg.num_experts, cfg.mlp_dim
        self.norm = RMSNorm(width, precision=precision, rngs=rngs)
        # The router computes in float32 whatever the compute dtype: its softmax and top-k
        # decide where every token goes.
        self.router = linear(
            width,
            e,
            ("embed", "exp"),
            precision=Precision(dtype=jnp.float32, param_dtype=precision.param_dtype),
            use_bias=False,
            kernel_init=nnx.initializers.normal(0.02),
            rngs=rngs,
        )

        def expert_weights(shape, axes):
            return param(default_kernel_init, shape, axes, precision, rngs)

        self.wi_gate = expert_weights((e, width, f), ("exp", "embed", "mlp"))
        self.wi_up = expert_weights((e, width, f), ("exp", "embed", "mlp"))
        self.wo = expert_weights((e, f, width), ("exp", "mlp", "embed"))
        self.shared = (
            SwiGLU(width, f * cfg.shared_experts, precision=precision, rngs=rngs)
            if cfg.shared_experts
            else None
        )
        # Created last so that switching it off leaves every other parameter's init unchanged.
        self.condition = (
            linear(width, width, ("embed", None), precision=precision, use_bias=False, rngs=rngs)
            if cfg.coarse_to_fine
            else None
        )

    def capacities(self, token_levels: np.ndarray) -> np.ndarray:
        """Per-expert capacity [E] for one batch row: its level's fair share times the factor."""
        cfg = self.cfg
        tokens_per_level = np.bincount(token_levels, minlength=cfg.num_levels)
        per_level = np.ceil(
            cfg.capacity_factor * cfg.top_k * tokens_per_level / cfg.experts_per_level
        ).astype(np.int32)
        return np.repeat(np.maximum(per_level, 1), cfg.experts_per_level)

    def __call__(
        self, x: jax.Array, token_levels: np.ndarray, *, jitter_key: jax.Array | None = None
    ) -> tuple[jax.Array, RoutingStats]:
        cfg = self.cfg
        token_levels = np.asarray(token_levels)
        expert_levels = np.repeat(np.arange(cfg.num_levels), cfg.experts_per_level)
        in_group = jnp.asarray(token_levels[:, None] == expert_levels[None, :])  # [S, E]
        capacity = self.capacities(token_levels)
        max_capacity = int(capacity.max())

        h = self.norm(x)
        if self.condition is not None:
            h = h + self.coarse_summary(h, token_levels)
        # Router jitter (training only: the caller passes a key): multiplicative uniform noise.
        router_in = h.astype(jnp.float32)
        if jitter_key is not None and cfg.router_jitter > 0:
            eps = cfg.router_jitter
            router_in = router_in * jax.random.uniform(
                jitter_key, router_in.shape, router_in.dtype, 1.0 - eps, 1.0 + eps
            )
        logits = self.router(router_in)  # [B, S, E]
        logits = jnp.where(in_group, logits, -jnp.inf)
        probs = jax.nn.softmax(logits, axis=-1)
        gates, choice = jax.lax.top_k(probs, cfg.top_k)  # [B, S, K]
        gates = gates / gates.sum(-1, keepdims=True)
        assigned = jax.nn.one_hot(choice, probs.shape[-1], dtype=jnp.int32)  # [B, S, K, E]

        w = moe_dispatch.ExpertWeights(self.wi_gate[...], self.wi_up[...], self.wo[...])
        if cfg.dispatch == "dropless":
            kept = assigned  # nothing is dropped
            y = moe_dispatch.dropless_ffn(h, choice, gates, w, precision=self.precision)
        else:
            # First choices of all tokens claim capacity before any second choice (GShard order).
            b, s, k, e = assigned.shape
            k_major = assigned.transpose(0, 2, 1, 3).reshape(b, k * s, e)
            slot = (jnp.cumsum(k_major, axis=1) - 1).reshape(b, k, s, e).transpose(0, 2, 1, 3)
            kept = assigned * (slot < jnp.asarray(capacity))  # [B, S, K, E]
            # [B, S, K, E, C]
            slot_one_hot = jax.nn.one_hot(jnp.where(kept > 0, slot, -1), max_capacity)
            dispatch = slot_one_hot.sum(2)  # [B, S, E, C]
            combine = jnp.einsum("bskec,bsk->bsec", slot_one_hot, gates)

            y = moe_dispatch.einsum_ffn(h, dispatch, combine, w, precision=self.precision)
        if self.shared is not None:
            y = y + self.shared(h)
        y = y.astype(x.dtype)

        stats = self._routing_stats(logits, probs, assigned, kept, token_levels)
        return x + y, stats

    def coarse_summary(self, h: jax.Array, token_levels: np.ndarray) -> jax.Array:
        """h [B, S, D] -> [B, S, D]: each token of level l > 0 gets the projected mean of level
        l - 1's tokens; level 0 (the coarsest) gets zeros."""
        level_one_hot = jax.nn.one_hot(jnp.asarray(token_levels), self.cfg.num_levels)
        level_sizes = jnp.maximum(level_one_hot.sum(0), 1.0)  # [L]
        level_sum = jnp.einsum("bsd,sl->bld", h, level_one_hot, preferred_element_type=jnp.float32)
        summary = self.condition(level_sum / level_sizes[:, None])  # [B, L, D]
        # Shift by one level: level l reads level l - 1's summary.
        parent = jnp.concatenate([jnp.zeros_like(summary[:, :1]), summary[:, :-1]], axis=1)
        return parent[:, jnp.asarray(token_levels)]

    def _routing_stats(self, logits, probs, assigned, kept, token_levels) -> RoutingStats:
        cfg = self.cfg
        level_one_hot = jax.nn.one_hot(jnp.asarray(token_levels), cfg.num_levels)  # [S, L]
        tokens_per_level = jnp.maximum(level_one_hot.sum(0), 1.0) * probs.shape[0]
        grouped = (cfg.num_levels, cfg.experts_per_level)
        # Per level: fraction of the level's assignments that went to each of its experts
        # and the level's mean router probability per expert (Switch-style balance loss).
        assignments = assigned.sum(2).astype(jnp.float32)  # [B, S, E]
        counts = jnp.einsum("bse,sl->le", assignments, level_one_hot)
        counts = _own_group(counts, grouped)
        mean_prob = jnp.einsum("bse,sl->le", probs, level_one_hot) / tokens_per_level[:, None]
        mean_prob = _own_group(mean_prob, grouped)
        fraction = counts / jnp.maximum(counts.sum(-1, keepdims=True), 1.0)
        balance = cfg.experts_per_level * (fraction * mean_prob).sum(-1).mean()
        z_loss = jnp.mean(jax.nn.logsumexp(logits, axis=-1) ** 2)
        dropped = 1.0 - kept.sum() / jnp.maximum(assigned.sum(), 1)
        return RoutingStats(balance, z_loss, counts, dropped)


def _own_group(per_level: jax.Array, grouped: tuple[int, int]) -> jax.Array:
    """[L, E] statistics of each level over all experts -> [L, E_l] over its own group."""
    return jnp.einsum("llg->lg", per_level.reshape(per_level.shape[0], *grouped))
