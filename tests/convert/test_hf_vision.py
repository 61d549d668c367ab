"""CLIP and SigLIP vision towers imported from HF folders equal transformers' own outputs."""

import json

import jax
import numpy as np
import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel

from configs.common import SHARDING_RULES
from rs_jax.convert import hf_vision
from rs_jax.sharding import make_mesh

TINY = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    image_size=32,
    patch_size=8,
)
TOWERS = {
    "clip": (CLIPVisionModel, CLIPVisionConfig(**TINY)),
    "siglip": (SiglipVisionModel, SiglipVisionConfig(**TINY)),
}


def save_tower(folder, name, preprocessor=None):
    model_class, config = TOWERS[name]
    torch.manual_seed(0)
    model = model_class(config).eval()
    with torch.no_grad():  # non-trivial norms and biases: an identity would hide a swap
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(folder)
    if preprocessor:
        (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return model


def hf_hidden_states(model, pixels, mean, std):
    """HF hidden states (embeddings, then every block) for our pixels [B, H, W, 3] in [-1, 1]."""
    normalised = ((pixels + 1) / 2 - np.asarray(mean)) / np.asarray(std)
    values = torch.from_numpy(normalised.transpose(0, 3, 1, 2).astype(np.float32))
    with torch.no_grad():
        out = model(pixel_values=values, output_hidden_states=True)
    return [h.numpy() for h in out.hidden_states], out.last_hidden_state.numpy()


@pytest.mark.parametrize("name", ["clip", "siglip"])
@pytest.mark.parametrize("mesh_shape", [(1, 1), (2, 2)])
def test_tapped_blocks_equal_transformers(tmp_path, name, mesh_shape):
    statistics = {"image_mean": [0.4, 0.45, 0.5], "image_std": [0.2, 0.25, 0.3]}
    model = save_tower(tmp_path, name, statistics)
    fsdp, tensor = mesh_shape
    devices = jax.devices()[: fsdp * tensor]
    mesh = make_mesh({"data": 1, "fsdp": fsdp, "expert": 1, "tensor": tensor}, devices)
    encoder = hf_vision.load_vision_tower(tmp_path, mesh, SHARDING_RULES)
    assert encoder.cfg.pixel_mean == (0.4, 0.45, 0.5)
    if mesh_shape != (1, 1):  # streamed straight into shards
        kernel = encoder.blocks.blocks.mlp.fc1.kernel.get_value()
        assert kernel.sharding.spec == jax.P(None, "fsdp", "tensor")

    pixels = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    taps = (0, 1, 2)
    ours = encoder(jax.numpy.asarray(pixels), taps)
    theirs, last = hf_hidden_states(model, pixels, **_stats(statistics))
    skip = 1 if name == "clip" else 0  # CLIP's class token is not returned
    for tap in taps[:-1]:
        np.testing.assert_allclose(ours[tap], theirs[tap + 1][:, skip:], atol=1e-4)
    # The last block: SigLIP's tokens are post-layernormed (last_hidden_state), CLIP's are not
    # (its post_layernorm pools the class token only).
    expected = last if name == "siglip" else theirs[-1][:, skip:]
    np.testing.assert_allclose(ours[taps[-1]], expected, atol=1e-4)


def _stats(processor):
    return {"mean": processor["image_mean"], "std": processor["image_std"]}


def test_settings_follow_config_json(tmp_path):
    save_tower(tmp_path, "clip")
    settings, image_size = hf_vision.vision_settings(tmp_path)
    assert image_size == 32
    assert settings["activation"] == "quick_gelu" and settings["class_token"]
    assert settings["norm_eps"] == 1e-5
    # No preprocessor_config.json: CLIP's own statistics.
    assert settings["pixel_mean"][0] == pytest.approx(0.48145466)


def test_unsupported_activation_names_the_key(tmp_path):
    save_tower(tmp_path, "clip")
    config = json.loads((tmp_path / "config.json").read_text())
    config["hidden_act"] = "relu"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json: hidden_act='relu' is not supported"):
        hf_vision.vision_settings(tmp_path)


def test_missing_and_misshapen_tensors_are_listed(tmp_path):
    from safetensors.numpy import load_file, save_file

    save_tower(tmp_path, "siglip")
    tensors = load_file(tmp_path / "model.safetensors")
    names = sorted(tensors)
    dropped = next(n for n in names if n.endswith("layers.1.mlp.fc2.bias"))
    del tensors[dropped]
    squashed = next(n for n in names if n.endswith("layers.0.self_attn.q_proj.weight"))
    tensors[squashed] = tensors[squashed][:, :16]
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    mesh = make_mesh({"data": 1, "fsdp": 1, "expert": 1, "tensor": 1}, jax.devices()[:1])
    with pytest.raises(ValueError) as info:
        hf_vision.load_vision_tower(tmp_path, mesh, SHARDING_RULES)
    message = str(info.value)
    assert f"missing tensors: {dropped}" in message
    assert f"{squashed} has shape (32, 16)" in message
