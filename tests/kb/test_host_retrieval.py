"""Host-side retrieval: ScaNN ids == on-device top-k ids; the "host" mode end to end."""

import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs.common import SHARDING_RULES
from rs_jax.config_files import load_config
from rs_jax.data.scenes import kb_entries
from rs_jax.kb.index import LevelIndex
from rs_jax.kb.store import write_built_kb
from rs_jax.models.config import KnowledgeConfig, ModelConfigError, Precision
from rs_jax.models.retrieval import KnowledgeBase
from rs_jax.sharding import make_mesh, sharding_context
from rs_jax.train import experiment as experiment_lib
from rs_jax.train.trainer import make_train_step
from tests.fakes import FakeEncoder

REPO = Path(__file__).resolve().parents[2]
LEVELS = ("scene", "landcover", "object")
DIM = 24


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_scann_ids_equal_device_top_k_ids(k):
    rng = np.random.default_rng(k)
    row_level = rng.integers(0, 3, size=90)
    table = _unit_rows(rng.normal(size=(90, DIM)))
    queries = rng.normal(size=(16, DIM)).astype(np.float32)
    index = LevelIndex.build(table, [LEVELS[i] for i in row_level])
    cfg = KnowledgeConfig(dim=DIM, top_k=k)
    with sharding_context(make_mesh({}, jax.devices()[:1]), SHARDING_RULES):
        kb = KnowledgeBase(
            [LEVELS[i] for i in row_level], cfg, Precision(), table=table, rngs=nnx.Rngs(0)
        )
    for name in LEVELS:
        host_ids, _ = index.search(queries, name, k)
        found = kb.retrieve(jnp.asarray(queries), name)
        np.testing.assert_array_equal(host_ids, np.asarray(found.ids), err_msg=name)
        # Given those ids, the model scores them exactly as its own top-k.
        given = kb.retrieve(jnp.asarray(queries), name, ids=jnp.asarray(host_ids))
        np.testing.assert_array_equal(np.asarray(given.ids), host_ids)
        np.testing.assert_allclose(np.asarray(given.scores), np.asarray(found.scores))


def fake_query(example: dict) -> np.ndarray:
    """A deterministic stand-in for the sentence encoder: a random vector per question."""
    seed = zlib.crc32(str(example["question_text"]).encode())
    return np.random.default_rng(seed).normal(size=DIM).astype(np.float32)


@pytest.fixture(scope="module")
def built_kb(tmp_path_factory):
    entries = kb_entries()
    table = _unit_rows(np.random.default_rng(0).normal(size=(len(entries), DIM)))
    out = tmp_path_factory.mktemp("kb") / "built"
    return write_built_kb(out, entries, table, encoder=FakeEncoder(dim=DIM))


def config_for(built, **overrides):
    values = {
        "model.kb.source": str(built),
        "model.kb.dim": DIM,
        "model.kb.retrieval": "host",
        "data.data_dir": str(Path(built).parent / "data"),
        **overrides,
    }
    return load_config(str(REPO / "configs/tiny.py"), [f"{k}={v}" for k, v in values.items()])


def test_host_mode_batches_carry_ids_and_train(built_kb, tmp_path):
    exp = experiment_lib.setup(config_for(built_kb.path), str(tmp_path), query_fn=fake_query)
    k, num_levels = exp.config.model.kb.top_k, len(LEVELS)
    host = next(exp.data.train_iterator(seed=0))
    ids = host["kb_ids"]
    assert ids.shape == (exp.config.data.batch_size, num_levels, k) and ids.dtype == np.int32
    entry_levels = np.asarray(exp.knowledge.entry_levels)
    for level, name in enumerate(LEVELS):
        assert (entry_levels[ids[:, level]] == name).all()
    # Row 0's ids are the index's answer for its question's query.
    want, _ = built_kb.index.search(
        fake_query({"question_text": host["question_text"][0]})[None], "object", k
    )
    np.testing.assert_array_equal(ids[0, 2], want[0])
    evals = next(exp.data.eval_batches(exp.config.eval.batch_size))
    assert evals["kb_ids"].shape == (exp.config.eval.batch_size, num_levels, k)

    batch = exp.shard_batch(host)
    before = np.asarray(exp.state["params"]["augment"][0]["query_proj"]["kernel"][...])
    assert batch["kb_ids"].shape == ids.shape
    model = nnx.merge(exp.graphdef, exp.state["params"])
    with jax.set_mesh(exp.mesh):
        # Jitted: one program, where eagerly every op of the model compiles on its own.
        visual = nnx.jit(lambda m, *inputs: m.encode(*inputs))(
            model, batch["image"], batch["prompt_ids"], batch["prompt_mask"], batch["kb_ids"]
        )
        for level, found in enumerate(visual.retrieved):
            np.testing.assert_array_equal(np.asarray(found.ids), ids[:, level])
        step = make_train_step(exp)
        state, _ = step(exp.state, batch)  # the warmup starts at learning rate 0
        state, metrics = step(state, batch)
    assert np.isfinite(float(metrics["loss"]))
    # The learned query still trains although the host chose the ids.
    after = np.asarray(state["params"]["augment"][0]["query_proj"]["kernel"][...])
    assert not np.array_equal(before, after)


def test_host_mode_without_a_built_kb_is_a_clear_error(tmp_path):
    config = load_config(str(REPO / "configs/tiny.py"), ["model.kb.retrieval=host"])
    with pytest.raises(ModelConfigError, match="kb.source"):
        experiment_lib.setup(config, str(tmp_path))


def test_unknown_retrieval_mode_is_a_clear_error(tmp_path):
    config = load_config(str(REPO / "configs/tiny.py"), ["model.kb.retrieval=cpu"])
    with pytest.raises(
        ModelConfigError, match=r"kb\.retrieval='cpu': expected one of \['device', 'host'\]"
    ):
        experiment_lib.setup(config, str(tmp_path))
