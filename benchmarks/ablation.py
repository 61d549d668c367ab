"""The method's ablation grid: the baseline, each part of the method alone on it, the full
model, and a baseline as large as the full model; 3 seeds each on EuroSAT and on the UC
Merced mixture, trained from scratch and scored on their test splits.

  python benchmarks/ablation.py --out benchmarks/results/ablation.json

The variants are the real-data configs' (configs/common.py ABLATIONS, docs/ablation.md):
baseline (LLaVA-1.5), levels (the tapped levels alone), retrieval (KB cues on the
baseline's tokens), experts (the semantic experts on the baseline's tokens), full, wide (the
baseline widened to the full model's parameters). Each run is benchmarks/accuracy.py's:
`rs-jax train` then `rs-jax eval` in <runs>/<config>/<variant>/seed<k>, not repeated once
evaluated. --datasets / --variants run part of the grid.

The JSON holds {"datasets": {dataset: {variant: {metric: {"mean", "std", "seeds"}}}}}:
overall, mean of tasks, each task and source, the parameter count and the training FLOPs
per example, over the seeds run so far; and "runs", every finished run's metrics, saved as
each run ends. A grid continues from its --out wherever it is run next (another machine,
a later session): runs already there are not repeated. A variant differs from another only
where both have 3 seeds and their means are further apart than twice the larger standard
deviation; the summary says which do.
"""

from __future__ import annotations

import argparse
import json
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


def summary_of(results: dict[str, dict], overrides: list[str]) -> list[str]:
    lines = []
    for dataset, stats in results.items():
        shown = [v for v in VARIANTS if v in stats]
        refs = [ref for ref in ("baseline", "full") if ref in stats]
        found = [f for ref in refs for f in accuracy.differences(stats, ref)]
        found = [f for f in found if not f.startswith(("parameters", "train_gflops"))]
        lines += [f"### {dataset}", "", *table(stats, shown), ""]
        lines += ["Differences beyond the spread: " + ("; ".join(found) or "none"), ""]
    lines.append(
        f"Mean ± standard deviation over the seeds run ({accuracy.MIN_SEEDS} needed for a "
        f"difference to be claimed); {' '.join(overrides) or 'no overrides'}."
    )
    return lines


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
    for name, chosen, known in (
        ("--datasets", datasets, DATASETS),
        ("--variants", variants, VARIANTS),
    ):
        unknown = [x for x in chosen if x not in known]
        if unknown:
            parser.error(f"{name}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")

    out = Path(args.out)
    earlier = json.loads(out.read_text()) if out.exists() else {}
    if earlier and "runs" not in earlier:
        parser.error(f"--out {out} exists and is no ablation grid; it is left as it is")
    if earlier and earlier.get("overrides", []) != overrides:
        parser.error(
            f"--out {out} holds runs with overrides {earlier['overrides']}, not {overrides}"
        )
    # Every finished run's metrics, {dataset: {variant: {seed: metrics}}}: a grid spread
    # over several machines or sessions continues from its result file.
    runs = earlier.get("runs", {})

    def save(final: bool) -> None:
        results = {
            dataset: accuracy.statistics_of(
                {v: {int(s): m for s, m in by_seed.items()} for v, by_seed in variants_run.items()},
                sorted({int(s) for by_seed in variants_run.values() for s in by_seed}),
            )
            for dataset, variants_run in runs.items()
        }
        result = {
            "datasets": results,
            "configs": {d: DATASETS[d] for d in results},
            "overrides": overrides,
            "runs": runs,
        }
        if not final:  # a run finished: kept, quietly
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result | {"environment": common.environment()}, indent=2))
        else:
            common.write(result, out, summary_of(results, overrides))

    total, start = len(datasets) * len(variants) * len(seeds), time.perf_counter()
    for i, dataset in enumerate(datasets):
        done_runs = runs.setdefault(dataset, {})

        def record(variant: str, seed: int, metrics: dict, done_runs=done_runs) -> None:
            done_runs.setdefault(variant, {})[str(seed)] = metrics
            save(final=False)

        known = {v: {int(s): m for s, m in done_runs.get(v, {}).items()} for v in variants}
        accuracy.sweep(
            DATASETS[dataset], variants, seeds, args.runs, overrides,
            known=known, on_run=record, done=i * len(variants) * len(seeds), total=total,
            start=start,
        )  # fmt: skip
    save(final=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
