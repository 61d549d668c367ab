import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from configs import tiny
from rs_jax.models import build_model
from rs_jax.models.config import DecoderConfig, ExpertsConfig, ModelConfig, Rope
from rs_jax.train.losses import compute_loss

# 3 KB levels: scene (4 entries), landcover (3), object (5).
KB_LEVELS = ("scene",) * 4 + ("landcover",) * 3 + ("object",) * 5
VOCAB = 64


def tiny_config(arg: str | None = None):
    return tiny.get_config(arg)


def model_config(config) -> ModelConfig:
    return ModelConfig.from_config(config.model, config.data.image_size).with_vocab(VOCAB)


def make_model(config, mesh, kb_levels=KB_LEVELS, **kwargs):
    return build_model(
        model_config(config), kb_levels, mesh, config.sharding_rules, seed=config.seed, **kwargs
    )


def decoder_config(**overrides) -> DecoderConfig:
    """A small grouped-query LLaMA decoder: 2 blocks of width 32, 4 heads on 2 kv heads."""
    defaults = DecoderConfig(
        vocab_size=16,
        width=32,
        depth=2,
        num_heads=4,
        num_kv_heads=2,
        mlp_dim=48,
        rope=Rope(),
        qkv_bias=True,
        tie_embeddings=True,
        moe_every=0,
        norm_eps=1e-5,
    )
    return dataclasses.replace(defaults, **overrides)


def experts_config(**overrides) -> ExpertsConfig:
    """A small level-grouped MoE: 3 levels x 2 experts, 1 shared, top-1, roomy capacity."""
    defaults = ExpertsConfig(
        num_levels=3,
        experts_per_level=2,
        shared_experts=1,
        top_k=1,
        capacity_factor=4.0,
        mlp_dim=32,
        dispatch="einsum",
        router_jitter=0.0,
        coarse_to_fine=False,
        balance_loss_weight=0.01,
        z_loss_weight=1e-3,
    )
    return dataclasses.replace(defaults, **overrides)


def random_batch(batch_size: int = 8, image_size: int = 16, seed: int = 0) -> dict:
    """Model-level batch for the 3 tiny levels; kb_labels [B, 3, 2] are rows of KB_LEVELS."""
    rng = np.random.default_rng(seed)
    prompt_mask = np.ones((batch_size, 6), np.int32)
    prompt_mask[::2, :2] = 0  # some prompts left-padded
    answer_mask = np.ones((batch_size, 4), np.int32)
    answer_mask[1::2, 3:] = 0  # some answers right-padded
    return {
        "image": rng.integers(0, 256, (batch_size, image_size, image_size, 3), np.uint8),
        "prompt_ids": rng.integers(5, VOCAB, (batch_size, 6)).astype(np.int32) * prompt_mask,
        "prompt_mask": prompt_mask,
        "answer_ids": rng.integers(5, VOCAB, (batch_size, 4)).astype(np.int32) * answer_mask,
        "answer_mask": answer_mask,
        "valid": np.ones((batch_size,), np.int32),
        "kb_labels": np.stack(
            [
                np.stack([rng.integers(0, 4, batch_size), -np.ones(batch_size, int)], -1),
                np.stack([rng.integers(4, 7, batch_size), -np.ones(batch_size, int)], -1),
                rng.integers(7, 12, (batch_size, 2)),
            ],
            axis=1,
        ).astype(np.int32),
    }


def randomize(module, seed: int, scale: float = 0.3):
    """Every parameter random: zero biases and unit norm scales would hide a misuse."""
    rng = np.random.default_rng(seed)
    state = nnx.state(module, nnx.Param)
    nnx.update(
        module,
        jax.tree.map(lambda a: jnp.asarray(scale * rng.normal(size=a.shape), a.dtype), state),
    )
    return module


def fit(config, mesh, batches: list[dict], steps: int, learning_rate: float) -> np.ndarray:
    """Per-step losses of `make_model(config)` trained with AdamW on `batches` in turn.

    The learning rate is an argument of the compiled step, not a constant in it: every test
    fitting the same config and batch shapes runs one program (compiled once per suite)."""
    graphdef, params = nnx.split(make_model(config, mesh))
    # The others stay constants (as arrays too, the pure-bf16 run went to NaN at step 2).
    static = ("b1", "b2", "eps", "eps_root", "weight_decay")
    tx = optax.inject_hyperparams(optax.adamw, static_args=static)(learning_rate=learning_rate)
    batches = [jax.tree.map(jnp.asarray, batch) for batch in batches]
    # The state leaves the step sharded as it came in: left to propagation, some specs come
    # out different and the second step compiles the program again.
    replicated = jax.NamedSharding(mesh, jax.P())
    state = (params, tx.init(params))
    shardings = jax.tree.map(lambda x: x.sharding if x.committed else replicated, state)
    params, opt_state = jax.device_put(state, shardings)

    @functools.partial(jax.jit, out_shardings=(*shardings, None))
    def step(params, opt_state, batch):
        def loss_fn(p):
            return compute_loss(nnx.merge(graphdef, p), batch)[0]

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    with jax.set_mesh(mesh):
        for i in range(steps):
            params, opt_state, loss = step(params, opt_state, batches[i % len(batches)])
            losses.append(float(loss))
    return np.array(losses)
