"""MoE layer (SemanticExperts) against a dense SwiGLU FFN of equal active FLOPs, side by side.

  python benchmarks/moe.py --out benchmarks/results/moe.json

One level of E experts, top-2, expert hidden F; the dense FFN has hidden 2F, so both do the
same FFN matmul FLOPs per token (the MoE adds its router and dispatch). Times one jitted
forward+backward (grads w.r.t. parameters and input) on one device of the default backend;
all cases are compiled first, then timed in interleaved rounds so that machine noise hits
them alike, and the JSON reports each case's median. Target: MoE / dense <= 1.3 for 8
experts (best dispatch path).
"""

import argparse
import time

import common
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from configs.common import SHARDING_RULES
from rs_jax.models.config import DTYPES, ExpertsConfig, Precision
from rs_jax.models.experts import SemanticExperts
from rs_jax.models.layers import RMSNorm, SwiGLU
from rs_jax.sharding import make_mesh, sharding_context

TARGET = 1.3


class DenseFFN(nnx.Module):
    """x [B, S, D] -> x + SwiGLU(norm(x)) [B, S, D]: the dense counterpart of the MoE layer."""

    def __init__(self, width: int, hidden: int, precision: Precision, *, rngs: nnx.Rngs):
        self.norm = RMSNorm(width, precision=precision, rngs=rngs)
        self.ffn = SwiGLU(width, hidden, precision=precision, rngs=rngs)

    def __call__(self, x: jax.Array, token_levels: np.ndarray) -> tuple[jax.Array, None]:
        return x + self.ffn(self.norm(x)), None


def make_step(module: nnx.Module, levels: np.ndarray):
    """Jitted forward+backward: (state, x) -> grads of sum(y) w.r.t. both."""
    graphdef, state = nnx.split(module)

    def loss(state, x):
        y, _ = nnx.merge(graphdef, state)(x, levels)
        return jnp.sum(y)

    step = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return step, state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--expert-hidden", type=int, default=256)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--capacity-factor", type=float, default=1.25)
    parser.add_argument("--experts", default="4,8,16,32")
    parser.add_argument("--calls", type=int, default=3, help="timed calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--out", default=str(common.RESULTS / "moe.json"))
    args = parser.parse_args()
    precision = Precision(dtype=DTYPES[args.dtype], param_dtype=jnp.float32)

    levels = np.zeros(args.seq, np.int64)  # one level: plain top-k routing over all experts
    x = jnp.asarray(
        np.random.default_rng(0).normal(size=(args.batch, args.seq, args.width)), precision.dtype
    )
    mesh = make_mesh({}, jax.devices()[:1])
    cases = {}
    with sharding_context(mesh, SHARDING_RULES):
        cases["dense"] = make_step(
            DenseFFN(args.width, args.top_k * args.expert_hidden, precision, rngs=nnx.Rngs(0)),
            levels,
        )
        for num_experts in (int(e) for e in args.experts.split(",")):
            for dispatch in ("einsum", "dropless"):
                experts = ExpertsConfig(
                    num_levels=1, experts_per_level=num_experts, shared_experts=0,
                    top_k=args.top_k, capacity_factor=args.capacity_factor,
                    mlp_dim=args.expert_hidden, dispatch=dispatch, router_jitter=0.0,
                    coarse_to_fine=False, balance_loss_weight=0.0, z_loss_weight=0.0,
                )  # fmt: skip
                module = SemanticExperts(args.width, experts, precision, rngs=nnx.Rngs(0))
                cases[f"moe_e{num_experts}_{dispatch}"] = make_step(module, levels)

        compile_s = {}
        for name, (step, state) in cases.items():
            start = time.perf_counter()
            jax.block_until_ready(step(state, x))
            compile_s[name] = time.perf_counter() - start
        times = common.interleaved(
            {
                name: (lambda step=step, state=state: jax.block_until_ready(step(state, x)))
                for name, (step, state) in cases.items()
            },
            args.rounds,
            args.calls,
        )

    tokens = args.batch * args.seq
    median = {name: common.median(t) for name, t in times.items()}
    results = {
        name: {
            "median_s": median[name],
            "tokens_per_s": tokens / median[name],
            "ratio_to_dense": median[name] / median["dense"],
            "first_call_s": compile_s[name],
            "all_s": times[name],
        }
        for name in cases
    }
    best8 = min(("einsum", "dropless"), key=lambda d: median.get(f"moe_e8_{d}", float("inf")))
    ratio8 = results.get(f"moe_e8_{best8}", {}).get("ratio_to_dense")
    result = {
        "benchmark": "moe",
        "settings": vars(args),
        "results": results,
        "target": {
            "what": "8 experts (best dispatch) / dense forward+backward time",
            "max_ratio": TARGET,
            "dispatch": best8,
            "ratio": ratio8,
            "met": ratio8 is not None and ratio8 <= TARGET,
            "miss_by": None if ratio8 is None else max(0.0, ratio8 - TARGET),
        },
    }
    rows = [
        [name, f"{1e3 * r['median_s']:.1f}", f"{r['tokens_per_s']:.0f}",
         f"{r['ratio_to_dense']:.2f}"]
        for name, r in results.items()
    ]  # fmt: skip
    target = result["target"]
    summary = [
        f"### MoE layer (`moe.py`, {args.dtype})",
        "",
        *common.table(["case", "median ms", "tokens/s", "x dense"], rows),
        "",
        f"8 experts ({best8}) / dense: **{ratio8:.2f}** (target <= {TARGET}, "
        f"{'met' if target['met'] else 'missed'}).",
    ]
    common.write(result, args.out, summary)


if __name__ == "__main__":
    main()
