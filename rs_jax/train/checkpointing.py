"""Orbax checkpoints of the train state together with the grain data-iterator position.

Layout: ``<workdir>/checkpoints/<step>/{state,data_iter,config,checksums}``. Saving the
iterator with the weights makes a resumed run see exactly the examples it would have seen.
Each array's content checksum is saved beside it and checked at every restore: a damaged
byte that still decodes would otherwise come back as a wrong weight.
"""

from __future__ import annotations

import json
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from rs_jax.files import absolute, is_local

STATE = "state"
DATA_ITER = "data_iter"
CONFIG = "config"  # the resolved config that wrote the step (JSON)
KNOWLEDGE_SHA256 = "knowledge_sha256"  # in CONFIG: the knowledge base the step learned with
TOKENIZER_SHA256 = "tokenizer_sha256"  # in CONFIG: the training texts its tokenizer learned
DATA_SHA256 = "data_sha256"  # in CONFIG: the training files (rs_jax/data/manifest.py)
CHECKSUMS = "checksums"  # {array path: content checksum} of the saved state (JSON)
# Substrings of orbax errors that mean "valid checkpoint, different model".
_MISMATCH_MARKERS = (
    "is not compatible with the stored shape",
    "Structure mismatch",
    "tree structures do not match",
)


class CheckpointError(ValueError):
    """A checkpoint could not be read; the message names the step directory."""


class CheckpointMismatchError(CheckpointError):
    """A readable checkpoint of another model or optimizer than the one restoring it."""


class CheckpointCorruptError(CheckpointError):
    """A checkpoint that cannot be read at all (truncated, damaged, incomplete)."""


# Orbax splits a replicated array's write across its replicas, one device slice each. For
# arrays below this size the per-device slicing costs more than the parallel write saves.
MIN_REPLICA_SLICE_BYTES = 4 << 20


def _state_handler() -> ocp.PyTreeCheckpointHandler:
    """The train state's handler: device arrays written replica-parallel when large, host
    arrays and scalars as Orbax writes them."""
    handlers = ocp.type_handlers
    registry = handlers.create_type_handler_registry(
        (
            jax.Array,
            handlers.ArrayHandler(min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES),
        ),
        (np.ndarray, handlers.NumpyHandler()),
        *((ty, handlers.ScalarHandler()) for ty in (int, float, np.number)),
    )
    return ocp.PyTreeCheckpointHandler(type_handler_registry=registry)


def _words(values: np.ndarray) -> np.ndarray:
    """The bits of `values` as uint64 words, one per element, or two (a trailing axis of
    2) for 8-byte values."""
    if values.dtype.itemsize == 8:
        return values.view(np.uint32).reshape(*values.shape, 2).astype(np.uint64)
    return values.view(f"uint{8 * values.dtype.itemsize}").astype(np.uint64)


def _partial_sums(words: np.ndarray, start: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """[2] uint64: the sum of a block of words, and their sum weighted by (row-major
    position in the whole array + 1). The block starts at `start` in an array of `shape`;
    the weighted sum is taken one axis at a time, so no position array is built."""
    # Array sums wrap mod 2**64 silently; the scalars are Python ints, reduced by hand.
    total = int(words.sum(dtype=np.uint64))
    weighted = total
    stride = 1
    for axis in reversed(range(words.ndim)):
        others = tuple(a for a in range(words.ndim) if a != axis)
        per_index = words.sum(axis=others, dtype=np.uint64)
        index = np.arange(start[axis], start[axis] + words.shape[axis], dtype=np.uint64)
        weighted += stride * int((per_index * index).sum(dtype=np.uint64))
        stride *= shape[axis]
    return np.array([total, weighted % 2**64], np.uint64)


def _blocks(leaf: Any) -> list[tuple[np.ndarray, tuple[int, ...]]]:
    """(values, start index) of each block of `leaf` this process holds, one replica each."""
    if not isinstance(leaf, jax.Array):
        leaf = np.asarray(leaf)
        return [(leaf, (0,) * leaf.ndim)]
    return [
        (np.asarray(shard.data), tuple(s.indices(n)[0] for s, n in zip(shard.index, leaf.shape)))
        for shard in leaf.addressable_shards
        if shard.replica_id == 0
    ]


def _checksum(leaf: Any) -> tuple[int, int]:
    """(sum, position-weighted sum) mod 2**32 of an array's words, from the blocks each
    process holds, summed over processes: the same for any sharding."""
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    sums = np.zeros(2, np.uint64)
    for values, start in _blocks(leaf):
        shape = np.shape(leaf) or (1,)  # a scalar is one element
        values, start = values.reshape(values.shape or (1,)), start or (0,)
        words = _words(values)
        if words.ndim > values.ndim:  # 8-byte values: their two words on a trailing axis
            start, shape = (*start, 0), (*shape, 2)
        sums += _partial_sums(words, start, shape)
    sums = (sums & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    if jax.process_count() > 1:
        sums = multihost_utils.process_allgather(sums).sum(axis=0, dtype=np.uint32)
    return int(sums[0]), int(sums[1])


def content_checksums(state: Any) -> dict[str, str]:
    """{array path ("params/decoder/.../value"): hex checksum of its values}.

    Any one changed word changes the sum; a value moved within the array changes the
    weighted sum. Computed on the host from each process's shards, so saving compiles
    nothing and every process agrees.
    """
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    return {
        jax.tree_util.keystr(path, simple=True, separator="/"): "{:08x}{:08x}".format(
            *_checksum(leaf)
        )
        for path, leaf in flat
    }


def _first_mismatch(stored: dict[str, str], state: Any) -> str | None:
    """The first array of `state` whose checksum differs from `stored` (arrays saved
    without one are taken as they are)."""
    for name, value in content_checksums(state).items():
        if name in stored and stored[name] != value:
            return name
    return None


def _first_line(e: Exception) -> str:
    detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {detail[:300]}"


def _restore_args(target: jax.ShapeDtypeStruct) -> ocp.ArrayRestoreArgs:
    """Read into `target`'s sharding; a stored shape other than `target`'s is an error."""
    return ocp.ArrayRestoreArgs(
        sharding=target.sharding, global_shape=target.shape, dtype=target.dtype
    )


class Checkpointer:
    """Async, rotating checkpoints of ``state`` (a pytree of arrays) and a data iterator."""

    def __init__(self, workdir: epath.PathLike, keep: int = 2, async_save: bool = True) -> None:
        self.directory = absolute(workdir) / "checkpoints"
        if is_local(self.directory) and self.directory.is_file():
            # Orbax would start a run from scratch and fail in its saving thread. (A bucket
            # has no files in the way of folders.)
            raise NotADirectoryError(
                f"{self.directory} is a file, not the run's checkpoint folder; move it away"
            )
        self._manager = ocp.CheckpointManager(
            self.directory,
            item_handlers={
                STATE: _state_handler(),
                DATA_ITER: grain.checkpoint.CheckpointHandler(),
                CONFIG: ocp.JsonCheckpointHandler(),
                CHECKSUMS: ocp.JsonCheckpointHandler(),
            },
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                save_interval_steps=1,
                enable_async_checkpointing=async_save,
                create=True,
            ),
        )

    def step_dir(self, step: int) -> epath.Path:
        """Directory of one saved step."""
        return self.directory / str(step)

    def all_steps(self) -> list[int]:
        """Steps with a finalised checkpoint, ascending."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """Newest finalised step, or None if there is none."""
        return self._manager.latest_step()

    def reached_preemption(self, step: int) -> bool:
        """True when the cluster signalled preemption: save now and exit."""
        return self._manager.reached_preemption(step)

    def save(
        self,
        step: int,
        state: Any,
        data_iterator: Any | None = None,
        config: dict[str, Any] | None = None,
    ) -> bool:
        """Start saving ``state`` (and the iterator's position, and the config that wrote
        it) at ``step``.

        Returns False if ``step`` is already saved (e.g. the final step coincides with
        a periodic save). The iterator state is captured before this returns, so the
        caller may keep iterating while the arrays are written in the background.
        """
        if step in self._manager.all_steps():
            return False
        items: dict[str, Any] = {
            STATE: ocp.args.PyTreeSave(state),
            CHECKSUMS: ocp.args.JsonSave(content_checksums(state)),
        }
        if data_iterator is not None:
            items[DATA_ITER] = grain.checkpoint.CheckpointSave(data_iterator)
        if config is not None:
            items[CONFIG] = ocp.args.JsonSave(config)
        return self._manager.save(step, args=ocp.args.Composite(**items))

    def check_knowledge(self, step: int, sha256: str, source: str) -> None:
        """Raises unless `step` was trained with the knowledge base whose content hash is
        `sha256` (checkpoints saved without one are taken as they are)."""
        stored = (self.stored_config(step) or {}).get(KNOWLEDGE_SHA256)
        if stored is not None and stored != sha256:
            raise ValueError(
                f"Checkpoint {self.step_dir(step)} was trained with knowledge base "
                f"{stored[:16]}, but {source} is {sha256[:16]} (rebuilt or changed since); "
                f"use the knowledge base the model was trained with"
            )

    def _stored_json(self, step: int, item: str) -> dict[str, Any] | None:
        """A JSON item saved with ``step`` (None for checkpoints saved without it)."""
        if not (self.step_dir(step) / item).is_dir():
            return None
        args = ocp.args.Composite(**{item: ocp.args.JsonRestore()})
        return dict(self._manager.restore(step, args=args)[item])

    def stored_config(self, step: int) -> dict[str, Any] | None:
        """The config saved with ``step`` (None for checkpoints saved without one)."""
        return self._stored_json(step, CONFIG)

    def restore(
        self,
        step: int,
        abstract_state: Any,
        data_iterator: Any | None = None,
        partial: bool = False,
    ) -> Any:
        """Restore ``step`` into ``abstract_state`` and set ``data_iterator``'s position.

        ``abstract_state`` is a pytree of ``jax.ShapeDtypeStruct`` (with ``sharding``) or
        of arrays; arrays come back with those shardings. partial: ``abstract_state`` names
        a part of the stored state (the rest is not read).
        """
        abstract_state = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        items: dict[str, Any] = {
            STATE: ocp.args.PyTreeRestore(
                abstract_state,
                restore_args=jax.tree.map(_restore_args, abstract_state),
                partial_restore=partial,
            )
        }
        step_dir = self.step_dir(step)
        if not step_dir.is_dir():
            raise CheckpointError(
                f"No checkpoint for step {step} in {self.directory} "
                f"(available: {self.all_steps() or 'none'})"
            )
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(**items))
            checksums = self._stored_json(step, CHECKSUMS) or {}
        except Exception as e:
            # Orbax/tensorstore errors are deep and cryptic; say which directory is bad
            # and what to do. A config change must not be mistaken for corruption: the
            # advice to delete would then throw away a good checkpoint.
            detail = _first_line(e)
            if any(marker in str(e) for marker in _MISMATCH_MARKERS):
                raise CheckpointMismatchError(
                    f"Checkpoint {step_dir} does not match the state being restored "
                    f"({detail}). The config (model sizes, levels, optimizer) probably "
                    f"differs from the run that wrote it: use that config, or a fresh workdir."
                ) from e
            raise CheckpointCorruptError(
                f"Checkpoint {step_dir} could not be restored ({detail}). It is probably "
                f"truncated or corrupt (e.g. the run was killed while saving)."
            ) from e
        damaged = _first_mismatch(checksums, restored[STATE])
        if damaged is not None:
            raise CheckpointCorruptError(
                f"Checkpoint {step_dir} is damaged: {damaged} differs from what was saved "
                f"(its content checksum does not match)."
            )
        if data_iterator is not None:
            self._restore_position(step, data_iterator)
        return restored[STATE]

    def _restore_position(self, step: int, data_iterator: Any) -> None:
        """Sets `data_iterator` to the position saved with `step`. A position that reads
        but does not fit this input pipeline is a mismatch, not damage: the checkpoint is
        good, and moving it aside as damaged would lose the run."""
        step_dir = self.step_dir(step)
        try:
            saved = sorted((step_dir / DATA_ITER).glob("process_*.json"))
            if not saved:
                raise FileNotFoundError(f"no process_*.json in {step_dir / DATA_ITER}")
            for path in saved:
                json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CheckpointCorruptError(
                f"Checkpoint {step_dir} could not be restored ({_first_line(e)}): its "
                f"data-stream position is missing or damaged."
            ) from e
        restore = {DATA_ITER: grain.checkpoint.CheckpointRestore(data_iterator)}
        try:
            self._manager.restore(step, args=ocp.args.Composite(**restore))
        except Exception as e:
            raise CheckpointMismatchError(
                f"Checkpoint {step_dir} holds a data-stream position this input pipeline "
                f"cannot take ({_first_line(e)}): the stream is built differently from the "
                f"run that saved it (config.data's sources, packing or retrieval mode, or "
                f"an rs-jax version that builds it otherwise). Resume with the config and "
                f"version that wrote it, or use a fresh workdir."
            ) from e

    def restore_params(self, step: int, abstract_params: Any) -> Any:
        """Only the parameters of ``step`` (no optimizer state is read or allocated), into
        ``abstract_params`` as in ``restore``."""
        return self.restore(step, {"params": abstract_params}, partial=True)["params"]

    def restore_latest_good(
        self, abstract_state: Any, data_iterator: Any | None = None
    ) -> tuple[Any, int] | None:
        """(state, step) of the newest checkpoint that restores, or None if there is none.

        A damaged one is moved aside, never deleted (to <workdir>/corrupt_checkpoints/, out
        of the rotation, so this run can save that step again) with a warning naming it, and
        the one before it is tried. A checkpoint of another model is an error, not damage.
        """
        for step in sorted(self.all_steps(), reverse=True):
            try:
                return self.restore(step, abstract_state, data_iterator), step
            except CheckpointCorruptError as e:
                aside = self.directory.parent / "corrupt_checkpoints" / str(step)
                aside.parent.mkdir(exist_ok=True)
                if aside.exists():  # an earlier run's damaged copy of this step stays too
                    aside = aside.with_name(f"{step}.{len(list(aside.parent.iterdir()))}")
                self.step_dir(step).rename(aside)
                self._manager.reload()
                print(f"rs-jax: warning: {e} Moved it to {aside}; trying the one before.")
        return None

    def wait(self) -> None:
        """Block until pending async saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Wait for pending saves and release the manager's resources."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def warm_start(params: Any, source: epath.PathLike) -> tuple[epath.Path, list[str]]:
    """Sets, in place, every parameter in `params` (an nnx.State of variables) that the
    latest checkpoint of the run in `source` (a workdir, or one step directory) also holds
    with the same shape: stage 2 starting from stage 1. Only those arrays are read.

    Returns the step directory read and the parameters it lacks (which keep their
    initialisation, e.g. new LoRA adapters). A run in `source` with no checkpoint, or one
    that shares no parameter, is an error naming config.init.from_checkpoint.
    """
    from flax import nnx

    setting = "config.init.from_checkpoint"
    source = absolute(source)
    if (source / STATE).is_dir():
        step_dir = source
    else:
        steps = [p for p in (source / "checkpoints").glob("*") if p.name.isdigit()]
        steps = [p for p in steps if (p / STATE).is_dir()]
        if not steps:
            raise CheckpointError(f"{setting}={str(source)!r}: no checkpoint there")
        step_dir = max(steps, key=lambda p: int(p.name))
    # The item's own metadata: the Checkpointer's would look for the step's metadata file
    # inside the item and log a warning that it is missing.
    tree = ocp.PyTreeCheckpointHandler().metadata(step_dir / STATE).tree["params"]

    def stored(path: tuple) -> tuple[tuple[str, ...], Any] | None:
        """(key path, metadata) of a parameter in the stored tree (a variable may be stored
        as {"value": array}); None if absent."""
        node, keys = tree, []
        for part in map(str, path):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
            keys.append(part)
        if isinstance(node, dict) and "value" in node:
            node = node["value"]
            keys.append("value")
        return (tuple(keys), node) if hasattr(node, "shape") else None

    variables = dict(nnx.to_flat_state(params))
    target, found, missing = {}, {}, []
    for path, var in variables.items():
        value = var.get_value()
        entry = stored(path)
        if entry is None or tuple(entry[1].shape) != tuple(value.shape):
            missing.append("/".join(map(str, path)))
            continue
        keys = entry[0]
        found[path] = keys
        node = target
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        sharding = value.sharding
        node[keys[-1]] = jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=sharding)
    if not target:
        raise CheckpointError(f"{setting}={str(source)!r}: {step_dir} shares no parameter")
    restored = ocp.PyTreeCheckpointer().restore(
        step_dir / STATE,
        args=ocp.args.PyTreeRestore(
            {"params": target},
            restore_args=ocp.checkpoint_utils.construct_restore_args({"params": target}),
            partial_restore=True,
        ),
    )["params"]
    checksums = step_dir / CHECKSUMS
    if checksums.is_dir():
        stored = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(checksums)
        damaged = _first_mismatch(stored, {"params": restored})
        if damaged is not None:
            raise CheckpointCorruptError(
                f"{setting}={str(source)!r}: {step_dir} is damaged: {damaged} differs from "
                f"what was saved (its content checksum does not match)"
            )
    for path, keys in found.items():
        node = restored
        for key in keys:
            node = node[key]
        variables[path].set_value(node)
    return step_dir, missing


def open_latest(workdir: epath.PathLike) -> tuple[Checkpointer, int]:
    """A trained run's checkpointer and newest step, for reading it (eval, Session, export).

    Checked before anything else is prepared, so a wrong workdir fails in seconds; a folder
    without checkpoints is not created or changed.
    """
    if not (epath.Path(workdir) / "checkpoints").is_dir():
        raise FileNotFoundError(
            f"No checkpoint in {workdir}; run `rs-jax train` with this workdir first"
        )
    checkpointer = Checkpointer(workdir)
    step = checkpointer.latest_step()
    if step is None:
        checkpointer.close()
        raise FileNotFoundError(
            f"No checkpoint in {checkpointer.directory}; run `rs-jax train` with this workdir first"
        )
    return checkpointer, step
