"""Gradient accumulation: N micro-batches give the gradient of the whole batch."""

from pathlib import Path

import jax
import numpy as np
import pytest

from rs_jax.config_files import load_config
from rs_jax.train import experiment as experiment_lib
from rs_jax.train.trainer import make_grad_fn

REPO = Path(__file__).resolve().parents[2]
# The load-balance and retrieval losses are means of per-batch ratios (nonlinear in the
# batch): averaged over micro-batches they differ from the whole batch's. Off here, the
# objective is exactly a sum over tokens (answer loss, z-loss) and the gradients must agree.
EXACT = {"model.experts.balance_loss_weight": 0.0, "model.kb.retrieval_loss_weight": 0.0}
MESH = {"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2}


def grads(tmp_path, accum: int, arg: str = ""):
    values = {"data.data_dir": tmp_path / "data", "train.grad_accum_steps": accum}
    values["data.batch_size"] = 16
    values |= EXACT | MESH
    config = load_config(
        str(REPO / f"configs/tiny.py{arg}"), [f"{k}={v}" for k, v in values.items()]
    )
    exp = experiment_lib.setup(config, str(tmp_path / "work"))
    batch = exp.shard_batch(next(exp.data.train_iterator(seed=0)))
    with jax.set_mesh(exp.mesh):
        fn = jax.jit(make_grad_fn(exp))
        return fn(exp.state["params"], batch, jax.random.key(0))


@pytest.mark.parametrize("arg", ["", ":baseline"])
def test_micro_batches_equal_one_large_batch(tmp_path, arg):
    whole, whole_metrics = grads(tmp_path, 1, arg)
    split, split_metrics = grads(tmp_path, 4, arg)
    np.testing.assert_allclose(split_metrics["loss"], whole_metrics["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(split), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-4, atol=1e-6)


def test_batch_must_split_into_micro_batches_over_the_mesh(tmp_path):
    with pytest.raises(ValueError, match="data.batch_size=16 must be divisible by the 4 batch"):
        grads(tmp_path, 3)  # 16 rows over 4 devices in 3 micro-batches
