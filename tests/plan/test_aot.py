"""`rs-jax compile`: tiny models compiled for TPU slices by libtpu's compiler, no TPU."""

import json
from pathlib import Path

import pytest

from rs_jax import cli
from rs_jax.config_files import ConfigError, load_config
from rs_jax.models import flops
from rs_jax.models.config import ModelConfig
from rs_jax.plan import aot

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs/tiny.py")
# Expert parallel over 4 chips with the dropless exchange, which XLA:CPU cannot run.
MOE_EP = str(REPO / "configs/moe_ep.py") + ":dispatch=dropless"
KEYS = {
    "topology",
    "chips",
    "per_chip_bytes",
    "hbm_bytes",
    "fits",
    "compile_s",
    "kernels",
    "model_flops_per_step",
    "step_s_at_50pct_mfu",
}


@pytest.mark.parametrize(
    "text, name, chips",
    [
        ("v5p:4x4x4", "v5p:4x4x4", 64),
        ("v5p-128", "v5p:4x4x4", 64),  # TensorCores, two a chip
        ("v5p-8", "v5p:2x2x1", 4),
        ("v4-32", "v4:2x2x4", 16),
        ("v5litepod-16", "v5e:4x4", 16),
        ("v5e-8", "v5e:2x4", 8),
        ("v6e-256", "v6e:16x16", 256),
        ("v6e:4x4", "v6e:4x4", 16),
    ],
)
def test_topologies_by_chip_shape_or_cloud_type(text, name, chips):
    topology = aot.parse_topology(text)
    assert (topology.name, topology.chips) == (name, chips)


@pytest.mark.parametrize(
    "text, message",
    [
        ("v7x:2x2", r"unknown TPU chip 'v7x'"),
        ("v5p:4x4", r"a v5p slice is v5p:NxNxN chips"),
        ("v5p-6", r"6 is not a v5p slice size"),
        ("tpu", r"expected a chip topology such as v5p:4x4x4"),
    ],
)
def test_a_bad_topology_names_what_is_expected(text, message):
    with pytest.raises(ConfigError, match=message):
        aot.parse_topology(text)


def run(capsys, *argv):
    code = cli.main(["compile", "--config", *argv, "--config.model.llm.vocab_size=256"])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_train_step_compiles_for_a_tpu_slice(capsys, tmp_path):
    """The expert-parallel model's train step for a v5p slice: memory, FLOPs, the splash
    attention kernel, and the dropless MoE's ragged all-to-all exchange and grouped matmuls."""
    code, out, err = run(capsys, MOE_EP, "--topology", "v5p-8", "--json", "--dump", str(tmp_path))
    assert code == 0, err
    result = json.loads(out)
    assert set(result) == KEYS
    assert result["topology"] == "v5p:2x2x1" and result["chips"] == 4 and result["fits"]
    memory = result["per_chip_bytes"]
    assert memory["total"] > memory["temporaries"] > 0 and memory["arguments"] > 0
    assert result["hbm_bytes"] == 95 * 1024**3
    # FLOPs from the config, not from XLA (which counts a scanned block once).
    config = load_config(MOE_EP, ["model.llm.vocab_size=256"])
    model = ModelConfig.from_config(config.model, config.data.image_size).with_vocab(256)
    text = config.data.max_prompt_len + config.data.max_answer_len
    per_example = flops.train_flops_per_example(model, text, config.data.max_answer_len)
    assert result["model_flops_per_step"] == pytest.approx(per_example * config.data.batch_size)
    assert result["step_s_at_50pct_mfu"] == pytest.approx(
        result["model_flops_per_step"] / (0.5 * 4 * 459e12)
    )
    # Pallas kernels on TPU: splash attention (config.model.attention=auto), forward and
    # backward, and Megablox's grouped matmuls of the dropless MoE.
    kernels = {"splash_mha_fwd_segmented_residuals", "splash_mha_dkv_segmented_no_residuals"}
    assert kernels | {"gmm", "tgmm"} <= set(result["kernels"])
    hlo = (tmp_path / "train.optimized.hlo.txt").read_text()
    assert "HloModule" in hlo
    assert "ragged-all-to-all" in hlo


def test_a_step_that_does_not_fit_exits_1_naming_the_knobs(capsys):
    code, out, err = run(capsys, f"{TINY}:baseline", "--topology", "v5e:2x2", "--batch", "1048576")
    assert code == 1
    assert "fits         NO" in out
    (line,) = err.strip().splitlines()
    assert "per chip, more than the 16.0 GiB of HBM on v5e:2x2" in line
    assert "config.model.remat_policy=full" in line and "config.mesh.fsdp" in line
