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

Two variants differ only where their means are further apart than twice the larger of
their standard deviations; otherwise the summary says "no difference".
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common

from rs_jax.data.tasks import BOX_TASKS, GROUNDING_TASK

MARKER = ".rs_jax_accuracy_run"
MIN_SEEDS = 3  # a difference is claimed only between variants run with this many seeds


def metrics_of(results: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of one eval.json, flat: overall, mean of tasks, each task's
    accuracy, per-source scores, and the model's size and training FLOPs per example."""
    out = {
        "overall_accuracy": results["overall_accuracy"],
        "mean_accuracy": results["mean_accuracy"],
    }
    for task, row in results.get("tasks", {}).items():
        out[f"task/{task}"] = row["accuracy"]
    if "parameters" in results:
        out["parameters"] = results["parameters"]
        out["train_gflops_per_example"] = results["train_flops_per_example"] / 1e9
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


def sweep(
    config: str,
    variants: list[str],
    seeds: list[int],
    runs: str,
    overrides: list[str],
    *,
    known: dict[str, dict[int, dict[str, float]]] | None = None,
    on_run: Callable[[str, int, dict[str, float]], None] | None = None,
    done: int = 0,
    total: int | None = None,
    start: float | None = None,
) -> tuple[dict[str, dict[int, dict[str, float]]], dict[str, list[float]]]:
    """Trains and evaluates every (variant, seed) of `config` not yet evaluated: the
    metrics of each run (metrics_of) and the seconds of those run now, per variant.
    known: metrics of runs evaluated elsewhere (an earlier result file), not run again;
    on_run(variant, seed, metrics) is called as each run's metrics arrive. done/total/start:
    where the progress line counts from when this is part of a larger grid."""
    rs_jax = str(Path(sys.executable).with_name("rs-jax"))
    name = Path(config).stem
    per_run: dict[str, dict[int, dict[str, float]]] = {v: {} for v in variants}
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    total = total or len(variants) * len(seeds)
    start = start or time.perf_counter()
    for seed in seeds:
        for variant in variants:
            workdir = Path(runs) / name / variant / f"seed{seed}"
            spec = config if variant == "full" else f"{config}:{variant}"
            common_args = ["--config", spec, "--workdir", str(workdir), f"--config.seed={seed}"]
            eval_json = workdir / "eval.json"
            earlier = (known or {}).get(variant, {}).get(seed)
            if earlier is None and not eval_json.exists():
                if workdir.exists() and not (workdir / MARKER).exists():
                    raise SystemExit(f"{workdir} exists and was not made by this script")
                workdir.mkdir(parents=True, exist_ok=True)
                (workdir / MARKER).touch()
                t0 = time.perf_counter()
                log = workdir / "accuracy.log"
                run([rs_jax, "train", *common_args, *overrides], log)
                run([rs_jax, "eval", *common_args, *overrides], log)
                seconds[variant].append(time.perf_counter() - t0)
            if earlier is None:
                earlier = metrics_of(json.loads(eval_json.read_text()))
            per_run[variant][seed] = earlier
            if on_run is not None:
                on_run(variant, seed, earlier)
            done += 1
            overall = per_run[variant][seed]["overall_accuracy"]
            common.progress(
                done, total, f"{name} {variant} seed {seed}: overall {overall:.3f}", start
            )
    return per_run, seconds


def statistics_of(
    per_run: dict[str, dict[int, dict[str, float]]], seeds: list[int]
) -> dict[str, dict[str, dict[str, Any]]]:
    """{variant: {metric: {"mean", "std", "seeds": [the value of each seed run]}}}, over
    the `seeds` each variant has run (std None below two)."""
    stats = {}
    for v, runs in per_run.items():
        ran = [s for s in seeds if s in runs]
        if ran:
            stats[v] = {
                key: {
                    "mean": statistics.mean(values := [runs[s][key] for s in ran]),
                    "std": statistics.stdev(values) if len(values) > 1 else None,
                    "seeds": values,
                }
                for key in runs[ran[0]]
            }
    return stats


def differences(stats: dict[str, dict[str, dict[str, Any]]], reference: str) -> list[str]:
    """The metrics in which a variant's mean differs from `reference`'s by more than twice
    the larger of their standard deviations (the rest are no difference)."""
    found = []
    for other in (v for v in stats if v != reference):
        for key, a in stats[reference].items():
            b = stats[other].get(key)
            if not b or min(len(a["seeds"]), len(b["seeds"])) < MIN_SEEDS:
                continue
            if abs(a["mean"] - b["mean"]) > 2 * max(a["std"], b["std"]):
                higher = reference if a["mean"] > b["mean"] else other
                found.append(f"{key}: {higher} higher ({reference} vs {other})")
    return found


def cell(stat: dict[str, Any] | None) -> str:
    if stat is None:
        return "-"
    if stat["std"] is None:
        return f"{stat['mean']:.3f} (1 seed)"
    shown = f"{stat['mean']:.3f} ± {stat['std']:.3f}"
    return shown if len(stat["seeds"]) >= MIN_SEEDS else f"{shown} ({len(stat['seeds'])} seeds)"


def parse_seeds(parser: argparse.ArgumentParser, text: str) -> list[int]:
    seeds = [int(s) for s in text.split(",")]
    if len(seeds) < MIN_SEEDS:
        parser.error("--seeds: at least 3 seeds (accuracy claims give mean and spread)")
    return seeds


def config_overrides(parser: argparse.ArgumentParser, overrides: list[str]) -> list[str]:
    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    return overrides


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--variants", default="full,baseline")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--runs", default="runs/accuracy")
    parser.add_argument("--out", required=True)
    args, overrides = parser.parse_known_args()
    overrides = config_overrides(parser, overrides)
    seeds = parse_seeds(parser, args.seeds)
    variants = [v for v in args.variants.split(",") if v]
    per_run, seconds = sweep(args.config, variants, seeds, args.runs, overrides)
    stats = statistics_of(per_run, seeds)
    rows = [[key] + [cell(stats[v].get(key)) for v in variants] for key in stats[variants[0]]]
    summary = common.table(["metric", *variants], rows) + [
        "",
        f"Mean ± standard deviation over seeds {seeds}; `{args.config}` {' '.join(overrides)}.",
        "Differences beyond the spread: "
        + ("; ".join(differences(stats, variants[0])) or "none (no difference)"),
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
