"""Expert parallelism of the semantic experts on 8 simulated CPU devices.

Experts: 2 levels x 4 experts per level = 8 experts (divisible by every 'expert' axis size
used: 2, 4, 8), top-2, capacity roomy enough that the einsum path drops nothing, so both
dispatch paths compute the same function.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs.common import SHARDING_RULES
from rs_jax.models import moe_dispatch
from rs_jax.models.config import Precision
from rs_jax.models.experts import SemanticExperts
from rs_jax.models.moe_dispatch import grouped_matmul
from rs_jax.sharding import batch_sharding, make_mesh, sharding_context
from tests.models.conftest import experts_config

LEVELS = np.array([0] * 4 + [1] * 12)
BATCH, WIDTH, MLP, NUM_EXPERTS = 8, 16, 32, 8
MESHES = {
    "data2_expert4": {"data": 2, "expert": 4},
    "expert8": {"expert": 8},
    "fsdp2_expert2_tensor2": {"fsdp": 2, "expert": 2, "tensor": 2},
    "data2_tensor4": {"data": 2, "tensor": 4},
}
# 'tensor' in the role of 'expert': the experts and the batch on it (and the experts' hidden
# units whole, 'tensor' being taken). Dispatch must take every mesh axis from the rules.
ON_TENSOR = {
    "exp": "tensor",
    "act_exp": "tensor",
    "act_batch": ("data", "fsdp", "tensor"),
    "mlp": None,
}
EXPERTS_ON_TENSOR = tuple((name, ON_TENSOR.get(name, axes)) for name, axes in SHARDING_RULES)
EXPERT_MESHES = ["data2_expert4", "expert8", "fsdp2_expert2_tensor2"]


def make_experts(dispatch: str, experts_per_level: int = 4, **overrides) -> SemanticExperts:
    settings = dict(
        num_levels=2,
        experts_per_level=experts_per_level,
        top_k=2,
        capacity_factor=8.0,
        mlp_dim=MLP,
        dispatch=dispatch,
    )
    cfg = experts_config(**(settings | overrides))
    return SemanticExperts(WIDTH, cfg, Precision(), rngs=nnx.Rngs(0))


def inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, len(LEVELS), WIDTH)).astype(np.float32)
    cotangent = rng.normal(size=x.shape).astype(np.float32)
    return x, cotangent


def loss_and_grads(graphdef, state, x, cotangent):
    def loss(state):
        y, stats = nnx.merge(graphdef, state)(x, LEVELS)
        return jnp.sum(y * cotangent) + stats.balance_loss, (y, stats.dropped_fraction)

    (_, (y, dropped)), grads = jax.value_and_grad(loss, has_aux=True)(state)
    return y, dropped, grads


@functools.cache
def run(mesh_name: str | None, dispatch: str, rules=SHARDING_RULES):
    """Compile and run forward+backward; returns (y, dropped, grads, hlo, wi_gate)."""
    devices = jax.devices()[:1] if mesh_name is None else None
    mesh = make_mesh(MESHES.get(mesh_name, {}), devices)
    with sharding_context(mesh, rules):
        graphdef, state = nnx.split(make_experts(dispatch))
        x, cotangent = inputs()
        batch = batch_sharding(mesh, rules, x.ndim)
        x, cotangent = jax.device_put(x, batch), jax.device_put(cotangent, batch)
        compiled = (
            jax.jit(functools.partial(loss_and_grads, graphdef))
            .lower(state, x, cotangent)
            .compile()
        )
        y, dropped, grads = compiled(state, x, cotangent)
    return (
        np.asarray(y),
        float(dropped),
        jax.tree.map(np.asarray, grads),
        compiled.as_text(),
        (state["wi_gate"][...]),
    )


def assert_close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("dispatch", ["einsum", "dropless"])
@pytest.mark.parametrize("mesh_name", EXPERT_MESHES)
def test_sharded_matches_single_device(mesh_name, dispatch):
    y_ref, dropped_ref, grads_ref, _, w_ref = run(None, "einsum")
    assert dropped_ref == 0.0
    y, dropped, grads, _, w = run(mesh_name, dispatch)
    # Same seed, same values whatever the sharding: the reference is the same function.
    np.testing.assert_array_equal(np.asarray(w), np.asarray(w_ref))
    assert dropped == 0.0
    assert_close(y, y_ref)
    jax.tree.map(assert_close, grads, grads_ref)


def test_dropless_matches_einsum_on_one_device():
    y_ref, _, grads_ref, _, _ = run(None, "einsum")
    y, _, grads, _, _ = run(None, "dropless")
    assert_close(y, y_ref)
    jax.tree.map(assert_close, grads, grads_ref)


@pytest.mark.parametrize("dispatch", ["einsum", "dropless"])
def test_expert_parallel_hlo_uses_all_to_all_not_weight_all_gather(dispatch):
    hlo = run("data2_expert4", dispatch)[3]
    assert "all-to-all" in hlo
    full = rf"f32\[({NUM_EXPERTS},{WIDTH},{MLP}|{NUM_EXPERTS},{MLP},{WIDTH})\]"
    gathers = [line for line in hlo.splitlines() if re.search(rf"= {full}\S* all-gather", line)]
    assert not gathers, gathers


@pytest.mark.parametrize("mesh_name", EXPERT_MESHES)
def test_expert_weights_are_sharded(mesh_name):
    w = run(mesh_name, "einsum")[4]
    per_device = w.addressable_shards[0].data.nbytes
    expert_size = MESHES[mesh_name]["expert"]
    # fsdp/tensor split 'embed'/'mlp' further on the third mesh.
    others = MESHES[mesh_name].get("fsdp", 1) * MESHES[mesh_name].get("tensor", 1)
    assert per_device == w.nbytes // (expert_size * others)
    assert per_device <= w.nbytes / expert_size


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
def test_megablox_grouped_matmul_equals_ragged_dot(dtype):
    """The TPU's grouped matmul (Megablox, in Pallas interpret mode) equals XLA's ragged_dot,
    forward and gradients, with an empty group and rows past the groups (padding: zero)."""
    rng = np.random.default_rng(0)
    lhs = jnp.asarray(rng.normal(size=(104, 32)), dtype)
    rhs = jnp.asarray(rng.normal(size=(4, 32, 48)), dtype)
    sizes = jnp.asarray([30, 0, 40, 26], jnp.int32)  # 96 of 104 rows in a group
    weight = jnp.asarray(rng.normal(size=(104, 48)), jnp.float32)

    def run(kernel):
        def loss(lhs, rhs):
            out = grouped_matmul(lhs, rhs, sizes, kernel)
            return (out * weight).sum(), out

        return jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(lhs, rhs)

    (_, out), grads = run("megablox")
    (_, expected), expected_grads = run("xla")
    assert not np.asarray(out[96:]).any()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(
            np.asarray(got, np.float32), np.asarray(want, np.float32), rtol=1e-5, atol=1e-4
        )


@pytest.mark.parametrize("dispatch", ["einsum", "dropless"])
def test_dispatch_takes_its_mesh_axes_from_the_rules(dispatch):
    """With 'exp' and 'act_exp' mapped to 'tensor' the experts live there, and tokens travel
    to them over 'tensor': the same function, all-to-alls, no expert weight gathered."""
    y_ref, _, grads_ref, _, _ = run(None, "einsum")
    y, dropped, grads, hlo, w = run("data2_tensor4", dispatch, EXPERTS_ON_TENSOR)
    assert w.sharding.spec[0] == "tensor"
    assert w.addressable_shards[0].data.nbytes == w.nbytes // 4
    assert dropped == 0.0
    assert_close(y, y_ref)
    jax.tree.map(assert_close, grads, grads_ref)
    assert "all-to-all" in hlo
    full = rf"f32\[({NUM_EXPERTS},{WIDTH},{MLP}|{NUM_EXPERTS},{MLP},{WIDTH})\]"
    assert not re.search(rf"= {full}\S* all-gather", hlo)


def test_without_rules_nothing_is_pinned():
    """A mesh alone names no expert axes (as `constrain` pins nothing without rules)."""
    with jax.set_mesh(make_mesh(MESHES["data2_expert4"])):
        assert moe_dispatch.expert_axes() == () and moe_dispatch.expert_parallelism() == 1
    with sharding_context(make_mesh(MESHES["data2_expert4"]), SHARDING_RULES):
        assert moe_dispatch.expert_axes() == ("expert",)
        assert moe_dispatch.expert_parallelism() == 4


def test_config_errors():
    mesh = make_mesh(MESHES["data2_expert4"])
    not_divisible = pytest.raises(ValueError, match="6 experts is not divisible by the mesh expert")
    with sharding_context(mesh, SHARDING_RULES), not_divisible:
        make_experts("einsum", experts_per_level=3)


@pytest.mark.usefixtures("model_context")
def test_router_jitter_needs_a_key():
    experts = make_experts("einsum", shared_experts=0, top_k=1, router_jitter=0.5)
    x = jnp.asarray(inputs()[0])
    plain, _ = experts(x, LEVELS)
    again, _ = experts(x, LEVELS)
    jittered, _ = experts(x, LEVELS, jitter_key=jax.random.key(1))
    np.testing.assert_array_equal(plain, again)
    assert not np.allclose(plain, jittered)


def test_moe_ep_config_variants():
    from configs import moe_ep

    config = moe_ep.get_config("e=4,k=1,cap=2,dispatch=dropless,jitter=0.1")
    experts = config.model.experts
    assert (experts.experts_per_level, experts.top_k, experts.capacity_factor) == (4, 1, 2.0)
    assert experts.dispatch == "dropless" and experts.router_jitter == 0.1
    assert (config.mesh.data, config.mesh.expert, config.mesh.fsdp) == (-1, 4, 1)
    assert moe_ep.get_config().model.experts.dispatch == "einsum"
    with pytest.raises(ValueError, match=r"Unknown config variant\(s\) \['scatter'\]"):
        moe_ep.get_config("scatter")
