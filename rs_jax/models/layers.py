"""Building blocks shared by every tower, all honouring a `Precision`.

Every parameter carries logical axis names, mapped to mesh axes by `config.sharding_rules`
(activations pinned by `constrain` have their own `act_*` names); a module built under
`jax.set_mesh(mesh)` and `nnx.logical_axis_rules(rules)` comes out sharded. Matmuls take
operands in the compute dtype and accumulate in float32 (`preferred_element_type`), then
hand their result on in the compute dtype: XLA's fast bf16 paths (AMX on CPU, tensor cores,
the MXU) are the bf16 x bf16 -> f32 ones.
"""

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from rs_jax import sharding
from rs_jax.models.config import DENSE_NAME, Lora, Precision

Axes = Sequence[str | None]

default_kernel_init = nnx.initializers.lecun_normal()


def param(
    init: nnx.Initializer,
    shape: Sequence[int],
    axes: Axes,
    precision: Precision,
    rngs: nnx.Rngs,
) -> nnx.Param:
    """A parameter of `shape` in `precision.param_dtype`, sharded along logical `axes`."""
    value = init(rngs.params(), tuple(shape), jnp.float32).astype(precision.param_dtype)
    return nnx.Param(value, out_sharding=tuple(axes))


def constrain(x: jax.Array, axes: Axes) -> jax.Array:
    """Pin the sharding of activation x by its logical axis names, e.g. ('act_batch',
    'act_length', 'act_embed'), under the active mesh and logical-axis rules (a no-op
    without them).

    Activations have names of their own (`sharding.ACTIVATION_RULES`): without these pins
    GSPMD may shard a block's activations along the weights' fsdp axis and gather the batch
    instead, so that every device holds the whole batch's activations.
    """
    if not sharding.rules_in_scope() or jax.sharding.get_abstract_mesh().empty:
        return x
    return jax.lax.with_sharding_constraint(x, sharding.resolve(axes))


def matmul(spec: str, x: jax.Array, w: jax.Array, precision: Precision) -> jax.Array:
    """einsum(spec, x, w) on compute-dtype operands with float32 accumulation -> float32.

    Below float32 the backward pass multiplies in the compute dtype too: plain autodiff
    would meet the float32 cotangent with a bf16 operand and run both gradient matmuls in
    float32.
    """
    x, w = x.astype(precision.dtype), w.astype(precision.dtype)
    if precision.dtype == jnp.float32:
        return jnp.einsum(spec, x, w, preferred_element_type=jnp.float32)
    return _low_precision_einsum(spec, x, w)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _low_precision_einsum(spec: str, x: jax.Array, w: jax.Array) -> jax.Array:
    return jnp.einsum(spec, x, w, preferred_element_type=jnp.float32)


def _low_precision_einsum_fwd(spec, x, w):
    return _low_precision_einsum(spec, x, w), (x, w)


def _low_precision_einsum_bwd(spec, residuals, cotangent):
    # For 'A,B->C': dA = einsum('C,B->A'), dB = einsum('A,C->B'); every index of A is in B
    # or C and vice versa in all of this package's specs.
    x, w = residuals
    lhs, rest = spec.split(",")
    rhs, out = rest.split("->")
    cotangent = cotangent.astype(x.dtype)
    dx = jnp.einsum(f"{out},{rhs}->{lhs}", cotangent, w, preferred_element_type=jnp.float32)
    dw = jnp.einsum(f"{lhs},{out}->{rhs}", x, cotangent, preferred_element_type=jnp.float32)
    return dx.astype(x.dtype), dw.astype(w.dtype)


_low_precision_einsum.defvjp(_low_precision_einsum_fwd, _low_precision_einsum_bwd)


class Einsum(nnx.Module):
    """A projection by `spec` (e.g. 'btd,dnh->btnh') with a kernel of `shape` on `axes`.

    The bias covers the kernel dims that reach the output; `tag` names the output for the
    `projections` remat policy (the `dots` policy saves every Einsum's output). With a
    `lora` that targets `tag`, low-rank adapters A [contracted dims, r] and B [r, output
    dims] add (alpha / r) * x A B.
    """

    def __init__(
        self,
        spec: str,
        shape: Sequence[int],
        axes: Axes,
        *,
        precision: Precision,
        use_bias: bool = True,
        tag: str | None = None,
        kernel_init: nnx.Initializer = default_kernel_init,
        lora: Lora | None = None,
        rngs: nnx.Rngs,
    ):
        self.spec, self.tag, self.precision = spec, tag or DENSE_NAME, precision
        self.kernel = param(kernel_init, shape, axes, precision, rngs)
        inputs, rest = spec.split(",")
        kernel_dims, out_dims = rest.split("->")
        kept = [i for i, dim in enumerate(kernel_dims) if dim in out_dims]
        contracted = [i for i, dim in enumerate(kernel_dims) if dim not in out_dims]
        self.bias = (
            param(
                nnx.initializers.zeros_init(),
                [shape[i] for i in kept],
                [axes[i] for i in kept],
                precision,
                rngs,
            )
            if use_bias
            else None
        )
        self.lora_scale = lora.scale if lora is not None and lora.applies_to(self.tag) else 0.0
        if self.lora_scale:
            rank = next(c for c in "rzyxwvuq" if c not in spec)  # a free einsum letter
            c = "".join(kernel_dims[i] for i in contracted)
            k = "".join(kernel_dims[i] for i in kept)
            reduced = "".join(d for d in inputs if d not in c)
            self.lora_specs = (
                f"{inputs},{c}{rank}->{reduced}{rank}",
                f"{reduced}{rank},{rank}{k}->{out_dims}",
                # The merged delta, with any leading (stacked-layer) dims: ...cr,...rk->...ck.
                f"...{c}{rank},...{rank}{k}->...{kernel_dims}",
            )
            fan_in = math.prod(shape[i] for i in contracted)
            self.lora_a = param(
                nnx.initializers.normal(fan_in**-0.5),
                [shape[i] for i in contracted] + [lora.rank],
                [axes[i] for i in contracted] + [None],
                precision,
                rngs,
            )
            self.lora_b = param(
                nnx.initializers.zeros_init(),
                [lora.rank] + [shape[i] for i in kept],
                [None] + [axes[i] for i in kept],
                precision,
                rngs,
            )

    def merged_kernel(self) -> jax.Array:
        """The kernel with the adapters folded in (for export); the kernel without them."""
        kernel = self.kernel[...]
        if not self.lora_scale:
            return kernel
        delta = jnp.einsum(
            self.lora_specs[2],
            self.lora_a[...].astype(jnp.float32),
            self.lora_b[...].astype(jnp.float32),
        )
        return (kernel.astype(jnp.float32) + self.lora_scale * delta).astype(kernel.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = matmul(self.spec, x, self.kernel[...], self.precision)
        if self.lora_scale:
            down = matmul(self.lora_specs[0], x, self.lora_a[...], self.precision)
            up = matmul(self.lora_specs[1], down, self.lora_b[...], self.precision)
            y = y + self.lora_scale * up
        if self.bias is not None:
            y = y + self.bias[...].astype(jnp.float32)
        return checkpoint_name(y.astype(self.precision.dtype), self.tag)


def merge_lora(module: nnx.Module) -> nnx.Module:
    """A copy of `module` whose kernels hold their LoRA adapters folded in and whose
    adapters are gone: the plain model they define (to export it)."""
    merged = nnx.clone(module)
    adapted = [n for _, n in nnx.iter_graph(merged) if isinstance(n, Einsum) and n.lora_scale]
    for node in adapted:
        node.kernel.set_value(node.merged_kernel())
        node.lora_scale = 0.0
        del node.lora_a, node.lora_b, node.lora_specs
    return merged


def linear(
    in_features: int,
    out_features: int,
    axes: tuple[str | None, str | None],
    *,
    precision: Precision,
    rngs: nnx.Rngs,
    use_bias: bool = True,
    tag: str | None = None,
    kernel_init: nnx.Initializer = default_kernel_init,
    lora: Lora | None = None,
) -> Einsum:
    """A dense layer [..., in] -> [..., out] whose kernel is sharded along `axes`."""
    return Einsum(
        "...i,io->...o",
        (in_features, out_features),
        axes,
        precision=precision,
        use_bias=use_bias,
        tag=tag,
        kernel_init=kernel_init,
        lora=lora,
        rngs=rngs,
    )


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis, statistics in float32 (two-pass variance, as torch)."""

    def __init__(self, width: int, *, precision: Precision, eps: float = 1e-6, rngs: nnx.Rngs):
        self.eps, self.dtype = eps, precision.dtype
        self.scale = param(nnx.initializers.ones_init(), (width,), ("embed",), precision, rngs)
        self.bias = param(nnx.initializers.zeros_init(), (width,), ("embed",), precision, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(jnp.float32)
        centred = x - x.mean(-1, keepdims=True)
        y = centred * jax.lax.rsqrt((centred * centred).mean(-1, keepdims=True) + self.eps)
        y = y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
        return y.astype(self.dtype)


class RMSNorm(nnx.Module):
    """x / rms(x) * scale over the last axis, in float32."""

    def __init__(self, width: int, *, precision: Precision, eps: float = 1e-6, rngs: nnx.Rngs):
        self.eps, self.dtype = eps, precision.dtype
        self.scale = param(nnx.initializers.ones_init(), (width,), ("embed",), precision, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(jnp.float32)
        y = x * jax.lax.rsqrt((x * x).mean(-1, keepdims=True) + self.eps)
        return (y * self.scale[...].astype(jnp.float32)).astype(self.dtype)


class Embed(nnx.Module):
    """Embeddings [V, D] on logical `axes` (tokens: ('vocab', 'embed')): ids [...] -> [..., D]."""

    def __init__(
        self,
        vocab_size: int,
        width: int,
        *,
        precision: Precision,
        axes: tuple[str | None, str | None] = ("vocab", "embed"),
        rngs: nnx.Rngs,
    ):
        self.precision = precision
        self.embedding = param(
            nnx.initializers.normal(width**-0.5), (vocab_size, width), axes, precision, rngs
        )

    def __call__(self, ids: jax.Array) -> jax.Array:
        return jnp.take(self.embedding[...], ids, axis=0).astype(self.precision.dtype)


ACTIVATION_FNS = {  # by config.model.vision.activation
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
}


class Mlp(nnx.Module):
    """Two-layer MLP (ViT blocks, LLaVA projector): [..., d_in] -> [..., d_out]."""

    def __init__(
        self,
        d_in: int,
        hidden: int,
        d_out: int,
        *,
        precision: Precision,
        activation: str = "gelu_tanh",
        rngs: nnx.Rngs,
    ):
        self.activation = activation
        self.fc1 = linear(
            d_in, hidden, ("embed", "mlp"), precision=precision, tag="mlp_in", rngs=rngs
        )
        self.fc2 = linear(
            hidden, d_out, ("mlp", "embed"), precision=precision, tag="mlp_out", rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = constrain(
            ACTIVATION_FNS[self.activation](self.fc1(x)), ("act_batch", "act_length", "act_mlp")
        )
        return self.fc2(hidden)


class SwiGLU(nnx.Module):
    """LLaMA feed-forward: down(silu(gate(x)) * up(x)), [..., D] -> [..., D]."""

    def __init__(
        self,
        width: int,
        hidden: int,
        *,
        precision: Precision,
        lora: Lora | None = None,
        rngs: nnx.Rngs,
    ):
        def proj(d_in, d_out, axes, tag):
            return linear(
                d_in,
                d_out,
                axes,
                precision=precision,
                use_bias=False,
                tag=tag,
                lora=lora,
                rngs=rngs,
            )

        self.gate = proj(width, hidden, ("embed", "mlp"), "mlp_in")
        self.up = proj(width, hidden, ("embed", "mlp"), "mlp_in")
        self.down = proj(hidden, width, ("mlp", "embed"), "mlp_out")

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = constrain(
            jax.nn.silu(self.gate(x)) * self.up(x), ("act_batch", "act_length", "act_mlp")
        )
        return self.down(hidden)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over axis 1 of x [B, T, D] where mask [B, T] is set -> [B, D] (float32)."""
    weights = mask.astype(jnp.float32)[..., None]
    return (x.astype(jnp.float32) * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)
