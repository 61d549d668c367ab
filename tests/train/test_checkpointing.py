"""Checkpoints: state + grain iterator round trip, shardings kept, corruption reported."""

import shutil

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs.common import SHARDING_RULES
from rs_jax.train import partitioning as part
from rs_jax.train.checkpointing import Checkpointer, CheckpointError


def make_iterator():
    return iter(grain.MapDataset.range(100).shuffle(seed=0).batch(4).to_iter_dataset())


@pytest.fixture(scope="module")
def mesh():
    return part.make_mesh(dict(data=2, fsdp=2, expert=1, tensor=2))


def sharded_state(mesh):
    w_sharding = part.named_sharding(mesh, SHARDING_RULES, ("embed", "mlp"))
    return {
        "params": {"w": jax.device_put(jnp.arange(128.0).reshape(8, 16), w_sharding)},
        "step": jnp.asarray(3, jnp.int32),
    }


def abstract_of(state):
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )


def test_round_trip_continues_stream_and_keeps_sharding(tmp_path, mesh):
    state = sharded_state(mesh)
    iterator = make_iterator()
    for _ in range(3):
        next(iterator)
    with Checkpointer(tmp_path, keep=2) as ckpt:
        assert ckpt.latest_step() is None
        assert ckpt.save(3, state, iterator)
        # Iterating on while the save runs must not change what was saved.
        expected = [next(iterator) for _ in range(5)]
        ckpt.wait()
        assert ckpt.latest_step() == 3
        assert not ckpt.save(3, state, iterator)  # already saved: a no-op

    with Checkpointer(tmp_path) as ckpt:
        fresh = make_iterator()
        restored = ckpt.restore(ckpt.latest_step(), abstract_of(state), fresh)
    for want in expected:
        np.testing.assert_array_equal(next(fresh), want)
    w = restored["params"]["w"]
    np.testing.assert_array_equal(np.asarray(w), np.asarray(state["params"]["w"]))
    assert w.sharding == state["params"]["w"].sharding
    assert {s.data.shape for s in w.addressable_shards} == {(4, 8)}
    assert int(restored["step"]) == 3


def test_nnx_state_round_trip_without_iterator(tmp_path, mesh):
    class Tiny(nnx.Module):
        def __init__(self, rngs):
            self.w = nnx.Param(
                jax.random.normal(rngs.params(), (8, 16)), out_sharding=("embed", "mlp")
            )

    with part.sharding_context(mesh, SHARDING_RULES):
        model = Tiny(nnx.Rngs(0))
        abstract = nnx.state(nnx.eval_shape(lambda: Tiny(nnx.Rngs(1))))
    target = part.abstract_with_shardings(
        abstract, part.state_shardings(abstract, mesh, SHARDING_RULES)
    )
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, nnx.state(model))
    with Checkpointer(tmp_path) as ckpt:
        restored = ckpt.restore(1, target)
    w = restored["w"].get_value()
    np.testing.assert_array_equal(np.asarray(w), np.asarray(model.w.get_value()))
    assert w.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")


def test_keeps_only_the_newest(tmp_path):
    state = {"x": jnp.zeros(3)}
    with Checkpointer(tmp_path, keep=2) as ckpt:
        for step in (1, 2, 3):
            ckpt.save(step, state, make_iterator())
        ckpt.wait()
        assert ckpt.all_steps() == [2, 3]


def _truncate_data_files(step_dir):
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files
    for path in files:
        with open(path, "r+b") as f:
            f.truncate(10)


def _delete_iterator_state(step_dir):
    for path in (step_dir / "data_iter").glob("process_*.json"):
        path.unlink()


def _delete_state_item(step_dir):
    shutil.rmtree(step_dir / "state")


@pytest.mark.parametrize(
    "damage", [_truncate_data_files, _delete_iterator_state, _delete_state_item]
)
def test_corrupt_checkpoint_names_step_dir(tmp_path, damage):
    state = {"w": jnp.arange(12.0).reshape(3, 4)}
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(7, state, make_iterator())
    damage(tmp_path / "checkpoints" / "7")
    with Checkpointer(tmp_path) as ckpt, pytest.raises(CheckpointError) as info:
        ckpt.restore(7, abstract_of(state), make_iterator())
    message = str(info.value)
    assert str(tmp_path / "checkpoints" / "7") in message
    assert "Delete that directory" in message


def test_missing_step(tmp_path):
    with (
        Checkpointer(tmp_path) as ckpt,
        pytest.raises(CheckpointError, match="No checkpoint for step 5"),
    ):
        ckpt.restore(5, {"x": jax.ShapeDtypeStruct((2,), jnp.float32)})


def test_config_change_is_not_reported_as_corruption(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(2, {"w": jnp.zeros((4, 4))})
    for target in (
        {"w": jax.ShapeDtypeStruct((4, 8), jnp.float32)},
        {
            "w": jax.ShapeDtypeStruct((4, 4), jnp.float32),
            "b": jax.ShapeDtypeStruct((3,), jnp.float32),
        },
    ):
        with Checkpointer(tmp_path) as ckpt, pytest.raises(CheckpointError) as info:
            ckpt.restore(2, target)
        assert "does not match the state being restored" in str(info.value)
        assert "Delete" not in str(info.value)
