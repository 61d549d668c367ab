"""``rs-jax data pack``: a config's data written once into ArrayRecord shards of ready
examples (rs_jax/data/packs.py), which runs then read with ``--config.data.pack=DIR``.

  rs-jax data pack --config C --out DIR [--split train|test] [--shards N] [--workers N]

Interrupted, the same command resumes: finished shards are kept.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

from rs_jax.data import packs


def add_data_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``data`` and its subcommands on the top-level subparsers object."""
    data = commands.add_parser(
        "data",
        help="Data: pack a config's data into ArrayRecord shards.",
        description="Pack a config's data into ArrayRecord shards of ready examples.",
    )
    sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    pack = sub.add_parser(
        "pack",
        help="Write the config's data (any source or mixture) into a pack folder.",
        description="Decode, resize and check every image once, in worker processes, and "
        "write the examples into ArrayRecord shards with dataset_info.json. Runs read the "
        "pack with --config.data.pack=DIR. An interrupted pack resumes.",
    )
    pack.add_argument("--config", required=True, metavar="FILE.py[:ARG]", help="config file")
    pack.add_argument("--out", required=True, metavar="DIR", help="the pack folder (or gs://)")
    pack.add_argument(
        "--split", choices=packs.SPLITS, help="one split only (default: train, then test)"
    )
    pack.add_argument(
        "--shards",
        type=int,
        default=0,
        help=f"shards per split (default: one per {packs.RECORDS_PER_SHARD:,} records)",
    )
    pack.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="processes that decode images (0 = this one; default: the cores, at most 8)",
    )
    return data


def run(config: Any, args: argparse.Namespace) -> int:
    """Run the parsed ``data`` subcommand; returns the exit code."""
    from rs_jax.data.pipeline import build_data
    from rs_jax.train.progress import ProgressLine

    if args.shards < 0:
        raise ValueError(f"--shards must be >= 0 (0 = one per {packs.RECORDS_PER_SHARD:,})")
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0 (0 = decode in this process), got {args.workers}")
    if config.data.pack:
        raise ValueError(
            f"config.data.pack={config.data.pack!r}: `data pack` reads the data's files; "
            "leave the key empty"
        )
    # Without config.data.data_dir, what preparing the data writes (a tokenizer, rendered
    # rs_synth files, image checks) lives for this command only: the pack keeps its output.
    with tempfile.TemporaryDirectory(prefix="rs_jax_pack_workdir_") as scratch:
        bundle = build_data(config, scratch)
        writer = packs.PackWriter(args.out, config.data, bundle)
        for split in [args.split] if args.split else packs.SPLITS:
            lines: list[ProgressLine] = []

            def progress(done: int, total: int, lines=lines) -> None:
                if not lines:
                    lines.append(ProgressLine(total, done - 1, max(total // 10, 1), unit="record"))
                lines[0].update(done, {}, 1)

            entry = writer.write(split, args.shards, args.workers, progress)
            shards = sum(len(s["shards"]) for s in entry["sets"])
            skipped = len(entry["skipped"].get("skipped", {}))
            print(
                f"{split}: {entry['records']:,} records in {shards} shards"
                + (f", {skipped} skipped (listed in {packs.INFO})" if skipped else "")
            )
    print(
        f"Pack {args.out} is complete for {', '.join(writer.info['splits'])}; "
        f"train from it with --config.data.pack={args.out}"
    )
    return 0
