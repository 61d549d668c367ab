"""The decoder's sequence bookkeeping: padding never shifts positions, the KV cache gives
the full forward's states, a sliding window bounds what a token sees."""

import jax.numpy as jnp
import numpy as np
import pytest

from tests.models.conftest import VOCAB, make_model, tiny_config


def decoder(mesh, **llm):
    config = tiny_config()
    config.model.llm.update(llm)
    return make_model(config, mesh).llm


def run(llm, ids, mask):
    hidden, _, _ = llm(llm.embed(jnp.asarray(ids)), jnp.asarray(mask, bool))
    return np.asarray(hidden)


IDS = np.random.default_rng(0).integers(1, VOCAB, (2, 10)).astype(np.int32)


@pytest.mark.parametrize("window", [0, 3])
def test_left_padding_changes_nothing(single_device_mesh, window):
    llm = decoder(single_device_mesh, sliding_window=window)
    plain = run(llm, IDS, np.ones_like(IDS))
    padded_ids = np.concatenate([np.zeros((2, 4), np.int32), IDS], axis=1)
    padded_mask = np.concatenate([np.zeros((2, 4)), np.ones_like(IDS)], axis=1)
    padded = run(llm, padded_ids, padded_mask)
    np.testing.assert_allclose(padded[:, 4:], plain, atol=2e-6)


@pytest.mark.parametrize("window", [0, 3])
def test_kv_cache_steps_equal_the_full_forward(single_device_mesh, window):
    """A left-padded prefill then one token per call (with padding inside the cache) gives
    the hidden states of one forward over the whole sequence."""
    llm = decoder(single_device_mesh, sliding_window=window)
    mask = np.ones_like(IDS)
    mask[0, :3] = 0  # row 0's prompt is left-padded
    full = run(llm, IDS, mask)
    prefill = 6
    cache = llm.init_cache(2, IDS.shape[1])
    hidden, cache, _ = llm(
        llm.embed(jnp.asarray(IDS[:, :prefill])), jnp.asarray(mask[:, :prefill], bool), cache, 0
    )
    steps = [np.asarray(hidden)]
    for slot in range(prefill, IDS.shape[1]):
        token = jnp.asarray(IDS[:, slot : slot + 1])
        hidden, cache, _ = llm(llm.embed(token), jnp.ones((2, 1), bool), cache, slot)
        steps.append(np.asarray(hidden))
    cached = np.concatenate(steps, axis=1)
    real = mask > 0
    np.testing.assert_allclose(cached[real], full[real], atol=2e-6)


def test_a_sliding_window_bounds_the_receptive_field(single_device_mesh):
    """With window w and L blocks, the last token sees the previous L * (w - 1) tokens:
    changing one just outside changes nothing, one just inside changes its state."""
    window, depth = 3, 2
    llm = decoder(single_device_mesh, sliding_window=window, depth=depth)
    mask = np.ones_like(IDS)
    base = run(llm, IDS, mask)[:, -1]
    reach = depth * (window - 1)
    last = IDS.shape[1] - 1
    outside, inside = IDS.copy(), IDS.copy()
    outside[:, last - reach - 1] = (outside[:, last - reach - 1] + 1) % VOCAB
    inside[:, last - reach] = (inside[:, last - reach] + 1) % VOCAB
    np.testing.assert_array_equal(run(llm, outside, mask)[:, -1], base)
    assert np.abs(run(llm, inside, mask)[:, -1] - base).max() > 1e-4
    # Without a window every earlier token is seen.
    full = decoder(single_device_mesh, depth=depth)
    assert np.abs(run(full, outside, mask)[:, -1] - run(full, IDS, mask)[:, -1]).max() > 1e-4
