"""Optimizer: schedule shape, weight-decay mask, and that it actually optimises."""

import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx

from rs_jax.train.optimizer import decay_mask, make_optimizer

TRAIN = dict(
    learning_rate=1e-2,
    steps=200,
    warmup_steps=20,
    weight_decay=0.0,
    grad_clip=1.0,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
)


def test_schedule_endpoints():
    _, schedule = make_optimizer(TRAIN)
    assert float(schedule(0)) == 0.0
    assert float(schedule(10)) == pytest.approx(5e-3)
    assert float(schedule(20)) == pytest.approx(1e-2)
    assert float(schedule(110)) == pytest.approx((1e-2 + 1e-4) / 2)
    assert float(schedule(200)) == pytest.approx(1e-4)


def test_short_run_shrinks_warmup():
    # steps < warmup_steps (a smoke run) must still reach the peak and decay.
    _, schedule = make_optimizer(dict(TRAIN, steps=5, warmup_steps=100))
    assert float(schedule(4)) == pytest.approx(1e-2)
    assert float(schedule(5)) == pytest.approx(1e-4)


class Block(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.linear = nnx.Linear(4, 3, rngs=rngs)
        self.norm = nnx.RMSNorm(3, rngs=rngs)
        self.experts = nnx.Param(jnp.ones((2, 4, 3)))
        self.scale = nnx.Param(jnp.ones((2, 3)))  # per-expert scale: rank 2, still no decay


def test_decay_mask_excludes_biases_scales_and_vectors():
    mask = decay_mask(nnx.state(Block(nnx.Rngs(0)), nnx.Param))
    assert mask["linear"]["kernel"].get_value() is True
    assert mask["experts"].get_value() is True
    assert mask["linear"]["bias"].get_value() is False
    assert mask["norm"]["scale"].get_value() is False
    assert mask["scale"].get_value() is False
    assert decay_mask({"w": jnp.ones((2, 2)), "v": jnp.ones(3)}) == {"w": True, "v": False}


def test_minimises_a_quadratic():
    tx, _ = make_optimizer(dict(TRAIN, learning_rate=0.1))
    target = jnp.array([[1.0, -2.0], [0.5, 3.0]])
    params = {"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)}

    def loss(p):
        return jnp.sum((p["w"] - target) ** 2) + jnp.sum((p["b"] - 1.0) ** 2)

    @jax.jit
    def step(p, opt_state):
        grads = jax.grad(loss)(p)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state

    opt_state = tx.init(params)
    start = loss(params)
    for _ in range(TRAIN["steps"]):
        params, opt_state = step(params, opt_state)
    assert float(loss(params)) < 1e-2 * float(start)


def test_weight_decay_applies_to_matrices_only():
    tx, _ = make_optimizer(dict(TRAIN, weight_decay=0.5, warmup_steps=0))
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    assert float(jnp.abs(updates["w"]).max()) > 0  # decayed toward 0
    assert float(jnp.abs(updates["b"]).max()) == 0


def test_works_with_nnx_optimizer():
    model = Block(nnx.Rngs(0))
    tx, _ = make_optimizer(dict(TRAIN, warmup_steps=0))  # lr(0) > 0
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    grads = jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param))
    before = model.linear.kernel.get_value().copy()
    optimizer.update(model, grads)
    assert not jnp.allclose(before, model.linear.kernel.get_value())


def _model_like_params():
    ones = lambda *shape: jnp.ones(shape, jnp.float32)  # noqa: E731
    return {
        "vision": {"kernel": ones(4, 4)},
        "llm": {"attn": {"kernel": ones(4, 4), "lora_a": ones(4, 2), "lora_b": ones(2, 4)}},
        "projector": {"kernel": ones(4, 4), "bias": ones(4)},
    }


def test_frozen_parts_get_no_updates_and_no_moments():
    """LLaVA stage 1 (vision and llm frozen): only the projector and the LoRA adapters move,
    and the AdamW moments exist for them alone."""
    params = _model_like_params()
    tx, _ = make_optimizer(dict(TRAIN, warmup_steps=0), params, ("vision", "llm"))
    state = tx.init(params)
    trainable = 4 * 2 + 2 * 4 + 4 * 4 + 4  # lora_a, lora_b, projector kernel and bias
    moments = sum(x.size for x in jax.tree.leaves(state) if getattr(x, "ndim", 0) >= 1)
    assert moments == 2 * trainable  # mu and nu, nothing for the 32 frozen values
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, state, params)
    new = optax.apply_updates(params, updates)
    assert (new["vision"]["kernel"] == 1).all() and (new["llm"]["attn"]["kernel"] == 1).all()
    assert (new["llm"]["attn"]["lora_a"] != 1).all() and (new["projector"]["bias"] != 1).all()


def test_freezing_an_unknown_part_names_the_key():
    with pytest.raises(ValueError, match=r"config.train.freeze: 'visoin' names no parameter"):
        make_optimizer(TRAIN, _model_like_params(), ("visoin",))
