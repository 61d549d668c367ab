"""Plan a pod run without one: compile the 7B-class training step ahead of time on simulated
meshes of 64 and 256 CPU devices and read its per-device memory from XLA.

  python benchmarks/plan_memory.py --out benchmarks/results/plan_memory.json

For each mesh (fsdp x data, with and without an 'expert' axis), a subprocess with that many
simulated CPU devices builds configs/llava7b_like.py's train state abstractly
(`rs_jax.train.experiment.plan`: shapes, dtypes, shardings, nothing allocated), lowers and
compiles the training step at one and two examples per batch shard, and reports XLA's buffer
assignment per device (arguments, temporaries, outputs). Bytes grow linearly with the batch;
the fit gives the largest global batch whose peak fits 95 GiB (TPU v5p) and 80 GiB (H100).
XLA:CPU's buffer assignment is not a TPU's or GPU's (different fusion, scheduling and
layouts): read the figures as estimates to size a run, not as measurements.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import common

GIB = 1024**3
CAPACITIES = {"tpu_v5p_95GiB": 95 * GIB, "h100_80GiB": 80 * GIB}
MESHES = {
    "64: data 2 x fsdp 32": (64, {"data": 2, "fsdp": 32}),
    "64: data 2 x fsdp 8 x expert 4": (64, {"data": 2, "fsdp": 8, "expert": 4}),
    "256: data 4 x fsdp 64": (256, {"data": 4, "fsdp": 64}),
    "256: data 4 x fsdp 16 x expert 4": (256, {"data": 4, "fsdp": 16, "expert": 4}),
}


def worker(args) -> None:
    """In a process with --devices simulated CPU devices: compile and print JSON."""
    import jax

    from rs_jax import sharding
    from rs_jax.config import load_config
    from rs_jax.data.synth import kb_entries
    from rs_jax.train import experiment as experiment_lib
    from rs_jax.train import report
    from rs_jax.train.trainer import make_train_step

    mesh = json.loads(args.mesh)
    overrides = [f"mesh.{axis}={mesh.get(axis, 1)}" for axis in sharding.MESH_AXES]
    overrides += json.loads(args.worker_overrides)
    exp = experiment_lib.plan(load_config(args.config, overrides), kb_entries())
    shards = sharding.batch_divisor(exp.mesh, exp.rules)
    out = {"batch_shards": shards, "state": report.state_report(exp.state, exp.mesh)}
    out["batches"] = {}
    for per_shard in (1, 2):
        batch_size = per_shard * shards
        with jax.set_mesh(exp.mesh):
            lowered = make_train_step(exp).lower(exp.state, exp.abstract_batch(batch_size))
            start = time.perf_counter()
            compiled = lowered.compile()
        memory = report.compiled_report(compiled)
        out["batches"][batch_size] = {
            **memory,
            "peak_bytes": report.peak_bytes(memory),
            "compile_s": time.perf_counter() - start,
        }
    print(json.dumps(out))


def plan_mesh(config: str, devices: int, mesh: dict, overrides: list[str]) -> dict:
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
    }
    command = [sys.executable, __file__, "--worker", "--config", config,
               "--mesh", json.dumps(mesh), "--worker-overrides", json.dumps(overrides)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"planning {mesh} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    (small, a), (large, b) = sorted((int(k), v) for k, v in result["batches"].items())
    per_example = (b["peak_bytes"] - a["peak_bytes"]) / (large - small)
    fixed = a["peak_bytes"] - per_example * small
    shards = result["batch_shards"]
    result["fit"] = {"fixed_bytes": fixed, "bytes_per_example": per_example}
    result["max_global_batch"] = {
        name: max(int((cap - fixed) / per_example) // shards * shards, 0)
        for name, cap in CAPACITIES.items()
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/llava7b_like.py")
    parser.add_argument("--meshes", default=",".join(MESHES), help="names from MESHES")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="config override, e.g. --set model.remat_policy=dots (repeatable)",
    )  # fmt: skip
    parser.add_argument("--out", default=str(common.RESULTS / "plan_memory.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mesh", help=argparse.SUPPRESS)
    parser.add_argument("--worker-overrides", default="[]", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from rs_jax.train.report import format_bytes

    plans = {}
    for name in args.meshes.split(","):
        devices, mesh = MESHES[name]
        print(f"planning {name} ...", flush=True)
        plans[name] = {
            "devices": devices,
            "mesh": mesh,
            **plan_mesh(args.config, devices, mesh, args.set),
        }
    rows = []
    for name, plan in plans.items():
        one = plan["batches"][min(plan["batches"], key=int)]
        rows.append(
            [
                name,
                format_bytes(plan["state"]["param_bytes_per_device"]),
                format_bytes(plan["state"]["opt_state_bytes_per_device"]),
                format_bytes(one["temp_bytes"]),
                format_bytes(plan["fit"]["bytes_per_example"] * plan["batch_shards"]),
                f"{one['compile_s']:.0f} s",
                plan["max_global_batch"]["tpu_v5p_95GiB"],
                plan["max_global_batch"]["h100_80GiB"],
            ]
        )
    summary = [
        "### Pod memory plan (`plan_memory.py`, XLA:CPU estimate)",
        "",
        *common.table(
            [
                "mesh (devices)",
                "params/device",
                "optimizer/device",
                "temporaries at 1 ex/shard",
                "per example",
                "compile",
                "max batch 95 GiB",
                "max batch 80 GiB",
            ],
            rows,
        ),  # fmt: skip
    ]
    result = {
        "benchmark": "plan_memory",
        "config": args.config,
        "overrides": args.set,
        "plans": plans,
    }
    common.write(result, args.out, summary)


if __name__ == "__main__":
    main()
