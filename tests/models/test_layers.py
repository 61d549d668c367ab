"""Basic layers against plain-numpy float64 references, in float32 and under the bf16
precision policy (bf16 operands, float32 accumulation and statistics, bf16 out)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rs_jax.models.config import Precision
from rs_jax.models.layers import (
    ACTIVATION_FNS,
    Einsum,
    Embed,
    LayerNorm,
    Mlp,
    RMSNorm,
    SwiGLU,
    linear,
    masked_mean,
    matmul,
)
from tests.models.conftest import randomize

pytestmark = pytest.mark.usefixtures("model_context")

F32 = Precision()
BF16 = Precision(dtype=jnp.bfloat16, param_dtype=jnp.float32)  # bf16 compute, float32 weights
BF16_WEIGHTS = Precision(dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
PRECISIONS = pytest.mark.parametrize(
    "precision", [F32, BF16, BF16_WEIGHTS], ids=["f32", "bf16", "bf16-weights"]
)
# bf16 keeps 8 significant bits: one rounding of an exact value is off by at most 2^-8 of it.
BF16_ROUNDING = 2.0**-8


def as_dtype(x, dtype) -> np.ndarray:
    """x rounded to `dtype`, back in float64: the value the layer really computes with."""
    return np.asarray(jnp.asarray(x, jnp.float32).astype(dtype), np.float64)


def f64(variable) -> np.ndarray:
    return np.asarray(variable[...], np.float64)


def assert_rounded_once(out, exact, slack):
    """out (bf16) is exact rounded once to bf16: within half a bf16 ulp, plus `slack` for the
    float32 arithmetic before the rounding."""
    out = np.asarray(out, np.float64)
    err = np.abs(out - exact)
    bound = BF16_ROUNDING * np.abs(exact) + slack
    assert (err <= bound).all(), f"worst excess {np.max(err - bound)}"


@PRECISIONS
@pytest.mark.parametrize(
    "spec, shape, x_shape, bias_shape",
    [
        ("btd,dnh->btnh", (128, 2, 8), (2, 3, 128), (2, 8)),
        ("btnh,nhd->btd", (4, 32, 16), (2, 3, 4, 32), (16,)),
        ("...i,io->...o", (96, 24), (2, 3, 2, 96), (24,)),  # `linear`'s spec, extra leading dims
    ],
)
def test_einsum_matches_numpy(spec, shape, x_shape, bias_shape, precision):
    """y = einsum(x, kernel) + bias over the kernel dims that reach the output; in bf16 the
    result is the exact product of the bf16 operands rounded once (float32 accumulation)."""
    layer = randomize(
        Einsum(spec, shape, (None,) * len(shape), precision=precision, rngs=nnx.Rngs(0)), 1
    )
    assert layer.kernel[...].dtype == precision.param_dtype
    assert layer.bias[...].shape == bias_shape
    x = np.random.default_rng(2).normal(size=x_shape)
    out = layer(jnp.asarray(x, jnp.float32))
    assert out.dtype == precision.dtype
    dtype = precision.dtype
    exact = np.einsum(spec, as_dtype(x, dtype), as_dtype(f64(layer.kernel), dtype))
    exact = exact + f64(layer.bias)
    terms = np.einsum(spec, np.abs(x), np.abs(f64(layer.kernel)))
    if dtype == jnp.float32:
        np.testing.assert_allclose(out, exact, rtol=1e-5, atol=1e-5)
    else:
        assert_rounded_once(out, exact, slack=1e-5 * terms)


def test_linear_is_a_dense_layer_with_an_optional_bias():
    """linear: [..., in] -> [..., out] = x W + b; use_bias=False leaves the bias out."""
    x = np.random.default_rng(3).normal(size=(5, 12))
    layer = randomize(linear(12, 7, ("embed", "mlp"), precision=F32, rngs=nnx.Rngs(0)), 1)
    np.testing.assert_allclose(
        layer(jnp.asarray(x, jnp.float32)), x @ f64(layer.kernel) + f64(layer.bias), atol=1e-5
    )
    plain = randomize(
        linear(12, 7, ("embed", "mlp"), precision=F32, use_bias=False, rngs=nnx.Rngs(0)), 1
    )
    assert plain.bias is None
    np.testing.assert_allclose(plain(jnp.asarray(x, jnp.float32)), x @ f64(plain.kernel), atol=1e-5)


@pytest.mark.parametrize("precision", [F32, BF16], ids=["f32", "bf16"])
def test_matmul_output_and_gradients_match_numpy(precision):
    """matmul returns float32; its gradients are the transposed products, taken in bf16
    (cotangent rounded to bf16, bf16 gradients) under the bf16 policy."""
    spec = "btnh,nhd->btd"
    rng = np.random.default_rng(4)
    x = as_dtype(rng.normal(size=(2, 3, 4, 32)), precision.dtype)
    w = as_dtype(rng.normal(size=(4, 32, 16)), precision.dtype)
    g = rng.normal(size=(2, 3, 16))
    xj, wj = jnp.asarray(x, precision.dtype), jnp.asarray(w, precision.dtype)
    out, vjp = jax.vjp(lambda a, b: matmul(spec, a, b, precision), xj, wj)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, np.einsum(spec, x, w), rtol=1e-5, atol=1e-4)
    dx, dw = vjp(jnp.asarray(g, jnp.float32))
    assert dx.dtype == precision.dtype and dw.dtype == precision.dtype
    g = as_dtype(g, precision.dtype)
    exact_dx = np.einsum("btd,nhd->btnh", g, w)
    exact_dw = np.einsum("btnh,btd->nhd", x, g)
    if precision.dtype == jnp.float32:
        np.testing.assert_allclose(dx, exact_dx, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(dw, exact_dw, rtol=1e-5, atol=1e-4)
    else:
        slack_dx = 1e-5 * np.einsum("btd,nhd->btnh", np.abs(g), np.abs(w))
        assert_rounded_once(dx, exact_dx, slack_dx)
        assert_rounded_once(dw, exact_dw, 1e-5 * np.einsum("btnh,btd->nhd", np.abs(x), np.abs(g)))


def norm_inputs(seed: int) -> np.ndarray:
    """Rows of very different scales: at 0.05 the eps (1e-2) changes the result."""
    x = np.random.default_rng(seed).normal(size=(3, 2, 64))
    return x * np.array([0.05, 1.0, 20.0])[:, None, None]


@PRECISIONS
def test_rms_norm_matches_numpy(precision):
    """x / sqrt(mean(x^2) + eps) * scale, statistics in float32, output in the compute dtype."""
    norm = randomize(RMSNorm(64, precision=precision, eps=1e-2, rngs=nnx.Rngs(0)), 1, scale=1.0)
    x = as_dtype(norm_inputs(5), precision.dtype)
    out = norm(jnp.asarray(x, precision.dtype))
    assert out.dtype == precision.dtype
    exact = x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-2) * f64(norm.scale)
    without_eps = x / np.sqrt((x * x).mean(-1, keepdims=True)) * f64(norm.scale)
    assert np.abs(without_eps - exact).max() > 0.1  # the eps placement is really tested
    if precision.dtype == jnp.float32:
        np.testing.assert_allclose(out, exact, rtol=1e-5, atol=1e-6)
    else:
        assert_rounded_once(out, exact, slack=1e-6 * np.abs(exact))


@PRECISIONS
def test_layer_norm_matches_numpy(precision):
    """(x - mean) / sqrt(var + eps) * scale + bias; a row offset by 3000 needs the two-pass
    variance (E[x^2] - mean^2 in float32 loses the unit variance to rounding)."""
    norm = randomize(LayerNorm(64, precision=precision, eps=1e-2, rngs=nnx.Rngs(0)), 1, scale=1.0)
    x = norm_inputs(6)
    x[2] = 3000.0 + np.random.default_rng(7).normal(size=(2, 64))
    x = as_dtype(x, precision.dtype)
    out = norm(jnp.asarray(x, precision.dtype))
    assert out.dtype == precision.dtype
    centred = x - x.mean(-1, keepdims=True)
    var = (centred * centred).mean(-1, keepdims=True)
    exact = centred / np.sqrt(var + 1e-2) * f64(norm.scale) + f64(norm.bias)
    if precision.dtype == jnp.float32:
        # The offset row's float32 mean is off by ~1e-4: the tolerance covers that, not a
        # one-pass variance (error ~1 on a variance of ~1).
        np.testing.assert_allclose(out, exact, rtol=1e-5, atol=2e-3)
        np.testing.assert_allclose(out[:2], exact[:2], rtol=1e-5, atol=1e-5)
    else:
        assert_rounded_once(out, exact, slack=2e-3)


def np_erf(x):
    return np.vectorize(math.erf)(x)


ACTIVATIONS = {
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    "gelu": lambda x: 0.5 * x * (1 + np_erf(x / math.sqrt(2))),
    "quick_gelu": lambda x: x / (1 + np.exp(-1.702 * x)),
}


def test_activations_match_their_formulas():
    """Tanh-approximated GELU, exact (erf) GELU and CLIP's x * sigmoid(1.702 x)."""
    x = np.linspace(-6, 6, 97)
    for name, fn in ACTIVATIONS.items():
        out = ACTIVATION_FNS[name](jnp.asarray(x, jnp.float32))
        np.testing.assert_allclose(out, fn(x), rtol=1e-5, atol=1e-6, err_msg=name)
    # The two GELUs differ by far more than the tolerance: a swap would show.
    assert np.abs(ACTIVATIONS["gelu_tanh"](x) - ACTIVATIONS["gelu"](x)).max() > 1e-4


@pytest.mark.parametrize(
    "activation, precision",
    [("gelu_tanh", F32), ("gelu", F32), ("quick_gelu", F32), ("gelu_tanh", BF16)],
    ids=["gelu_tanh", "gelu", "quick_gelu", "gelu_tanh-bf16"],
)
def test_mlp_matches_numpy(activation, precision):
    """fc2(act(fc1(x))) with biases; bf16: bf16 out, numpy-close at bf16 tolerance."""
    mlp = randomize(
        Mlp(16, 48, 24, precision=precision, activation=activation, rngs=nnx.Rngs(0)), 1
    )
    x = np.random.default_rng(8).normal(size=(2, 5, 16))
    out = mlp(jnp.asarray(x, precision.dtype))
    assert out.dtype == precision.dtype
    hidden = ACTIVATIONS[activation](x @ f64(mlp.fc1.kernel) + f64(mlp.fc1.bias))
    exact = hidden @ f64(mlp.fc2.kernel) + f64(mlp.fc2.bias)
    if precision.dtype == jnp.float32:
        np.testing.assert_allclose(out, exact, rtol=1e-5, atol=1e-5)
    else:
        err = np.abs(np.asarray(out, np.float64) - exact).max()
        assert err < 0.02 * np.abs(exact).max(), err


@PRECISIONS
def test_swiglu_matches_numpy(precision):
    """down(silu(gate(x)) * up(x)) without biases; bf16: bf16 out at bf16 tolerance."""
    mlp = randomize(SwiGLU(32, 64, precision=precision, rngs=nnx.Rngs(0)), 1)
    assert mlp.gate.bias is None and mlp.up.bias is None and mlp.down.bias is None
    x = np.random.default_rng(9).normal(size=(2, 5, 32))
    out = mlp(jnp.asarray(x, precision.dtype))
    assert out.dtype == precision.dtype
    gate, up = x @ f64(mlp.gate.kernel), x @ f64(mlp.up.kernel)
    exact = (gate / (1 + np.exp(-gate)) * up) @ f64(mlp.down.kernel)
    if precision.dtype == jnp.float32:
        np.testing.assert_allclose(out, exact, rtol=1e-5, atol=1e-5)
    else:
        # x, the weights, gate, up and their product are each rounded to bf16.
        err = np.abs(np.asarray(out, np.float64) - exact).max()
        assert err < 0.03 * np.abs(exact).max(), err


@pytest.mark.parametrize("precision", [F32, BF16_WEIGHTS], ids=["f32", "bf16-weights"])
def test_embed_looks_up_rows(precision):
    """ids [...] -> rows of the table [..., D] in the compute dtype."""
    embed = Embed(10, 8, precision=precision, rngs=nnx.Rngs(0))
    ids = np.array([[3, 0, 9], [9, 9, 1]])
    out = embed(jnp.asarray(ids))
    assert out.dtype == precision.dtype
    np.testing.assert_array_equal(np.asarray(out, np.float64), f64(embed.embedding)[ids])


def test_masked_mean_averages_marked_positions_only():
    """Mean over the marked positions; an all-unmarked row gives zeros, not NaN."""
    rng = np.random.default_rng(10)
    x = rng.normal(size=(3, 5, 4))
    mask = np.array([[1, 1, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]])
    x[mask == 0] = 1e4  # unmarked values must not leak in
    out = masked_mean(jnp.asarray(x, jnp.bfloat16), jnp.asarray(mask))
    assert out.dtype == jnp.float32
    x16 = as_dtype(x, jnp.bfloat16)
    expected = np.stack([x16[0, [0, 1, 4]].mean(0), x16[1, 4], np.zeros(4)])
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
