"""Freezing parts of the model: their weight gradients are dropped from the compiled step
(fewer FLOPs, with gradient accumulation too), and the logged gradient norm is that of the
parameters that train."""

from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from rs_jax.config_files import load_config
from rs_jax.train import experiment as experiment_lib
from rs_jax.train import optimizer as optimizer_lib
from rs_jax.train.trainer import make_grad_fn, make_train_step

REPO = Path(__file__).resolve().parents[2]


def setup(tmp_path, freeze: str, accum: int = 1):
    values = {
        "data.data_dir": tmp_path / "data",
        "train.freeze": freeze,
        "train.grad_accum_steps": accum,
        "data.batch_size": 8 * accum,  # rows for every micro-batch on 8 devices
    }
    overrides = [f"{k}={v}" for k, v in values.items()]
    config = load_config(str(REPO / "configs/tiny.py:baseline"), overrides)
    return experiment_lib.setup(config, str(tmp_path / f"work{len(freeze)}"))


@pytest.mark.parametrize("accum", [1, 2])
def test_frozen_weight_gradients_are_not_computed(tmp_path, accum):
    flops = {}
    for freeze in ("", "vision,llm"):
        exp = setup(tmp_path, freeze, accum)
        batch = exp.abstract_batch(exp.config.data.batch_size)
        compiled = make_train_step(exp).lower(exp.state, batch).compile()
        flops[freeze] = compiled.cost_analysis()["flops"]
    assert flops["vision,llm"] < 0.8 * flops[""], flops


def test_grad_norm_is_that_of_the_trained_parameters(tmp_path):
    exp = setup(tmp_path, "vision,llm")
    batch = exp.shard_batch(next(exp.data.train_iterator(seed=0)))
    with jax.set_mesh(exp.mesh):
        key = jax.random.fold_in(jax.random.key(exp.config.seed), 0)
        grads, _ = jax.jit(make_grad_fn(exp))(exp.state["params"], batch, key)
        _, metrics = make_train_step(exp)(exp.state, batch)
    labels = jax.tree.leaves(optimizer_lib.frozen_labels(exp.state["params"], exp.frozen))
    trained = [g for g, label in zip(jax.tree.leaves(grads), labels) if label == "train"]
    assert 0 < len(trained) < len(labels)
    np.testing.assert_allclose(metrics["grad_norm"], optax.global_norm(trained), rtol=1e-5)
