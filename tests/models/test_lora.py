"""LoRA adapters on the decoder's projections: zero at the start, the einsum each target
computes equals the dense layer with the merged kernel, and the adapters are the only part
of a frozen decoder that trains."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rs_jax.models.config import Lora, Precision, StackConfig
from rs_jax.models.decoder import Decoder
from rs_jax.models.layers import Einsum, merge_lora
from tests.models.conftest import decoder_config

CFG = decoder_config(vocab_size=64, tie_embeddings=False, norm_eps=1e-6)


def decoder(model_context, lora: Lora) -> Decoder:
    return Decoder(
        dataclasses.replace(CFG, lora=lora), Precision(), StackConfig(), rngs=nnx.Rngs(0)
    )


def logits(model, ids):
    hidden, _, _ = model(model.embed(ids), jnp.ones(ids.shape, bool))
    return model.logits(hidden)


IDS = jnp.asarray(np.random.default_rng(0).integers(0, 64, (2, 7)))


def test_adapters_start_at_zero(model_context):
    base, adapted = decoder(model_context, Lora()), decoder(model_context, Lora(rank=4))
    nnx.update(adapted, nnx.state(base))  # the same base weights
    assert adapted.groups.blocks.blocks[0].attn.query.lora_a.get_value().shape == (2, 32, 4)
    np.testing.assert_array_equal(logits(base, IDS), logits(adapted, IDS))


@pytest.mark.parametrize(
    "spec, shape, axes",
    [
        ("btd,dnh->btnh", (32, 4, 8), ("embed", "heads", "head_dim")),
        ("btnh,nhd->btd", (4, 8, 32), ("heads", "head_dim", "embed")),
        ("...i,io->...o", (32, 48), ("embed", "mlp")),
    ],
)
def test_adapted_projection_equals_its_merged_kernel(model_context, spec, shape, axes):
    layer = Einsum(
        spec,
        shape,
        axes,
        precision=Precision(),
        tag="query",
        lora=Lora(rank=8, alpha=4.0),
        rngs=nnx.Rngs(1),
    )
    layer.lora_b.set_value(jax.random.normal(jax.random.key(2), layer.lora_b.get_value().shape))
    x_shape = {"btd": (2, 5, 32), "btnh": (2, 5, 4, 8), "...i": (2, 5, 32)}[spec.split(",")[0]]
    x = jax.random.normal(jax.random.key(3), x_shape)
    expected = jnp.einsum(spec, x, layer.merged_kernel()) + layer.bias[...]
    np.testing.assert_allclose(layer(x), expected, atol=1e-5)


def test_merged_model_equals_the_adapted_one(model_context):
    model = decoder(model_context, Lora(rank=4, targets=("query", "value", "mlp_out")))
    block = model.groups.blocks.blocks[0]
    for layer in (block.attn.query, block.attn.value, block.mlp.down):
        layer.lora_b.set_value(0.1 * jnp.ones(layer.lora_b.get_value().shape))
    assert not hasattr(block.attn.key, "lora_a")  # not a target
    merged = merge_lora(model)  # plain kernels only: they alone must give the same model
    names = {"/".join(map(str, path)) for path, _ in nnx.to_flat_state(nnx.state(merged))}
    assert not any("lora" in name for name in names)
    np.testing.assert_allclose(logits(merged, IDS), logits(model, IDS), atol=1e-4)
