"""Expert dispatch for the semantic experts: capacity einsum (GShard) and dropless (shard_map).

Both take the router's decisions and the stacked expert weights (``ExpertWeights``:
``wi_gate``/``wi_up`` [E, D, F], ``wo`` [E, F, D]; logical axes ('exp', ...)) and return the
experts' mixed output [B, S, D]. Every mesh axis they use comes from the logical-axis rules
in scope: the weights' 'exp', the activations' 'act_exp' and 'act_batch'.

- ``einsum_ffn``: one-hot dispatch/combine tensors with a fixed per-expert capacity. The
  expert-major activations [E, B, C, *] are constrained to E on 'act_exp' so GSPMD turns the
  dispatch/combine einsums into all-to-alls instead of all-gathering the expert weights.
- ``dropless_ffn``: ``jax.shard_map`` over the mesh. Each device sorts its own tokens'
  assignments by expert, sends each expert peer its rows, runs a grouped matmul over its
  local experts (Megablox's Pallas kernel on TPU, ``jax.lax.ragged_dot`` elsewhere), sends
  the rows back, and combines them with the gates. Nothing is dropped. On CPU the exchange
  is ``jax.lax.all_to_all`` over padded per-peer buffers (``ragged_all_to_all`` is
  UNIMPLEMENTED on XLA:CPU); elsewhere it is ``jax.lax.ragged_all_to_all`` into the same
  buffer layout.

Without a mesh, or without rules, both run unpinned: locally, and unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu.megablox import ops as megablox
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rs_jax import sharding
from rs_jax.models.config import Precision
from rs_jax.models.layers import matmul


def expert_axes() -> tuple[str, ...]:
    """Mesh axes the experts' weights are split over (their 'exp' rule); () without a mesh
    or rules."""
    return sharding.mesh_axes("exp")


def expert_parallelism() -> int:
    """How many shards the expert weights are split into under the current mesh."""
    mesh = jax.sharding.get_abstract_mesh()
    return math.prod(mesh.shape[a] for a in expert_axes())


def check_expert_parallel(num_levels: int, experts_per_level: int) -> None:
    """Raise a config error when the experts cannot be split evenly over 'expert'."""
    num_experts = num_levels * experts_per_level
    shards = expert_parallelism()
    if num_experts % shards:
        raise ValueError(
            f"{num_levels} levels x config.model.experts.experts_per_level={experts_per_level} "
            f"= {num_experts} experts is not divisible by the mesh expert axis size {shards} "
            f"({'x'.join(expert_axes())}); change experts_per_level or config.mesh.expert"
        )


class ExpertWeights(NamedTuple):
    """The stacked SwiGLU weights of E experts."""

    wi_gate: jax.Array  # [E, D, F]
    wi_up: jax.Array  # [E, D, F]
    wo: jax.Array  # [E, F, D]


def _swiglu(x: jax.Array, w: ExpertWeights, precision: Precision) -> jax.Array:
    """Per-expert SwiGLU on expert-major rows: x [E, B, C, D] -> [E, B, C, D] (compute dtype)."""
    dtype = precision.dtype
    hidden = jax.nn.silu(matmul("ebcd,edf->ebcf", x, w.wi_gate, precision).astype(dtype))
    hidden = hidden * matmul("ebcd,edf->ebcf", x, w.wi_up, precision).astype(dtype)
    hidden = _constrain_expert_major(hidden)
    return matmul("ebcf,efd->ebcd", hidden, w.wo, precision).astype(dtype)


def _constrain_expert_major(x: jax.Array) -> jax.Array:
    """Pin dim 0 (experts) of [E, ...] to the 'act_exp' rule's mesh axes; other dims left to
    GSPMD (the batch rule would claim the expert axes again and leave B whole)."""
    axes = sharding.mesh_axes("act_exp")
    mesh = jax.sharding.get_abstract_mesh()
    if math.prod(mesh.shape[a] for a in axes) == 1:
        return x
    spec = P(axes, *([P.UNCONSTRAINED] * (x.ndim - 1)))
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def einsum_ffn(
    h: jax.Array,
    dispatch: jax.Array,
    combine: jax.Array,
    w: ExpertWeights,
    *,
    precision: Precision,
) -> jax.Array:
    """Capacity dispatch. h [B, S, D], dispatch/combine [B, S, E, C] -> [B, S, D]."""
    dtype = precision.dtype
    b, s, e, c = dispatch.shape
    # Dispatch and combine as plain batched matmuls over the E*C slots. Written as
    # 'bsec,bsd->ebcd', XLA:CPU can leave a bf16 x bf16 -> f32 dot that both operands
    # contract on dim 1, which it cannot run (DotThunk: UNIMPLEMENTED); that is also the
    # combine's weight gradient.
    slots = dispatch.reshape(b, s, e * c).swapaxes(1, 2)
    expert_in = matmul("bxs,bsd->bxd", slots, h, precision).astype(dtype)
    expert_in = _constrain_expert_major(expert_in.reshape(b, e, c, -1).swapaxes(0, 1))
    expert_out = _constrain_expert_major(_swiglu(expert_in, w, precision))
    expert_out = expert_out.swapaxes(0, 1).reshape(b, e * c, -1)
    y = matmul("bsx,bxd->bsd", combine.reshape(b, s, e * c), expert_out, precision)
    return y.astype(dtype)


# --- dropless -------------------------------------------------------------------------------


def use_ragged_all_to_all() -> bool:
    """``ragged_all_to_all`` is UNIMPLEMENTED on XLA:CPU; GPU/TPU use it (also when a CPU
    host compiles for a TPU topology)."""
    return sharding.target_platform() != "cpu"


Exchange = tuple[jax.Array, jax.Array, Callable[[jax.Array], jax.Array]]


def _exchange_padded(
    rows: jax.Array, local_ids: jax.Array, peer: jax.Array, peers: int, num_local: int, axis
) -> Exchange:
    """Padded form. rows [A, D] sorted by peer -> received [P*A, D], local ids [P*A], reverse.

    Each peer gets an [A, D] slot (the worst case: all of a device's assignments to one
    peer); padding rows carry the local id ``num_local``, which no group counts.
    """
    a, d = rows.shape
    sizes = jnp.sum(peer[:, None] == jnp.arange(peers), axis=0)  # [P]
    pos = jnp.arange(a) - (jnp.cumsum(sizes) - sizes)[peer]  # row within its peer's slot
    buf = jnp.zeros((peers, a, d), rows.dtype).at[peer, pos].set(rows)
    ids = jnp.full((peers, a), num_local, jnp.int32).at[peer, pos].set(local_ids)
    received = jax.lax.all_to_all(buf, axis, 0, 0, tiled=True)
    received_ids = jax.lax.all_to_all(ids, axis, 0, 0, tiled=True)

    def reverse(out: jax.Array) -> jax.Array:
        back = jax.lax.all_to_all(out.reshape(peers, a, d), axis, 0, 0, tiled=True)
        return back[peer, pos]

    return received.reshape(peers * a, d), received_ids.reshape(peers * a), reverse


def _exchange_ragged(
    rows: jax.Array, local_ids: jax.Array, peer: jax.Array, peers: int, num_local: int, axis
) -> Exchange:
    """``ragged_all_to_all`` form with the same received layout as ``_exchange_padded``.

    XLA:CPU cannot run it: tests compile it for a TPU topology (tests/plan). The chunk from
    peer q lands at rows [q*A, q*A + size).
    """
    a, d = rows.shape
    me = jax.lax.axis_index(axis)
    send_sizes = jnp.sum(peer[:, None] == jnp.arange(peers), axis=0).astype(jnp.int32)
    send_offsets = (jnp.cumsum(send_sizes) - send_sizes).astype(jnp.int32)
    recv_sizes = jax.lax.all_to_all(send_sizes, axis, 0, 0, tiled=True)
    # Where my sorted chunk for q started: q needs it to send the results back there.
    back_offsets = jax.lax.all_to_all(send_offsets, axis, 0, 0, tiled=True)
    slot_offsets = jnp.full((peers,), me * a, jnp.int32)
    received = jax.lax.ragged_all_to_all(
        rows,
        jnp.zeros((peers * a, d), rows.dtype),
        send_offsets,
        send_sizes,
        slot_offsets,
        recv_sizes,
        axis_name=axis,
    )
    received_ids = jax.lax.ragged_all_to_all(
        local_ids,
        jnp.full((peers * a,), num_local, jnp.int32),
        send_offsets,
        send_sizes,
        slot_offsets,
        recv_sizes,
        axis_name=axis,
    )

    def reverse(out: jax.Array) -> jax.Array:
        return jax.lax.ragged_all_to_all(
            out,
            jnp.zeros((a, d), out.dtype),
            jnp.arange(peers, dtype=jnp.int32) * a,
            recv_sizes,
            back_offsets,
            send_sizes,
            axis_name=axis,
        )

    return received, received_ids, reverse


# Megablox's (m, k, n) tiles; rows are padded to a multiple of the first.
_GMM_TILING = (128, 128, 128)


def grouped_matmul(
    lhs: jax.Array, rhs: jax.Array, group_sizes: jax.Array, kernel: str = "auto"
) -> jax.Array:
    """lhs [M, K] with rows sorted by group, rhs [G, K, N], group_sizes [G] -> float32 [M, N];
    rows past sum(group_sizes) are zero. kernel: "megablox" (the Pallas TPU kernel,
    interpreted off TPU), "xla" (``jax.lax.ragged_dot``) or "auto" (megablox for TPU)."""
    if kernel == "auto":
        kernel = "megablox" if sharding.target_platform() == "tpu" else "xla"
    if kernel == "xla":
        return jax.lax.ragged_dot(lhs, rhs, group_sizes, preferred_element_type=jnp.float32)
    m = lhs.shape[0]
    rows = -(-m // _GMM_TILING[0]) * _GMM_TILING[0]
    # The kernel leaves rows outside every group unwritten, in its output and in the
    # gradient of lhs: both are masked (`where`, so garbage there never reaches a sum).
    valid = (jnp.arange(rows) < group_sizes.sum())[:, None]
    lhs = jnp.where(valid, jnp.pad(lhs, ((0, rows - m), (0, 0))), 0)
    interpret = sharding.target_platform() != "tpu"
    out = megablox.gmm(
        lhs, rhs, group_sizes, jnp.float32, _GMM_TILING, None, None, False, interpret
    )
    return jnp.where(valid, out, 0)[:m]


def _grouped_swiglu(
    rows: jax.Array,
    local_ids: jax.Array,
    w: ExpertWeights,
    precision: Precision,
) -> jax.Array:
    """rows [R, D] with local expert ids [R] (id >= E_loc: padding) -> [R, D], padding = 0."""
    num_local = w.wi_gate.shape[0]
    order = jnp.argsort(local_ids, stable=True)
    group_sizes = jnp.sum(local_ids[:, None] == jnp.arange(num_local), axis=0).astype(jnp.int32)
    dtype = precision.dtype
    x = rows[order].astype(dtype)

    def grouped(lhs, weight):
        return grouped_matmul(lhs, weight.astype(dtype), group_sizes).astype(dtype)

    # Rows past sum(group_sizes) (the padding, sorted last) belong to no group: they stay
    # zero.
    hidden = jax.nn.silu(grouped(x, w.wi_gate)) * grouped(x, w.wi_up)
    out = grouped(hidden, w.wo)
    return jnp.zeros_like(out).at[order].set(out)


def _local_dropless(
    h: jax.Array,
    choice: jax.Array,
    gates: jax.Array,
    w: ExpertWeights,
    *,
    axis,
    peers: int,
    precision: Precision,
) -> jax.Array:
    """One device: h [b, S, D], choice/gates [b, S, K] (global expert ids), local weights
    [E_loc, ...] -> [b, S, D]."""
    b, s, d = h.shape
    k = choice.shape[-1]
    num_local = w.wi_gate.shape[0]
    x = h.reshape(b * s, d).astype(precision.dtype)
    expert = choice.reshape(-1)  # [A = b*S*K]
    order = jnp.argsort(expert, stable=True)
    sorted_expert = expert[order]
    rows = x[order // k]  # [A, D], grouped by expert, hence by peer
    if peers == 1:
        out = _grouped_swiglu(rows, sorted_expert, w, precision)
    else:
        exchange = _exchange_ragged if use_ragged_all_to_all() else _exchange_padded
        received, received_ids, reverse = exchange(
            rows, sorted_expert % num_local, sorted_expert // num_local, peers, num_local, axis
        )
        out = reverse(_grouped_swiglu(received, received_ids, w, precision))
    per_assignment = jnp.zeros_like(out).at[order].set(out).reshape(b * s, k, d)
    y = matmul("tkd,tk->td", per_assignment, gates.reshape(b * s, k), precision)
    return y.astype(precision.dtype).reshape(b, s, d)


def _token_axes(batch: int, experts: tuple[str, ...]) -> tuple[str, ...]:
    """Mesh axes to split the batch over inside shard_map: the 'act_batch' rule's axes that
    divide it, always including the expert axes (each expert peer needs its own tokens)."""
    axes = sharding.dividing_batch_axes(batch, experts)
    missing = tuple(a for a in experts if a not in axes)
    if missing:
        raise ValueError(
            f"dropless expert dispatch: batch {batch} is not divisible by the mesh axes "
            f"{list(axes + missing)} it is split over; make the batch a multiple of them"
        )
    return axes


def dropless_ffn(
    h: jax.Array,
    choice: jax.Array,
    gates: jax.Array,
    w: ExpertWeights,
    *,
    precision: Precision,
) -> jax.Array:
    """Dropless dispatch. h [B, S, D], choice int [B, S, K], gates [B, S, K] -> [B, S, D]."""
    experts = expert_axes()
    peers = expert_parallelism()
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return _local_dropless(h, choice, gates, w, axis=None, peers=1, precision=precision)
    # Under a mesh always per device, even with one expert peer: a Pallas kernel (the TPU's
    # grouped matmul) runs only inside shard_map.
    tokens = P(_token_axes(h.shape[0], experts))
    weights = P(experts)
    axis = experts[0] if len(experts) == 1 else experts
    fn = jax.shard_map(
        lambda *args: _local_dropless(*args, axis=axis, peers=peers, precision=precision),
        mesh=mesh,
        in_specs=(tokens, tokens, tokens, weights),  # weights: every leaf of w
        out_specs=tokens,
        check_vma=False,  # Pallas calls carry no varying-axes annotation
    )
    return fn(h, choice.astype(jnp.int32), gates, w)
