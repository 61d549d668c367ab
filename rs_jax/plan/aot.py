"""Compile a step ahead of time for a TPU slice, on any host: libtpu's own compiler, no TPU.

`rs-jax compile --config C --topology v5p:4x4x4` builds the run's state abstractly on the
slice's devices (`experiment.plan`: shapes, dtypes and shardings, nothing allocated),
lowers the train, eval or generate step and compiles it with the TPU compiler. The
memory figures are the TPU's own buffer assignment; the kernels are the custom calls in
the compiled program.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from importlib import resources
from typing import Any

import jax
import ml_collections
from etils import epath
from flax import nnx

from rs_jax import sharding
from rs_jax.config_files import ConfigError
from rs_jax.models import flops
from rs_jax.train import experiment as experiment_lib
from rs_jax.train import report

STEPS = ("train", "eval", "generate")


@dataclasses.dataclass(frozen=True)
class Topology:
    """A TPU slice: chip generation, libtpu's topology name (e.g. 'v5p:4x4x4')."""

    chip: str
    dims: tuple[int, ...]
    slices: int = 1

    @property
    def name(self) -> str:
        return f"{self.chip}:{'x'.join(map(str, self.dims))}"

    @property
    def chips(self) -> int:
        return math.prod(self.dims) * self.slices

    @property
    def spec(self) -> dict[str, Any]:
        return chip_specs()[self.chip]


def chip_specs() -> dict[str, dict[str, Any]]:
    text = resources.files("rs_jax.plan").joinpath("tpu_chips.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def _torus(chips: int, dims: int) -> tuple[int, ...]:
    """The slice shape Cloud TPU gives `chips` chips: powers of two, as even as they go,
    ascending, with a 3-D slice's unused axis last (v5p-8: 2x2x1; v5litepod-8: 2x4)."""
    shape = [1] * dims
    while math.prod(shape) < chips:
        shape[shape.index(min(shape))] *= 2
    used = sorted(s for s in shape if s > 1)
    return tuple(used + [1] * (dims - len(used))) if len(used) < dims else tuple(used)


def parse_topology(text: str, slices: int = 1) -> Topology:
    """'v5p:4x4x4', 'v5e:2x2' (chips per axis) or a Cloud TPU type, 'v5p-128',
    'v5litepod-16', 'v6e-256', 'v4-8' (v4 and v5p types count TensorCores, two a chip)."""
    specs = chip_specs()
    if slices < 1:
        raise ConfigError(f"--slices must be >= 1, got {slices}")
    known = ", ".join(sorted(specs))
    match = re.fullmatch(r"(\w+):(\d+(?:x\d+)*)", text)
    if match:
        chip, dims = match.group(1), tuple(int(d) for d in match.group(2).split("x"))
        if chip not in specs:
            raise ConfigError(f"--topology {text}: unknown TPU chip {chip!r} (known: {known})")
        if len(dims) != specs[chip]["torus_dims"] or min(dims) < 1:
            expected = "x".join(["N"] * specs[chip]["torus_dims"])
            raise ConfigError(f"--topology {text}: a {chip} slice is {chip}:{expected} chips")
        return Topology(chip, dims, slices)
    match = re.fullmatch(r"(\w+)-(\d+)", text)
    chip = next(
        (c for c, spec in specs.items() if match and match.group(1) in spec["prefixes"]), None
    )
    if chip is None:
        raise ConfigError(
            f"--topology {text}: expected a chip topology such as v5p:4x4x4 or v5e:2x2, or a "
            f"Cloud TPU type such as v5p-128 or v5litepod-16 (chips: {known})"
        )
    spec, cores = specs[chip], int(match.group(2))
    chips = cores // spec["cores_per_chip"]
    if chips < 1 or chips & (chips - 1) or cores % spec["cores_per_chip"]:
        raise ConfigError(f"--topology {text}: {cores} is not a {chip} slice size")
    return Topology(chip, _torus(chips, spec["torus_dims"]), slices)


def tpu_devices(topology: Topology) -> list[Any]:
    """The slice's devices from libtpu's topology description (no TPU attached)."""
    try:
        from jax.experimental import topologies

        description = topologies.get_topology_desc(
            topology_name=topology.name, platform="tpu", num_slices=topology.slices
        )
    except Exception as e:  # libtpu absent, or a topology it does not know
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "libtpu" in detail.lower() or "unknown backend" in detail.lower():
            raise ConfigError(
                "rs-jax compile needs the TPU compiler: pip install -e '.[tpu]' (libtpu)"
            ) from e
        raise ConfigError(f"--topology {topology.name}: libtpu refused it ({detail})") from e
    return list(description.devices)


def _kernels(hlo: str) -> list[str]:
    """Custom kernels in an optimized HLO module: Pallas (Mosaic) kernels by name, and
    library kernels (cuDNN, cuBLAS) by target; XLA's own helper calls are left out."""
    names = set(re.findall(r'kernel_name[\\"]*\s*[:=]\s*[\\"]*([\w.-]+)', hlo))
    # A Mosaic kernel's instruction is named after the kernel: %splash_mha_fwd_....7 = ...
    names.update(
        re.findall(
            r'^\s*%([A-Za-z_]\w*?)(?:\.\d+)? = .*custom_call_target="tpu_custom_call"', hlo, re.M
        )
    )
    names.update(re.findall(r'custom_call_target="(__cu\w+[^"]*)"', hlo))
    return sorted(names)


def _out_of_memory_bytes(message: str) -> int | None:
    """The temporaries' bytes in the TPU compiler's "Ran out of memory in memory space hbm"
    error (None for any other error)."""
    match = re.search(r"required for HLO temporaries \(([\d.]+)([KMGT]?)\)", message)
    if not match:
        return None
    scale = 1024 ** "BKMGT".index(match.group(2) or "B")
    return int(float(match.group(1)) * scale)


def _lower(exp: experiment_lib.Experiment, step: str, batch_size: int):
    """The named step lowered on abstract state and batch, and those inputs."""
    from rs_jax.eval.generation import greedy_generate
    from rs_jax.train.losses import compute_loss
    from rs_jax.train.trainer import make_train_step

    batch = exp.abstract_batch(batch_size)
    with jax.set_mesh(exp.mesh):
        if step == "train":
            return make_train_step(exp).lower(exp.state, batch), (exp.state, batch)
        graphdef, params = exp.graphdef, exp.state["params"]
        shardings = exp.state_shardings["params"]

        def evaluate(params, batch):
            with nnx.logical_axis_rules(exp.rules):
                model = nnx.merge(graphdef, params)
                if step == "eval":
                    return compute_loss(model, batch)[1]
                visual = model.encode(batch["image"], batch["prompt_ids"], batch["prompt_mask"])
                return greedy_generate(
                    model,
                    visual.tokens,
                    batch,
                    max_new_tokens=exp.config.eval.max_new_tokens,
                    eos_id=1,
                    pad_id=0,
                )

        lowered = jax.jit(evaluate, in_shardings=(shardings, None)).lower(params, batch)
        return lowered, (params, batch)


def compile_step(
    config: ml_collections.ConfigDict,
    topology: Topology,
    *,
    step: str = "train",
    batch_size: int | None = None,
    dump: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compiles `step` for `topology`: its report (the `--json` keys) and what was compiled
    (step, global batch, mesh)."""
    from rs_jax.data.scenes import kb_entries

    if step not in STEPS:
        raise ConfigError(f"--step must be one of {', '.join(STEPS)}, got {step!r}")
    devices = tpu_devices(topology)
    if topology.slices > 1:  # the data axis spans the slices (DCN), the rest stays inside
        config = ml_collections.ConfigDict(config)
        data = int(config.mesh.data)
        config.mesh.data = data * topology.slices if data > 0 else data
    exp = experiment_lib.plan(config, kb_entries(), devices=devices)
    shards = sharding.batch_divisor(exp.mesh, exp.rules)
    batch_size = batch_size or config.data.batch_size
    if batch_size < 1 or batch_size % shards:
        raise ConfigError(
            f"--batch {batch_size} must be a positive multiple of the {shards} batch shards of "
            f"mesh {dict(exp.mesh.shape)}"
        )
    lowered, inputs = _lower(exp, step, batch_size)
    start = time.perf_counter()
    try:
        compiled = lowered.compile()
        memory, hlo = report.compiled_report(compiled) or {}, compiled.as_text()
    except jax.errors.JaxRuntimeError as e:
        # The TPU compiler refuses a program whose buffers exceed HBM: its verdict, with
        # what it needed, is the answer (the step's inputs counted from their shardings).
        temporaries = _out_of_memory_bytes(str(e))
        if temporaries is None:
            raise
        arguments = sum(report.device_bytes(x) for x in jax.tree.leaves(inputs))
        memory = {"argument_bytes": arguments, "output_bytes": 0, "alias_bytes": 0}
        memory["temp_bytes"], hlo = temporaries, ""
    compile_s = time.perf_counter() - start
    if dump and hlo:
        path = epath.Path(dump)
        path.mkdir(parents=True, exist_ok=True)
        (path / f"{step}.optimized.hlo.txt").write_text(hlo)
    total = report.peak_bytes(memory)
    hbm = int(topology.spec["hbm_gib"] * 1024**3)
    per_chip = max(len(devices) // topology.chips, 1)  # devices a chip shows (v4: two cores)
    data = config.data
    # A planned run has no tokenizer, so no template text before the image.
    text_tokens = data.max_prompt_len + data.max_answer_len
    count = flops.train_flops_per_example if step == "train" else flops.forward_flops
    model_flops = count(exp.model_config, text_tokens, data.max_answer_len) * batch_size
    peak = topology.spec["peak_bf16_tflops"] * 1e12 * topology.chips
    result = {
        "topology": topology.name + (f" x {topology.slices} slices" if topology.slices > 1 else ""),
        "chips": topology.chips,
        "per_chip_bytes": {
            "arguments": memory.get("argument_bytes", 0) * per_chip,
            "outputs": memory.get("output_bytes", 0) * per_chip,
            "temporaries": memory.get("temp_bytes", 0) * per_chip,
            "total": total * per_chip,
        },
        "hbm_bytes": hbm,
        "fits": total * per_chip <= hbm,
        "compile_s": round(compile_s, 2),
        "kernels": _kernels(hlo),
        "model_flops_per_step": model_flops,
        "step_s_at_50pct_mfu": model_flops / (0.5 * peak),
    }
    return result, {"step": step, "batch": batch_size, "mesh": dict(exp.mesh.shape)}


def format_result(result: dict[str, Any], compiled: dict[str, Any]) -> str:
    """The report as aligned lines (the table `rs-jax compile` prints)."""
    memory = result["per_chip_bytes"]
    fmt = report.format_bytes
    rows = [
        ("topology", f"{result['topology']} ({result['chips']} chips), mesh {compiled['mesh']}"),
        ("step", f"{compiled['step']}, global batch {compiled['batch']}"),
        (
            "per chip",
            f"arguments {fmt(memory['arguments'])}, temporaries {fmt(memory['temporaries'])}, "
            f"outputs {fmt(memory['outputs'])}; total {fmt(memory['total'])} of "
            f"{fmt(result['hbm_bytes'])} HBM",
        ),
        ("fits", "yes" if result["fits"] else "NO"),
        ("kernels", ", ".join(result["kernels"]) or "none"),
        ("model FLOPs", f"{result['model_flops_per_step']:.3e} per step"),
        ("step time", f"{result['step_s_at_50pct_mfu']:.3g} s at 50% MFU"),
        ("compiled in", f"{result['compile_s']:.1f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def not_fitting_message(result: dict[str, Any], compiled: dict[str, Any]) -> str:
    memory = result["per_chip_bytes"]["total"]
    return (
        f"the {compiled['step']} step needs {report.format_bytes(memory)} per chip, more than "
        f"the {report.format_bytes(result['hbm_bytes'])} of HBM on {result['topology']}; "
        f"lower --batch (or config.data.batch_size), " + ", ".join(report.MEMORY_KNOBS)
    )
