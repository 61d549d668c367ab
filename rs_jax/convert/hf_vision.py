"""Hugging Face CLIP and SigLIP vision towers -> `models.vision.VisionEncoder`.

From a local folder: a CLIP or SigLIP vision model, a full CLIP / SigLIP model (its
`vision_config` and vision tensors) or a LLaVA folder (its vision tower). `vision_settings`
derives the `config.model.vision` values and the image size from `config.json` (and the
pixel statistics from `preprocessor_config.json`). CLIP's class token attends with the
patches and is dropped from the returned tokens, as LLaVA does; its `post_layernorm`
applies only to the pooled class token, so it is not part of the tower's tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from rs_jax.convert import weights
from rs_jax.models.config import Precision, StackConfig, VisionConfig
from rs_jax.models.vision import VisionEncoder

# config.json model_type -> what differs between the towers (config.model.vision keys).
TOWERS = {
    "clip_vision_model": dict(class_token=True, pre_norm=True, final_norm=False, patch_bias=False),
    "siglip_vision_model": dict(
        class_token=False, pre_norm=False, final_norm=True, patch_bias=True
    ),
}
ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
# config.model.vision key <-> config.json key, for the values that carry over unchanged.
SAME_VALUES = (
    ("patch_size", "patch_size"),
    ("width", "hidden_size"),
    ("depth", "num_hidden_layers"),
    ("num_heads", "num_attention_heads"),
    ("mlp_dim", "intermediate_size"),
    ("norm_eps", "layer_norm_eps"),
)


def _pixel_statistics(folder: Path, model_type: str) -> tuple[list, list]:
    from transformers.image_utils import (
        IMAGENET_STANDARD_MEAN,
        IMAGENET_STANDARD_STD,
        OPENAI_CLIP_MEAN,
        OPENAI_CLIP_STD,
    )

    path = folder / "preprocessor_config.json"
    if path.exists():
        processor = json.loads(path.read_text())
        if "image_mean" in processor and "image_std" in processor:
            return list(processor["image_mean"]), list(processor["image_std"])
    if model_type == "clip_vision_model":
        return list(OPENAI_CLIP_MEAN), list(OPENAI_CLIP_STD)
    return list(IMAGENET_STANDARD_MEAN), list(IMAGENET_STANDARD_STD)


def vision_settings(folder: str | Path) -> tuple[dict[str, Any], int]:
    """(`config.model.vision` values, the image size the tower was trained at) of `folder`;
    ValueError naming the config.json key of anything the ViT does not support."""
    folder = Path(folder)
    hf = weights.read_hf_config(folder, "vision_config")
    weights.check_fits(hf.model_type, "model_type", tuple(TOWERS), folder)
    weights.check_fits(hf.hidden_act, "hidden_act", tuple(ACTIVATIONS), folder)
    weights.check_fits(hf.num_channels, "num_channels", (3,), folder)
    mean, std = _pixel_statistics(folder, hf.model_type)
    settings = dict(
        {ours: getattr(hf, theirs) for ours, theirs in SAME_VALUES},
        activation=ACTIVATIONS[hf.hidden_act],
        pixel_mean=tuple(mean),
        pixel_std=tuple(std),
        **TOWERS[hf.model_type],
    )
    return settings, hf.image_size


def weight_map(cfg: VisionConfig, prefix: str) -> dict:
    """Our parameter path -> weights.Source."""
    d, n, p = cfg.width, cfg.num_heads, cfg.patch_size
    h = d // n
    embeddings = f"{prefix}embeddings."
    mapping = {
        ("patch_embed", "kernel"): weights.Source(
            f"{embeddings}patch_embedding.weight", weights.conv_patches(p, 3, d)
        ),
        ("position_embed",): weights.Source(f"{embeddings}position_embedding.weight"),
    }
    if cfg.patch_bias:
        mapping[("patch_embed", "bias")] = weights.Source(f"{embeddings}patch_embedding.bias")
    if cfg.class_token:
        mapping[("class_embed",)] = weights.Source(f"{embeddings}class_embedding")

    def norm(ours: tuple, names) -> dict:
        """names(leaf) -> the LayerNorm's tensor name(s) for 'weight' / 'bias'."""
        return {
            (*ours, "scale"): weights.Source(names("weight")),
            (*ours, "bias"): weights.Source(names("bias")),
        }

    if cfg.pre_norm:
        mapping.update(norm(("pre_norm",), lambda leaf: f"{prefix}pre_layrnorm.{leaf}"))
    if cfg.final_norm:
        mapping.update(norm(("norm",), lambda leaf: f"{prefix}post_layernorm.{leaf}"))

    def layers(name: str) -> tuple[str, ...]:
        return tuple(f"{prefix}encoder.layers.{i}.{name}" for i in range(cfg.depth))

    block = ("blocks", "blocks")
    for ours, theirs in (("query", "q"), ("key", "k"), ("value", "v")):
        attn = f"self_attn.{theirs}_proj"
        mapping[(*block, "attn", ours, "kernel")] = weights.Source(
            layers(f"{attn}.weight"), weights.split_heads(d, n, h)
        )
        mapping[(*block, "attn", ours, "bias")] = weights.Source(
            layers(f"{attn}.bias"), weights.bias_heads(n, h)
        )
    mapping[(*block, "attn", "out", "kernel")] = weights.Source(
        layers("self_attn.out_proj.weight"), weights.merge_heads(n, h, d)
    )
    mapping[(*block, "attn", "out", "bias")] = weights.Source(layers("self_attn.out_proj.bias"))
    mapping.update(norm((*block, "attn_norm"), lambda leaf: layers(f"layer_norm1.{leaf}")))
    mapping.update(norm((*block, "mlp_norm"), lambda leaf: layers(f"layer_norm2.{leaf}")))
    for fc in ("fc1", "fc2"):
        mapping[(*block, "mlp", fc, "kernel")] = weights.Source(
            layers(f"mlp.{fc}.weight"), weights.TRANSPOSED
        )
        mapping[(*block, "mlp", fc, "bias")] = weights.Source(layers(f"mlp.{fc}.bias"))
    return mapping


def load_weights(encoder: VisionEncoder, folder: str | Path) -> None:
    """Sets every parameter of `encoder` from `folder`, streamed onto their shardings."""
    checkpoint = weights.Checkpoint(folder)
    anchor = "embeddings.patch_embedding.weight"
    prefix = weights.find_prefix(checkpoint.names, anchor, "vision tower", checkpoint.folder)
    # Not part of the tower's tokens: the position-id buffer, SigLIP's pooling head and, where
    # the last block is not normed (CLIP), the norm that only pools the class token.
    unused = ("embeddings.position_ids", "head.")
    if not encoder.cfg.final_norm:
        unused += ("post_layernorm.",)
    weights.load_into(
        encoder,
        weight_map(encoder.cfg, prefix),
        checkpoint,
        what="vision tower",
        owned=lambda name: name.startswith(prefix),
        ignored=lambda name: name[len(prefix) :].startswith(unused),
    )


def load_vision_tower(
    folder: str | Path,
    mesh: jax.sharding.Mesh,
    rules: Sequence[tuple],
) -> VisionEncoder:
    """A `VisionEncoder` holding `folder`'s weights, sharded on `mesh` by the `rules`."""
    settings, image_size = vision_settings(folder)
    cfg = VisionConfig.from_config(settings, image_size)
    make = lambda: VisionEncoder(cfg, Precision(), StackConfig(), rngs=nnx.Rngs(0))
    return weights.load_abstract(make, lambda encoder: load_weights(encoder, folder), mesh, rules)


def export_vision_tower(encoder: VisionEncoder, folder: str | Path, *, dtype: Any = None) -> None:
    """Writes `encoder` as a transformers CLIP (with a class token) or SigLIP vision folder
    that `AutoModel.from_pretrained` loads, with its pixel statistics in
    `preprocessor_config.json`. CLIP's `post_layernorm` (which only pools the class token,
    and which the import leaves out) is written as the identity; SigLIP's pooling head is
    switched off. `folder` must not hold a model already."""
    import transformers

    cfg = encoder.cfg
    folder = Path(folder)
    if (folder / "config.json").exists():
        raise FileExistsError(f"{folder} already holds a model (config.json); choose another")
    model_type = "clip_vision_model" if cfg.class_token else "siglip_vision_model"
    if any(getattr(cfg, k) != v for k, v in TOWERS[model_type].items()):
        raise ValueError(f"this ViT ({cfg}) is neither a CLIP nor a SigLIP vision tower")
    activation = {ours: theirs for theirs, ours in ACTIVATIONS.items()}[cfg.activation]
    settings = dict(
        {theirs: getattr(cfg, ours) for ours, theirs in SAME_VALUES},
        image_size=cfg.image_size,
        hidden_act=activation,
    )
    if model_type == "clip_vision_model":
        config = transformers.CLIPVisionConfig(**settings)
    else:
        config = transformers.SiglipVisionConfig(**settings, vision_use_head=False)
    prefix = "vision_model."
    extra = {}
    if model_type == "clip_vision_model":
        extra = {
            f"{prefix}post_layernorm.weight": np.ones(cfg.width, np.float32),
            f"{prefix}post_layernorm.bias": np.zeros(cfg.width, np.float32),
        }
    weights.export_from(encoder, weight_map(cfg, prefix), folder, dtype=dtype, extra=extra)
    config.save_pretrained(folder)
    processor = {"image_mean": list(cfg.pixel_mean), "image_std": list(cfg.pixel_std)}
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
