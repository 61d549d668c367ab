"""Building blocks shared by every tower. Every parameter carries logical axis names.

Logical axes are mapped to mesh axes by `config.sharding_rules`; a module built under
`jax.set_mesh(mesh)` and `nnx.logical_axis_rules(rules)` comes out sharded.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Axes = Sequence[str | None]

default_kernel_init = nnx.initializers.lecun_normal()


def linear(
    in_features: int,
    out_features: int,
    axes: tuple[str | None, str | None],
    *,
    rngs: nnx.Rngs,
    use_bias: bool = True,
    kernel_init: nnx.Initializer = default_kernel_init,
) -> nnx.Linear:
    """A Dense layer whose kernel is sharded along `axes` = (in_axis, out_axis)."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        kernel_init=nnx.with_partitioning(kernel_init, tuple(axes)),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), (axes[1],)),
        rngs=rngs,
    )


def layer_norm(width: int, *, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(
        width,
        scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("embed",)),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("embed",)),
        rngs=rngs,
    )


def rms_norm(width: int, *, rngs: nnx.Rngs) -> nnx.RMSNorm:
    return nnx.RMSNorm(
        width,
        epsilon=1e-6,
        scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("embed",)),
        rngs=rngs,
    )


class Mlp(nnx.Module):
    """Two-layer GELU MLP (ViT blocks, LLaVA projector): [..., d_in] -> [..., d_out]."""

    def __init__(self, d_in: int, hidden: int, d_out: int, *, rngs: nnx.Rngs):
        self.fc1 = linear(d_in, hidden, ("embed", "mlp"), rngs=rngs)
        self.fc2 = linear(hidden, d_out, ("mlp", "embed"), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x)))


class SwiGLU(nnx.Module):
    """LLaMA feed-forward: down(silu(gate(x)) * up(x)), [B, T, D] -> [B, T, D]."""

    def __init__(self, width: int, hidden: int, *, rngs: nnx.Rngs):
        self.gate = linear(width, hidden, ("embed", "mlp"), use_bias=False, rngs=rngs)
        self.up = linear(width, hidden, ("embed", "mlp"), use_bias=False, rngs=rngs)
        self.down = linear(hidden, width, ("mlp", "embed"), use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down(jax.nn.silu(self.gate(x)) * self.up(x))


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over axis 1 of x [B, T, D] where mask [B, T] is set -> [B, D]."""
    weights = mask.astype(x.dtype)[..., None]
    return (x * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)
