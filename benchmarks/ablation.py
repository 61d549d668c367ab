"""The method's ablation grid: the baseline, each part of the method alone on it, the full
model, and a baseline as large as the full model; 3 seeds each on EuroSAT and on the UC
Merced mixture, trained from scratch and scored on their test splits.

  python benchmarks/ablation.py --out benchmarks/results/ablation.json

The variants are the real-data configs' (configs/common.py ABLATIONS, docs/ablation.md):
baseline (LLaVA-1.5), levels (the tapped levels alone), retrieval (KB cues on the
baseline's tokens), experts (the semantic experts on the baseline's tokens), full, wide (the
baseline widened to the full model's parameters). Each run is benchmarks/accuracy.py's:
`rs-jax train` then `rs-jax eval` in <runs>/<config>/<variant>/seed<k>, not repeated once
evaluated, so an interrupted grid continues where it stopped. --datasets / --variants run
part of the grid; the datasets of an earlier --out that this run does not redo are kept.

The JSON holds {"datasets": {dataset: {variant: {metric: {"mean", "std", "seeds"}}}}}:
overall, mean of tasks, each task and source, the parameter count and the training FLOPs
per example. A variant differs from another only where their means are further apart
than twice the larger standard deviation; the summary says which do.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import accuracy
import common

from configs.common import ABLATIONS

DATASETS = {"eurosat": "configs/eurosat.py", "ucm_mixture": "configs/ucm_mixture.py"}
VARIANTS = ("baseline", "levels", "retrieval", "experts", "full", "wide")
assert set(VARIANTS) == {*ABLATIONS, "full"}
# Each source's headline metric, by protocol, for the table (the JSON holds every metric).
HEADLINES = ("accuracy", "mean_of_types", "CIDEr")


def table(stats: dict[str, dict[str, dict]], variants: list[str]) -> list[str]:
    """One dataset's rows: a variant's size, cost and headline scores."""
    first = stats[variants[0]]
    headlines = [key for key in first if key.partition("/")[2] in HEADLINES]
    header = ["variant", "parameters", "train GFLOPs / example", "overall", "mean of tasks"]
    rows = []
    for variant in variants:
        s = stats[variant]
        rows.append(
            [
                variant,
                f"{s['parameters']['mean'] / 1e6:.2f}M",
                f"{s['train_gflops_per_example']['mean']:.2f}",
                accuracy.cell(s["overall_accuracy"]),
                accuracy.cell(s["mean_accuracy"]),
                *(accuracy.cell(s.get(key)) for key in headlines),
            ]
        )
    return common.table(header + headlines, rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--runs", default="runs/accuracy")
    parser.add_argument("--out", required=True)
    args, overrides = parser.parse_known_args()
    overrides = accuracy.config_overrides(parser, overrides)
    seeds = accuracy.parse_seeds(parser, args.seeds)
    datasets = [d for d in args.datasets.split(",") if d]
    variants = [v for v in args.variants.split(",") if v]
    for name, known in (("--datasets", DATASETS), ("--variants", VARIANTS)):
        unknown = [x for x in (datasets if name == "--datasets" else variants) if x not in known]
        if unknown:
            parser.error(f"{name}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")

    out = Path(args.out)
    earlier = json.loads(out.read_text()) if out.exists() else {}
    if earlier and "datasets" not in earlier:
        parser.error(f"--out {out} exists and is no ablation grid; it is left as it is")
    results = {d: s for d, s in earlier.get("datasets", {}).items() if d not in datasets}
    minutes = {d: m for d, m in earlier.get("minutes_per_run", {}).items() if d in results}
    total, start = len(datasets) * len(variants) * len(seeds), time.perf_counter()
    for i, dataset in enumerate(datasets):
        done = i * len(variants) * len(seeds)
        per_run, seconds = accuracy.sweep(
            DATASETS[dataset], variants, seeds, args.runs, overrides,
            done=done, total=total, start=start,
        )  # fmt: skip
        results[dataset] = accuracy.statistics_of(per_run, seeds)
        minutes[dataset] = {v: statistics.mean(s) / 60 for v, s in seconds.items() if s}

    summary = []
    for dataset, stats in results.items():
        shown = [v for v in VARIANTS if v in stats]
        found = [f for ref in ("baseline", "full") for f in accuracy.differences(stats, ref)]
        found = [f for f in found if not f.startswith(("parameters", "train_gflops"))]
        summary += [f"### {dataset}", "", *table(stats, shown), ""]
        summary.append(
            "Differences beyond the spread: " + ("; ".join(found) or "none (no difference)")
        )
        summary.append("")
    summary.append(
        f"Mean ± standard deviation over seeds {seeds}; {' '.join(overrides) or 'no overrides'}."
    )
    result = {
        "datasets": results,
        "configs": {d: DATASETS[d] for d in results},
        "seeds": seeds,
        "overrides": overrides,
        "minutes_per_run": minutes,
    }
    common.write(result, out, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
