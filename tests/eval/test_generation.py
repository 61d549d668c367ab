import jax.numpy as jnp
import numpy as np
import pytest

from rs_jax.eval.generation import greedy_generate
from tests.models.conftest import make_model, random_batch, tiny_config


@pytest.mark.parametrize(
    "arg, overrides",
    [
        (None, {}),
        ("baseline", {}),
        (None, {"llm.moe_every": 1}),  # visual-token MoE in the LLM: prefill only
        ("baseline", {"llm.tie_embeddings": False, "dtype": "bfloat16"}),
        (None, {"scan_layers": False}),
    ],
)
def test_kv_cache_generation_equals_full_recompute(arg, overrides, single_device_mesh):
    config = tiny_config(arg)
    for key, value in overrides.items():
        section, _, leaf = key.rpartition(".")
        (config.model[section] if section else config.model)[leaf] = value
    model = make_model(config, single_device_mesh)
    batch = random_batch(seed=3)
    prompt = (jnp.asarray(batch["prompt_ids"]), jnp.asarray(batch["prompt_mask"]))
    args = (model.encode(jnp.asarray(batch["image"]), *prompt).tokens, *prompt)
    kwargs = dict(max_new_tokens=7, eos_id=-1, pad_id=0)
    cached = np.asarray(greedy_generate(model, *args, use_cache=True, **kwargs))
    full = np.asarray(greedy_generate(model, *args, use_cache=False, **kwargs))
    np.testing.assert_array_equal(cached, full)
    assert cached.shape == (8, 7)
    assert len(np.unique(cached)) > 1  # a degenerate constant output would prove nothing


def test_tokens_after_eos_become_padding(single_device_mesh):
    model = make_model(tiny_config(), single_device_mesh)
    batch = random_batch(seed=3)
    prompt = (jnp.asarray(batch["prompt_ids"]), jnp.asarray(batch["prompt_mask"]))
    args = (model.encode(jnp.asarray(batch["image"]), *prompt).tokens, *prompt)
    free = np.asarray(greedy_generate(model, *args, max_new_tokens=5, eos_id=-1, pad_id=0))
    eos = int(free[0, 1])  # make the second generated token of row 0 the eos
    stopped = np.asarray(greedy_generate(model, *args, max_new_tokens=5, eos_id=eos, pad_id=0))
    first_eos = np.argmax(free[0] == eos)
    np.testing.assert_array_equal(stopped[0, : first_eos + 1], free[0, : first_eos + 1])
    assert (stopped[0, first_eos + 1 :] == 0).all()
