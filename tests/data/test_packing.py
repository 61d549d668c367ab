"""Sequence packing: every example lands in one slot with exactly its real tokens, and the
model's loss on a packed batch equals the loss on the same examples unpacked."""

import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from rs_jax.config_files import ConfigError, load_config
from rs_jax.data import packing as packing_lib
from rs_jax.models.rsvlm import example_rows
from rs_jax.train import experiment as experiment_lib
from rs_jax.train.losses import compute_loss
from rs_jax.train.trainer import make_train_step

REPO = Path(__file__).resolve().parents[2]
# configs/tiny.py: no text before the image, 1 + 4 + 16 visual tokens, 24 + 8 text tokens.
LONGEST = 0 + 21 + 24 + 8


def _setup(tmp_path, *overrides):
    config = load_config(
        str(REPO / "configs/tiny.py"),
        [f"data.data_dir={tmp_path / 'data'}", "data.num_train=32", *overrides],
    )
    return experiment_lib.setup(config, str(tmp_path / "run"))


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """The tiny model with packing (4 slots in rows shorter than 4 examples: some rows
    hold fewer) and its first packed batch."""
    exp = _setup(
        tmp_path_factory.mktemp("packing"),
        "data.packing.slots=4",
        f"data.packing.length={2 * LONGEST}",
    )
    return exp, next(exp.data.train_iterator(seed=0))


def test_every_example_lands_in_one_slot_with_its_real_tokens(packed):
    exp, batch = packed
    rows, slots = batch["valid"].shape
    assert rows == exp.config.data.batch_size and slots == 4
    assert batch["token_index"].shape == (rows, 2 * LONGEST)
    # The same stream unpacked: packed rows take its examples in order, first fit.
    unpacked = dataclasses.replace(exp.data, packing=None).train_iterator(seed=0)
    stream = []
    while len(stream) < int(batch["valid"].sum()) + 8:
        b = next(unpacked)
        stream += [{k: b[k][i] for k in packing_lib.SLOT_FIELDS} for i in range(len(b["valid"]))]
    width = LONGEST
    seen = []
    for r in range(rows):
        for k in np.flatnonzero(batch["valid"][r]):
            example = {key: batch[key][r, k] for key in packing_lib.SLOT_FIELDS}
            seen.append(next(i for i, e in enumerate(stream) if _same(e, example)))
            # Its tokens: the unpacked row's real ones, in order, each with its position.
            mine = batch["token_segment"][r] == k + 1
            real = np.concatenate(
                [np.ones(21, bool), example["prompt_mask"] > 0, example["answer_mask"] > 0]
            )
            np.testing.assert_array_equal(
                batch["token_index"][r][mine], k * width + np.flatnonzero(real)
            )
            np.testing.assert_array_equal(batch["token_position"][r][mine], np.arange(real.sum()))
            # The token before each answer token predicts it.
            answer = np.flatnonzero(example["answer_mask"])
            predicting = batch["answer_position"][r, k, answer]
            np.testing.assert_array_equal(
                batch["token_index"][r][predicting + 1], k * width + 21 + 24 + answer
            )
    # Nothing skipped or repeated: the first examples of the stream, each once. Rows are
    # shorter than four examples, so packing saved room: fewer real slots than 4 a row.
    assert sorted(seen) == list(range(len(seen)))
    assert len(seen) < rows * 4 and len(seen) > rows


def _same(a, b):
    return all(np.array_equal(a[k], b[k]) for k in packing_lib.SLOT_FIELDS)


def test_packed_loss_equals_the_same_examples_unpacked(packed):
    exp, host = packed
    batch = exp.shard_batch(host)
    unpacked = {k: v for k, v in example_rows(batch).items() if k not in packing_lib.PACKING_FIELDS}
    model = nnx.merge(exp.graphdef, exp.state["params"])
    with jax.set_mesh(exp.mesh):
        _, packed_metrics = jax.jit(lambda b: compute_loss(model, b))(batch)
        _, unpacked_metrics = jax.jit(lambda b: compute_loss(model, b))(unpacked)
    assert set(packed_metrics) == set(unpacked_metrics)
    for key in packed_metrics:
        np.testing.assert_allclose(
            float(packed_metrics[key]), float(unpacked_metrics[key]), rtol=2e-5, atol=1e-6
        )
    # And it trains: a step on packed rows runs and its loss is finite.
    with jax.set_mesh(exp.mesh):
        _, metrics = make_train_step(exp)(exp.state, batch)
    assert np.isfinite(float(metrics["loss"]))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (("data.packing.slots=2", "data.packing.length=40"), r"packing\.length=40 is shorter"),
        (("data.packing.slots=-1",), r"packing\.slots must be >= 0"),
        (("data.packing.slots=2", "data.packing.length=99", "model.llm.moe_every=1"),
         r"needs config\.model\.llm\.moe_every=0"),
    ],
)  # fmt: skip
def test_bad_packing_settings_name_the_key(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        _setup(tmp_path, *overrides)
