"""Greedy decoding for the RS VLM, with a KV cache (fast path) or by full recomputation."""

import jax
import jax.numpy as jnp
import numpy as np

from rs_jax.models.decoder import Decoder
from rs_jax.models.rsvlm import RSVLM


def greedy_generate(
    model: RSVLM,
    visual: jax.Array,
    batch: dict[str, jax.Array],
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    use_cache: bool = True,
) -> jax.Array:
    """Greedy answers [B, max_new_tokens] to batch's prompts (prefix_ids, prompt_ids,
    prompt_mask); tokens after the first eos become pad_id.

    visual [B, V, D]: the model's visual tokens (`model.encode(...).tokens`). The LLM's
    visual-token MoE blocks (config.model.llm.moe_every) run in the prefill only: decode
    steps are text.
    """
    before, before_mask = model.text_before_image(batch)
    prompt_ids = batch["prompt_ids"]
    prefix = jnp.concatenate([before, visual, model.llm.embed(prompt_ids)], axis=1)
    prefix_mask = jnp.concatenate(
        [before_mask, jnp.ones(visual.shape[:2], bool), batch["prompt_mask"] > 0], axis=1
    )
    tokens = greedy_decode(
        model.llm,
        prefix,
        prefix_mask,
        max_new_tokens=max_new_tokens,
        visual_levels=model.visual_levels(),
        visual_start=before.shape[1],
        use_cache=use_cache,
    )
    after_eos = jnp.cumsum(tokens == eos_id, axis=1) - (tokens == eos_id) > 0
    return jnp.where(after_eos, pad_id, tokens).astype(prompt_ids.dtype)


def greedy_decode(
    llm: Decoder,
    prefix: jax.Array,
    prefix_mask: jax.Array,
    *,
    max_new_tokens: int,
    visual_levels: np.ndarray | None = None,
    visual_start: int = 0,
    use_cache: bool = True,
) -> jax.Array:
    """The decoder's greedy continuation [B, max_new_tokens] (int32) of the embedded
    prefix [B, P, D] (prefix_mask [B, P]: real tokens; prompts are left-padded).

    Both paths compute the same tokens; the uncached one re-runs the decoder over the
    whole sequence every step and exists as the reference for the cached one.
    """
    b, p, _ = prefix.shape
    steps = jnp.arange(max_new_tokens)

    if use_cache:
        cache = llm.init_cache(b, p + max_new_tokens)
        hidden, cache, _ = llm(
            prefix, prefix_mask, cache, 0, visual_levels=visual_levels, visual_start=visual_start
        )
        first = jnp.argmax(llm.logits(hidden[:, -1]), axis=-1)

        def step(carry, i):
            token, cache = carry
            hidden, cache, _ = llm(llm.embed(token[:, None]), jnp.ones((b, 1), bool), cache, p + i)
            next_token = jnp.argmax(llm.logits(hidden[:, -1]), axis=-1)
            return (next_token, cache), next_token

        _, rest = jax.lax.scan(step, (first, cache), steps[:-1])
        return jnp.concatenate([first[:, None], rest.T], axis=1).astype(jnp.int32)

    def step(generated, i):
        embeds = jnp.concatenate([prefix, llm.embed(generated)], axis=1)
        mask = jnp.concatenate([prefix_mask, (steps < i)[None, :].repeat(b, 0)], axis=1)
        hidden, _, _ = llm(embeds, mask, visual_levels=visual_levels, visual_start=visual_start)
        # Slot p + i - 1 holds the newest real token (the last prompt token at i = 0).
        next_token = jnp.argmax(llm.logits(hidden[:, p + i - 1]), axis=-1)
        return generated.at[:, i].set(next_token.astype(jnp.int32)), None

    generated = jnp.zeros((b, max_new_tokens), jnp.int32)
    tokens, _ = jax.lax.scan(step, generated, steps)
    return tokens
