"""The pretrained-tower presets (configs/geochat_like.py, configs/qwen2_siglip.py) at tiny
random size: they build on their kind of towers, set LLaVA's stages, and refuse the other
kind of folder naming the key."""

from pathlib import Path

import pytest
import torch
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from rs_jax.config_files import load_config
from rs_jax.train import experiment as experiment_lib
from tests.chat_tokenizers import make_tokenizer

REPO = Path(__file__).resolve().parents[2]
VISION = dict(
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=3,
    num_attention_heads=2,
    image_size=16,
    patch_size=4,
)
DECODER = dict(
    vocab_size=30_528,  # >= the tokenizer saved into the decoder folders (padded, as many are)
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)
MODELS = {
    "clip": lambda: CLIPVisionModel(CLIPVisionConfig(**VISION)),
    "siglip": lambda: SiglipVisionModel(SiglipVisionConfig(**VISION)),
    "llama": lambda: LlamaForCausalLM(LlamaConfig(**DECODER)),
    "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**DECODER)),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("presets")
    torch.manual_seed(0)
    for name, make in MODELS.items():
        make().save_pretrained(root / name)
    # The decoder folders bring tokenizers with their special tokens.
    make_tokenizer("llama2", root / "llama")
    make_tokenizer("qwen2", root / "qwen2")
    return root


def preset(tmp_path, name, arg, vision, llm, **extra):
    values = {
        "data.data_dir": tmp_path / "data",
        "init.vision": vision,
        "init.llm": llm,
        **extra,
    }
    overrides = [f"{k}={v}" for k, v in values.items()]
    return load_config(str(REPO / f"configs/{name}.py:{arg}"), overrides)


@pytest.mark.parametrize(
    "name, vision, llm, stop",
    [("geochat_like", "clip", "llama", "</s>"), ("qwen2_siglip", "siglip", "qwen2", "<|im_end|>")],
)
def test_tiny_preset_builds_on_its_towers(tmp_path, folders, name, vision, llm, stop):
    config = preset(tmp_path, name, "tiny,stage2,lora", folders / vision, folders / llm)
    exp = experiment_lib.setup(config, str(tmp_path / "work"))
    assert exp.model_config.llm.lora.rank == 4
    assert tuple(exp.config.train.freeze) == ("vision", "llm")
    assert exp.config.data.tokenizer == str(folders / llm)  # the decoder folder's tokenizer
    # Its conversation format: the stop token ends answers and generation.
    assert exp.data.eos_id == exp.data.tokenizer.convert_tokens_to_ids(stop)
    assert len(exp.data.encoder.prefix_ids) > 0
    assert [level.block for level in exp.model_config.levels] == [2, 1, 0]


def test_preset_refuses_another_kind_of_tower(tmp_path, folders):
    config = preset(tmp_path, "geochat_like", "tiny,stage1", folders / "siglip", folders / "llama")
    with pytest.raises(ValueError, match=r"holds a siglip_vision_model; .*clip_vision_model "):
        experiment_lib.setup(config, str(tmp_path / "work"))
    config = preset(tmp_path, "qwen2_siglip", "tiny,stage1", folders / "siglip", folders / "llama")
    with pytest.raises(ValueError, match=r"config.init.llm=.* holds a llama; .*qwen2"):
        experiment_lib.setup(config, str(tmp_path / "work"))


def test_stage_variants_exclude_each_other():
    with pytest.raises(ValueError, match="one of the variants stage1 and stage2"):
        load_config(str(REPO / "configs/geochat_like.py:stage1,stage2"))
