"""Checkpoints: state + grain iterator round trip, shardings kept, damage reported and
survived (the newest good checkpoint restores; damaged ones are moved aside)."""

import shutil

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs.common import SHARDING_RULES
from rs_jax import sharding as part
from rs_jax.train.checkpointing import CheckpointCorruptError, Checkpointer, CheckpointError


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


def _flip_bytes(step_dir):
    for path in (step_dir / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            data = bytearray(path.read_bytes())
            for i in range(0, len(data), 7):
                data[i] ^= 0xFF
            path.write_bytes(bytes(data))


def _delete_manifest(step_dir):
    (step_dir / "state" / "manifest.ocdbt").unlink()


DAMAGES = [
    _truncate_data_files,
    _flip_bytes,
    _delete_manifest,
    _delete_iterator_state,
    _delete_state_item,
]


@pytest.mark.parametrize("damage", DAMAGES)
def test_corrupt_checkpoint_names_step_dir(tmp_path, damage):
    state = {"w": jnp.arange(12.0).reshape(3, 4)}
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(7, state, make_iterator())
    damage(tmp_path / "checkpoints" / "7")
    with Checkpointer(tmp_path) as ckpt, pytest.raises(CheckpointCorruptError) as info:
        ckpt.restore(7, abstract_of(state), make_iterator())
    assert str(tmp_path / "checkpoints" / "7") in str(info.value)


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(tmp_path, damage, capsys):
    """The damaged step is moved aside whole (never deleted) with a warning naming it, and
    the previous one restores, with its data stream."""
    iterator = make_iterator()
    with Checkpointer(tmp_path, keep=3) as ckpt:
        ckpt.save(4, {"w": jnp.zeros((3, 4))}, iterator)
        expected_next = next(iterator)
        ckpt.save(7, {"w": jnp.ones((3, 4))}, iterator)
    latest = tmp_path / "checkpoints" / "7"
    damage(latest)
    damaged_files = files_under(latest)
    with Checkpointer(tmp_path) as ckpt:
        fresh = make_iterator()
        state, step = ckpt.restore_latest_good(
            {"w": jax.ShapeDtypeStruct((3, 4), jnp.float32)}, fresh
        )
        assert step == 4 and ckpt.all_steps() == [4]
    np.testing.assert_array_equal(np.asarray(state["w"]), np.zeros((3, 4)))
    np.testing.assert_array_equal(next(fresh), expected_next)
    warning = capsys.readouterr().out
    assert f"Checkpoint {latest} could not be restored" in warning
    assert files_under(tmp_path / "corrupt_checkpoints" / "7") == damaged_files


def test_no_good_checkpoint_restores_nothing_and_keeps_them(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(2, {"w": jnp.zeros(3)}, make_iterator())
    _delete_state_item(tmp_path / "checkpoints" / "2")
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.restore_latest_good({"w": jax.ShapeDtypeStruct((3,), jnp.float32)}) is None
    assert (tmp_path / "corrupt_checkpoints" / "2" / "data_iter").is_dir()


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
