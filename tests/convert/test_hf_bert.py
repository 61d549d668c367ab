"""The HF BERT importer: weight layout and clear errors for mismatched checkpoints."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from configs.common import SHARDING_RULES
from rs_jax.convert.hf_bert import load_bert_weights, read_safetensors, resolve_model_dir
from rs_jax.models.text_encoder import BertConfig, BertEncoder
from rs_jax.sharding import make_mesh, sharding_context


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
    # HF Linear [out, in] with out = heads * head_dim -> our einsum kernel [D, heads, head_dim],
    # the layers stacked on a leading axis.
    blocks = model.layers.blocks
    assert blocks.attn.query.kernel.get_value().shape == (6, 384, 12, 32)
    query = np.asarray(blocks.attn.query.kernel.get_value()[2])
    hf = tensors["encoder.layer.2.attention.self.query.weight"]
    assert query.shape == (384, 12, 32)
    np.testing.assert_array_equal(query[:, 5, 7], hf[5 * 32 + 7, :])
    out = np.asarray(blocks.attn.out.kernel.get_value()[0])
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
