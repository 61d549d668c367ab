"""Training-step speed of the full model against the LLaVA-1.5 baseline, side by side.

  python benchmarks/train_step.py --config configs/demo.py --out benchmarks/results/train_step.json

Both variants run in one process on the same batches, alternating blocks of steps so that
machine noise hits both alike; the JSON reports each one's median step time and the ratio.
"""

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import jax

from rs_jax.config import load_config
from rs_jax.train import experiment as experiment_lib
from rs_jax.train.trainer import make_train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.py")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per block")
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/train_step.json")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="rs_jax_bench_")
    runs = {}
    for variant in ("full", "baseline"):
        spec = args.config + (":baseline" if variant == "baseline" else "")
        config = load_config(spec, [f"data.data_dir={workdir}/data"])
        exp = experiment_lib.setup(config, workdir)
        iterator = exp.data.train_iterator(seed=0)
        batches = [exp.shard_batch(next(iterator)) for _ in range(args.steps)]
        step = make_train_step(exp)
        with jax.set_mesh(exp.mesh):
            state, metrics = step(exp.state, batches[0])  # compile
            jax.block_until_ready(metrics)
        params = sum(x.size for x in jax.tree.leaves(state["params"]))
        runs[variant] = {
            "exp": exp,
            "step": step,
            "state": state,
            "batches": batches,
            "times": [],
            "params": int(params),
            "batch_size": config.data.batch_size,
        }

    for _ in range(args.blocks):
        for run in runs.values():
            with jax.set_mesh(run["exp"].mesh):
                start = time.perf_counter()
                for batch in run["batches"]:
                    run["state"], metrics = run["step"](run["state"], batch)
                jax.block_until_ready(metrics)
            run["times"].append((time.perf_counter() - start) / len(run["batches"]))

    result = {
        "benchmark": "train_step",
        "config": args.config,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "machine": platform.processor() or platform.machine(),
        "steps_per_block": args.steps,
        "blocks": args.blocks,
    }
    for name, run in runs.items():
        median = statistics.median(run["times"])
        result[name] = {
            "params": run["params"],
            "median_s_per_step": median,
            "examples_per_s": run["batch_size"] / median,
            "block_s_per_step": run["times"],
        }
    result["full_over_baseline_time_ratio"] = (
        result["full"]["median_s_per_step"] / result["baseline"]["median_s_per_step"]
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("devices",)}, indent=2))


if __name__ == "__main__":
    main()
