"""Safetensors checkpoints streamed into the parameters of an NNX module.

A converter describes each parameter by a `Source`: the checkpoint tensor(s) it comes from
and how a tensor's layout becomes ours. `load_into` checks the whole mapping first (every
tensor of the checkpoint used, every parameter given a source, shapes that fit) and reports
every problem at once; then it builds each parameter with `jax.make_array_from_callback`:
each device reads only its own shard, one checkpoint tensor at a time, so a model never
sits in host memory twice.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import AbstractMesh, NamedSharding

# Works on numpy arrays and, for the up-front shape check, on jax.ShapeDtypeStructs
# (through jax.eval_shape): written with array methods (.T, .reshape, .transpose).
Transform = Callable[[np.ndarray], np.ndarray]
# Our index (one slice per axis, bounds resolved) -> the checkpoint tensor's slices that
# hold exactly that block, in the checkpoint's layout.
IndexMap = Callable[[tuple[slice, ...]], tuple[slice, ...]]


@dataclasses.dataclass(frozen=True)
class Layout:
    """A checkpoint tensor's layout -> ours (`forward`) and back (`inverse`, for export).

    With `source_index`, `forward` also maps a block read by that index to the matching
    block of ours: a device reads only the part of a tensor its shard holds.
    """

    forward: Transform
    inverse: Transform
    source_index: IndexMap | None = None


IDENTITY = Layout(lambda x: x, lambda x: x, lambda index: index)
# A torch Linear weight [out, in] <-> our kernel [in, out].
TRANSPOSED = Layout(lambda w: w.T, lambda x: x.T, lambda index: index[::-1])


def _heads(s: slice, head_dim: int, within: slice) -> slice:
    """Head slice -> the slice of a flattened (heads * head_dim) axis; `within` (the
    head_dim slice) must be whole: a block split inside a head is not one block of it."""
    if (within.start, within.stop) != (0, head_dim):
        raise ValueError("a parameter sharded along 'head_dim' cannot be read by blocks")
    return slice(s.start * head_dim, s.stop * head_dim)


def split_heads(width: int, heads: int, head_dim: int) -> Layout:
    """q/k/v weight [heads * head_dim, width] <-> our kernel [width, heads, head_dim]."""
    return Layout(
        lambda w: w.T.reshape(w.shape[1], -1, head_dim),
        lambda x: x.reshape(x.shape[0], -1).T,
        lambda index: (_heads(index[1], head_dim, index[2]), index[0]),
    )


def merge_heads(heads: int, head_dim: int, width: int) -> Layout:
    """Attention output weight [width, heads * head_dim] <-> our kernel [heads, head_dim, width]."""
    return Layout(
        lambda w: w.T.reshape(-1, head_dim, w.shape[0]),
        lambda x: x.reshape(-1, x.shape[-1]).T,
        lambda index: (index[2], _heads(index[0], head_dim, index[1])),
    )


def bias_heads(heads: int, head_dim: int) -> Layout:
    return Layout(
        lambda b: b.reshape(-1, head_dim),
        lambda x: x.reshape(-1),
        lambda index: (_heads(index[0], head_dim, index[1]),),
    )


def conv_patches(patch: int, channels: int, width: int) -> Layout:
    """Patch conv weight [width, channels, patch, patch] <-> our kernel
    [(row, column, channel), width] (read whole: a block of ours is not one block of it)."""
    return Layout(
        lambda w: w.transpose(2, 3, 1, 0).reshape(patch * patch * channels, width),
        lambda x: x.reshape(patch, patch, channels, width).transpose(3, 2, 0, 1),
    )


@dataclasses.dataclass(frozen=True)
class Source:
    """Where one parameter comes from: a tensor name, or one name per entry of a stacked
    parameter's leading 'layers' axis, and the tensors' layout."""

    names: str | tuple[str, ...]
    layout: Layout = IDENTITY

    @property
    def stacked(self) -> bool:
        return isinstance(self.names, tuple)

    @property
    def all_names(self) -> tuple[str, ...]:
        return self.names if self.stacked else (self.names,)


class Checkpoint:
    """The tensors of a folder's `model.safetensors`, or of the shards listed by
    `model.safetensors.index.json`, read one tensor at a time.

    Each read maps its file and unmaps it again: a file kept mapped would leave every page
    read so far resident, and the process would end up holding the checkpoint twice.
    """

    def __init__(self, folder: str | Path):
        from safetensors import safe_open

        self.folder = Path(folder)
        index = self.folder / "model.safetensors.index.json"
        if index.exists():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        else:
            files = sorted(p.name for p in self.folder.glob("*.safetensors"))
            if not files:
                raise FileNotFoundError(f"{self.folder}: no *.safetensors file")
        self._file_of, self._shapes, self._arrays = {}, {}, None
        for file in files:
            path = self.folder / file
            if not path.exists():
                raise FileNotFoundError(f"{path}: listed in {index.name} but missing")
            with safe_open(str(path), framework="numpy") as handle:
                # safe_open handles are not mappings: keys() is their only listing.
                for name in handle.keys():  # noqa: SIM118
                    self._file_of[name] = path
                    self._shapes[name] = tuple(handle.get_slice(name).get_shape())

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], label: str = "tensors") -> Checkpoint:
        """Tensors already in memory (name -> array), e.g. converted by other code."""
        checkpoint = cls.__new__(cls)
        checkpoint.folder, checkpoint._arrays = Path(label), arrays
        checkpoint._shapes = {name: tuple(a.shape) for name, a in arrays.items()}
        return checkpoint

    @property
    def names(self) -> set[str]:
        return set(self._shapes)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._shapes[name]

    def tensor(self, name: str, index: tuple[slice, ...] | None = None) -> np.ndarray:
        """The tensor `name`, or only its block `index`."""
        if self._arrays is not None:
            array = np.asarray(self._arrays[name])
            return array if index is None else array[index]
        from safetensors import safe_open

        with safe_open(str(self._file_of[name]), framework="numpy") as handle:
            if index is None:
                return handle.get_tensor(name)
            return handle.get_slice(name)[index]


def read_hf_config(folder: str | Path, part: str) -> Any:
    """`folder`'s transformers config (AutoConfig), or its `part` ("text_config",
    "vision_config") when the folder holds a composite model such as LLaVA or CLIP."""
    config = load_hf_config(folder)
    return getattr(config, part, None) or config


def load_hf_config(folder: str | Path) -> Any:
    """`folder`'s transformers config; ValueError naming its config.json if transformers
    cannot read it (not JSON, an unknown model_type)."""
    import transformers

    try:
        return transformers.AutoConfig.from_pretrained(str(folder))
    except (OSError, ValueError) as e:
        # transformers explains over several lines; the first says what it could not do.
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"{Path(folder) / 'config.json'}: transformers cannot read it ({detail})"
        ) from e


def find_prefix(names: Iterable[str], anchor: str, what: str, folder: Path) -> str:
    """The prefix under which a tower's tensors live, e.g. 'model.' for 'model.norm.weight'
    or 'vision_tower.vision_model.' in a LLaVA checkpoint, found from one `anchor` name."""
    prefixes = sorted(n[: -len(anchor)] for n in names if n.endswith(anchor))
    if not prefixes:
        raise ValueError(f"{folder}: no tensor named '*{anchor}': not a {what} checkpoint")
    return prefixes[0]


def _path_str(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def _concrete_sharding(value) -> jax.sharding.Sharding:
    sharding = getattr(value, "sharding", None)
    if isinstance(sharding, NamedSharding) and isinstance(sharding.mesh, AbstractMesh):
        mesh = jax.sharding.get_mesh()
        if mesh.empty:
            raise ValueError("loading into an abstract model needs jax.set_mesh(mesh) in scope")
        return NamedSharding(mesh, sharding.spec)
    if sharding is None:
        return jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return sharding


def load_into(
    module: nnx.Module,
    mapping: dict[tuple, Source],
    checkpoint: Checkpoint,
    *,
    what: str,
    owned: Callable[[str], bool] = lambda name: True,
    ignored: Callable[[str], bool] = lambda name: False,
    fresh: Callable[[tuple], bool] = lambda path: False,
) -> None:
    """Sets the parameters of `module` named in `mapping` from `checkpoint`, in place.

    `module` may be abstract (`nnx.eval_shape`; load under `jax.set_mesh(mesh)` then):
    each parameter is built with the sharding it was declared with. owned: the checkpoint
    tensors this module should consume (others belong to another tower); ignored: owned
    tensors it has no use for; fresh: parameters no checkpoint holds (new modules, trained
    from their random init). Raises ValueError listing every mismatch.
    """
    params = dict(nnx.to_flat_state(nnx.state(module, nnx.Param)))
    names = checkpoint.names
    expected = {n for source in mapping.values() for n in source.all_names}
    problems = []
    missing = sorted(expected - names)
    unexpected = sorted(n for n in names - expected if owned(n) and not ignored(n))
    unassigned = sorted(_path_str(p) for p in params.keys() - mapping.keys() if not fresh(p))
    unknown = sorted(_path_str(p) for p in mapping.keys() - params.keys())
    for label, items in (
        ("missing tensors", missing),
        ("unexpected tensors", unexpected),
        ("parameters with no source tensor", unassigned),
        ("mapped parameters the model lacks", unknown),
    ):
        if items:
            problems.append(f"{label}: {', '.join(items)}")
    for path, source in mapping.items():
        if path not in params or any(n not in names for n in source.all_names):
            continue
        target = params[path].get_value().shape
        try:
            shapes = {
                jax.eval_shape(
                    source.layout.forward, jax.ShapeDtypeStruct(checkpoint.shape(n), np.float32)
                ).shape
                for n in source.all_names
            }
        except (TypeError, ValueError):  # a reshape that cannot fit
            shapes = {None}
        layers = (len(source.names),) if source.stacked else ()
        if shapes != {target[len(layers) :]} or target[: len(layers)] != layers:
            first = source.all_names[0]
            stacked = f" ({len(source.names)} stacked)" if layers else ""
            problems.append(
                f"{first} has shape {checkpoint.shape(first)}, parameter "
                f"{_path_str(path)} needs {target}{stacked}"
            )
    if problems:
        raise ValueError(
            f"{checkpoint.folder}: {what} checkpoint does not match the model:\n  "
            + "\n  ".join(problems)
        )
    for path, source in mapping.items():
        var = params[path]
        current = var.get_value()
        var.set_value(_build(current, source, checkpoint))


def load_abstract(
    make: Callable[[], nnx.Module],
    load: Callable[[nnx.Module], None],
    mesh: jax.sharding.Mesh,
    rules: Sequence[tuple],
) -> nnx.Module:
    """`make()` built abstractly (no random initialisation) on `mesh` under the logical
    `rules`, then filled in place by `load`."""
    with jax.set_mesh(mesh), nnx.logical_axis_rules(tuple(rules)):
        module = nnx.eval_shape(make)
        load(module)
    return module


def _build(current, source: Source, checkpoint: Checkpoint) -> jax.Array:
    """One parameter, shard by shard. With the layout's `source_index` each device reads
    only its block of each tensor; otherwise each tensor is read and transformed once and
    held until the parameter is built (at most one parameter's size)."""
    dtype, layout = current.dtype, source.layout
    shape = current.shape[1:] if source.stacked else current.shape
    whole = functools.cache(lambda name: np.asarray(layout.forward(checkpoint.tensor(name))))

    def block(name: str, index: tuple[slice, ...]) -> np.ndarray:
        if layout.source_index is None:
            return whole(name)[index]
        bounds = tuple(slice(*s.indices(n)[:2]) for s, n in zip(index, shape, strict=True))
        return layout.forward(checkpoint.tensor(name, layout.source_index(bounds)))

    def shard(index: tuple) -> np.ndarray:
        if not source.stacked:
            return np.asarray(block(source.names, index), dtype)
        layers, rest = index[0], index[1:]
        return np.stack([np.asarray(block(n, rest), dtype) for n in source.names[layers]])

    return jax.make_array_from_callback(current.shape, _concrete_sharding(current), shard)


def check_fits(value: str | int, key: str, allowed: Sequence, folder: Path) -> None:
    """A clear error naming the config.json `key` whose `value` the project cannot honour."""
    if value not in allowed:
        raise ValueError(
            f"{folder / 'config.json'}: {key}={value!r} is not supported (supported: "
            f"{', '.join(map(repr, allowed))})"
        )


def export_from(
    module: nnx.Module,
    mapping: dict[tuple, Source],
    folder: str | Path,
    *,
    dtype: Any = None,
    shard_bytes: int = 4 * 1024**3,
    extra: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Writes the parameters of `module` named in `mapping` into `folder` as safetensors in
    the checkpoint's layout (`Layout.inverse`): `model.safetensors`, or shards of about
    `shard_bytes` with `model.safetensors.index.json`. One shard is in host memory at a time.
    dtype: the tensors' dtype (default: the parameters'). extra: tensors the checkpoint
    format has and the module does not, written as given (in `dtype`).
    """
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    params = dict(nnx.to_flat_state(nnx.state(module, nnx.Param)))
    shard = {name: np.asarray(t, dtype or t.dtype) for name, t in (extra or {}).items()}
    weight_map: dict[str, str] = {}
    total = sum(t.nbytes for t in shard.values())

    def flush() -> None:
        file = f"model-{len(set(weight_map.values())) + 1:05d}.safetensors"
        save_file(shard, folder / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
        shard.clear()

    for path, source in mapping.items():
        value = np.asarray(jax.device_get(params[path].get_value()))
        values = list(value) if source.stacked else [value]
        for name, v in zip(source.all_names, values, strict=True):
            shard[name] = np.ascontiguousarray(source.layout.inverse(v), dtype or v.dtype)
            total += shard[name].nbytes
        if sum(t.nbytes for t in shard.values()) >= shard_bytes:
            flush()
    if shard:
        flush()
    files = sorted(set(weight_map.values()))
    if len(files) == 1:  # one file: the name transformers looks for first
        (folder / files[0]).rename(folder / "model.safetensors")
        return
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
