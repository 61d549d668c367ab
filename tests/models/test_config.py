"""ModelConfig: typed module configs from config.model, with errors naming the key."""

import jax.numpy as jnp
import pytest

from rs_jax.models.config import LevelConfig, ModelConfig
from tests.models.conftest import model_config, tiny_config


def test_tiny_config_becomes_typed_module_configs():
    cfg = model_config(tiny_config())
    assert cfg.levels == (
        LevelConfig("scene", 2, 1, "scene"),
        LevelConfig("landcover", 1, 2, "landcover"),
        LevelConfig("object", 0, 4, "object"),
    )
    assert cfg.level_names == ("scene", "landcover", "object")
    assert cfg.experts.num_levels == 3 and cfg.experts.num_experts == 6
    assert cfg.precision.dtype == jnp.float32 and cfg.layers.scan
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
