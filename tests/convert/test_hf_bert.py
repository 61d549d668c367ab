"""The HF BERT importer: weight layout and clear errors for mismatched checkpoints."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs.common import SHARDING_RULES
from rs_jax.convert.hf_bert import load_bert_weights, read_safetensors
from rs_jax.models.text_encoder import BertConfig, BertEncoder, resolve_model_dir
from rs_jax.train.partitioning import make_mesh, sharding_context


@pytest.fixture
def model_context():
    mesh = make_mesh({"data": 1, "fsdp": 1, "expert": 1, "tensor": 1}, jax.devices()[:1])
    with sharding_context(mesh, SHARDING_RULES):
        yield


@pytest.fixture(scope="module")
def checkpoint():
    folder, _ = resolve_model_dir("minilm")
    config = BertConfig.from_hf(json.loads((folder / "config.json").read_text()))
    return config, read_safetensors(folder / "model.safetensors")


def abstract_model(config):
    return nnx.eval_shape(lambda: BertEncoder(config, rngs=nnx.Rngs(0)))


def test_loads_and_lays_out_kernels(model_context, checkpoint):
    config, tensors = checkpoint
    model = abstract_model(config)
    load_bert_weights(model, tensors)
    # HF Linear [out, in] with out = heads * head_dim -> our einsum kernel [D, heads, head_dim].
    query = np.asarray(model.layers[2].attention.query.kernel.get_value())
    hf = tensors["encoder.layer.2.attention.self.query.weight"]
    assert query.shape == (384, 12, 32)
    np.testing.assert_array_equal(query[:, 5, 7], hf[5 * 32 + 7, :])
    out = np.asarray(model.layers[0].attention.out.kernel.get_value())
    np.testing.assert_array_equal(
        out[3, 1, :], tensors["encoder.layer.0.attention.output.dense.weight"][:, 3 * 32 + 1]
    )
    # A "bert." prefix (task checkpoints) is accepted.
    load_bert_weights(model, {f"bert.{k}": v for k, v in tensors.items()})


def test_reports_missing_key(model_context, checkpoint):
    config, tensors = checkpoint
    broken = dict(tensors)
    del broken["encoder.layer.3.intermediate.dense.bias"]
    with pytest.raises(
        ValueError, match=r"missing tensors: encoder\.layer\.3\.intermediate\.dense\.bias"
    ):
        load_bert_weights(abstract_model(config), broken)


def test_reports_unexpected_key_and_shape(model_context, checkpoint):
    config, tensors = checkpoint
    broken = dict(tensors)
    broken["cls.predictions.bias"] = np.zeros(3, np.float32)
    broken["embeddings.LayerNorm.weight"] = np.ones(100, np.float32)
    with pytest.raises(ValueError) as err:
        load_bert_weights(abstract_model(config), broken)
    message = str(err.value)
    assert "unexpected tensors: cls.predictions.bias" in message
    assert "embeddings.LayerNorm.weight has shape (100,)" in message


def test_reports_config_mismatch(model_context, checkpoint):
    _, tensors = checkpoint
    model = abstract_model(BertConfig(num_layers=5))
    with pytest.raises(ValueError, match=r"unexpected tensors: encoder\.layer\.5\."):
        load_bert_weights(model, tensors)


def hf_tensors(config: BertConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Random tensors named and shaped as a HF BertModel checkpoint of `config`."""
    rng = np.random.default_rng(seed)
    d, i = config.hidden_size, config.intermediate_size
    shapes = {
        "embeddings.word_embeddings.weight": (config.vocab_size, d),
        "embeddings.position_embeddings.weight": (config.max_position_embeddings, d),
        "embeddings.token_type_embeddings.weight": (config.type_vocab_size, d),
        "embeddings.LayerNorm.weight": (d,),
        "embeddings.LayerNorm.bias": (d,),
    }
    for n in range(config.num_layers):
        layer = f"encoder.layer.{n}"
        for name in ("self.query", "self.key", "self.value", "output.dense"):
            shapes[f"{layer}.attention.{name}.weight"] = (d, d)
            shapes[f"{layer}.attention.{name}.bias"] = (d,)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{layer}.{norm}.weight"] = shapes[f"{layer}.{norm}.bias"] = (d,)
        shapes[f"{layer}.intermediate.dense.weight"] = (i, d)
        shapes[f"{layer}.intermediate.dense.bias"] = (i,)
        shapes[f"{layer}.output.dense.weight"] = (d, i)
        shapes[f"{layer}.output.dense.bias"] = (d,)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def test_concrete_model_keeps_its_sharding():
    mesh = make_mesh({"data": 2, "fsdp": 2, "expert": 1, "tensor": 2})
    config = BertConfig(
        vocab_size=50,
        hidden_size=8,
        num_layers=1,
        num_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    tensors = hf_tensors(config)
    with sharding_context(mesh, SHARDING_RULES):
        model = BertEncoder(config, rngs=nnx.Rngs(0))
        before = model.layers[0].mlp_in.kernel.get_value().sharding
        load_bert_weights(model, tensors)
    kernel = model.layers[0].mlp_in.kernel.get_value()
    assert kernel.sharding == before and len(kernel.sharding.device_set) == 8
    assert jnp.array_equal(kernel, tensors["encoder.layer.0.intermediate.dense.weight"].T)
