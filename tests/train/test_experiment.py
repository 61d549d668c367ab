"""Experiment setup with a built knowledge base: frozen table, adapter, dimension checks."""

from pathlib import Path

import jax
import numpy as np
import pytest

from rs_jax.config_files import load_config
from rs_jax.data.scenes import kb_entries
from rs_jax.kb.schema import Entry, make_id
from rs_jax.kb.store import BuiltKB, write_built_kb
from rs_jax.train import experiment as experiment_lib
from rs_jax.train.trainer import make_train_step
from tests.fakes import FakeEncoder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built_kb(tmp_path_factory):
    """The synthetic dataset's vocabulary plus unrelated entries, random 24-d embeddings."""
    entries = [
        Entry(id=make_id(e.level, e.name), level=e.level, name=e.name, description=e.description)
        for e in kb_entries()
    ] + [
        Entry(id=f"object/thing_{i}", level="object", name=f"thing {i}", description="x")
        for i in range(5)
    ]
    table = np.random.default_rng(0).normal(size=(len(entries), 24)).astype(np.float32)
    out = tmp_path_factory.mktemp("kb") / "built"
    write_built_kb(out, entries, table, encoder=FakeEncoder(dim=24))
    return out, table


def config_for(built, tmp_path, **overrides):
    # One dataset for the whole module (next to the built KB), one workdir per test.
    values = {
        "model.kb.source": str(built),
        "model.kb.dim": 24,
        "data.data_dir": str(Path(built).parent / "data"),
        **overrides,
    }
    return load_config(str(REPO / "configs/tiny.py"), [f"{k}={v}" for k, v in values.items()])


@pytest.mark.parametrize("adapter", [False, True])
def test_frozen_table_stays_put_and_labels_map_onto_it(built_kb, tmp_path, adapter):
    built, table = built_kb
    exp = experiment_lib.setup(
        config_for(built, tmp_path, **{"model.kb.adapter": adapter}), str(tmp_path)
    )
    # Every synthetic label found its entry, at its own level.
    assert (exp.knowledge.row_of_label >= 0).all()
    batch = exp.shard_batch(next(exp.data.train_iterator(seed=0)))
    step = make_train_step(exp)
    before = jax.tree.map(np.asarray, exp.state["params"])
    with jax.set_mesh(exp.mesh):
        state, metrics = step(exp.state, batch)
        state, metrics = step(state, batch)
    after = jax.tree.map(np.asarray, state["params"])
    np.testing.assert_array_equal(after["kb"]["embeddings"][...], table)
    if adapter:
        assert np.abs(after["kb"]["adapter"]["kernel"][...]).max() > 0
    # The rest of the model trains.
    assert not np.array_equal(
        after["llm"]["embedding"]["embedding"][...], before["llm"]["embedding"]["embedding"][...]
    )
    assert np.isfinite(float(metrics["loss"]))


def test_trainable_table_moves(built_kb, tmp_path):
    built, table = built_kb
    exp = experiment_lib.setup(
        config_for(built, tmp_path, **{"model.kb.trainable": True}), str(tmp_path)
    )
    batch = exp.shard_batch(next(exp.data.train_iterator(seed=0)))
    step = make_train_step(exp)
    with jax.set_mesh(exp.mesh):
        state, _ = step(exp.state, batch)  # the warmup starts at learning rate 0
        state, _ = step(state, batch)
    assert not np.array_equal(np.asarray(state["params"]["kb"]["embeddings"][...]), table)


def test_dimension_mismatch_is_a_clear_startup_error(built_kb, tmp_path):
    built, _ = built_kb
    message = r"holds 24-dimensional embeddings, but config\.model\.kb\.dim is 64; set "
    message += r"config\.model\.kb\.dim=24 to use it"
    with pytest.raises(ValueError, match=message):
        experiment_lib.setup(config_for(built, tmp_path, **{"model.kb.dim": 64}), str(tmp_path))


def test_kb_without_a_configured_level_is_a_clear_startup_error(tmp_path):
    entries = [
        Entry(id="scene/a", level="scene", name="a", description="x"),
        Entry(id="landcover/b", level="landcover", name="b", description="x"),
    ]
    out = tmp_path / "two_levels"
    write_built_kb(out, entries, np.eye(2, 24, dtype=np.float32), encoder=FakeEncoder(dim=24))
    with pytest.raises(ValueError, match="'object'"):
        experiment_lib.setup(config_for(out, tmp_path), str(tmp_path))


def test_a_rebuilt_knowledge_base_is_refused_naming_both_hashes(built_kb, tmp_path):
    """A KB rebuilt in place (same entries, size and dimension, new embeddings) would pair
    the checkpoint's cues with other vectors: resuming and evaluating stop, naming both."""
    from rs_jax.eval.evaluate import evaluate
    from rs_jax.train.trainer import train

    built, table = built_kb
    copy = tmp_path / "kb"
    kb = BuiltKB.load(built)
    write_built_kb(copy, kb.entries, table, encoder=FakeEncoder(dim=24))
    # The tiny config's 8 steps: the train step of test_frozen_table_stays_put..., compiled
    # once for both.
    config = config_for(copy, tmp_path, **{"train.checkpoint_every": 8})
    train(config, str(tmp_path / "run"))
    write_built_kb(copy, kb.entries, -table, encoder=FakeEncoder(dim=24), overwrite=True)
    config.train.steps = 9
    with pytest.raises(ValueError, match=r"knowledge_sha256: '[0-9a-f]{64}' -> '[0-9a-f]{64}'"):
        train(config, str(tmp_path / "run"))
    with pytest.raises(
        ValueError, match=rf"trained with knowledge base [0-9a-f]{{16}}, but {copy}"
    ):
        evaluate(config, str(tmp_path / "run"))
