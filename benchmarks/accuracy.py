"""Accuracy over seeds: train and evaluate config variants side by side, from scratch, and
report each metric's mean and standard deviation over the seeds.

  python benchmarks/accuracy.py --config configs/eurosat.py --variants full,baseline \\
      --seeds 0,1,2 --out benchmarks/results/accuracy_eurosat.json

Each (variant, seed) run is `rs-jax train` then `rs-jax eval` in its own process, in
`<runs>/<config name>/<variant>/seed<k>` (default runs/accuracy). A run whose eval.json
exists is not repeated, so an interrupted sweep continues where it stopped; a workdir this
script did not make is refused (it never writes into a folder it did not create). Variant
"full" is the config as it is; any other name is passed as the config's `:variant`
(e.g. `baseline`, `kb`). Extra `--config.KEY=VALUE` arguments go to every run.

Two variants differ only where their means are further apart than the sum of their
standard deviations; otherwise the summary says "no difference".
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common

from rs_jax.data.tasks import BOX_TASKS, GROUNDING_TASK

MARKER = ".rs_jax_accuracy_run"


def metrics_of(results: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of one eval.json, flat: overall and per-source scores."""
    out = {
        "overall_accuracy": results["overall_accuracy"],
        "mean_accuracy": results["mean_accuracy"],
    }
    for name, row in results.get("sources", {}).items():
        if row["protocol"] == "classification":
            out[f"{name}/accuracy"] = row["accuracy"]
            out[f"{name}/balanced_accuracy"] = row["balanced_accuracy"]
        elif row["protocol"] == "vqa":
            out[f"{name}/mean_of_types"] = row["mean_of_types"]
            out[f"{name}/overall"] = row["overall"]
            for kind, r in row["per_type"].items():
                out[f"{name}/{kind}"] = r["accuracy"]
        elif row.get("count"):
            for metric in ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr"):
                if row.get(metric) is not None:
                    out[f"{name}/{metric}"] = row[metric]
        scored = (
            {GROUNDING_TASK: row}
            if row["protocol"] == "grounding"
            else {t: row[t] for t in BOX_TASKS if t in row}
        )
        for box_task, boxes in scored.items():
            for metric in ("acc@0.5", "acc@0.25", "mean_iou", "precision@0.5", "recall@0.5"):
                out[f"{name}/{box_task} {metric}"] = boxes[metric]
            for size, r in boxes["by_size"].items():
                if r["count"]:
                    out[f"{name}/{box_task} acc@0.5 {size} (n={r['count']})"] = r["acc@0.5"]
    for level, row in results.get("retrieval", {}).items():
        out[f"retrieval/{level}_hit@1"] = row["hit@1"]
    return out


def run(cmd: list[str], log: Path) -> None:
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=common.REPO)
    if done.returncode:
        tail = log.read_text().splitlines()[-5:]
        raise SystemExit(f"{' '.join(cmd[:3])} failed (exit {done.returncode}); {log}: {tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--variants", default="full,baseline")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--runs", default="runs/accuracy")
    parser.add_argument("--out", required=True)
    args, overrides = parser.parse_known_args()
    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    if len(seeds) < 3:
        parser.error("--seeds: at least 3 seeds (accuracy claims give mean and spread)")
    variants = [v for v in args.variants.split(",") if v]
    rs_jax = str(Path(sys.executable).with_name("rs-jax"))
    name = Path(args.config).stem

    per_run: dict[str, dict[int, dict[str, float]]] = {v: {} for v in variants}
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    total, done = len(variants) * len(seeds), 0
    start = time.perf_counter()
    for seed in seeds:
        for variant in variants:
            workdir = Path(args.runs) / name / variant / f"seed{seed}"
            spec = args.config if variant == "full" else f"{args.config}:{variant}"
            common_args = ["--config", spec, "--workdir", str(workdir), f"--config.seed={seed}"]
            eval_json = workdir / "eval.json"
            if not eval_json.exists():
                if workdir.exists() and not (workdir / MARKER).exists():
                    raise SystemExit(f"{workdir} exists and was not made by this script")
                workdir.mkdir(parents=True, exist_ok=True)
                (workdir / MARKER).touch()
                t0 = time.perf_counter()
                log = workdir / "accuracy.log"
                run([rs_jax, "train", *common_args, *overrides], log)
                run([rs_jax, "eval", *common_args, *overrides], log)
                seconds[variant].append(time.perf_counter() - t0)
            per_run[variant][seed] = metrics_of(json.loads(eval_json.read_text()))
            done += 1
            elapsed = time.perf_counter() - start
            eta = elapsed / done * (total - done)
            print(f"[{done}/{total}] {variant} seed {seed}: overall "
                  f"{per_run[variant][seed]['overall_accuracy']:.3f} | "
                  f"{elapsed / 60:.1f} min | ETA {eta / 60:.1f} min", flush=True)  # fmt: skip

    stats = {
        v: {
            key: {
                "mean": statistics.mean(runs[s][key] for s in seeds),
                "std": statistics.stdev(runs[s][key] for s in seeds),
                "runs": [runs[s][key] for s in seeds],
            }
            for key in runs[seeds[0]]
        }
        for v, runs in per_run.items()
    }
    keys = list(stats[variants[0]])
    rows = [
        [key]
        + [
            f"{stats[v][key]['mean']:.3f} ± {stats[v][key]['std']:.3f}" if key in stats[v] else "-"
            for v in variants
        ]
        for key in keys
    ]
    verdicts = []
    for other in variants[1:]:
        for key in keys:
            a, b = stats[variants[0]].get(key), stats[other].get(key)
            if a and b and abs(a["mean"] - b["mean"]) > a["std"] + b["std"]:
                higher = variants[0] if a["mean"] > b["mean"] else other
                verdicts.append(f"{key}: {higher} higher ({variants[0]} vs {other})")
    summary = common.table(["metric", *variants], rows) + [
        "",
        f"Mean ± standard deviation over seeds {seeds}; `{args.config}` {' '.join(overrides)}.",
        "Differences beyond the spread: " + ("; ".join(verdicts) or "none (no difference)"),
    ]
    result = {
        "config": args.config,
        "overrides": overrides,
        "seeds": seeds,
        "variants": stats,
        "minutes_per_run": {v: statistics.mean(s) / 60 for v, s in seconds.items() if s},
    }
    common.write(result, args.out, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
