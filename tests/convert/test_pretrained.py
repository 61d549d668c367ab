"""config.init.vision / config.init.llm: the full model starts from HF CLIP and LLaMA folders
(their architecture, their weights, equal outputs inside the model) and trains from there."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from rs_jax import cli
from rs_jax.config import load_config
from rs_jax.train import experiment as experiment_lib
from rs_jax.train import trainer
from rs_jax.train.checkpointing import Checkpointer

REPO = Path(__file__).resolve().parents[2]
MINILM_VOCAB = 30_522  # the packaged tokenizer the test decoder is paired with


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    root = tmp_path_factory.mktemp("towers")
    torch.manual_seed(0)
    clip = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=24,
            intermediate_size=48,
            num_hidden_layers=3,
            num_attention_heads=2,
            image_size=16,
            patch_size=4,
        )
    ).eval()
    clip.save_pretrained(root / "clip")
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=MINILM_VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            attn_implementation="eager",
        )
    ).eval()
    llama.save_pretrained(root / "llama")
    return root, llama


def config_for(tmp_path, root, arg="", **extra):
    values = {
        "data.data_dir": tmp_path / "data",
        "data.tokenizer": "minilm",
        "init.vision": root / "clip",
        "init.llm": root / "llama",
        **extra,
    }
    return load_config(str(REPO / f"configs/tiny.py{arg}"), [f"{k}={v}" for k, v in values.items()])


@pytest.mark.parametrize("arg", ["", ":baseline"])
def test_full_model_holds_the_pretrained_towers(tmp_path, towers, arg):
    root, llama = towers
    exp = experiment_lib.setup(config_for(tmp_path, root, arg), str(tmp_path / "work"))
    # The towers' architecture came from their config.json, not from configs/tiny.py.
    assert exp.config.model.vision.width == 24 and exp.config.model.vision.class_token
    assert exp.model_config.llm.vocab_size == MINILM_VOCAB
    model = nnx.merge(exp.graphdef, exp.state["params"])
    ids = np.random.default_rng(0).integers(0, MINILM_VOCAB, (2, 8))
    with jax.set_mesh(exp.mesh):
        hidden, _, _ = model.llm(model.llm.embed(jnp.asarray(ids)), jnp.ones((2, 8), bool))
        ours = np.asarray(model.llm.logits(hidden))
    with torch.no_grad():
        theirs = llama(input_ids=torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_train_then_export_to_transformers(tmp_path, towers, capsys):
    """Towers in -> train -> `rs-jax convert orbax-to-hf` -> transformers loads the decoder
    and its tokenizer, and computes the trained model's logits."""
    root, _ = towers
    overrides = {"train.steps": 4, "train.checkpoint_every": 4}
    config = config_for(tmp_path, root, **overrides)
    trainer.train(config, str(tmp_path / "work"))
    recorded = json.loads((tmp_path / "work" / "config.json").read_text())
    assert recorded["model"]["vision"]["activation"] == "quick_gelu"
    assert recorded["model"]["llm"]["vocab_size"] == MINILM_VOCAB

    values = {
        "data.data_dir": tmp_path / "data",
        "data.tokenizer": "minilm",
        "init.vision": root / "clip",
        "init.llm": root / "llama",
        **overrides,
    }
    command = ["convert", "orbax-to-hf", "--config", str(REPO / "configs/tiny.py")]
    command += ["--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "hf")]
    command += [f"--config.{k}={v}" for k, v in values.items()]
    assert cli.main(command) == 0
    assert "Wrote" in capsys.readouterr().out

    exp = experiment_lib.setup(config, str(tmp_path / "work"))
    checkpointer = Checkpointer(str(tmp_path / "work"))
    params = checkpointer.restore(4, exp.abstract_state())["params"]
    checkpointer.close()
    trained = nnx.merge(exp.graphdef, params)
    exported = AutoModelForCausalLM.from_pretrained(
        tmp_path / "hf" / "llm", dtype=torch.float32, attn_implementation="eager"
    ).eval()
    text = "how many buildings are there"
    ids = AutoTokenizer.from_pretrained(tmp_path / "hf" / "llm")(text, return_tensors="np")
    ids = ids["input_ids"]
    with jax.set_mesh(exp.mesh):
        hidden, _, _ = trained.llm(trained.llm.embed(jnp.asarray(ids)), jnp.ones(ids.shape, bool))
        ours = np.asarray(trained.llm.logits(hidden))
    with torch.no_grad():
        theirs = exported(input_ids=torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    # Training moved the decoder away from the imported weights.
    assert not np.allclose(theirs, towers[1](input_ids=torch.from_numpy(ids)).logits.detach())
    assert (tmp_path / "hf" / "vision" / "config.json").exists()
    # The folder given as --out is never written into twice.
    assert cli.main(command) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err


def test_image_size_must_match_the_tower(tmp_path, towers):
    root, _ = towers
    with pytest.raises(ValueError, match=r"config.data.image_size=32: .* trained at 16 px"):
        experiment_lib.setup(
            config_for(tmp_path, root, **{"data.image_size": 32}), str(tmp_path / "w")
        )


def test_missing_folder_names_the_key(tmp_path, towers):
    root, _ = towers
    with pytest.raises(FileNotFoundError, match=r"config.init.llm='.*nowhere': no config.json"):
        experiment_lib.setup(
            config_for(tmp_path, root, **{"init.llm": tmp_path / "nowhere"}), str(tmp_path / "w")
        )
