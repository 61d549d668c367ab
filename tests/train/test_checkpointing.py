"""Checkpoints: state + grain iterator round trip, shardings kept, damage reported and
survived (the newest good checkpoint restores; damaged ones are moved aside), content
checksums that catch damage the file format does not."""

import shutil

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs.common import SHARDING_RULES
from rs_jax import sharding as part
from rs_jax.train.checkpointing import (
    CheckpointCorruptError,
    Checkpointer,
    CheckpointError,
    CheckpointMismatchError,
    content_checksums,
    warm_start,
)


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


def _flip_eight_bytes(step_dir):
    """Eight bytes in the middle of the largest data file: they still decode, as values."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    path = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    path.write_bytes(bytes(data))


def _delete_manifest(step_dir):
    (step_dir / "state" / "manifest.ocdbt").unlink()


DAMAGES = [
    _truncate_data_files,
    _flip_bytes,
    _flip_eight_bytes,
    _delete_manifest,
    _delete_iterator_state,
    _delete_state_item,
]


@pytest.mark.parametrize("damage", DAMAGES)
def test_corrupt_checkpoint_names_step_dir(tmp_path, damage):
    state = {"w": jax.random.normal(jax.random.key(0), (64, 64))}
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
        ckpt.save(4, {"w": jnp.zeros((64, 64))}, iterator)
        expected_next = next(iterator)
        ckpt.save(7, {"w": jax.random.normal(jax.random.key(0), (64, 64))}, iterator)
    latest = tmp_path / "checkpoints" / "7"
    damage(latest)
    damaged_files = files_under(latest)
    with Checkpointer(tmp_path) as ckpt:
        fresh = make_iterator()
        state, step = ckpt.restore_latest_good(
            {"w": jax.ShapeDtypeStruct((64, 64), jnp.float32)}, fresh
        )
        assert step == 4 and ckpt.all_steps() == [4]
    np.testing.assert_array_equal(np.asarray(state["w"]), np.zeros((64, 64)))
    np.testing.assert_array_equal(next(fresh), expected_next)
    warning = capsys.readouterr().out
    assert f"Checkpoint {latest} " in warning and "trying the one before" in warning
    assert files_under(tmp_path / "corrupt_checkpoints" / "7") == damaged_files


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.int32, jnp.uint8, jnp.bool_])
def test_content_checksums_see_a_changed_or_moved_value_and_not_the_sharding(mesh, dtype):
    values = (jnp.arange(128).reshape(8, 16) % 2).astype(dtype)
    changed = values.at[5, 3].set(values[5, 4])  # neighbours differ: [5, 3] changes
    moved = values.at[0, 0].set(values[0, 1]).at[0, 1].set(values[0, 0])  # same sum
    sharded = jax.device_put(values, part.named_sharding(mesh, SHARDING_RULES, ("embed", "mlp")))
    checksum = content_checksums({"x": values})
    assert checksum == content_checksums({"x": sharded})
    assert checksum != content_checksums({"x": changed})
    assert checksum != content_checksums({"x": moved})


def reference_checksum(values: np.ndarray) -> str:
    """The checksum's definition on one host: the words, then their plain and
    position-weighted sums mod 2**32."""
    raw = np.ascontiguousarray(values).reshape(-1)
    words = raw.view(f"uint{8 * min(raw.dtype.itemsize, 4)}").astype(np.uint64)
    total = int(words.sum()) % 2**32
    weighted = int((words * np.arange(1, words.size + 1, dtype=np.uint64)).sum()) % 2**32
    return f"{total:08x}{weighted:08x}"


def test_content_checksums_equal_their_definition_for_sharded_wide_and_scalar_values(mesh):
    rows = jax.random.normal(jax.random.key(2), (8, 16))
    sharded = jax.device_put(rows, part.named_sharding(mesh, SHARDING_RULES, ("embed", "mlp")))
    wide = np.linspace(-3, 3, 30).reshape(5, 6)  # float64: two words a value
    state = {"rows": sharded, "wide": wide, "step": jnp.asarray(7, jnp.int32)}
    assert content_checksums(state) == {
        "rows": reference_checksum(np.asarray(rows)),
        "wide": reference_checksum(wide),
        "step": reference_checksum(np.asarray(7, np.int32)),
    }


class Tiny(nnx.Module):
    def __init__(self, seed: int):
        self.w = nnx.Param(jax.random.normal(jax.random.key(seed), (64, 64)))


def test_a_warm_start_from_a_damaged_checkpoint_is_refused(tmp_path):
    with Checkpointer(tmp_path / "stage1") as ckpt:
        ckpt.save(3, {"params": nnx.state(Tiny(0))})
    _flip_eight_bytes(tmp_path / "stage1" / "checkpoints" / "3")
    with pytest.raises(CheckpointCorruptError, match=r"3 is damaged: params/w/value differs"):
        warm_start(nnx.state(Tiny(1)), tmp_path / "stage1")


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


class _Twice(grain.experimental.FlatMapTransform):
    def flat_map(self, element):
        return [element, element]


def test_a_changed_input_pipeline_is_a_mismatch_and_keeps_every_checkpoint(tmp_path):
    """A position saved by another stream layout reads fine but does not fit: the good
    checkpoints must not be taken for damaged ones and moved aside one after another."""
    with Checkpointer(tmp_path, keep=3) as ckpt:
        iterator = make_iterator()
        for step in (2, 4):
            next(iterator)
            ckpt.save(step, {"w": jnp.zeros((4, 4))}, iterator)
    saved = files_under(tmp_path / "checkpoints")
    records = grain.MapDataset.range(100).shuffle(seed=0).to_iter_dataset()
    flattened = iter(grain.experimental.FlatMapIterDataset(records, _Twice()).batch(4))
    with Checkpointer(tmp_path) as ckpt, pytest.raises(CheckpointMismatchError) as info:
        ckpt.restore_latest_good({"w": jax.ShapeDtypeStruct((4, 4), jnp.float32)}, flattened)
    message = str(info.value)
    assert str(tmp_path / "checkpoints" / "4") in message and "data-stream position" in message
    assert "\n" not in message
    assert files_under(tmp_path / "checkpoints") == saved
    assert not (tmp_path / "corrupt_checkpoints").exists()
