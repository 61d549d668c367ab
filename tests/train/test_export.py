"""Export to transformers folders: import -> change the weights (as training does) -> export
-> transformers loads the folder and computes what rs-jax computes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from transformers import AutoModel, AutoModelForCausalLM

from configs.common import SHARDING_RULES
from rs_jax.convert import hf_decoder, hf_vision
from rs_jax.convert.weights import export_from
from tests.convert.test_hf_decoder import hf_logits, mesh_of, our_logits, save_decoder
from tests.convert.test_hf_vision import hf_hidden_states, save_tower


def perturb(module, seed=0):
    """Every parameter moved, as training would: an export that wrote the import's
    tensors back (or dropped one) cannot pass."""
    state = nnx.state(module, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    moved = [x + 0.01 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    nnx.update(module, jax.tree.unflatten(treedef, moved))


@pytest.mark.parametrize("name", ["llama3_rope", "mistral", "qwen2"])
def test_exported_decoder_equals_ours_in_transformers(tmp_path, name):
    save_decoder(tmp_path / "in", name)
    decoder = hf_decoder.load_decoder(tmp_path / "in", mesh_of(fsdp=2), SHARDING_RULES)
    perturb(decoder)
    hf_decoder.export_decoder(decoder, tmp_path / "out")
    model = AutoModelForCausalLM.from_pretrained(
        tmp_path / "out", dtype=torch.float32, attn_implementation="eager"
    ).eval()
    assert model.config.model_type == ("llama" if name == "llama3_rope" else name)
    ids = np.random.default_rng(0).integers(0, 96, (2, 12))
    mask = np.ones_like(ids)
    mask[0, :3] = 0
    real = mask.astype(bool)
    ours, theirs = our_logits(decoder, ids, mask), hf_logits(model, ids, mask)
    np.testing.assert_allclose(ours[real], theirs[real], atol=1e-4)


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_exported_vision_tower_equals_ours_in_transformers(tmp_path, name):
    save_tower(tmp_path / "in", name)
    encoder = hf_vision.load_vision_tower(tmp_path / "in", mesh_of(), SHARDING_RULES)
    perturb(encoder)
    hf_vision.export_vision_tower(encoder, tmp_path / "out")
    model = AutoModel.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    pixels = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    cfg = encoder.cfg
    theirs, last = hf_hidden_states(model, pixels, cfg.pixel_mean, cfg.pixel_std)
    ours = encoder(jnp.asarray(pixels), (1, 2))
    skip = int(cfg.class_token)
    np.testing.assert_allclose(ours[1], theirs[2][:, skip:], atol=1e-4)
    expected = last if name == "siglip" else theirs[3][:, skip:]
    np.testing.assert_allclose(ours[2], expected, atol=1e-4)
    # The pixel statistics travel with the folder.
    assert hf_vision.vision_settings(tmp_path / "out")[0]["pixel_mean"] == cfg.pixel_mean


def test_sharded_export_loads_back(tmp_path):
    save_decoder(tmp_path / "in", "llama")
    decoder = hf_decoder.load_decoder(tmp_path / "in", mesh_of(), SHARDING_RULES)
    perturb(decoder)
    mapping = hf_decoder.weight_map(decoder.cfg, 1, "model.", "lm_head.weight")
    export_from(decoder, mapping, tmp_path / "out", shard_bytes=20_000)
    hf_decoder.hf_config(decoder.cfg).save_pretrained(tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors.index.json").exists()
    again = hf_decoder.load_decoder(tmp_path / "out", mesh_of(), SHARDING_RULES)
    ids, mask = np.arange(8)[None], np.ones((1, 8), np.int64)
    np.testing.assert_array_equal(our_logits(again, ids, mask), our_logits(decoder, ids, mask))


def test_export_never_overwrites_a_model(tmp_path):
    save_decoder(tmp_path, "llama")
    before = (tmp_path / "model.safetensors").read_bytes()
    decoder = hf_decoder.load_decoder(tmp_path, mesh_of(), SHARDING_RULES)
    with pytest.raises(FileExistsError, match="already holds a model"):
        hf_decoder.export_decoder(decoder, tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before


def test_lora_adapters_are_merged_on_export(tmp_path, model_context):
    """Stage 2 with LoRA: the exported plain model equals the adapted one."""
    import dataclasses

    from rs_jax.models.config import Lora, Precision, StackConfig
    from rs_jax.models.decoder import Decoder

    save_decoder(tmp_path / "in", "llama")
    imported = hf_decoder.load_decoder(tmp_path / "in", mesh_of(), SHARDING_RULES)
    cfg = dataclasses.replace(imported.cfg, lora=Lora(rank=4, alpha=8.0))
    adapted = Decoder(cfg, Precision(), StackConfig(), rngs=nnx.Rngs(0))
    hf_decoder.load_weights(adapted, tmp_path / "in")
    perturb(adapted)  # the adapters too: B is no longer zero
    hf_decoder.export_decoder(adapted, tmp_path / "out")
    model = AutoModelForCausalLM.from_pretrained(
        tmp_path / "out", dtype=torch.float32, attn_implementation="eager"
    ).eval()
    ids, mask = np.arange(10)[None] % 96, np.ones((1, 10), np.int64)
    np.testing.assert_allclose(
        our_logits(adapted, ids, mask), hf_logits(model, ids, mask), atol=1e-4
    )
