"""Device mesh, logical-axis sharding rules, and sharding of batches and model state.

Parameters carry logical axis names (``nnx.Param(x, out_sharding=("embed", "mlp"))``) and
pinned activations names of their own (``("act_batch", "act_length", "act_embed")``);
``config.sharding_rules`` maps both to the mesh axes ``MESH_AXES``. A single device is a
mesh whose axes all have size 1, so there is no separate unsharded code path.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from flax.core import spmd as flax_spmd
from flax.linen import spmd as linen_spmd
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

# Outermost first: 'data' spans hosts/slices (cheap all-reduce of grads only),
# 'tensor' innermost so its frequent collectives stay on the fastest links.
MESH_AXES = ("data", "fsdp", "expert", "tensor")

Rules = Sequence[tuple[str, str | tuple[str, ...] | None]]

# Logical axis -> mesh axes, grouped by what they shard (MaxText's `logical_axis_rules`,
# big_vision's `act_*`). None = replicated. Within one array the earlier rule takes a
# mesh axis first, so the activation rules come first: an activation's batch keeps its axes.
#
# Activations and the batches that feed them (`models/layers.py: constrain`, `shard_batch`):
# examples over every data-parallel axis, fsdp included; features whole, so a block's
# activations never take the weights' fsdp split (and gather the batch instead); hidden
# units and heads on 'tensor' beside their weights; expert-major rows on 'expert'.
ACTIVATION_RULES = (
    ("act_batch", ("data", "fsdp", "expert")),
    ("act_length", None),
    ("act_embed", None),
    ("act_mlp", "tensor"),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_head_dim", None),
    ("act_exp", "expert"),
)
# Weights: the logical axes each parameter carries (`models/layers.py: param`). fsdp splits
# the width, gathered block by block for the matmuls.
PARAM_RULES = (
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("vocab", "tensor"),
    ("exp", "expert"),
    ("kb", None),
    ("kb_embed", None),
    ("kb_embed_out", None),
    ("levels", None),
    ("patch", None),
    ("position", None),
    ("layers", None),  # the stacked blocks of a scanned tower
)
SHARDING_RULES = ACTIVATION_RULES + PARAM_RULES


def with_activation_rules(rules: Rules) -> tuple[tuple[str, Any], ...]:
    """`rules` as is, or, for a table written before activations had names of their own (no
    'act_*' rule; runs trained then store one), with each activation name given its shared
    name's rule ('act_batch' that of 'batch', ...) in the same order: activations are then
    placed exactly as that table placed them."""
    rules = tuple((name, mesh_axes) for name, mesh_axes in rules)
    if any(name.startswith("act_") for name, _ in rules):
        return rules
    activation_names = {name for name, _ in ACTIVATION_RULES}
    shared = tuple(
        (f"act_{name}", axes) for name, axes in rules if f"act_{name}" in activation_names
    )
    return shared + rules


def _format_mesh(sizes: Mapping[str, int]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in sizes.items()) + "}"


def mesh_shape(mesh_config: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """Resolve axis sizes (at most one -1, which fills) against ``num_devices``."""
    unknown = [k for k in mesh_config if k not in MESH_AXES]
    if unknown:
        raise ValueError(
            f"Unknown mesh axis {unknown[0]!r} in mesh {_format_mesh(mesh_config)}; "
            f"mesh axes are {', '.join(MESH_AXES)}"
        )
    sizes = {axis: int(mesh_config.get(axis, 1)) for axis in MESH_AXES}
    shown = _format_mesh(sizes)
    fill = [axis for axis, size in sizes.items() if size == -1]
    if len(fill) > 1:
        raise ValueError(f"mesh {shown}: only one axis may be -1 (fill), got {fill}")
    bad = [axis for axis, size in sizes.items() if size == 0 or size < -1]
    if bad:
        raise ValueError(f"mesh {shown}: axis {bad[0]!r} must be a positive size or -1 (fill)")
    fixed = math.prod(size for size in sizes.values() if size != -1)
    if fill:
        if num_devices % fixed:
            raise ValueError(
                f"mesh {shown}: cannot fill {fill[0]!r}, {num_devices} devices are not "
                f"divisible by the other axes' product {fixed}"
            )
        sizes[fill[0]] = num_devices // fixed
    elif fixed != num_devices:
        raise ValueError(f"mesh {shown} needs {fixed} devices but {num_devices} are available")
    return sizes


def check_rules(rules: Rules) -> None:
    """Each rule is (logical axis, mesh axis | tuple of mesh axes | None) over MESH_AXES,
    and every logical axis of SHARDING_RULES (those the models use) has one: checked before
    use, where a bad table fails deep in flax or jax with messages that name no setting."""
    for rule in rules:
        if not (isinstance(rule, (tuple, list)) and len(rule) == 2 and isinstance(rule[0], str)):
            raise ValueError(
                f"config.sharding_rules: {rule!r} is not a (logical axis, mesh axes) pair"
            )
        targets = rule[1] if isinstance(rule[1], (tuple, list)) else (rule[1],)
        unknown = [t for t in targets if t is not None and t not in MESH_AXES]
        if unknown:
            raise ValueError(
                f"config.sharding_rules: {tuple(rule)!r} maps to {unknown[0]!r}, which is not "
                f"a mesh axis ({', '.join(MESH_AXES)})"
            )
    named = {name for name, _ in rules}
    missing = [name for name, _ in SHARDING_RULES if name not in named]
    if missing:
        raise ValueError(
            f"config.sharding_rules has no rule for logical axis {missing[0]!r}; map it to "
            f"mesh axes, or to None to replicate it"
        )


def make_mesh(mesh_config: Mapping[str, int], devices: Sequence[Any] | None = None) -> Mesh:
    """Build the ('data', 'fsdp', 'expert', 'tensor') mesh from config sizes.

    Axes are ``Auto``: the compiler propagates shardings from annotated params and
    batches; ``jax.make_mesh`` alone would default to ``Explicit``.
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = mesh_shape(dict(mesh_config), len(devices))
    return jax.make_mesh(
        tuple(sizes.values()),
        MESH_AXES,
        axis_types=(AxisType.Auto,) * len(MESH_AXES),
        devices=devices,
    )


@contextlib.contextmanager
def sharding_context(mesh: Mesh, rules: Rules) -> Iterator[None]:
    """Mesh + logical rules in scope: create (or ``nnx.eval_shape``) models inside it.

    Variables with ``out_sharding`` metadata are placed eagerly at creation, which
    needs both the mesh and the rules that resolve their logical names.
    """
    with jax.set_mesh(mesh), nnx.logical_axis_rules(_dedupe(rules)):
        yield


def _check_known(rules: Rules, logical_axes: Sequence[str | None], what: str) -> None:
    known = {name for name, _ in rules}
    for axis in logical_axes:
        if isinstance(axis, str) and axis not in known:
            raise ValueError(
                f"Logical axis {axis!r} of {what} has no entry in sharding_rules "
                f"(known: {', '.join(sorted(known))})"
            )


def target_platform() -> str:
    """The platform being compiled for: the active mesh's devices (a TPU topology's, on any
    host, for ahead-of-time compiles), else the default backend's."""
    mesh = jax.sharding.get_abstract_mesh()
    device = None if mesh.empty else mesh.abstract_device
    return jax.default_backend() if device is None else device.platform


def rules_in_scope() -> Rules:
    """The rules of the enclosing `nnx.logical_axis_rules` / `sharding_context` (() if none)."""
    return tuple(flax_spmd.get_logical_axis_rules())


def resolve(logical_axes: Sequence[str | None], rules: Rules | None = None) -> PartitionSpec:
    """Logical axis names -> PartitionSpec under `rules` (default: the rules in scope).

    The first rule for a name wins, and a rule whose mesh axes a rule earlier in the table
    already gave another dimension is skipped (a mesh axis shards one dimension of an array
    at most); NNX's own rule lookup is a plain rename without that clause, so the Linen
    resolver (the same rules format) does it. Names without a rule stay unsharded.
    """
    rules = rules_in_scope() if rules is None else tuple(rules)
    return linen_spmd.logical_to_mesh_axes(tuple(logical_axes), rules)


def mesh_axes(logical_axis: str) -> tuple[str, ...]:
    """The axes of the active mesh that `logical_axis` is split over under the rules in scope;
    () without a mesh or rules (nothing is pinned then)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not rules_in_scope():
        return ()
    spec = resolve((logical_axis,))[0]
    axes = () if spec is None else (spec,) if isinstance(spec, str) else tuple(spec)
    return tuple(a for a in axes if a in mesh.axis_names)


def dividing_batch_axes(batch: int, also: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The mesh axes a batch of `batch` rows is split over inside shard_map: those of the
    'act_batch' rule (then `also`) whose sizes, multiplied up, divide it; () without a mesh."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return ()
    axes: list[str] = []
    for a in mesh_axes("act_batch") + also:
        if a not in axes and batch % (math.prod(mesh.shape[x] for x in axes) * mesh.shape[a]) == 0:
            axes.append(a)
    return tuple(axes)


def logical_to_mesh(rules: Rules, logical_axes: Sequence[str | None]) -> PartitionSpec:
    """`resolve`, with every name required to have a rule (parameters, batches)."""
    _check_known(rules, logical_axes, f"{tuple(logical_axes)}")
    return resolve(logical_axes, rules)


def named_sharding(mesh: Mesh, rules: Rules, logical_axes: Sequence[str | None]) -> NamedSharding:
    """NamedSharding on ``mesh`` for an array with the given logical axes."""
    return NamedSharding(mesh, logical_to_mesh(rules, logical_axes))


def batch_sharding(mesh: Mesh, rules: Rules, ndim: int) -> NamedSharding:
    """Leading axis on the 'act_batch' rule, the rest replicated."""
    return named_sharding(mesh, rules, ("act_batch",) + (None,) * (ndim - 1))


def batch_divisor(mesh: Mesh, rules: Rules) -> int:
    """How many shards the batch axis is split into (the global batch must divide it)."""
    spec = logical_to_mesh(rules, ("act_batch",))[0]
    axes = () if spec is None else (spec,) if isinstance(spec, str) else tuple(spec)
    return math.prod(mesh.shape[a] for a in axes)


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh, rules: Rules) -> dict[str, jax.Array]:
    """Host-local numpy batch -> global arrays sharded along 'act_batch'.

    Each process passes its own slice; the global batch is the concatenation over
    processes. Strings/objects (ids, raw answers) stay on the host and are dropped.
    """
    out = {}
    for key, value in batch.items():
        value = np.asarray(value)
        if value.dtype.kind in "OUSV":
            continue
        if value.ndim == 0:
            raise ValueError(f"batch[{key!r}] is a scalar; every batch entry needs a batch axis")
        sharding = batch_sharding(mesh, rules, value.ndim)
        try:
            out[key] = jax.make_array_from_process_local_data(sharding, value)
        except ValueError as e:
            raise ValueError(
                f"batch[{key!r}] with shape {value.shape} cannot be sharded as "
                f"{sharding.spec} over mesh {dict(mesh.shape)}: {e}"
            ) from e
    return out


def _dedupe(rules: Rules) -> tuple[tuple[str, Any], ...]:
    # flax resolves Variable metadata through a dict (last duplicate wins); keep the
    # first so both entry points agree on "first match wins".
    seen: dict[str, Any] = {}
    for name, mesh_axes in rules:
        seen.setdefault(name, mesh_axes)
    return tuple(seen.items())


def state_partition_specs(abstract_state: Any, rules: Rules) -> Any:
    """PartitionSpec tree for an NNX State/graph whose Variables carry ``out_sharding``."""
    rules = _dedupe(rules)

    def check(path: Any, var: Any) -> None:
        if isinstance(var, nnx.Variable):
            names = var.get_metadata().get("out_sharding") or ()
            _check_known(rules, names, f"parameter {jax.tree_util.keystr(path)}")

    jax.tree_util.tree_map_with_path(
        check, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable)
    )
    with nnx.logical_axis_rules(rules):
        return nnx.get_partition_spec(abstract_state)


def state_shardings(abstract_state: Any, mesh: Mesh, rules: Rules) -> Any:
    """NamedSharding tree (same structure as ``abstract_state``) from logical metadata."""
    specs = state_partition_specs(abstract_state, rules)
    shapes, logical = {}, {}
    for path, var in jax.tree_util.tree_leaves_with_path(
        abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable)
    ):
        name = jax.tree_util.keystr(path)
        shapes[name] = np.shape(var.get_value() if isinstance(var, nnx.Variable) else var)
        if isinstance(var, nnx.Variable):
            logical[name] = var.get_metadata().get("out_sharding") or ()

    def to_sharding(path: Any, spec: PartitionSpec) -> NamedSharding:
        name = jax.tree_util.keystr(path).removesuffix(".value")
        axes = [() if p is None else (p,) if isinstance(p, str) else tuple(p) for p in spec]
        used = [a for group in axes for a in group]
        if len(used) != len(set(used)):
            raise ValueError(
                f"Parameter {name} maps two dimensions to the same "
                f"mesh axis: {spec}; change its logical axes or sharding_rules"
            )
        shape, names = shapes.get(name, ()), logical.get(name, ())
        for dim, (size, group) in enumerate(zip(shape, axes)):
            parts = math.prod(mesh.shape[a] for a in group)
            if size % parts:
                keys = " x ".join(f"config.mesh.{a}={mesh.shape[a]}" for a in group)
                what = f"{names[dim]!r}, " if dim < len(names) else ""
                raise ValueError(
                    f"Parameter {name} {tuple(shape)}: dimension {dim} ({what}size {size}) cannot "
                    f"be split over {keys}; choose mesh sizes that divide it, or map that "
                    f"dimension elsewhere in config.sharding_rules"
                )
        return NamedSharding(mesh, spec)

    return jax.tree_util.tree_map_with_path(
        to_sharding, specs, is_leaf=lambda x: isinstance(x, PartitionSpec)
    )


def mirror_shardings(tree: Any, params: Any, default: NamedSharding) -> Any:
    """Shardings for a tree whose leaves mirror parameters (an optimizer state's moments): a
    leaf whose key path ends with a parameter's path, at that parameter's shape, gets its
    sharding; every other leaf (step counts, ...) gets `default`."""
    by_path = {tuple(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)}

    def pick(path: tuple, leaf: Any) -> NamedSharding:
        for start in range(len(path)):
            param = by_path.get(tuple(path[start:]))
            if param is not None and param.shape == leaf.shape:
                return param.sharding
        return default

    return jax.tree_util.tree_map_with_path(pick, tree)


def abstract_with_shardings(abstract_state: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying shardings: the target for sharded checkpoint restore."""
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings
    )
