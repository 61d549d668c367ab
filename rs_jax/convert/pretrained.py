"""Pretrained towers named by a config: `config.init.vision` and `config.init.llm`.

`resolve` writes the towers' architecture (read from their `config.json`) into the config,
so the model is built in their shape and the run's recorded config says what it trained;
`load` then overwrites the freshly built towers with the folders' weights. Everything else
(projector, semantic augmentation, experts, a visual-token MoE) keeps its initialisation.
"""

from __future__ import annotations

import ml_collections
from etils import epath

from rs_jax.convert import hf_decoder, hf_vision
from rs_jax.convert.weights import read_hf_config
from rs_jax.files import local_path
from rs_jax.models.rsvlm import RSVLM


def _folder(config: ml_collections.ConfigDict, key: str) -> epath.Path | None:
    value = config.init[key]
    if not value:
        return None
    # safetensors and transformers read files on this host only.
    folder = local_path(value, f"config.init.{key}").expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"config.init.{key}={value!r}: no config.json there (expected a Hugging Face "
            "model folder: config.json + *.safetensors)"
        )
    part = "vision_config" if key == "vision" else "text_config"
    expected = tuple(config.init[f"{key}_types"])
    model_type = read_hf_config(folder, part).model_type
    if expected and model_type not in expected:
        raise ValueError(
            f"config.init.{key}={value!r} holds a {model_type}; this config is made for "
            f"{' or '.join(expected)} (config.init.{key}_types)"
        )
    return folder


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of `config` whose `model.vision` / `model.llm` are those of the pretrained
    folders (the tokenizer defaults to the decoder's folder); `config` if none is set."""
    vision_folder, llm_folder = _folder(config, "vision"), _folder(config, "llm")
    if vision_folder is None and llm_folder is None:
        return config
    config = ml_collections.ConfigDict(config.to_dict())
    if vision_folder is not None:
        settings, image_size = hf_vision.vision_settings(vision_folder)
        if config.data.image_size != image_size:
            raise ValueError(
                f"config.data.image_size={config.data.image_size}: the vision tower in "
                f"{vision_folder} was trained at {image_size} px (set data.image_size={image_size})"
            )
        config.model.vision.update(settings)
    if llm_folder is not None:
        config.model.llm.update(hf_decoder.llm_settings(llm_folder))
        if not config.data.tokenizer:
            config.data.tokenizer = str(llm_folder)
    return config


def load(model: RSVLM, config: ml_collections.ConfigDict) -> None:
    """Sets the pretrained towers' weights in `model` (built from `resolve(config)`)."""
    vision_folder, llm_folder = _folder(config, "vision"), _folder(config, "llm")
    if vision_folder is not None:
        hf_vision.load_weights(model.vision, vision_folder)
    if llm_folder is not None:
        hf_decoder.load_weights(model.llm, llm_folder)
