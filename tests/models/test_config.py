"""ModelConfig: typed module configs from config.model, with errors naming the key."""

import dataclasses

import jax.numpy as jnp
import ml_collections
import pytest

from rs_jax.models.config import (
    DecoderConfig,
    KnowledgeConfig,
    LevelConfig,
    Lora,
    ModelConfig,
    Precision,
    Rope,
    StackConfig,
    model_defaults,
)
from tests.models.conftest import model_config, tiny_config


def test_tiny_config_becomes_typed_module_configs():
    cfg = model_config(tiny_config())
    assert cfg.levels == (
        LevelConfig(name="scene", block=2, grid=1, kb_level="scene"),
        LevelConfig(name="landcover", block=1, grid=2, kb_level="landcover"),
        LevelConfig(name="object", block=0, grid=4, kb_level="object"),
    )
    assert cfg.level_names == ("scene", "landcover", "object")
    assert cfg.experts.num_levels == 3 and cfg.experts.num_experts == 6
    assert cfg.precision.dtype == jnp.float32 and cfg.stack.scan
    assert cfg.llm.vocab_size == 64  # resolved against the tokenizer


def test_levels_set_the_number_of_levels_and_their_kb_level():
    four = model_config(tiny_config("levels4"))
    assert four.level_names == ("scene", "landcover", "parcel", "object")
    assert four.kb_levels == ("scene", "landcover", "landcover", "object")
    assert four.experts.num_levels == 4
    assert model_config(tiny_config("levels2")).level_names == ("scene", "object")
    negative = tiny_config()
    negative.model.levels = (("scene", -1, 1),)
    assert model_config(negative).levels[0].block == 2  # counted from the end, like Python


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("experts.top_k", 3, "experts.top_k=3: exceeds experts_per_level=2"),
        ("experts.dispatch", "scatter", "experts.dispatch='scatter': expected one of"),
        ("experts.router_jitter", 1.5, "experts.router_jitter=1.5: must be in"),
        ("levels", (("scene", 7, 1),), r"levels\[0\]=.*block 7 is outside the ViT's 3 blocks"),
        ("levels", (("scene", 2, 3),), r"levels\[0\]=.*divide the ViT's 4x4 patch grid"),
        ("levels", (("scene", 2),), r"levels\[0\]=.*\(name, block, grid\[, kb_level\]\)"),
        ("levels", (("a", 2, 1), ("a", 1, 2)), "levels=.*level names must be unique"),
        ("levels", (), "levels=\\(\\): a tuple of"),
        ("vision.patch_size", 5, "vision.patch_size=5: must divide config.data.image_size=16"),
        ("dtype", "float16", "dtype='float16': expected one of \\['float32', 'bfloat16'\\]"),
        ("param_dtype", "int8", "param_dtype='int8'"),
        ("remat_policy", "some", "remat_policy='some': expected one of"),
        ("llm.num_kv_heads", 3, "llm.num_kv_heads=3: must divide llm.num_heads=4"),
        ("llm.moe_every", 3, "llm.moe_every=3: must be 0 or divide llm.depth=2"),
        ("llm.vocab_size", -1, "llm.vocab_size=-1: must be >= 0"),
        ("kb.top_k", 0, "kb.top_k=0: must be >= 1"),
        ("augment.num_heads", 3, "augment.num_heads=3: must divide vision.width=32"),
    ],
)
def test_out_of_range_values_name_their_key(key, value, message):
    config = tiny_config()
    *parents, leaf = key.split(".")
    node = config.model
    for part in parents:
        node = node[part]
    with node.unlocked():
        node[leaf] = value
    with pytest.raises(ValueError, match=f"config.model.{message}"):
        ModelConfig.from_config(config.model, config.data.image_size)


def test_vocab_smaller_than_the_tokenizer_is_an_error():
    config = tiny_config()
    config.model.llm.vocab_size = 32
    cfg = ModelConfig.from_config(config.model, config.data.image_size)
    assert cfg.with_vocab(30).llm.vocab_size == 32  # padded table
    with pytest.raises(ValueError, match="llm.vocab_size=32: smaller than the tokenizer's 64"):
        cfg.with_vocab(64)


def test_config_model_is_laid_out_from_the_dataclasses():
    config = tiny_config()
    cfg = ModelConfig.from_config(ml_collections.ConfigDict(model_defaults()), 32)
    assert cfg.llm == DecoderConfig() and cfg.kb == KnowledgeConfig()
    assert cfg.stack == StackConfig() and cfg.precision == Precision()
    assert cfg.levels[0] == LevelConfig(name="scene", block=3, grid=1, kb_level="scene")
    # A section written back from its dataclass reads as the same dataclass.
    llm = DecoderConfig.from_config(config.model.llm)
    assert llm.rope == Rope(theta=10_000.0) and llm.width == 32
    assert DecoderConfig.from_config(llm.to_config()) == llm
    scaled = dataclasses.replace(llm, rope=Rope(theta=5e5, scaling="llama3", factor=8.0))
    assert DecoderConfig.from_config(scaled.to_config()) == scaled


def test_a_key_no_dataclass_reads_is_an_error():
    config = tiny_config()
    with config.model.experts.unlocked():
        config.model.experts.num_experts = 4
    with pytest.raises(ValueError, match=r"config\.model\.experts\.num_experts is no model"):
        ModelConfig.from_config(config.model, config.data.image_size)


def test_configs_are_built_by_keyword_and_checked_when_built():
    with pytest.raises(TypeError):
        Lora(4, 8.0)  # positional
    with pytest.raises(ValueError, match=r"config\.model\.llm\.width=0: must be >= 1"):
        DecoderConfig(width=0)
    with pytest.raises(ValueError, match=r"config\.model\.llm\.rope_scaling\.type='ntk'"):
        Rope(scaling="ntk")
    llm = DecoderConfig()
    with pytest.raises(ValueError, match=r"config\.model\.llm\.num_kv_heads=3: must divide"):
        dataclasses.replace(llm, num_kv_heads=3)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(retrieval="cloud"), r"kb\.retrieval='cloud': expected one of \['device', 'host'\]"),
        (dict(retrieval="host"), r"retrieval='host'.*set config\.model\.kb\.source"),
    ],
)
def test_retrieval_mode_is_checked_with_the_model(changes, message):
    config = tiny_config()
    config.model.kb.update(changes)
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_config(config.model, config.data.image_size)
    config.model.baseline = True  # no retrieval at all: host mode needs no built KB
    if changes["retrieval"] == "host":
        assert ModelConfig.from_config(config.model, config.data.image_size).baseline
