"""config.init.vision / config.init.llm: the full model starts from HF CLIP and LLaMA folders
(their architecture, their weights, equal outputs inside the model) and trains from there."""

import json
import logging
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
from rs_jax.config_files import load_config
from rs_jax.convert import hf_vision
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
    values = overrides_of(tmp_path, root, **extra)
    return load_config(str(REPO / f"configs/tiny.py{arg}"), [f"{k}={v}" for k, v in values.items()])


@pytest.mark.parametrize("arg", ["", ":baseline"])
def test_full_model_holds_the_pretrained_towers(tmp_path, towers, arg):
    root, llama = towers
    exp = experiment_lib.setup(config_for(tmp_path, root, arg), str(tmp_path / "work"))
    # The towers' architecture came from their config.json, not from configs/tiny.py.
    assert exp.config.model.vision.width == 24 and exp.config.model.vision.class_token
    assert exp.model_config.llm.vocab_size == MINILM_VOCAB
    assert_decoder_is(llama, exp, exp.state["params"])


def assert_decoder_is(llama, exp, params, seed=0):
    """The decoder in `params` computes the HF model's logits on random ids (1e-4)."""
    model = nnx.merge(exp.graphdef, params)
    ids = np.random.default_rng(seed).integers(0, MINILM_VOCAB, (2, 8))
    with jax.set_mesh(exp.mesh):
        hidden, _, _ = model.llm(model.llm.embed(jnp.asarray(ids)), jnp.ones((2, 8), bool))
        ours = np.asarray(model.llm.logits(hidden))
    with torch.no_grad():
        theirs = llama(input_ids=torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


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


def _params(workdir, config, step):
    exp = experiment_lib.setup(config, str(workdir))
    checkpointer = Checkpointer(str(workdir))
    params = checkpointer.restore(step, exp.abstract_state())["params"]
    checkpointer.close()
    return exp, params


def overrides_of(tmp_path, root, **extra):
    return {
        "data.data_dir": tmp_path / "data",
        "data.tokenizer": "minilm",
        "init.vision": root / "clip",
        "init.llm": root / "llama",
        **extra,
    }


def _raise(error: Exception):
    def fail(*args, **kwargs):
        raise error

    return fail


def test_stage1_stage2_lora_then_export(tmp_path, towers, capsys, caplog, monkeypatch):
    """HF CLIP + LLaMA -> stage 1 (towers frozen: no updates, no moments) -> stage 2 from
    stage 1's checkpoint with LoRA on the frozen decoder -> `rs-jax convert orbax-to-hf`
    -> transformers loads the decoder (adapters merged) and its tokenizer and computes the
    trained model's logits. An export that fails half-way leaves --out as it was. LLaVA's
    recipe, on the baseline (LLaVA-1.5): the full model's other parts change none of it."""
    root, llama = towers
    steps = {"train.steps": 2, "train.checkpoint_every": 2, "train.learning_rate": 0.01}
    stage1 = config_for(tmp_path, root, ":baseline", **steps, **{"train.freeze": "vision,llm"})
    trainer.train(stage1, str(tmp_path / "stage1"))
    recorded = json.loads((tmp_path / "stage1" / "config.json").read_text())
    assert recorded["model"]["vision"]["activation"] == "quick_gelu"  # the towers' own
    assert recorded["model"]["llm"]["vocab_size"] == MINILM_VOCAB
    exp1, after1 = _params(tmp_path / "stage1", stage1, 2)
    after1 = dict(nnx.to_flat_state(after1))
    fresh = dict(nnx.to_flat_state(exp1.state["params"]))  # towers as imported
    moved = lambda key: not np.array_equal(after1[key].get_value(), fresh[key].get_value())  # noqa: E731
    towers_keys = [k for k in after1 if k[0] in ("vision", "llm")]
    assert not any(moved(k) for k in towers_keys)
    assert any(moved(k) for k in after1 if k[0] == "projector")
    opt_leaves = jax.tree.leaves(exp1.state["opt_state"])
    moments = sum(x.size for x in opt_leaves if jnp.issubdtype(x.dtype, jnp.floating))
    frozen = sum(after1[k].get_value().size for k in towers_keys)
    total = sum(v.get_value().size for v in after1.values())
    assert moments == 2 * (total - frozen)  # AdamW mu and nu for the trained part only

    # The projector frozen too in stage 2: it must still be stage 1's.
    stage2_extra = {
        **steps,
        "model.llm.lora.rank": 4,
        "init.from_checkpoint": tmp_path / "stage1",
        "train.freeze": "vision,llm,projector",
    }
    stage2 = config_for(tmp_path, root, ":baseline", **stage2_extra)
    with caplog.at_level(logging.WARNING):
        trainer.train(stage2, str(tmp_path / "stage2"))
    # Reading stage 1's parameters logs nothing (Orbax warned of a missing metadata file).
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [m for m in logged if "checkpoints" in m], logged
    exp2, params2 = _params(tmp_path / "stage2", stage2, 2)
    after2 = dict(nnx.to_flat_state(params2))
    for key in [k for k in after1 if k[0] in ("projector", "llm")]:
        np.testing.assert_array_equal(after2[key].get_value(), after1[key].get_value())
    adapters = [k for k in after2 if k[-1] == "lora_b"]
    assert adapters and all(np.abs(after2[k].get_value()).max() > 0 for k in adapters)

    command = ["convert", "orbax-to-hf", "--config", str(REPO / "configs/tiny.py:baseline")]
    command += ["--workdir", str(tmp_path / "stage2"), "--out", str(tmp_path / "hf")]
    stage2_values = overrides_of(tmp_path, root, **stage2_extra)
    command += [f"--config.{k}={v}" for k, v in stage2_values.items()]
    (tmp_path / "hf").mkdir()
    with monkeypatch.context() as patch:  # the decoder is written, then the vision tower fails
        patch.setattr(hf_vision, "export_vision_tower", _raise(OSError("No space left")))
        assert cli.main(command) == 2
    assert "No space left" in capsys.readouterr().err
    assert list(tmp_path.glob("*hf*")) == [tmp_path / "hf"] and not any((tmp_path / "hf").iterdir())
    assert cli.main(command) == 0
    assert "Wrote" in capsys.readouterr().out
    exported = AutoModelForCausalLM.from_pretrained(
        tmp_path / "hf" / "llm", dtype=torch.float32, attn_implementation="eager"
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf" / "llm")
    ids = tokenizer("how many buildings are there", return_tensors="np")["input_ids"]
    trained = nnx.merge(exp2.graphdef, params2)
    with jax.set_mesh(exp2.mesh):
        hidden, _, _ = trained.llm(trained.llm.embed(jnp.asarray(ids)), jnp.ones(ids.shape, bool))
        ours = np.asarray(trained.llm.logits(hidden))
    with torch.no_grad():
        theirs = exported(input_ids=torch.from_numpy(ids)).logits.numpy()
        imported = llama(input_ids=torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert np.abs(theirs - imported).max() > 1e-3  # the adapters changed the decoder
    assert (tmp_path / "hf" / "vision" / "config.json").exists()
    # A folder given as --out is never written into twice.
    assert cli.main(command) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err


def test_hf_to_orbax_writes_the_imported_model_as_step_0(tmp_path, towers, capsys):
    root, llama = towers
    values = overrides_of(tmp_path, root)
    command = ["convert", "hf-to-orbax", "--config", str(REPO / "configs/tiny.py")]
    command += ["--workdir", str(tmp_path / "run")]
    command += [f"--config.{k}={v}" for k, v in values.items()]
    assert cli.main(command) == 0
    assert "Wrote" in capsys.readouterr().out
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["model"]["llm"]["vocab_size"] == MINILM_VOCAB  # the towers' architecture
    exp, params = _params(tmp_path / "run", config_for(tmp_path, root), 0)
    assert_decoder_is(llama, exp, params, seed=1)
    # A workdir holding a run is never written into.
    assert cli.main(command) == 2
    assert "already holds a run" in capsys.readouterr().err
