"""Run every benchmark (`make bench`) and gather one JSON and a markdown summary.

  python benchmarks/run_all.py [--only train_step,moe] [--out-dir benchmarks/results]

Each benchmark runs in its own process, as `python benchmarks/<name>.py --out
<out-dir>/<name>.json`; then <out-dir>/all.json holds every result and <out-dir>/summary.md
their summaries. A benchmark that fails is reported (its stderr tail in all.json) and the
others still run; the exit status is 1 if any failed.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import common

BENCHMARKS = (
    "train_step",
    "scan_remat",
    "moe",
    "retrieval",
    "plan_memory",
    "hf_import",
    "inference_memory",
    "log_every",
    "input_pipeline",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS))
    parser.add_argument("--out-dir", default=str(common.RESULTS))
    args = parser.parse_args()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")

    results, failed, start = {}, [], time.perf_counter()
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name} (started at {time.perf_counter() - start:.0f} s)",
              flush=True)  # fmt: skip
        out = out_dir / f"{name}.json"
        script = Path(__file__).with_name(f"{name}.py")
        done = subprocess.run([sys.executable, str(script), "--out", str(out)], cwd=common.REPO)
        if done.returncode:
            failed.append(name)
            results[name] = {"failed": f"exit status {done.returncode}"}
        else:
            results[name] = json.loads(out.read_text())
    summary = [f"# rs-jax benchmarks ({time.strftime('%Y-%m-%d')})", ""]
    for name, result in results.items():
        if "failed" in result:
            summary += [f"### {name}", "", f"FAILED: {result['failed']}"]
        else:
            summary += result["summary"]
        summary.append("")
    (out_dir / "all.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "summary.md").write_text("\n".join(summary))
    print(f"wrote {out_dir / 'all.json'} and {out_dir / 'summary.md'}"
          f"{f'; failed: {failed}' if failed else ''}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
