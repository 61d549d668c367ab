"""What a run will hold in memory, reported before step 0 (and by the memory planner).

Works on real arrays and on abstract state (`jax.ShapeDtypeStruct` with shardings) alike:
every figure comes from shapes, dtypes and shardings, never from allocated buffers.
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax

# A parameter left replicated under fsdp is named when it holds at least this share of the
# parameter bytes.
REPLICATED_NOTE_FRACTION = 0.01


def _path_name(path: tuple) -> str:
    keys = [getattr(k, "key", getattr(k, "name", getattr(k, "idx", None))) for k in path]
    return ".".join(str(k) for k in keys if k is not None and k != "value")


def _leaves(tree: Any) -> list[tuple[str, Any]]:
    return [(_path_name(p), x) for p, x in jax.tree_util.tree_leaves_with_path(tree)]


def device_bytes(x: Any) -> int:
    """Bytes of one device's shard of an array (or ShapeDtypeStruct with a sharding)."""
    sharding = getattr(x, "sharding", None)
    shape = sharding.shard_shape(x.shape) if sharding is not None else x.shape
    return math.prod(shape) * x.dtype.itemsize


def _total_bytes(x: Any) -> int:
    return math.prod(x.shape) * x.dtype.itemsize


def state_report(state: dict[str, Any], mesh: jax.sharding.Mesh) -> dict[str, Any]:
    """Parameters per tower, bytes per device, and how much of the parameters fsdp shards."""
    params = _leaves(state["params"])
    towers: dict[str, int] = {}
    for name, x in params:
        tower = name.split(".")[0]
        towers[tower] = towers.get(tower, 0) + math.prod(x.shape)
    param_bytes = sum(_total_bytes(x) for _, x in params)
    sharded = sum(_total_bytes(x) for _, x in params if device_bytes(x) < _total_bytes(x))
    replicated = [
        {"name": name, "bytes": _total_bytes(x)}
        for name, x in params
        if device_bytes(x) == _total_bytes(x)
        and _total_bytes(x) >= REPLICATED_NOTE_FRACTION * param_bytes
    ]
    return {
        "mesh": dict(mesh.shape),
        "parameters": sum(towers.values()),
        "parameters_per_tower": dict(sorted(towers.items(), key=lambda kv: -kv[1])),
        "param_bytes_per_device": sum(device_bytes(x) for _, x in params),
        "opt_state_bytes_per_device": sum(device_bytes(x) for _, x in _leaves(state["opt_state"])),
        "sharded_param_fraction": sharded / max(param_bytes, 1),
        "large_replicated_params": sorted(replicated, key=lambda r: -r["bytes"]),
    }


def compiled_report(compiled: jax.stages.Compiled) -> dict[str, int] | None:
    """Per-device bytes of a compiled step from XLA's buffer assignment (None if unknown)."""
    analysis = compiled.memory_analysis()
    if analysis is None:
        return None
    return {
        "argument_bytes": int(analysis.argument_size_in_bytes),
        "output_bytes": int(analysis.output_size_in_bytes),
        "alias_bytes": int(analysis.alias_size_in_bytes),
        "temp_bytes": int(analysis.temp_size_in_bytes),
        "generated_code_bytes": int(analysis.generated_code_size_in_bytes),
    }


def peak_bytes(step: dict[str, int]) -> int:
    """Live bytes at the step's peak: arguments + temporaries + outputs not aliased (donated)
    onto arguments."""
    return step["argument_bytes"] + step["temp_bytes"] + step["output_bytes"] - step["alias_bytes"]


# Knobs that bring a step's memory down, named when it does not fit (besides the batch).
MEMORY_KNOBS = (
    "config.model.remat_policy=full",
    "config.mesh.fsdp (shard parameters and optimizer state over more chips)",
    "config.train.loss_vocab_chunk (fewer vocabulary entries' logits at once)",
    "config.train.grad_accum_steps (micro-batches)",
)


def device_memory_bytes(device: jax.Device) -> tuple[int, str] | None:
    """What one device may hold and where that comes from: an accelerator's own limit, or
    on CPU the host's RAM shared by its local CPU devices (None if unknown)."""
    if device.platform != "cpu":
        limit = (device.memory_stats() or {}).get("bytes_limit")
        return None if limit is None else (int(limit), f"{device.device_kind} memory")
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None
    shared = max(len(jax.local_devices(backend="cpu")), 1)
    return ram // shared, f"{format_bytes(ram)} of host RAM over {shared} CPU device(s)"


def check_fits(step: dict[str, int] | None, device: jax.Device) -> None:
    """Raise, naming the knobs, when the compiled step's peak exceeds what a device has: the
    run would fail at its first step (RESOURCE_EXHAUSTED, or the kernel's OOM killer)."""
    capacity = None if step is None else device_memory_bytes(device)
    if capacity is None or peak_bytes(step) <= capacity[0]:
        return
    raise ValueError(
        f"the compiled train step needs {format_bytes(peak_bytes(step))} a device at its peak, "
        f"more than {format_bytes(capacity[0])} ({capacity[1]}); lower "
        f"config.data.batch_size, " + ", ".join(MEMORY_KNOBS)
    )


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_report(memory: dict[str, Any], step: dict[str, int] | None) -> str:
    """The start-up report (`state_report`, `compiled_report`) as printed lines."""
    mesh = memory["mesh"]
    towers = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in memory["parameters_per_tower"].items())
    lines = [
        f"Parameters: {memory['parameters'] / 1e6:.2f}M ({towers})",
        f"Per device (mesh {mesh}): parameters "
        f"{format_bytes(memory['param_bytes_per_device'])}, optimizer state "
        f"{format_bytes(memory['opt_state_bytes_per_device'])}",
    ]
    if step is not None:
        lines.append(
            f"Compiled train step per device (XLA {jax.default_backend()} buffer assignment): "
            f"arguments {format_bytes(step['argument_bytes'])}, temporaries "
            f"{format_bytes(step['temp_bytes'])}, outputs {format_bytes(step['output_bytes'])} "
            f"({format_bytes(step['alias_bytes'])} donated), peak "
            f"{format_bytes(peak_bytes(step))}"
        )
    if mesh.get("fsdp", 1) > 1:
        share = 100 * memory["sharded_param_fraction"]
        line = f"fsdp={mesh['fsdp']}: {share:.1f}% of parameter bytes sharded"
        if memory["large_replicated_params"]:
            line += "; replicated: " + ", ".join(
                f"{r['name']} ({format_bytes(r['bytes'])})"
                for r in memory["large_replicated_params"]
            )
        lines.append(line)
    return "\n".join(lines)
