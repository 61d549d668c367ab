import jax.numpy as jnp
import numpy as np
import pytest

from rs_jax.eval.generation import greedy_generate
from rs_jax.models import build_model
from tests.models.conftest import KB_LEVELS, VOCAB, random_batch, tiny_config


@pytest.mark.parametrize("baseline, moe_every", [(False, 0), (True, 0), (False, 1)])
def test_kv_cache_generation_equals_full_recompute(baseline, moe_every, single_device_mesh):
    config = tiny_config(baseline)
    config.model.llm.moe_every = moe_every  # visual-token MoE in the LLM: prefill only
    model = build_model(config, VOCAB, KB_LEVELS, single_device_mesh)
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
    model = build_model(tiny_config(), VOCAB, KB_LEVELS, single_device_mesh)
    batch = random_batch(seed=3)
    prompt = (jnp.asarray(batch["prompt_ids"]), jnp.asarray(batch["prompt_mask"]))
    args = (model.encode(jnp.asarray(batch["image"]), *prompt).tokens, *prompt)
    free = np.asarray(greedy_generate(model, *args, max_new_tokens=5, eos_id=-1, pad_id=0))
    eos = int(free[0, 1])  # make the second generated token of row 0 the eos
    stopped = np.asarray(greedy_generate(model, *args, max_new_tokens=5, eos_id=eos, pad_id=0))
    first_eos = np.argmax(free[0] == eos)
    np.testing.assert_array_equal(stopped[0, : first_eos + 1], free[0, : first_eos + 1])
    assert (stopped[0, first_eos + 1 :] == 0).all()
