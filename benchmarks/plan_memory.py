"""Plan pod runs without a pod: compile 7B- and 13B-class training steps for TPU slices with
the TPU's own compiler (libtpu) on this host, and read each chip's memory from it.

  python benchmarks/plan_memory.py --out benchmarks/results/plan_memory.json

Cases: configs/llava7b_like.py on a 64-chip v5p slice (v5p:4x4x4) and on v6e-256; the same
model with its semantic experts spread over an 'expert' axis of 4 (dropless dispatch, the
ragged all-to-all exchange); and a 13B-class decoder (LLaMA-13B's dims) on the v5p slice.
Each case is compiled at two global batches by `rs_jax.plan.aot.compile_step`, the code of
`rs-jax compile`; bytes per chip grow linearly with the batch, and the line through the two
gives the largest batch that fits the chip's HBM (a multiple of the batch shards). The step
time is the config's model FLOPs at 50% MFU of the chip's bf16 peak.

Without libtpu (`pip install -e '.[tpu]'`) the same steps are compiled by XLA:CPU on as many
simulated CPU devices, one subprocess a case: its buffer assignment is not a TPU's
(different fusion, scheduling and layouts), so those figures are labelled an estimate.
"""

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import time

import common

GIB = 1024**3
# The 7B model's own settings: bf16, full remat, fsdp over the slice.
LLAVA7B = "configs/llava7b_like.py"
EXPERT_PARALLEL = [
    "mesh.fsdp=16",
    "mesh.expert=4",
    "model.experts.dispatch=dropless",
]
DECODER_13B = [
    "model.llm.width=5120",
    "model.llm.depth=40",
    "model.llm.num_heads=40",
    "model.llm.num_kv_heads=40",
    "model.llm.mlp_dim=13824",
]
# name: (config, topology, overrides, the two global batches compiled)
CASES = {
    "7B on v5p:4x4x4": (LLAVA7B, "v5p:4x4x4", [], (128, 256)),
    "7B on v6e-256": (LLAVA7B, "v6e-256", [], (256, 512)),
    "7B with experts over 4 chips on v5p:4x4x4": (
        LLAVA7B,
        "v5p:4x4x4",
        EXPERT_PARALLEL,
        (128, 256),
    ),
    "13B decoder on v5p:4x4x4": (LLAVA7B, "v5p:4x4x4", DECODER_13B, (128, 256)),
}


def compile_on_tpu(config_path: str, topology_name: str, overrides: list[str], batch: int):
    """The `rs-jax compile --json` report of one compile, by libtpu."""
    from rs_jax.config_files import load_config
    from rs_jax.plan import aot

    config = load_config(config_path, overrides)
    result, compiled = aot.compile_step(config, aot.parse_topology(topology_name), batch_size=batch)
    batch_axes = dict(config.sharding_rules)["act_batch"]
    return {**result, "batch_shards": math.prod(compiled["mesh"][a] for a in batch_axes)}


def worker(args) -> None:
    """XLA:CPU fallback, in a process with as many simulated devices as the slice has chips:
    print the same report keys for one compile."""
    import jax

    from rs_jax import sharding
    from rs_jax.config_files import load_config
    from rs_jax.data.scenes import kb_entries
    from rs_jax.plan import aot
    from rs_jax.train import experiment as experiment_lib
    from rs_jax.train import report
    from rs_jax.train.trainer import make_train_step

    topology = aot.parse_topology(args.topology)
    exp = experiment_lib.plan(
        load_config(args.config, json.loads(args.overrides)), kb_entries(), jax.devices()
    )
    with jax.set_mesh(exp.mesh):
        lowered = make_train_step(exp).lower(exp.state, exp.abstract_batch(args.batch))
        start = time.perf_counter()
        memory = report.compiled_report(lowered.compile())
    total = report.peak_bytes(memory)
    hbm = int(topology.spec["hbm_gib"] * GIB)
    result = {
        "per_chip_bytes": {
            "arguments": memory["argument_bytes"],
            "outputs": memory["output_bytes"],
            "temporaries": memory["temp_bytes"],
            "total": total,
        },
        "hbm_bytes": hbm,
        "fits": total <= hbm,
        "compile_s": round(time.perf_counter() - start, 2),
        "kernels": [],
        "batch_shards": sharding.batch_divisor(exp.mesh, exp.rules),
    }
    print(json.dumps(result))


def compile_on_cpu(config_path: str, topology_name: str, overrides: list[str], batch: int):
    from rs_jax.plan import aot

    chips = aot.parse_topology(topology_name).chips
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={chips}",
        "JAX_PLATFORMS": "cpu",
    }
    command = [sys.executable, __file__, "--worker", "--config", config_path,
               "--topology", topology_name, "--overrides", json.dumps(overrides),
               "--batch", str(batch)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"compiling {topology_name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def largest_batch(points: dict[int, int], hbm: int, shards: int) -> int | None:
    """The largest global batch (a multiple of `shards`) under `hbm` bytes a chip, on the line
    through the two (batch, bytes a chip) points; None where memory did not grow with the
    batch (the compiler tiled the larger batch differently: no line to follow)."""
    (small, a), (large, b) = sorted(points.items())
    per_example = (b - a) / (large - small)
    if per_example <= 0:
        return None
    fixed = a - per_example * small
    return max(int((hbm - fixed) / per_example) // shards * shards, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="names from CASES")
    parser.add_argument("--out", default=str(common.RESULTS / "plan_memory.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--topology", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="[]", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from rs_jax.train.report import format_bytes

    on_tpu = importlib.util.find_spec("libtpu") is not None
    compiler = "libtpu (the TPU compiler)" if on_tpu else "XLA:CPU (estimate: no libtpu)"
    compile_one = compile_on_tpu if on_tpu else compile_on_cpu
    names = args.cases.split(",")
    plans, rows, started = {}, [], time.perf_counter()
    for i, name in enumerate(names, 1):
        config_path, topology, overrides, batches = CASES[name]
        runs = {}
        for batch in batches:
            elapsed = time.perf_counter() - started
            print(f"[{i}/{len(names)}] {name}: batch {batch} ({elapsed:.0f} s so far)", flush=True)
            runs[batch] = compile_one(config_path, topology, overrides, batch)
        first, second = (runs[b] for b in batches)
        totals = {b: r["per_chip_bytes"]["total"] for b, r in runs.items()}
        best = largest_batch(totals, first["hbm_bytes"], first["batch_shards"])
        plans[name] = {
            "config": config_path,
            "topology": topology,
            "overrides": overrides,
            "runs": runs,
            "max_global_batch": best,
        }
        memory = second["per_chip_bytes"]
        rows.append(
            [
                name,
                batches[1],
                format_bytes(memory["arguments"]),
                format_bytes(memory["temporaries"]),
                format_bytes(memory["total"]),
                format_bytes(second["hbm_bytes"]),
                "yes" if second["fits"] else "NO",
                "n/a" if best is None else best,
                f"{second.get('step_s_at_50pct_mfu', float('nan')):.2f} s",
                ", ".join(second["kernels"]) or "none",
                f"{second['compile_s']:.0f} s",
            ]
        )
    summary = [
        f"### Pod memory plan (`plan_memory.py`, compiled by {compiler})",
        "",
        *common.table(
            [
                "case",
                "global batch",
                "arguments/chip",
                "temporaries/chip",
                "total/chip",
                "HBM",
                "fits",
                "largest batch that fits",
                "step at 50% MFU",
                "kernels",
                "compile",
            ],
            rows,
        ),  # fmt: skip
        "",
        "Largest batch: the line through the two compiled batches, in multiples of the batch "
        "shards. Compile times on this host's CPU cores.",
    ]
    result = {"benchmark": "plan_memory", "compiler": compiler, "plans": plans}
    common.write(result, args.out, summary)


if __name__ == "__main__":
    main()
