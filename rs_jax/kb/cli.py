"""``rs-jax kb``: validate, build and search a knowledge base.

  rs-jax kb validate FILE.jsonl
  rs-jax kb build --kb FILE.jsonl --out DIR [--overwrite] [--encoder minilm] [--batch-size 64]
  rs-jax kb search DIR "airport runway" [--level scene] [-k 5]

Exit codes: 0 ok, 1 the KB has problems (each printed with its line number), 2 other
errors (reported in one line by the top-level CLI).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from etils import epath

from rs_jax.files import absolute, local_path
from rs_jax.kb.schema import LEVELS


def add_kb_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``kb`` and its subcommands on the top-level subparsers object."""
    kb = commands.add_parser(
        "kb",
        help="Knowledge base: validate, build (embed + index), search.",
        description="Validate, build (embed + ScaNN index) and search a knowledge base.",
    )
    sub = kb.add_subparsers(dest="kb_command", required=True, metavar="KB_COMMAND")

    validate = sub.add_parser("validate", help="Check a KB JSONL file; exit 1 on problems.")
    validate.add_argument("file", metavar="FILE", help="knowledge base, one JSON entry a line")

    build = sub.add_parser("build", help="Validate, embed and index a KB into a directory.")
    build.add_argument("--kb", required=True, metavar="FILE", help="knowledge base JSONL")
    build.add_argument("--out", required=True, metavar="DIR", help="built-KB directory")
    build.add_argument(
        "--overwrite", action="store_true", help="replace a KB built earlier at --out"
    )
    build.add_argument("--encoder", default="minilm", help="text encoder (default: minilm)")
    build.add_argument("--batch-size", type=int, default=64, help="texts per encoder batch")

    search = sub.add_parser("search", help="Rank KB entries for a text query.")
    search.add_argument("dir", metavar="DIR", help="built-KB directory (from `kb build`)")
    search.add_argument("query", help="query text")
    search.add_argument("--level", choices=LEVELS, default=None, help="only this level")
    search.add_argument("-k", type=int, default=None, help="number of results (default: 5)")
    return kb


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``kb`` subcommand; returns the exit code."""
    if args.kb_command == "validate":
        return cmd_validate(args.file)
    if args.kb_command == "build":
        return cmd_build(
            args.kb,
            args.out,
            encoder=args.encoder,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
        )
    if args.kb_command == "search":
        return cmd_search(args.dir, args.query, level=args.level, k=args.k)
    raise ValueError(f"unknown kb command {args.kb_command!r}")


def load_encoder(name: str) -> Any:
    """The text encoder called `name` (one place to swap it, e.g. in tests)."""
    from rs_jax.convert.hf_bert import load_sentence_encoder

    return load_sentence_encoder(name)


def _level_summary(levels: Sequence[str]) -> str:
    counts = {level: 0 for level in LEVELS}
    for level in levels:
        counts[level] = counts.get(level, 0) + 1
    return ", ".join(f"{level} {count}" for level, count in counts.items())


def _check(path: str) -> list[Any]:
    from rs_jax.kb.validate import format_problems, validate_kb_file

    problems = validate_kb_file(path)
    if problems:
        print(format_problems(problems, path))
    return problems


def cmd_validate(path: str) -> int:
    """Print "OK: ..." or every problem of the KB at `path`; 1 when there are problems."""
    problems = _check(path)
    if problems:
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    from rs_jax.kb.schema import load_kb

    entries = load_kb(path)
    print(f"OK: {len(entries)} entries ({_level_summary([e.level for e in entries])})")
    return 0


def cmd_build(
    kb_path: str,
    out: str,
    *,
    encoder: str = "minilm",
    batch_size: int = 64,
    overwrite: bool = False,
) -> int:
    """Validate, embed (`entry_text` of each entry) and index a KB into `out`."""
    from rs_jax.kb.store import check_output_dir

    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    check_output_dir(local_path(out, "--out"), overwrite)  # before the slow part
    if _check(kb_path):
        print(f"rs-jax: refusing to build {kb_path}: fix the problems above", file=sys.stderr)
        return 1
    from rs_jax.kb.schema import entry_text, load_kb
    from rs_jax.kb.store import write_built_kb

    start = time.perf_counter()
    entries = load_kb(kb_path)
    model = load_encoder(encoder)
    loaded = time.perf_counter()
    embeddings = model.encode(
        [entry_text(e) for e in entries], batch_size=batch_size, progress=True
    )
    embedded = time.perf_counter()
    built = write_built_kb(
        out,
        entries,
        embeddings,
        encoder=model,
        # A folder path is recorded absolute so that search works from any directory.
        encoder_source=str(absolute(encoder)) if epath.Path(encoder).is_dir() else encoder,
        kb_path=kb_path,
        build_seconds=embedded - start,
        overwrite=overwrite,
    )
    done = time.perf_counter()
    per_level = ", ".join(f"{lvl} {n}" for lvl, n in built.metadata["levels"].items())
    print(
        f"Built {len(entries)} entries ({per_level}) with {model.name} "
        f"({model.dim}-d) into {out}\n"
        f"  time {done - start:.1f} s: encoder load {loaded - start:.1f} s, "
        f"embed {embedded - loaded:.1f} s ({len(entries) / max(embedded - loaded, 1e-9):.0f}"
        f" entries/s), index + write {done - embedded:.1f} s"
    )
    return 0


def cmd_search(
    directory: str, query: str, *, level: str | None = None, k: int | None = None
) -> int:
    """Encode `query` with the KB's own encoder and print the top-`k` entries (5 unless
    given; at most the entries searched)."""
    asked, k = k is not None, 5 if k is None else k
    if k < 1:
        raise ValueError(f"-k must be >= 1, got {k}")
    if not query.strip():
        raise ValueError("the query is empty; give the text to search for")
    from rs_jax.kb.store import BuiltKB, check_encoder

    kb = BuiltKB.load(directory)
    model = load_encoder(kb.encoder_source)
    # Same name is not enough: other weights under that name give incomparable vectors.
    check_encoder(kb.metadata, model, None, directory)
    if level is not None and level not in kb.index.levels:
        raise ValueError(f"{directory} has no {level!r} entries (levels: {', '.join(kb.levels)})")
    # More results than entries would only size buffers for rows that do not exist.
    available = sum(level in (None, e.level) for e in kb.entries)
    if k > available:
        if asked:
            print(f"(-k {k}: the search covers {available} entries; showing them all)")
        k = available
    hits = kb.search(model.encode([query]), level=level, k=k)[0]
    rows = [(str(h.rank), f"{h.score:.4f}", h.entry.level, h.entry.name, h.entry.id) for h in hits]
    _print_table(("rank", "score", "level", "name", "id"), rows)
    return 0


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    # Numbers right-aligned, text left-aligned.
    align = [">", ">", "<", "<", "<"]
    for row in [header, *rows]:
        cells = (f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths, strict=True))
        print("  ".join(cells).rstrip())
