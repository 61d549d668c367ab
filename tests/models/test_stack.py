"""Layer stacks: scanned == unrolled for the same parameters; every remat policy gives the
same loss and gradients, and keeps less for the backward pass than no remat."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rs_jax.train.losses import compute_loss
from tests.models.conftest import make_model, random_batch, tiny_config


def loss_and_grads(config, mesh, params=None):
    """Loss, gradients and parameters of the tiny model (with `params` if given)."""
    model = make_model(config, mesh)
    graphdef, own = nnx.split(model)
    params = own if params is None else params
    batch = jax.tree.map(jnp.asarray, random_batch())

    def loss_fn(p):
        return compute_loss(nnx.merge(graphdef, p), batch)[0]

    with jax.set_mesh(mesh):
        loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
    return float(loss), grads, params


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.mark.parametrize("moe_every", [0, 2])
def test_scanned_equals_unrolled(moe_every, single_device_mesh):
    config = tiny_config()
    config.model.llm.moe_every = moe_every
    loss, grads, params = loss_and_grads(config, single_device_mesh)
    config.model.scan_layers = False
    unrolled_loss, unrolled_grads, _ = loss_and_grads(config, single_device_mesh, params)
    # Same parameter layout either way: a checkpoint does not depend on the choice.
    assert jax.tree.structure(grads) == jax.tree.structure(unrolled_grads)
    assert params["llm"]["groups"]["blocks"]["blocks"][0]["attn"]["query"]["kernel"].shape[0] == (
        2 // max(moe_every, 1)
    )
    np.testing.assert_allclose(loss, unrolled_loss, rtol=1e-6)
    assert_trees_close(grads, unrolled_grads)


def test_remat_policies_give_the_same_loss_and_gradients(single_device_mesh):
    config = tiny_config("baseline")
    reference, grads, params = loss_and_grads(config, single_device_mesh)
    for policy in ("dots", "projections", "full"):
        config.model.remat_policy = policy
        loss, policy_grads, _ = loss_and_grads(config, single_device_mesh, params)
        np.testing.assert_allclose(loss, reference, rtol=1e-6, err_msg=policy)
        assert_trees_close(policy_grads, grads)


def test_full_remat_keeps_less_for_the_backward_pass(single_device_mesh):
    """XLA's buffer assignment for the gradient of a deeper decoder: 'full' keeps only each
    block's input, so its temporaries are smaller than with every activation saved."""

    def temp_bytes(policy):
        config = tiny_config("baseline")
        config.model.llm.update(depth=8, mlp_dim=256)
        config.model.remat_policy = policy
        model = make_model(config, single_device_mesh)
        graphdef, params = nnx.split(model)
        batch = jax.tree.map(jnp.asarray, random_batch(batch_size=32))
        grad = jax.jit(jax.grad(lambda p: compute_loss(nnx.merge(graphdef, p), batch)[0]))
        with jax.set_mesh(single_device_mesh):
            return grad.lower(params).compile().memory_analysis().temp_size_in_bytes

    none, full = temp_bytes("none"), temp_bytes("full")
    assert full < 0.8 * none, (full, none)
