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
    batch = {k: jnp.asarray(v) for k, v in random_batch(seed=3).items()}
    args = (model.encode(batch["image"], batch["prompt_ids"], batch["prompt_mask"]).tokens, batch)
    kwargs = dict(max_new_tokens=7, eos_id=-1, pad_id=0)
    cached = np.asarray(greedy_generate(model, *args, use_cache=True, **kwargs))
    full = np.asarray(greedy_generate(model, *args, use_cache=False, **kwargs))
    np.testing.assert_array_equal(cached, full)
    assert cached.shape == (8, 7)
    assert len(np.unique(cached)) > 1  # a degenerate constant output would prove nothing


def test_tokens_after_eos_become_padding(single_device_mesh):
    model = make_model(tiny_config(), single_device_mesh)
    batch = {k: jnp.asarray(v) for k, v in random_batch(seed=3).items()}
    args = (model.encode(batch["image"], batch["prompt_ids"], batch["prompt_mask"]).tokens, batch)
    free = np.asarray(greedy_generate(model, *args, max_new_tokens=5, eos_id=-1, pad_id=0))
    eos = int(free[0, 1])  # make the second generated token of row 0 the eos
    stopped = np.asarray(greedy_generate(model, *args, max_new_tokens=5, eos_id=eos, pad_id=0))
    first_eos = np.argmax(free[0] == eos)
    np.testing.assert_array_equal(stopped[0, : first_eos + 1], free[0, : first_eos + 1])
    assert (stopped[0, first_eos + 1 :] == 0).all()


@pytest.mark.parametrize("arg", [None, "baseline"])
def test_generation_with_template_text_before_the_image_equals_teacher_forcing(
    arg, single_device_mesh
):
    """[text before image; visual; prompt] -> greedy tokens; fed back as the answer, the
    teacher-forced logits of the training path pick the same tokens and equal the logits
    the KV-cache generation computed, step for step."""
    config = tiny_config(arg)
    config.model.llm.moe_every = 1  # visual-token MoE blocks after the text before the image
    model = make_model(config, single_device_mesh)
    batch = random_batch(seed=5)
    batch["prefix_ids"] = np.tile(np.arange(7, 12, dtype=np.int32), (8, 1))
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    visual = model.encode(batch["image"], batch["prompt_ids"], batch["prompt_mask"]).tokens
    kwargs = dict(max_new_tokens=4, eos_id=-1, pad_id=0)
    tokens = greedy_generate(model, visual, batch, use_cache=True, **kwargs)
    full = greedy_generate(model, visual, batch, use_cache=False, **kwargs)
    np.testing.assert_array_equal(np.asarray(tokens), np.asarray(full))
    forced = {**batch, "answer_ids": tokens, "answer_mask": jnp.ones_like(tokens)}
    hidden, _ = model(forced)
    logits = np.asarray(model.llm.logits(hidden))
    np.testing.assert_array_equal(logits.argmax(-1), np.asarray(tokens))
    assert len(np.unique(np.asarray(tokens))) > 1
    np.testing.assert_allclose(cached_logits(model, visual, batch, tokens), logits, atol=1e-5)


def cached_logits(model, visual, batch, tokens):
    """The logits generation sees: a prefill of [text before image; visual; prompt] into
    the KV cache, then one cached decode step per generated token."""
    llm = model.llm
    before, before_mask = model.text_before_image(batch)
    prefix = jnp.concatenate([before, visual, llm.embed(batch["prompt_ids"])], axis=1)
    mask = jnp.concatenate(
        [before_mask, jnp.ones(visual.shape[:2], bool), batch["prompt_mask"] > 0], axis=1
    )
    b, p, _ = prefix.shape
    cache = llm.init_cache(b, p + tokens.shape[1])
    levels, start = model.visual_levels(), before.shape[1]
    hidden, cache, _ = llm(prefix, mask, cache, 0, visual_levels=levels, visual_start=start)
    steps = [llm.logits(hidden[:, -1])]
    for i in range(tokens.shape[1] - 1):
        token = tokens[:, i : i + 1]
        hidden, cache, _ = llm(llm.embed(token), jnp.ones((b, 1), bool), cache, p + i)
        steps.append(llm.logits(hidden[:, -1]))
    return np.asarray(jnp.stack(steps, axis=1))


def test_text_before_the_image_is_text_to_the_decoders_moe(single_device_mesh):
    """The MoE blocks route the visual slots only: the hidden states of the text before
    the image equal those of that text alone (causal attention, the text MLP)."""
    config = tiny_config()
    config.model.llm.moe_every = 1
    model = make_model(config, single_device_mesh)
    batch = random_batch(seed=5)
    prefix = jnp.tile(jnp.arange(7, 12, dtype=jnp.int32), (8, 1))
    visual = model.encode(
        jnp.asarray(batch["image"]), jnp.asarray(batch["prompt_ids"]), batch["prompt_mask"]
    ).tokens
    embeds = jnp.concatenate([model.llm.embed(prefix), visual], axis=1)
    levels = model.visual_levels()
    together, _, _ = model.llm(
        embeds, jnp.ones(embeds.shape[:2], bool), visual_levels=levels, visual_start=5
    )
    alone, _, _ = model.llm(model.llm.embed(prefix), jnp.ones(prefix.shape, bool))
    np.testing.assert_allclose(np.asarray(together[:, :5]), np.asarray(alone), atol=1e-5)
    shifted, _, _ = model.llm(embeds, jnp.ones(embeds.shape[:2], bool), visual_levels=levels)
    assert not np.allclose(np.asarray(shifted[:, :5]), np.asarray(alone), atol=1e-3)
