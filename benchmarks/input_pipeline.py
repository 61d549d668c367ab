"""Input pipeline: examples per second per host, read from image files and from an
ArrayRecord pack, with 0, 1 and 2 Grain workers, beside what a 7B-class run on v5p-64
consumes per host; then a pack of `--records` rs_synth records written and streamed.

  python benchmarks/input_pipeline.py --out benchmarks/results/input_pipeline.json \\
      [--images 256] [--records 100000] [--batches 20] [--sizes 64,336] [--workers 0,1,2]

The files are `--images` JPEGs of 256 px (rs_synth scenes, written here as a
classification folder, as UC Merced's are), read at each of `--sizes`. Per case: the
set-up before the first batch (a folder indexes and checks every image; a pack opens its
info), the first batch (worker start), then examples per second over `--batches` batches
of 32. The 7B-class rate comes from benchmarks/results/plan_memory.json: the libtpu
compile of configs/llava7b_like.py on v5p:4x4x4 (64 chips, 16 hosts of 4), its step time
at the stated MFU.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import common
from PIL import Image

from configs.common import base_config
from rs_jax.data import packs, scenes
from rs_jax.data.pipeline import build_data
from rs_jax.data.rs_synth import prepare_rs_synth

BATCH = 32
CHIPS_PER_V5P_HOST = 4


def write_folder(root: Path, images: int) -> None:
    """A classification folder <root>/<split>/<scene>/<i>.jpg of rs_synth scenes."""
    builder = prepare_rs_synth(str(root / "rendered"), 256, images, max(64, images // 8), seed=0)
    for split in ("train", "test"):
        for i, ex in enumerate(builder.as_data_source(split)):
            folder = root / "folder" / split / scenes.SCENES[int(ex["scene"])]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ex["image"]).save(folder / f"{i}.jpg", quality=90)


def folder_config(root: Path, size: int, data_dir: Path):
    config = base_config()
    config.data.update(name="folder", root=str(root / "folder"), image_size=size)
    config.data.update(batch_size=BATCH, data_dir=str(data_dir), max_prompt_len=48)
    return config


def pack(config, out: Path, workers: int) -> dict:
    """Writes both splits of config's data into `out`; seconds and bytes."""
    start = time.perf_counter()
    bundle = build_data(config, str(out.parent))
    writer = packs.PackWriter(out, config.data, bundle)
    for split in packs.SPLITS:
        writer.write(split, workers=workers)
    return {
        "pack_s": time.perf_counter() - start,
        "records": sum(s["records"] for s in writer.info["splits"].values()),
        "bytes": sum(p.stat().st_size for p in out.rglob("*.array_record-*[0-9]")),
    }


def stream(config, workers: int, batches: int) -> dict:
    """Set-up, first batch and examples per second of the training stream."""
    start = time.perf_counter()
    bundle = build_data(config, "/nonexistent-workdir")
    bundle.worker_count = workers
    setup = time.perf_counter() - start
    iterator = bundle.train_iterator(seed=0)
    next(iterator)
    first = time.perf_counter() - start - setup
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    elapsed = time.perf_counter() - start
    if hasattr(iterator, "close"):
        iterator.close()
    return {"setup_s": setup, "first_batch_s": first, "examples_per_s": batches * BATCH / elapsed}


def pod_demand() -> dict:
    """Examples per second per host that the 7B-class train step consumes on v5p-64."""
    plans = json.loads((common.RESULTS / "plan_memory.json").read_text())["plans"]
    run = plans["7B on v5p:4x4x4"]["runs"]["128"]
    hosts = run["chips"] // CHIPS_PER_V5P_HOST
    return {
        "config": "configs/llava7b_like.py",
        "topology": run["topology"],
        "hosts": hosts,
        "global_batch": 128,
        "mfu": 0.5,
        "step_s": run["step_s_at_50pct_mfu"],
        "examples_per_s_per_host": 128 / run["step_s_at_50pct_mfu"] / hosts,
    }


def synth_pack(root: Path, records: int, batches: int, workers: list[int]) -> dict:
    """rs_synth at 64 px: render, pack (2 workers), then stream the pack."""
    config = base_config()
    config.data.update(num_train=records, num_test=300, image_size=64, batch_size=BATCH)
    config.data.data_dir = str(root / "synth_data")
    start = time.perf_counter()
    prepare_rs_synth(config.data.data_dir, 64, records, 300, config.data.seed)
    result = {"records": records, "render_s": time.perf_counter() - start}
    result |= pack(config, root / "synth_pack", workers=2)
    config.data.pack = str(root / "synth_pack")
    result["stream"] = {w: stream(config, w, batches) for w in workers}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--sizes", default="64,336")
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    workers = [int(w) for w in args.workers.split(",")]

    cases = {}
    with tempfile.TemporaryDirectory(prefix="rs_jax_bench_input_") as scratch:
        root = Path(scratch)
        begin = time.perf_counter()
        write_folder(root, args.images)
        total, done = len(sizes) * (1 + 2 * len(workers)) + 1, 0
        for size in sizes:
            config = folder_config(root, size, root / f"data{size}")
            packed = pack(config, root / f"pack{size}", workers=2)
            done += 1
            common.progress(done, total, f"{size} px pack: {packed['pack_s']:.1f} s", begin)
            for kind in ("files", "pack"):
                config.data.pack = str(root / f"pack{size}") if kind == "pack" else ""
                for w in workers:
                    result = stream(config, w, args.batches)
                    cases[f"{kind} {size}px {w} workers"] = result | {"pack": packed}
                    done += 1
                    rate = result["examples_per_s"]
                    common.progress(
                        done, total, f"{kind} {size} px {w} workers: {rate:.0f} ex/s", begin
                    )
        synth = synth_pack(root, args.records, args.batches, workers)
        common.progress(total, total, f"rs_synth pack of {args.records:,}", begin)

    demand = pod_demand()
    rows = [
        [
            name,
            f"{c['setup_s']:.1f}",
            f"{c['first_batch_s']:.1f}",
            f"{c['examples_per_s']:.0f}",
            f"{c['examples_per_s'] / demand['examples_per_s_per_host']:.1f}x",
        ]
        for name, c in cases.items()
    ]
    rows += [
        [
            f"rs_synth pack 64px {w} workers",
            f"{s['setup_s']:.1f}",
            f"{s['first_batch_s']:.1f}",
            f"{s['examples_per_s']:.0f}",
            f"{s['examples_per_s'] / demand['examples_per_s_per_host']:.1f}x",
        ]
        for w, s in synth["stream"].items()
    ]
    summary = [
        "### Input pipeline",
        "",
        f"{args.images} JPEG files (256 px) and their packs; examples/s per host on this "
        f"machine, against {demand['examples_per_s_per_host']:.1f} ex/s per host consumed by "
        f"the 7B-class step on {demand['topology']} ({demand['hosts']} hosts, global batch "
        f"{demand['global_batch']}, {demand['step_s']:.3f} s/step at {demand['mfu']:.0%} MFU, "
        "libtpu compile).",
        "",
        *common.table(["stream", "set-up s", "first batch s", "ex/s", "vs 7B demand"], rows),
        "",
        f"rs_synth at 64 px, {synth['records']:,} records: rendered in {synth['render_s']:.0f} s, "
        f"packed (2 workers) in {synth['pack_s']:.0f} s "
        f"({synth['records'] / synth['pack_s']:.0f} records/s), {synth['bytes'] / 2**20:.0f} MiB "
        f"on disk ({synth['bytes'] / synth['records'] / 1024:.1f} KiB a record).",
    ]
    result = {
        "benchmark": "input_pipeline",
        "batch": BATCH,
        "cases": cases,
        "rs_synth_pack": synth,
        "pod_demand": demand,
    }
    common.write(result, args.out, summary)


if __name__ == "__main__":
    main()
