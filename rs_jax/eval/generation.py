"""Greedy decoding for the RS VLM, with a KV cache (fast path) or by full recomputation."""

import jax
import jax.numpy as jnp

from rs_jax.models.lvlm import RSVLM


def greedy_generate(
    model: RSVLM,
    visual: jax.Array,
    prompt_ids: jax.Array,
    prompt_mask: jax.Array,
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    use_cache: bool = True,
) -> jax.Array:
    """Greedy answers [B, max_new_tokens]; tokens after the first eos become pad_id.

    visual [B, V, D]: the model's visual tokens (`model.encode(...).tokens`). Both paths
    compute the same tokens; the uncached one re-runs the decoder over the whole sequence
    every step and exists as the reference for the cached one. The LLM's visual-token MoE
    blocks (config.model.llm.moe_every) run in the prefill only: decode steps are text.
    """
    b, v, _ = visual.shape
    prefix = jnp.concatenate([visual, model.llm.embed(prompt_ids)], axis=1)
    prefix_mask = jnp.concatenate([jnp.ones((b, v), bool), prompt_mask > 0], axis=1)
    p = prefix.shape[1]
    levels = model.visual_levels()
    steps = jnp.arange(max_new_tokens)

    if use_cache:
        cache = model.llm.init_cache(b, p + max_new_tokens)
        hidden, cache, _ = model.llm(prefix, prefix_mask, cache, 0, visual_levels=levels)
        first = jnp.argmax(model.llm.logits(hidden[:, -1]), axis=-1)

        def step(carry, i):
            token, cache = carry
            hidden, cache, _ = model.llm(
                model.llm.embed(token[:, None]), jnp.ones((b, 1), bool), cache, p + i
            )
            next_token = jnp.argmax(model.llm.logits(hidden[:, -1]), axis=-1)
            return (next_token, cache), next_token

        _, rest = jax.lax.scan(step, (first, cache), steps[:-1])
        tokens = jnp.concatenate([first[:, None], rest.T], axis=1)
    else:

        def step(generated, i):
            embeds = jnp.concatenate([prefix, model.llm.embed(generated)], axis=1)
            mask = jnp.concatenate([prefix_mask, (steps < i)[None, :].repeat(b, 0)], axis=1)
            hidden, _, _ = model.llm(embeds, mask, visual_levels=levels)
            # Slot p + i - 1 holds the newest real token (the last prompt token at i = 0).
            next_token = jnp.argmax(model.llm.logits(hidden[:, p + i - 1]), axis=-1)
            return generated.at[:, i].set(next_token), None

        generated = jnp.full((b, max_new_tokens), pad_id, prompt_ids.dtype)
        tokens, _ = jax.lax.scan(step, generated, steps)

    after_eos = jnp.cumsum(tokens == eos_id, axis=1) - (tokens == eos_id) > 0
    return jnp.where(after_eos, pad_id, tokens).astype(prompt_ids.dtype)
