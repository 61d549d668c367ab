"""Coarse-to-fine conditioning of the semantic experts and the LLM's visual-token MoE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rs_jax.models.config import Precision
from rs_jax.models.experts import SemanticExperts
from rs_jax.train.losses import compute_loss, expert_usage_from_metrics
from tests.models.conftest import experts_config, make_model, random_batch, tiny_config

TOKEN_LEVELS = np.array([0] * 2 + [1] * 4 + [2] * 8)


def make_experts(coarse_to_fine: bool) -> SemanticExperts:
    cfg = experts_config(coarse_to_fine=coarse_to_fine)
    return SemanticExperts(16, cfg, Precision(), rngs=nnx.Rngs(0))


def tokens(seed: int = 0) -> jax.Array:
    x = np.random.default_rng(seed).normal(size=(4, len(TOKEN_LEVELS), 16))
    return jnp.asarray(x, jnp.float32)


def changed_positions(experts: SemanticExperts, x: jax.Array, x2: jax.Array) -> np.ndarray:
    """[S] bool: which token positions' outputs differ between inputs x and x2."""
    (a, _), (b, _) = experts(x, TOKEN_LEVELS), experts(x2, TOKEN_LEVELS)
    return np.abs(np.asarray(a - b)).max(axis=(0, 2)) > 1e-6


@pytest.mark.usefixtures("model_context")
def test_coarse_tokens_condition_the_next_finer_level_only_when_switched_on():
    x = tokens()
    perturbed = x.at[:, TOKEN_LEVELS == 0].add(1.0)  # the coarsest level's tokens
    # On: level 0 (itself) and level 1 (conditioned on level 0's mean) change; level 2 reads
    # level 1's unperturbed input tokens and does not.
    on = changed_positions(make_experts(True), x, perturbed)
    np.testing.assert_array_equal(on, TOKEN_LEVELS <= 1)
    off = changed_positions(make_experts(False), x, perturbed)
    np.testing.assert_array_equal(off, TOKEN_LEVELS == 0)

    # The router input of level 1 moves too (routing, not only the expert input).
    experts = make_experts(True)
    h, h2 = (
        experts.norm(v) + experts.coarse_summary(experts.norm(v), TOKEN_LEVELS)
        for v in (x, perturbed)
    )
    moved = np.abs(np.asarray(h - h2)).max(axis=(0, 2)) > 1e-6
    np.testing.assert_array_equal(moved, TOKEN_LEVELS <= 1)


@pytest.mark.usefixtures("model_context")
def test_switched_off_equals_on_with_a_zero_projection():
    """Same init for every other parameter, so 'off' is the unconditioned module."""
    x = tokens(1)
    off, on = make_experts(False), make_experts(True)
    on.condition.kernel[...] = jnp.zeros_like(on.condition.kernel[...])
    (y_off, stats_off), (y_on, stats_on) = off(x, TOKEN_LEVELS), on(x, TOKEN_LEVELS)
    np.testing.assert_allclose(np.asarray(y_off), np.asarray(y_on), rtol=1e-6, atol=1e-6)
    for a, b in zip(stats_off, stats_on, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


def test_llm_moe_routes_visual_tokens_and_adds_its_losses(single_device_mesh):
    config = tiny_config()
    config.model.llm.moe_every = 2  # tiny LLM has 2 blocks: block 1 gets the MoE
    model = make_model(config, single_device_mesh)
    blocks = model.llm.groups.blocks.blocks  # one scanned group of 2 blocks
    assert [block.moe is not None for block in blocks] == [False, True]
    batch = jax.tree.map(jnp.asarray, random_batch())
    metrics = nnx.jit(lambda m, b: compute_loss(m, b)[1])(model, batch)
    level_names = model.cfg.level_names
    for prefix in ("moe", "moe_llm"):
        assert float(metrics[f"{prefix}/balance_loss"]) > 0
        assert float(metrics[f"{prefix}/z_loss"]) > 0
        usage = expert_usage_from_metrics(jax.device_get(metrics), level_names, prefix)
        assert list(usage) == list(level_names)
        assert all(abs(sum(shares) - 1) < 1e-5 for shares in usage.values())

    # Decode steps carry no visual tokens: the MoE block is skipped and reports nothing.
    embeds = jnp.zeros((2, 1, config.model.llm.width))
    _, _, routing = model.llm(embeds, jnp.ones((2, 1), bool))
    assert routing is None


def test_llm_moe_uses_the_experts_config(single_device_mesh):
    """One experts config serves both MoEs: the decoder's reads its mlp_dim, jitter and
    coarse-to-fine switch too."""
    config = tiny_config()
    config.model.llm.moe_every = 1
    config.model.experts.update(mlp_dim=24, router_jitter=0.5, coarse_to_fine=True)
    model = make_model(config, single_device_mesh)
    moe = model.llm.groups.blocks.blocks[0].moe
    assert moe.wi_gate.shape == (2, 3 * 2, 32, 24)  # [layers, experts, width, mlp_dim]
    assert moe.condition is not None and moe.cfg.router_jitter == 0.5
    batch = jax.tree.map(jnp.asarray, random_batch())

    @nnx.jit
    def llm_stats(model, key):
        return compute_loss(model, batch, jitter_key=key)[1]["moe_llm/z_loss"]

    assert float(llm_stats(model, None)) != float(llm_stats(model, jax.random.key(3)))
