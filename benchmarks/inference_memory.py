"""Peak memory (RSS) of `rs-jax eval` against `rs-jax train` on configs/llava_small.py.

  python benchmarks/inference_memory.py --out benchmarks/results/inference_memory.json

Trains llava_small for a few steps into a temporary workdir, resumes it for one more step,
then evaluates it; each command runs in its own process and its peak resident memory is
read from the kernel (`wait4`'s ru_maxrss). Evaluation restores the parameters alone
(no optimizer moments, no random initialisation), and a resume restores into shapes rather
than beside a fresh initialisation.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import common

CONFIG = "configs/llava_small.py"
MIB = 1024**2


def peak_rss(argv: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of one command run to completion."""
    env = {**os.environ, "RS_JAX_CPU_DEVICES": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=common.REPO, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(argv)} failed (exit {os.waitstatus_to_exitcode(status)})")
    return usage.ru_maxrss * 1024 / MIB, seconds  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(common.RESULTS / "inference_memory.json"))
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    rows, result = [], {"config": CONFIG, "steps": args.steps, "commands": {}}
    with tempfile.TemporaryDirectory(prefix="rs_jax_bench_") as tmp:
        workdir = os.path.join(tmp, "run")
        base = ["--config", CONFIG, "--workdir", workdir]
        base.append(f"--config.data.data_dir={os.path.join(tmp, 'data')}")
        commands = {
            "train": ["train", *base, f"--config.train.steps={args.steps}"],
            "train (resume)": ["train", *base, f"--config.train.steps={args.steps + 1}"],
            "eval": ["eval", *base, "--config.eval.num_examples=16"],
        }
        for i, (name, command) in enumerate(commands.items(), 1):
            print(f"[{i}/{len(commands)}] rs-jax {' '.join(command[:1])} ({name})", flush=True)
            mib, seconds = peak_rss([sys.executable, "-m", "rs_jax.cli", *command])
            result["commands"][name] = {"peak_rss_mib": round(mib, 1), "seconds": seconds}
            rows.append([name, f"{mib:,.0f}", f"{seconds:.0f}"])
    train = result["commands"]["train"]["peak_rss_mib"]
    result["eval_over_train"] = result["commands"]["eval"]["peak_rss_mib"] / train
    summary = [
        "### Peak memory of eval against train (configs/llava_small.py, one CPU device)",
        "",
        *common.table(["command", "peak RSS (MiB)", "seconds"], rows),
        "",
        f"eval / train peak RSS: {result['eval_over_train']:.2f}. Training's peak also "
        "holds the compilation of its step and the data workers; eval restores the "
        "parameters alone into shapes (no random initialisation, no optimizer moments).",
    ]
    common.write(result, args.out, summary)


if __name__ == "__main__":
    main()
