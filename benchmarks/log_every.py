"""What a host read per step costs: N training steps that read the metrics after every step
(log_every=1, the trainer before it kept the guard on device) against reading them once
(log_every=N), same compiled step, same batches, interleaved rounds.

  python benchmarks/log_every.py --out benchmarks/results/log_every.json

Each step takes the next host batch from the data iterator, places it on the mesh and
dispatches the jitted step, as rs_jax/train/trainer.py does. Without a read, the host
prepares batch n + 1 while the devices run step n; a read at every step serialises the two.
On an accelerator the devices also idle while the host works; on this CPU host both share
the same cores, so the gain here is a lower bound.
"""

import argparse
import tempfile
import time

import common  # noqa: F401  (this checkout on sys.path)
import jax

from rs_jax.config_files import load_config
from rs_jax.train import experiment as experiment_lib
from rs_jax.train.trainer import make_train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.py")
    parser.add_argument("--steps", type=int, default=20, help="N: steps per timed run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(common.RESULTS / "log_every.json"))
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="rs_jax_bench_")
    config = load_config(args.config, [f"data.data_dir={data_dir}"])
    exp = experiment_lib.setup(config, data_dir)
    iterator = exp.data.train_iterator(seed=0)
    first = exp.shard_batch(next(iterator))
    with jax.set_mesh(exp.mesh):
        step_fn = make_train_step(exp).lower(exp.state, first).compile()
    live = {"state": exp.state}

    def run(log_every: int):
        def steps():
            with jax.set_mesh(exp.mesh):
                for step in range(1, args.steps + 1):
                    batch = exp.shard_batch(next(iterator))
                    live["state"], metrics = step_fn(live["state"], batch)
                    if step % log_every == 0:
                        float(metrics["loss"])  # what a log line does
                jax.block_until_ready(live["state"])

        return steps

    cases = {"log_every=1": run(1), f"log_every={args.steps}": run(args.steps)}
    run(args.steps)()  # warm-up: the data workers and the first dispatches
    start = time.perf_counter()
    times = common.interleaved(cases, rounds=args.rounds, calls=1)
    every, once = (common.median(t) for t in times.values())
    result = {
        "config": args.config,
        "steps": args.steps,
        "rounds": args.rounds,
        "seconds": {name: t for name, t in times.items()},
        "median_seconds": {"log_every=1": every, f"log_every={args.steps}": once},
        "speedup": every / once,
        "wall_s": time.perf_counter() - start,
    }
    rows = [
        [name, f"{common.median(t):.2f}", f"{common.median(t) / args.steps * 1e3:.0f}"]
        for name, t in times.items()
    ]
    summary = [
        f"### {args.steps} training steps: metrics read every step against once "
        f"({args.config}, {len(jax.devices())} device(s))",
        "",
        *common.table(["host reads", f"seconds for {args.steps} steps", "ms/step"], rows),
        "",
        f"Reading once is {result['speedup']:.2f}x the speed of reading every step "
        f"(median of {args.rounds} interleaved rounds).",
    ]
    common.write(result, args.out, summary)


if __name__ == "__main__":
    main()
