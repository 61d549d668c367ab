"""The MoE maths against a naive per-token numpy reference written from docs/experts.md.

The reference reads the module's parameter arrays but none of its routing, capacity, gating
or dispatch code: router logits masked to the token's level group, top-k, gates renormalised
over the k choices, per-expert capacity ceil(capacity_factor * top_k * level tokens / E_l)
counted in token order with every first choice served before any second choice, overflow
dropped (the token keeps x + shared(h)), shared experts, coarse-to-fine conditioning. Both
dispatch paths run with capacities tight enough that tokens are dropped (the dropless path
must then equal the reference without capacity). The routing losses are also checked against
values worked out by hand on chosen router logits, and the decoder's MoE block on its visual
slots.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from configs.common import SHARDING_RULES
from rs_jax.models.config import DecoderConfig, Precision, Rope
from rs_jax.models.decoder import DecoderBlock
from rs_jax.models.experts import SemanticExperts
from rs_jax.sharding import make_mesh, sharding_context
from tests.models.conftest import experts_config

BATCH, WIDTH, MLP, EXPERTS_PER_LEVEL = 3, 8, 16, 3
# Levels interleaved on purpose: nothing in the semantics needs a level's tokens contiguous.
LEVELS = np.array([1, 0, 2, 1, 2, 2, 0, 1, 2, 2, 1, 0])
TIGHT = 0.5  # capacity factor: 1 slot per expert at top-1, 1-2 at top-2


# --- the reference ---------------------------------------------------------------------------


def silu(z):
    return z / (1.0 + np.exp(-z))


def rms_norm(x, scale, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def swiglu(h, w_gate, w_up, w_down):
    return (silu(h @ w_gate) * (h @ w_up)) @ w_down


def f64(variable) -> np.ndarray:
    return np.asarray(variable[...], np.float64)


def moe_weights(moe: SemanticExperts) -> dict:
    """The module's parameters as float64 arrays (weights only, no module code)."""
    w = {
        "norm": f64(moe.norm.scale),
        "eps": moe.norm.eps,
        "router": f64(moe.router.kernel),
        "experts": [f64(moe.wi_gate), f64(moe.wi_up), f64(moe.wo)],
        "shared": None,
        "condition": None,
    }
    if moe.shared is not None:
        w["shared"] = [f64(moe.shared.gate.kernel), f64(moe.shared.up.kernel)]
        w["shared"].append(f64(moe.shared.down.kernel))
    if moe.condition is not None:
        w["condition"] = f64(moe.condition.kernel)
    return w


class Reference(NamedTuple):
    y: np.ndarray  # [B, S, D]
    choice: np.ndarray  # [B, S, K] global expert ids, best first
    kept: np.ndarray  # [B, S, K] bool: the assignment got a capacity slot
    probs: np.ndarray  # [B, S, E] router probabilities (0 outside the token's group)
    lse: np.ndarray  # [B, S] log-sum-exp of the token's group logits
    top_gap: float  # smallest margin between the k-th and (k+1)-th probability


def serve(choice_row, expert_level, capacity, *, token_major=False):
    """[S, K] choices of one batch row -> [S, K] kept. capacity [L] per expert of a level
    (None: unlimited). GShard order: choice rank outer, token order inner."""
    s, k = choice_row.shape
    used = np.zeros(len(expert_level), int)
    kept = np.zeros((s, k), bool)
    order = [(t, j) for t in range(s) for j in range(k)]
    if not token_major:
        order = [(t, j) for j in range(k) for t in range(s)]
    for t, j in order:
        e = choice_row[t, j]
        if capacity is None or used[e] < capacity[expert_level[e]]:
            kept[t, j] = True
            used[e] += 1
    return kept


def capacities(cfg, levels) -> list[int]:
    counts = np.bincount(levels, minlength=cfg.num_levels)
    return [math.ceil(cfg.capacity_factor * cfg.top_k * n / cfg.experts_per_level) for n in counts]


def reference_moe(w: dict, x, levels, cfg, *, dropless: bool) -> Reference:
    """x [B, S, D], levels [S] -> the documented MoE, token by token (capacity per row)."""
    x = np.asarray(x, np.float64)
    b, s, _ = x.shape
    e_l, k = cfg.experts_per_level, cfg.top_k
    expert_level = np.repeat(np.arange(cfg.num_levels), e_l)
    capacity = None if dropless else capacities(cfg, levels)
    y = np.zeros_like(x)
    choice = np.zeros((b, s, k), int)
    kept = np.zeros((b, s, k), bool)
    probs = np.zeros((b, s, cfg.num_experts))
    lse = np.zeros((b, s))
    top_gap = np.inf
    for row in range(b):
        h = rms_norm(x[row], w["norm"], w["eps"])
        if cfg.coarse_to_fine:
            # c_l = W_c . mean of level l-1's normed tokens, from the unconditioned h.
            summary = [h[levels == lv].mean(0) @ w["condition"] for lv in range(cfg.num_levels)]
            h = h + np.stack([summary[lv - 1] if lv > 0 else 0 * h[0] for lv in levels])
        gates = np.zeros((s, k))
        for t in range(s):
            group = levels[t] * e_l + np.arange(e_l)
            logits = h[t] @ w["router"][:, group]
            top = logits.max()
            lse[row, t] = top + np.log(np.exp(logits - top).sum())
            p = np.exp(logits - lse[row, t])
            probs[row, t, group] = p
            ranked = np.argsort(-p, kind="stable")
            if k < e_l:
                top_gap = min(top_gap, p[ranked[k - 1]] - p[ranked[k]])
            choice[row, t] = group[ranked[:k]]
            gates[t] = p[ranked[:k]] / p[ranked[:k]].sum()
        kept[row] = serve(choice[row], expert_level, capacity)
        for t in range(s):
            out = 0.0 if w["shared"] is None else swiglu(h[t], *w["shared"])
            for j in range(k):
                if kept[row, t, j]:
                    e = choice[row, t, j]
                    out = out + gates[t, j] * swiglu(h[t], *(m[e] for m in w["experts"]))
            y[row, t] = x[row, t] + out
    return Reference(y, choice, kept, probs, lse, top_gap)


def reference_stats(ref: Reference, levels, cfg) -> dict:
    """Switch balance loss per level over its own group (mean over levels), z-loss, counts."""
    e_l = cfg.experts_per_level
    counts, balance = [], []
    for lv in range(cfg.num_levels):
        group = lv * e_l + np.arange(e_l)
        chosen = ref.choice[:, levels == lv].reshape(-1)
        n = np.array([(chosen == e).sum() for e in group], float)
        mean_prob = ref.probs[:, levels == lv][..., group].reshape(-1, e_l).mean(0)
        counts.append(n)
        balance.append(e_l * np.sum(n / n.sum() * mean_prob))
    return {
        "balance_loss": np.mean(balance),
        "z_loss": np.mean(ref.lse**2),
        "expert_counts": np.stack(counts),
        "dropped_fraction": 1.0 - ref.kept.mean(),
    }


def assert_close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=1e-5, atol=1e-5)


def assert_stats(stats, expected: dict, *, dropless: bool):
    assert_close(stats.balance_loss, expected["balance_loss"])
    assert_close(stats.z_loss, expected["z_loss"])
    np.testing.assert_array_equal(np.asarray(stats.expert_counts), expected["expert_counts"])
    assert_close(stats.dropped_fraction, 0.0 if dropless else expected["dropped_fraction"])


def decisive_router(moe: SemanticExperts, seed: int):
    """A router far from uniform: gates that differ, and no near-ties for top-k to break."""
    rng = np.random.default_rng(seed)
    kernel = rng.normal(scale=2.0 / math.sqrt(WIDTH), size=moe.router.kernel.shape)
    moe.router.kernel[...] = jnp.asarray(kernel, jnp.float32)


# --- 1. both dispatch paths == the reference, with tokens dropped ----------------------------


@pytest.mark.usefixtures("model_context")
@pytest.mark.parametrize("dispatch", ["einsum", "dropless"])
@pytest.mark.parametrize("top_k", [1, 2])
@pytest.mark.parametrize("coarse_to_fine", [False, True], ids=["flat", "c2f"])
def test_dispatch_equals_naive_reference(dispatch, top_k, coarse_to_fine):
    """Outputs and RoutingStats == reference; einsum drops per capacity, dropless nothing."""
    cfg = experts_config(
        experts_per_level=EXPERTS_PER_LEVEL,
        top_k=top_k,
        capacity_factor=TIGHT,
        mlp_dim=MLP,
        dispatch=dispatch,
        coarse_to_fine=coarse_to_fine,
    )
    moe = SemanticExperts(WIDTH, cfg, Precision(), rngs=nnx.Rngs(top_k))
    decisive_router(moe, seed=top_k)
    x = np.random.default_rng(7).normal(size=(BATCH, len(LEVELS), WIDTH)).astype(np.float32)
    y, stats = moe(jnp.asarray(x), LEVELS)

    w = moe_weights(moe)
    dropless = dispatch == "dropless"
    capped = reference_moe(w, x, LEVELS, cfg, dropless=False)
    ref = reference_moe(w, x, LEVELS, cfg, dropless=True) if dropless else capped
    assert ref.top_gap > 1e-5  # fp32 rounding (~1e-7) cannot flip a routing decision
    # The capacity really binds (the dropless path must ignore it), yet serves some tokens.
    assert 0 < capped.kept.sum() < capped.kept.size
    if top_k == 2 and not dropless:
        # Some second choices served too, and serving token by token would keep a different
        # set: the data tell the GShard order from the token-major one.
        assert capped.kept[..., 1].any()
        expert_level = np.repeat(np.arange(cfg.num_levels), EXPERTS_PER_LEVEL)
        capacity = capacities(cfg, LEVELS)
        token_major = [serve(c, expert_level, capacity, token_major=True) for c in capped.choice]
        assert (np.stack(token_major) != capped.kept).any()

    assert_close(y, ref.y)
    assert_stats(stats, reference_stats(ref, LEVELS, cfg), dropless=dropless)


def test_expert_parallel_dispatch_equals_naive_reference():
    """Both paths on a data2 x expert4 mesh (2 experts per device), with tokens dropped:
    capacity is per batch row, so splitting the batch and the experts must not change it."""
    mesh = make_mesh({"data": 2, "expert": 4})
    levels = np.array([0] * 5 + [1] * 7)  # fractional fair shares: the ceil matters
    x = np.random.default_rng(11).normal(size=(8, len(levels), WIDTH)).astype(np.float32)
    for dispatch in ("einsum", "dropless"):
        cfg = experts_config(
            num_levels=2,
            experts_per_level=4,
            top_k=2,
            capacity_factor=TIGHT,
            mlp_dim=MLP,
            dispatch=dispatch,
            coarse_to_fine=True,
        )
        with sharding_context(mesh, SHARDING_RULES):
            moe = SemanticExperts(WIDTH, cfg, Precision(), rngs=nnx.Rngs(5))
            decisive_router(moe, seed=5)
            batch = jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp", "expert"))))
            y, stats = nnx.jit(lambda moe, x: moe(x, levels))(moe, batch)
        dropless = dispatch == "dropless"
        ref = reference_moe(moe_weights(moe), x, levels, cfg, dropless=dropless)
        assert ref.top_gap > 1e-5
        if not dropless:
            assert 0 < ref.kept.sum() < ref.kept.size
        assert_close(y, ref.y)
        assert_stats(stats, reference_stats(ref, levels, cfg), dropless=dropless)


# --- 2. routing losses on hand-made router logits --------------------------------------------

LN3, LN4, LN7, LN8 = (math.log(v) for v in (3, 4, 7, 8))
OUT = 10.0  # out-of-group logits: large, so a missing level mask would change everything
# [B=2, S=4, E=4], levels [0, 0, 1, 1], experts {0, 1} for level 0 and {2, 3} for level 1.
HAND_LOGITS = np.array(
    [
        [
            [1 + LN3, 1, OUT, -OUT],  # p = [3/4, 1/4], lse = 1 + ln 4
            [LN7, 0, OUT, OUT],  # p = [7/8, 1/8], lse = ln 8
            [OUT, -OUT, -2, -2 + LN3],  # p = [1/4, 3/4], lse = -2 + ln 4
            [OUT, OUT, LN3, 0],  # p = [3/4, 1/4], lse = ln 4
        ],
        [
            [0, LN3, OUT, OUT],  # p = [1/4, 3/4], lse = ln 4
            [LN3, 0, -OUT, OUT],  # p = [3/4, 1/4], lse = ln 4
            [OUT, OUT, LN3, 0],  # p = [3/4, 1/4], lse = ln 4
            [-OUT, OUT, 0.5 + LN7, 0.5],  # p = [7/8, 1/8], lse = 0.5 + ln 8
        ],
    ]
)
HAND_LEVELS = np.array([0, 0, 1, 1])


def hadamard(n: int) -> np.ndarray:
    h = np.ones((1, 1))
    while len(h) < n:
        h = np.block([[h, h], [h, -h]])
    return h


def moe_with_router_logits(top_k: int, capacity_factor: float):
    """A module and input whose router logits are HAND_LOGITS: the tokens are Hadamard rows
    (RMS 1, so the norm leaves them, up to its eps, unchanged and orthogonal), and the router
    kernel maps each row to its logits."""
    cfg = experts_config(num_levels=2, top_k=top_k, capacity_factor=capacity_factor)
    moe = SemanticExperts(8, cfg, Precision(), rngs=nnx.Rngs(0))
    rows = hadamard(8)  # 8 tokens of width 8, rows @ rows.T = 8 I
    kernel = rows.T @ HAND_LOGITS.reshape(8, 4) / 8
    moe.router.kernel[...] = jnp.asarray(kernel, jnp.float32)
    return moe, jnp.asarray(rows.reshape(2, 4, 8), jnp.float32)


@nnx.jit  # compiled: cheaper here than the many eager op compilations
def routing_stats(moe, x):
    return moe(x, HAND_LEVELS)[1]


@pytest.mark.usefixtures("model_context")
def test_routing_losses_on_hand_made_logits():
    """balance_loss, z_loss, expert_counts, dropped_fraction: values worked out by hand."""
    lse = [1 + LN4, LN8, -2 + LN4, LN4, LN4, LN4, LN4, 0.5 + LN8]
    z_loss = np.mean(np.square(lse))

    moe, x = moe_with_router_logits(top_k=1, capacity_factor=1.0)
    stats = routing_stats(moe, x)
    # Top-1: level 0 sends 3 of its 4 tokens to expert 0 (rows 0, 0, 1), level 1 sends 3 to
    # its first expert (row 0 token 3, row 1 tokens 2, 3).
    np.testing.assert_array_equal(np.asarray(stats.expert_counts), [[3, 1], [3, 1]])
    # Mean probability of a level's first expert: (3/4 + 7/8 + 1/4 + 3/4) / 4 = 21/32 for
    # level 0, (1/4 + 3/4 + 3/4 + 7/8) / 4 = 21/32 for level 1.
    # Switch loss per level: E_l * sum(fraction * mean_prob) = 2 * (3/4 * 21/32 + 1/4 *
    # 11/32) = 37/32, the same for both levels, so their mean too.
    assert_close(stats.balance_loss, 37 / 32)
    assert_close(stats.z_loss, z_loss)
    # Capacity ceil(1 * 1 * 2 / 2) = 1 per expert and row: row 0 drops token 1 (expert 0,
    # after token 0), row 1 drops token 3 (expert 2, after token 2): 2 of 8 assignments.
    assert_close(stats.dropped_fraction, 2 / 8)

    # top_k = group size: every expert gets each of its level's tokens once, so fraction =
    # 1 / E_l and sum(mean_prob) = 1 whatever the logits: the Switch loss is exactly 1.
    moe, x = moe_with_router_logits(top_k=2, capacity_factor=1.0)
    stats = routing_stats(moe, x)
    np.testing.assert_array_equal(np.asarray(stats.expert_counts), [[4, 4], [4, 4]])
    assert_close(stats.balance_loss, 1.0)
    assert_close(stats.z_loss, z_loss)
    assert_close(stats.dropped_fraction, 0.0)  # capacity ceil(1 * 2 * 2 / 2) = 2


# --- 3. the decoder's MoE block on its visual slots ------------------------------------------


@pytest.mark.usefixtures("model_context")
def test_decoder_moe_block_visual_slots_equal_reference():
    """x = x + attn(x); visual slots: SemanticExperts (own norm + residual) == reference;
    text slots: x + SwiGLU(norm(x))."""
    moe_cfg = experts_config(
        experts_per_level=EXPERTS_PER_LEVEL,
        top_k=2,
        capacity_factor=TIGHT,
        mlp_dim=MLP,
        coarse_to_fine=True,
    )
    dec_cfg = DecoderConfig(
        vocab_size=32,
        width=WIDTH,
        depth=1,
        num_heads=2,
        num_kv_heads=1,
        mlp_dim=24,
        rope=Rope(),
        qkv_bias=False,
        tie_embeddings=True,
        moe_every=1,
    )
    block = DecoderBlock(dec_cfg, Precision(), moe_cfg, "xla", rngs=nnx.Rngs(3))
    decisive_router(block.moe, seed=3)
    levels = np.sort(LEVELS)  # coarse to fine, as RSVLM.token_levels() lays them out
    start, end = 2, 2 + len(levels)
    t = end + 3
    x = jnp.asarray(np.random.default_rng(5).normal(size=(2, t, WIDTH)), jnp.float32)
    mask = jnp.broadcast_to(jnp.tril(jnp.ones((t, t), bool)), (2, t, t))
    positions = jnp.broadcast_to(jnp.arange(t), (2, t))

    @nnx.jit  # one compilation instead of many eager ones
    def run(block, x):
        out, _, stats = block(
            x,
            mask=mask,
            positions=positions,
            cache=None,
            cache_index=0,
            visual_levels=levels,
            visual_start=start,
        )
        # The residual stream entering the MoE: attention is not under test here.
        attended, _ = block.attn(block.attn_norm(x), mask=mask, positions=positions)
        return out, stats, x + attended

    out, stats, x1 = run(block, x)
    x1 = np.asarray(x1, np.float64)

    ref = reference_moe(moe_weights(block.moe), x1[:, start:end], levels, moe_cfg, dropless=False)
    assert 0 < ref.kept.sum() < ref.kept.size
    assert_close(out[:, start:end], ref.y)
    assert_stats(stats, reference_stats(ref, levels, moe_cfg), dropless=False)

    text = np.concatenate([x1[:, :start], x1[:, end:]], axis=1)
    mlp = block.mlp
    dense = swiglu(
        rms_norm(text, f64(block.mlp_norm.scale), dec_cfg.norm_eps),
        f64(mlp.gate.kernel),
        f64(mlp.up.kernel),
        f64(mlp.down.kernel),
    )
    assert_close(np.concatenate([out[:, :start], out[:, end:]], axis=1), text + dense)
