"""Shared by the benchmark scripts: this checkout on sys.path, the machine, interleaved
timing, matmul peaks, and the JSON + markdown summary every script writes.

Each script runs as `python benchmarks/<name>.py` from the repository root; importing this
module first makes `configs` and `rs_jax` of this checkout importable however it is started.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"

from rs_jax.cli import quiet_libtpu_without_tpu  # noqa: E402  (does not import jax)

quiet_libtpu_without_tpu()  # the test extra installs libtpu; this host may have no TPU


def environment() -> dict[str, Any]:
    """Where the numbers come from: backend, devices, cores and library versions."""
    import jax

    versions = {"jax": jax.__version__}
    for name in ("flax", "torch", "transformers"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = module.__version__
    return {
        "backend": jax.default_backend(),
        "devices": len(jax.devices()),
        "device_kind": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "versions": versions,
    }


def interleaved(
    cases: dict[str, Callable[[], Any]], rounds: int, calls: int
) -> dict[str, list[float]]:
    """Seconds per call of each case, `calls` calls per round, cases alternating round by
    round so that machine noise hits them alike. `case()` must block until it is done."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            start = time.perf_counter()
            for _ in range(calls):
                case()
            times[name].append((time.perf_counter() - start) / calls)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def jax_matmul_gflops(dtype: str, size: int = 2048, calls: int = 10) -> float:
    """GFLOP/s of a size x size matmul in jax: bfloat16 operands accumulate in float32."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((size, size), dtype)
    f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
    f(a, a).block_until_ready()
    start = time.perf_counter()
    for _ in range(calls):
        out = f(a, a)
    out.block_until_ready()
    return 2 * size**3 * calls / (time.perf_counter() - start) / 1e9


def torch_matmul_gflops(dtype: str, size: int = 2048, calls: int = 10) -> float:
    import torch

    a = torch.ones((size, size), dtype=getattr(torch, dtype))
    a @ a
    start = time.perf_counter()
    for _ in range(calls):
        a @ a
    return 2 * size**3 * calls / (time.perf_counter() - start) / 1e9


def write(result: dict[str, Any], out: str | Path, summary: list[str]) -> None:
    """Write the JSON (with its markdown `summary` lines) and print the summary."""
    result = {**result, "environment": environment(), "summary": summary}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(summary))
    print(f"(written to {out})")


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """Markdown table lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines
