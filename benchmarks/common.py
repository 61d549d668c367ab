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


def progress(done: int, total: int, what: str, start: float) -> None:
    """A progress line on stderr: ``[3/18] full_fp32 round 1: 1.34 s/call | 1m02s | ETA 5m10s``."""
    from rs_jax.train.progress import format_duration

    elapsed = time.perf_counter() - start
    eta = elapsed / done * (total - done)
    print(
        f"[{done}/{total}] {what} | {format_duration(elapsed)} | ETA {format_duration(eta)}",
        file=sys.stderr,
        flush=True,
    )


def warm_up(cases: dict[str, Callable[[], Any]], calls: int = 2) -> None:
    """Call every case `calls` times (compiles, allocator warm-up), reporting each."""
    start = time.perf_counter()
    for i, (name, case) in enumerate(cases.items(), 1):
        case_start = time.perf_counter()
        for _ in range(calls):
            case()
        progress(i, len(cases), f"warm-up {name}: {time.perf_counter() - case_start:.1f} s", start)


def interleaved(
    cases: dict[str, Callable[[], Any]], rounds: int, calls: int
) -> dict[str, list[float]]:
    """Seconds per call of each case, `calls` calls per round, cases alternating round by
    round so that machine noise hits them alike. `case()` must block until it is done."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    start, done, total = time.perf_counter(), 0, rounds * len(cases)
    for r in range(rounds):
        for name, case in cases.items():
            case_start = time.perf_counter()
            for _ in range(calls):
                case()
            times[name].append((time.perf_counter() - case_start) / calls)
            done += 1
            progress(done, total, f"{name} round {r + 1}: {times[name][-1]:.3g} s/call", start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def matmul_gflops(matmul: Callable[[int], Callable[[], Any]], budget_s: float = 1.0) -> float:
    """Best GFLOP/s of square matmuls of 512, 1024 and 2048 rows; `matmul(size)` returns a
    blocking call. Each size runs for about `budget_s`, and a size whose single call takes
    longer ends the probe: a dtype without fast kernels here (bf16 without AVX512-BF16 or
    AMX) would otherwise take minutes."""
    best = 0.0
    for size in (512, 1024, 2048):
        call = matmul(size)
        call()  # compile / allocate
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < budget_s or calls == 0:
            call()
            calls += 1
        best = max(best, 2 * size**3 * calls / elapsed / 1e9)
        if elapsed / calls > budget_s:
            break
    return best


def jax_matmul_gflops(dtype: str) -> float:
    """bfloat16 operands accumulate in float32."""
    import jax
    import jax.numpy as jnp

    f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))

    def matmul(size):
        a = jnp.ones((size, size), dtype)
        return lambda: f(a, a).block_until_ready()

    return matmul_gflops(matmul)


def torch_matmul_gflops(dtype: str) -> float:
    import torch

    def matmul(size):
        a = torch.ones((size, size), dtype=getattr(torch, dtype))
        return lambda: a @ a

    return matmul_gflops(matmul)


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
