import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rs_jax.models.config import Precision
from rs_jax.models.experts import SemanticExperts
from tests.models.conftest import experts_config

pytestmark = pytest.mark.usefixtures("model_context")

TOKEN_LEVELS = np.array([0] * 2 + [1] * 4 + [2] * 8)


def make_experts(shared: int = 1, capacity_factor: float = 4.0, top_k: int = 1):
    cfg = experts_config(shared_experts=shared, capacity_factor=capacity_factor, top_k=top_k)
    return SemanticExperts(16, cfg, Precision(), rngs=nnx.Rngs(0))


def tokens(seed: int = 0):
    return jnp.asarray(
        np.random.default_rng(seed).normal(size=(4, len(TOKEN_LEVELS), 16)), jnp.float32
    )


def test_level_tokens_reach_only_their_experts_and_the_shared_ones():
    x = tokens()
    for level in range(3):
        experts = make_experts()
        before, _ = experts(x, TOKEN_LEVELS)
        group = slice(2 * level, 2 * level + 2)
        experts.wi_up[...] = experts.wi_up[...].at[group].multiply(3.0)
        after, _ = experts(x, TOKEN_LEVELS)
        changed = np.abs(np.asarray(after - before)).max(axis=(0, 2)) > 1e-6
        np.testing.assert_array_equal(changed, level == TOKEN_LEVELS)

    experts = make_experts()
    before, _ = experts(x, TOKEN_LEVELS)
    experts.shared.up.kernel[...] = experts.shared.up.kernel[...] * 3.0
    after, _ = experts(x, TOKEN_LEVELS)
    assert (np.abs(np.asarray(after - before)).max(axis=(0, 2)) > 1e-6).all()


def test_routing_stats():
    _, stats = make_experts(top_k=2)(tokens(), TOKEN_LEVELS)
    # Each level's tokens, top-2 within a 2-expert group: every expert of the level gets
    # every token of it (batch of 4).
    np.testing.assert_allclose(np.asarray(stats.expert_counts), [[8, 8], [16, 16], [32, 32]])
    assert float(stats.dropped_fraction) == 0.0
    assert float(stats.balance_loss) > 0 and float(stats.z_loss) > 0


def test_capacity_drops_overflow_tokens_and_counts_them():
    x = tokens()
    _, roomy = make_experts(capacity_factor=4.0)(x, TOKEN_LEVELS)
    _, tight = make_experts(capacity_factor=0.25)(x, TOKEN_LEVELS)
    assert float(roomy.dropped_fraction) == 0.0
    assert 0.0 < float(tight.dropped_fraction) < 1.0
