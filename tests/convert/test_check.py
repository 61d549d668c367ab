"""`rs-jax convert check`: both implementations on one folder, the difference printed."""

from rs_jax import cli
from rs_jax.convert import check
from tests.convert.test_hf_decoder import save_decoder
from tests.convert.test_hf_vision import save_tower


def test_decoder_and_vision_folders_agree(tmp_path, capsys):
    save_decoder(tmp_path / "llama", "llama")
    save_tower(tmp_path / "clip", "clip")
    assert cli.main(["convert", "check", "--hf", str(tmp_path / "llama")]) == 0
    assert cli.main(["convert", "check", "--hf", str(tmp_path / "clip")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "decoder logits: max |rs-jax - transformers| = " in out[0] and out[0].endswith("(ok)")
    assert "vision tower hidden states" in out[1] and out[1].endswith("(ok)")


def test_a_difference_above_tolerance_fails(tmp_path, capsys, monkeypatch):
    save_decoder(tmp_path, "qwen2")
    monkeypatch.setattr(check, "TOLERANCE", 0.0)
    assert cli.main(["convert", "check", "--hf", str(tmp_path)]) == 1
    assert capsys.readouterr().out.strip().endswith("(MISMATCH)")


def test_not_a_model_folder(tmp_path, capsys):
    assert cli.main(["convert", "check", "--hf", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_unsupported_model_type(tmp_path, capsys):
    from transformers import GPT2Config

    GPT2Config().save_pretrained(tmp_path)
    assert cli.main(["convert", "check", "--hf", str(tmp_path)]) == 2
    assert "model_type='gpt2'" in capsys.readouterr().err


def test_nan_weights_fail(tmp_path, capsys):
    """A NaN difference compares false with the tolerance both ways: it must fail."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    save_decoder(tmp_path, "llama")
    (weights,) = tmp_path.glob("*.safetensors")
    tensors = load_file(weights)
    name = next(k for k in tensors if k.endswith("embed_tokens.weight"))
    tensors[name] = np.full_like(tensors[name], np.nan)
    save_file(tensors, weights, metadata={"format": "pt"})
    assert cli.main(["convert", "check", "--hf", str(tmp_path)]) == 1
    assert capsys.readouterr().out.strip().endswith("(NOT FINITE)")
