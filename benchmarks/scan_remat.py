"""Scanned vs unrolled layers (compile time) and the rematerialisation policies (memory and
step time), on the speed benchmark's model.

  python benchmarks/scan_remat.py --out benchmarks/results/scan_remat.json

1. Compile time of the baseline's training step with a 24-block decoder
   (configs/llava_small.py:baseline, --config.model.llm.depth=24), model.scan_layers on/off.
2. Each model.remat_policy on configs/llava_small.py:baseline,bf16: the compiled step's
   per-device temporaries and peak from XLA's buffer assignment (XLA:CPU here: an estimate
   of an accelerator's, not its measurement) and the step time, in interleaved rounds.
"""

import argparse
import tempfile
import time

import common  # noqa: F401  (this checkout on sys.path)
import jax

from rs_jax.config_files import load_config
from rs_jax.models.config import REMAT_POLICIES
from rs_jax.train import experiment as experiment_lib
from rs_jax.train import report
from rs_jax.train.trainer import make_train_step


def compiled_step(spec: str, data_dir: str, overrides: list[str]):
    """(compiled step, seconds to compile, experiment, first batch)."""
    config = load_config(spec, [f"data.data_dir={data_dir}", *overrides])
    exp = experiment_lib.setup(config, data_dir)
    batch = exp.shard_batch(next(exp.data.train_iterator(seed=0)))
    with jax.set_mesh(exp.mesh):
        lowered = make_train_step(exp).lower(exp.state, batch)
        start = time.perf_counter()
        compiled = lowered.compile()
    return compiled, time.perf_counter() - start, exp, batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/llava_small.py")
    parser.add_argument("--depth", type=int, default=24, help="decoder blocks for compile time")
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(common.RESULTS / "scan_remat.json"))
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="rs_jax_bench_")

    compile_s = {}
    for scan in (True, False):
        overrides = [f"model.llm.depth={args.depth}", f"model.scan_layers={scan}"]
        _, seconds, _, _ = compiled_step(f"{args.config}:baseline", data_dir, overrides)
        compile_s["scanned" if scan else "unrolled"] = seconds

    policies, cases = {}, {}
    for policy in REMAT_POLICIES:
        step, _, exp, batch = compiled_step(
            f"{args.config}:baseline,bf16", data_dir, [f"model.remat_policy={policy}"]
        )
        memory = report.compiled_report(step)
        policies[policy] = {**memory, "peak_bytes": report.peak_bytes(memory)}
        holder = {"state": exp.state}

        def run(step=step, exp=exp, batch=batch, holder=holder):
            with jax.set_mesh(exp.mesh):
                holder["state"], metrics = step(holder["state"], batch)
                jax.block_until_ready(metrics)

        run()
        cases[policy] = run
    times = common.interleaved(cases, args.rounds, args.calls)
    for policy, t in times.items():
        policies[policy]["median_s_per_step"] = common.median(t)
        policies[policy]["round_s_per_step"] = t

    result = {
        "benchmark": "scan_remat",
        "config": args.config,
        "compile_s": {**compile_s, "depth": args.depth},
        "remat": policies,
    }
    rows = [
        [
            policy,
            report.format_bytes(r["temp_bytes"]),
            report.format_bytes(r["peak_bytes"]),
            f"{r['median_s_per_step']:.3f}",
        ]
        for policy, r in policies.items()
    ]
    summary = [
        "### Scan and remat (`scan_remat.py`)",
        "",
        f"Compile time of the {args.depth}-block decoder's training step: scanned "
        f"**{compile_s['scanned']:.1f} s**, unrolled **{compile_s['unrolled']:.1f} s**.",
        "",
        *common.table(["remat policy", "temporaries", "peak", "s/step"], rows),
    ]
    common.write(result, args.out, summary)


if __name__ == "__main__":
    main()
