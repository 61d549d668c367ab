"""LLaMA-family decoders imported from HF folders equal transformers: logits (padded and
not), Llama 3 RoPE scaling, Mistral's sliding window, Qwen2's biases and tied embeddings,
and greedy generation with the KV cache token for token."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from configs.common import SHARDING_RULES
from rs_jax.convert import hf_decoder
from rs_jax.eval.generation import greedy_decode
from rs_jax.sharding import make_mesh

TINY = dict(
    vocab_size=96,  # divisible by the tensor axis the vocabulary is sharded over
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    attn_implementation="eager",
)
LLAMA3_ROPE = dict(
    rope_type="llama3",
    rope_theta=500_000.0,
    factor=8.0,
    low_freq_factor=1.0,
    high_freq_factor=4.0,
    original_max_position_embeddings=16,
)
DECODERS = {
    "llama": lambda: LlamaForCausalLM(LlamaConfig(**TINY)),
    "llama3_rope": lambda: LlamaForCausalLM(LlamaConfig(**TINY, rope_parameters=LLAMA3_ROPE)),
    # A window shorter than the test sequences, so it changes the result.
    "mistral": lambda: MistralForCausalLM(MistralConfig(**TINY, sliding_window=5)),
    "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**TINY, tie_word_embeddings=True)),
}


def save_decoder(folder, name):
    torch.manual_seed(0)
    model = DECODERS[name]().eval()
    with torch.no_grad():  # non-trivial norms and biases: an identity would hide a swap
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(folder)
    return model


def mesh_of(fsdp=1, tensor=1):
    devices = jax.devices()[: fsdp * tensor]
    return make_mesh({"data": 1, "fsdp": fsdp, "expert": 1, "tensor": tensor}, devices)


def our_logits(decoder, ids, mask):
    hidden, _, _ = decoder(decoder.embed(jnp.asarray(ids)), jnp.asarray(mask))
    return np.asarray(decoder.logits(hidden))


def hf_logits(model, ids, mask):
    # Left padding: positions count real tokens only, as the project's decoder does.
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask.astype(np.int64)),
            position_ids=torch.from_numpy(positions),
        )
    return out.logits.numpy()


@pytest.mark.parametrize("name", list(DECODERS))
def test_logits_equal_transformers(tmp_path, name):
    model = save_decoder(tmp_path, name)
    decoder = hf_decoder.load_decoder(tmp_path, mesh_of(fsdp=2, tensor=2), SHARDING_RULES)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 96, (2, 12))
    mask = np.ones((2, 12), np.int64)
    mask[1, :4] = 0  # a left-padded prompt
    ours, theirs = our_logits(decoder, ids, mask), hf_logits(model, ids, mask)
    real = mask.astype(bool)
    np.testing.assert_allclose(ours[real], theirs[real], atol=1e-4)


def test_llama3_rope_scaling_is_not_plain_rope(tmp_path):
    """The scaled model differs from the same weights read with plain RoPE: the scaling
    the parity test covers is really applied."""
    save_decoder(tmp_path, "llama3_rope")
    scaled = hf_decoder.load_decoder(tmp_path, mesh_of(), SHARDING_RULES)
    config = json.loads((tmp_path / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "default", "rope_theta": 500_000.0}
    (tmp_path / "config.json").write_text(json.dumps(config))
    plain = hf_decoder.load_decoder(tmp_path, mesh_of(), SHARDING_RULES)
    ids, mask = np.arange(24)[None], np.ones((1, 24), np.int64)
    assert np.abs(our_logits(scaled, ids, mask) - our_logits(plain, ids, mask)).max() > 1e-3


@pytest.mark.parametrize("name", ["llama", "qwen2"])
def test_greedy_generation_equals_transformers_generate(tmp_path, name):
    model = save_decoder(tmp_path, name)
    decoder = hf_decoder.load_decoder(tmp_path, mesh_of(), SHARDING_RULES)
    ids = np.random.default_rng(1).integers(0, 96, (2, 6))
    mask = np.ones_like(ids)
    tokens = greedy_decode(
        decoder, decoder.embed(jnp.asarray(ids)), jnp.asarray(mask, bool), max_new_tokens=10
    )
    with torch.no_grad():
        expected = model.generate(
            torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            max_new_tokens=10,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )[:, ids.shape[1] :]
    np.testing.assert_array_equal(np.asarray(tokens), expected.numpy())


def test_settings_follow_config_json(tmp_path):
    save_decoder(tmp_path, "qwen2")
    settings = hf_decoder.llm_settings(tmp_path)
    assert settings["qkv_bias"] and settings["tie_embeddings"]
    assert (settings["num_heads"], settings["num_kv_heads"]) == (4, 2)
    save_decoder(tmp_path, "llama3_rope")
    rope = hf_decoder.llm_settings(tmp_path)["rope_scaling"]
    assert rope["type"] == "llama3" and rope["factor"] == 8.0


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("hidden_act", "gelu", "hidden_act='gelu' is not supported"),
        ("attention_bias", True, "attention_bias=True is not supported"),
        ("model_type", "gpt2", "model_type='gpt2' is not supported"),
        (
            "rope_parameters",
            {"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0},
            "rope_parameters.rope_type='yarn' is not supported",
        ),
    ],
)
def test_unsupported_options_name_the_key(tmp_path, key, value, message):
    save_decoder(tmp_path, "llama")
    config = json.loads((tmp_path / "config.json").read_text())
    config[key] = value
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        hf_decoder.llm_settings(tmp_path)


def test_sharded_checkpoint_folder(tmp_path):
    """A checkpoint split into shards with model.safetensors.index.json loads the same."""
    model = save_decoder(tmp_path / "whole", "llama")
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    whole = hf_decoder.load_decoder(tmp_path / "whole", mesh_of(), SHARDING_RULES)
    sharded = hf_decoder.load_decoder(tmp_path / "sharded", mesh_of(), SHARDING_RULES)
    ids, mask = np.arange(8)[None], np.ones((1, 8), np.int64)
    np.testing.assert_array_equal(our_logits(whole, ids, mask), our_logits(sharded, ids, mask))
