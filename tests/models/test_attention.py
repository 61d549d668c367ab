"""Attention, masking and RoPE against plain-numpy float64 references built from the modules'
own weights; padding invariance of the decoder and of the full model."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rs_jax.models.attention import Attention, KVCache, rope_frequencies, rotary_embedding
from rs_jax.models.config import Precision, Rope, StackConfig
from rs_jax.models.decoder import Decoder
from tests.models.conftest import (
    VOCAB,
    decoder_config,
    make_model,
    random_batch,
    randomize,
    tiny_config,
)

F32 = Precision()
BF16 = Precision(dtype=jnp.bfloat16, param_dtype=jnp.float32)


# ---------------------------------------------------------------- numpy references


def np_inv_freq(head_dim: int, theta: float) -> np.ndarray:
    """theta^(-2i/d), i = 0 .. d/2 - 1."""
    return np.array([theta ** (-2.0 * i / head_dim) for i in range(head_dim // 2)])


def np_rope(x: np.ndarray, positions: np.ndarray, inv_freq: np.ndarray) -> np.ndarray:
    """x [B, T, N, H]: channels (i, i + H/2) as the complex number x_i + j x_(i+H/2), times
    exp(j * position * inv_freq_i). This is HF LLaMA's rotate_half convention."""
    half = x.shape[-1] // 2
    z = x[..., :half] + 1j * x[..., half:]
    z = z * np.exp(1j * positions[..., None, None] * inv_freq)
    return np.concatenate([z.real, z.imag], axis=-1)


def np_attention(q, k, v, allowed):
    """q [B, T, N, H], k/v [B, S, K, H], allowed [B, T, S] -> [B, T, N, H].

    Query head n reads kv head n // (N / K) (HF's repeat_kv). Keys that are not allowed are
    left out of the softmax altogether; a query with no allowed key gives NaN."""
    b, t, n, h = q.shape
    group = n // k.shape[2]
    allowed = np.broadcast_to(allowed, (b, t, k.shape[1]))
    out = np.full(q.shape, np.nan)
    for bi in range(b):
        for head in range(n):
            kv = head // group
            logits = q[bi, :, head] @ k[bi, :, kv].T / math.sqrt(h)
            for ti in range(t):
                keys = np.flatnonzero(allowed[bi, ti])
                if keys.size:
                    w = np.exp(logits[ti, keys] - logits[ti, keys].max())
                    out[bi, ti, head] = (w / w.sum()) @ v[bi, keys, kv]
    return out


def f64(variable, index=None) -> np.ndarray:
    value = np.asarray(variable[...], np.float64)
    return value if index is None else value[index]


def np_proj(layer, spec: str, x: np.ndarray, index=None) -> np.ndarray:
    y = np.einsum(spec, x, f64(layer.kernel, index))
    return y if layer.bias is None else y + f64(layer.bias, index)


def np_attention_module(attn, x, allowed, *, context=None, positions=None, inv_freq=None):
    """The Attention module's forward pass from its weights: x [B, T, D] -> [B, T, D]."""
    context = x if context is None else context
    q = np_proj(attn.query, "btd,dnh->btnh", x)
    k = np_proj(attn.key, "bsd,dkh->bskh", context)
    v = np_proj(attn.value, "bsd,dkh->bskh", context)
    if inv_freq is not None:
        q, k = np_rope(q, positions, inv_freq), np_rope(k, positions, inv_freq)
    return np_proj(attn.out, "btnh,nhd->btd", np_attention(q, k, v, allowed))


def np_rms_norm(x, scale, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * scale


def np_decoder(decoder, embeds: np.ndarray, window: int) -> np.ndarray:
    """A LLaMA decoder over one unpadded sequence embeds [T, D] -> final-normed [T, D]:
    positions 0..T-1, causal, optionally a sliding window of `window` positions."""
    cfg = decoder.cfg
    block = decoder.groups.blocks.blocks[0]  # group size 1: parameters stacked [depth, ...]
    pos = np.arange(len(embeds))
    allowed = pos[None, :] <= pos[:, None]
    if window:
        allowed &= pos[:, None] - pos[None, :] < window
    inv_freq = np_inv_freq(cfg.head_dim, cfg.rope.theta)
    x = embeds[None].astype(np.float64)
    for i in range(cfg.depth):
        a = block.attn
        h = np_rms_norm(x, f64(block.attn_norm.scale, i), cfg.norm_eps)
        q = np_rope(np_proj(a.query, "btd,dnh->btnh", h, i), pos[None], inv_freq)
        k = np_rope(np_proj(a.key, "bsd,dkh->bskh", h, i), pos[None], inv_freq)
        v = np_proj(a.value, "bsd,dkh->bskh", h, i)
        x = x + np_proj(a.out, "btnh,nhd->btd", np_attention(q, k, v, allowed[None]), i)
        h = np_rms_norm(x, f64(block.mlp_norm.scale, i), cfg.norm_eps)
        gate = np_proj(block.mlp.gate, "btd,df->btf", h, i)
        up = np_proj(block.mlp.up, "btd,df->btf", h, i)
        x = x + np_proj(block.mlp.down, "btf,fd->btd", gate / (1 + np.exp(-gate)) * up, i)
    return np_rms_norm(x, f64(decoder.final_norm.scale), cfg.norm_eps)[0]


def causal(mask_or_len) -> np.ndarray:
    """[B, T] real-token mask (or a length) -> [B, T, T]: slot t sees real slots <= t."""
    real = np.ones((1, mask_or_len), bool) if isinstance(mask_or_len, int) else mask_or_len
    t = real.shape[1]
    return np.tril(np.ones((t, t), bool))[None] & real[:, None, :]


def ranks(real: np.ndarray) -> np.ndarray:
    """Position of each real token among the real tokens of its row (pads: 0)."""
    return np.where(real, np.cumsum(real, axis=1) - 1, 0)


# ---------------------------------------------------------------- attention module


@pytest.mark.usefixtures("model_context")
@pytest.mark.parametrize(
    "num_heads, num_kv_heads, precision",
    [(4, 4, F32), (4, 2, F32), (4, 1, F32), (4, 2, BF16)],
    ids=["mha", "gqa2", "mqa", "gqa2-bf16"],
)
def test_causal_self_attention_with_rope_matches_numpy(num_heads, num_kv_heads, precision):
    """Causal self-attention with RoPE and biases; grouped-query heads read kv head
    n // (N/K). bf16: bf16 output, numpy-close at bf16 tolerance."""
    attn = Attention(
        32, num_heads, num_kv_heads=num_kv_heads, precision=precision, rope=Rope(), rngs=nnx.Rngs(0)
    )
    randomize(attn, 1)
    x = np.random.default_rng(2).normal(size=(2, 6, 32))
    positions = np.arange(6)[None] + np.array([[0], [5]])  # rows start at different positions
    mask = np.broadcast_to(causal(6), (2, 6, 6))
    out, cache = attn(jnp.asarray(x, precision.dtype), mask=mask, positions=positions)
    assert cache is None and out.dtype == precision.dtype
    expected = np_attention_module(attn, x, mask, positions=positions, inv_freq=np_inv_freq(8, 1e4))
    if precision.dtype == jnp.float32:
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    else:
        # Inputs, q/k/v, probabilities and the attended values are each rounded to bf16.
        err = np.abs(np.asarray(out, np.float64) - expected).max()
        assert err < 0.03 * np.abs(expected).max(), err


@pytest.mark.usefixtures("model_context")
def test_padded_keys_get_no_weight_and_real_outputs_equal_the_unpadded_ones():
    """[prefix; left-padded prompt; right-padded answer] with garbage in the pad slots:
    the outputs at real slots equal those of the unpadded sequences (and numpy); a pad query
    with no key to attend to stays finite."""
    attn = randomize(
        Attention(32, 4, num_kv_heads=2, precision=F32, rope=Rope(), rngs=nnx.Rngs(0)), 1
    )
    rng = np.random.default_rng(3)
    # Row 0: prefix 2, 2 prompt pads, prompt 2, answer 2, 1 answer pad. Row 1: a pad first.
    real = np.array([[1, 1, 0, 0, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1, 1, 0, 0]], bool)
    compact = rng.normal(size=(2, 6, 32))
    x = 100.0 * rng.normal(size=(2, 9, 32))  # pads: large, so any weight on them shows
    for b in range(2):
        x[b, real[b]] = compact[b]
    padded, _ = attn(jnp.asarray(x, jnp.float32), mask=causal(real), positions=ranks(real))
    unpadded, _ = attn(
        jnp.asarray(compact, jnp.float32), mask=causal(6), positions=np.tile(np.arange(6), (2, 1))
    )
    padded = np.asarray(padded)
    assert np.isfinite(padded).all()
    for b in range(2):
        np.testing.assert_allclose(padded[b, real[b]], unpadded[b], rtol=1e-5, atol=1e-5)
    expected = np_attention_module(
        attn, x, causal(real), positions=ranks(real), inv_freq=np_inv_freq(8, 1e4)
    )
    np.testing.assert_allclose(padded[real], expected[real], rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("model_context")
def test_cross_attention_over_cues_and_padded_prompt_matches_numpy():
    """Semantic-augmentation cross-attention (no RoPE, biases in and out): tokens over
    [cues; left-padded prompt] of another width; padded prompt slots get no weight."""
    attn = randomize(Attention(16, 2, context_width=24, precision=F32, rngs=nnx.Rngs(0)), 1)
    rng = np.random.default_rng(4)
    tokens = rng.normal(size=(2, 5, 16))
    context = rng.normal(size=(2, 2 + 6, 24))
    context_mask = np.ones((2, 8), bool)
    context_mask[0, 2:5] = False  # row 0: 3 left pads in its prompt
    context[~context_mask] = 1e3
    mask = np.broadcast_to(context_mask[:, None, :], (2, 5, 8))
    out, _ = attn(
        jnp.asarray(tokens, jnp.float32), context=jnp.asarray(context, jnp.float32), mask=mask
    )
    np.testing.assert_allclose(
        out, np_attention_module(attn, tokens, mask, context=context), rtol=1e-5, atol=1e-5
    )


@pytest.mark.usefixtures("model_context")
def test_unmasked_self_attention_matches_numpy():
    """The ViT's attention: no mask, no RoPE, every token sees every token."""
    attn = randomize(Attention(16, 2, precision=F32, rngs=nnx.Rngs(0)), 1)
    x = np.random.default_rng(11).normal(size=(2, 5, 16))
    out, _ = attn(jnp.asarray(x, jnp.float32))
    everything = np.ones((2, 5, 5), bool)
    np.testing.assert_allclose(out, np_attention_module(attn, x, everything), rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("model_context")
def test_kv_cache_prefill_then_decode_equals_full_causal_attention():
    """Prefill writes RoPE'd keys at slots 0..4, a decode step at slot 5; the outputs equal
    causal attention over all 6 tokens, unwritten cache slots stay zero and unseen."""
    attn = randomize(
        Attention(32, 4, num_kv_heads=2, precision=F32, rope=Rope(), rngs=nnx.Rngs(0)), 1
    )
    x = np.random.default_rng(5).normal(size=(2, 6, 32))
    written = np.zeros((2, 8), bool)
    cache = KVCache.zeros(2, 8, 2, 8, jnp.float32)
    outs = []
    for start, stop in [(0, 5), (5, 6)]:
        written[:, start:stop] = True
        slots = np.arange(start, stop)
        mask = (np.arange(8)[None, None, :] <= slots[None, :, None]) & written[:, None, :]
        out, cache = attn(
            jnp.asarray(x[:, start:stop], jnp.float32),
            mask=mask,
            positions=np.tile(slots, (2, 1)),
            cache=cache,
            cache_index=start,
        )
        outs.append(np.asarray(out))
    positions = np.tile(np.arange(6), (2, 1))
    expected = np_attention_module(
        attn, x, causal(6), positions=positions, inv_freq=np_inv_freq(8, 1e4)
    )
    np.testing.assert_allclose(np.concatenate(outs, axis=1), expected, rtol=1e-5, atol=1e-5)
    keys = np_rope(np_proj(attn.key, "bsd,dkh->bskh", x), positions, np_inv_freq(8, 1e4))
    np.testing.assert_allclose(cache.key[:, :6], keys, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        cache.value[:, :6], np_proj(attn.value, "bsd,dkh->bskh", x), rtol=1e-5, atol=1e-5
    )
    assert not np.asarray(cache.key[:, 6:]).any() and not np.asarray(cache.value[:, 6:]).any()


# ---------------------------------------------------------------- RoPE


def np_llama3_inv_freq(head_dim, theta, factor, low, high, original):
    """Llama 3's per-band scaling (HF _compute_llama3_parameters), one frequency at a time."""
    out = []
    for f in np_inv_freq(head_dim, theta):
        wavelength = 2 * math.pi / f
        if wavelength < original / high:  # high frequencies: kept
            out.append(f)
        elif wavelength > original / low:  # low frequencies: scaled down
            out.append(f / factor)
        else:
            smooth = (original / wavelength - low) / (high - low)
            out.append((1 - smooth) * f / factor + smooth * f)
    return np.array(out)


def test_rope_frequencies_match_their_closed_forms():
    """theta^(-2i/d); linear: divided by the factor; llama3: kept / divided / interpolated
    by wavelength band (all three bands present at these settings)."""
    np.testing.assert_allclose(
        rope_frequencies(32, Rope(theta=1e4)), np_inv_freq(32, 1e4), rtol=1e-12
    )
    np.testing.assert_allclose(
        rope_frequencies(32, Rope(theta=5e5, scaling="linear", factor=4.0)),
        np_inv_freq(32, 5e5) / 4.0,
        rtol=1e-12,
    )
    rope = Rope(
        theta=1e4,
        scaling="llama3",
        factor=8.0,
        low_freq_factor=1.0,
        high_freq_factor=4.0,
        original_max_positions=1024,
    )
    expected = np_llama3_inv_freq(32, 1e4, 8.0, 1.0, 4.0, 1024)
    plain = np_inv_freq(32, 1e4)
    ratio = plain / expected
    kept, scaled = np.isclose(ratio, 1.0), np.isclose(ratio, 8.0)
    assert kept.sum() >= 2 and scaled.sum() >= 2 and (~kept & ~scaled).sum() >= 2, ratio
    np.testing.assert_allclose(rope_frequencies(32, rope), expected, rtol=1e-12)


def test_rotary_embedding_is_the_half_split_rotation():
    """Channels (i, i + H/2) rotated by position * inv_freq_i, for per-row positions, in
    float32 and for bf16 inputs (bf16 out)."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 5, 3, 16))
    positions = rng.integers(0, 100, (2, 5))
    freq = np_inv_freq(16, 1e4)
    expected = np_rope(x, positions, freq)
    out = rotary_embedding(jnp.asarray(x, jnp.float32), jnp.asarray(positions), tuple(freq))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    x16 = jnp.asarray(x, jnp.bfloat16)
    out16 = rotary_embedding(x16, jnp.asarray(positions), tuple(freq))
    assert out16.dtype == jnp.bfloat16
    expected16 = np_rope(np.asarray(x16, np.float64), positions, freq)
    np.testing.assert_allclose(np.asarray(out16, np.float64), expected16, rtol=2**-8, atol=1e-2)


def test_rope_scores_depend_only_on_relative_position():
    """q_m . k_n = Re(sum_i zq_i conj(zk_i) e^{j (m - n) f_i}): a function of m - n only."""
    rng = np.random.default_rng(7)
    q, k = rng.normal(size=16), rng.normal(size=16)
    freq = np_inv_freq(16, 1e4)
    positions = jnp.arange(40)[None]
    qs = rotary_embedding(
        jnp.tile(jnp.asarray(q, jnp.float32), (1, 40, 1, 1)), positions, tuple(freq)
    )
    ks = rotary_embedding(
        jnp.tile(jnp.asarray(k, jnp.float32), (1, 40, 1, 1)), positions, tuple(freq)
    )
    scores = np.asarray(qs[0, :, 0] @ ks[0, :, 0].T, np.float64)  # [m, n]
    np.testing.assert_allclose(scores[1:, 1:], scores[:-1, :-1], atol=1e-4)
    zq, zk = q[:8] + 1j * q[8:], k[:8] + 1j * k[8:]
    delta = np.arange(40)[:, None] - np.arange(40)[None, :]
    closed = (zq * np.conj(zk) * np.exp(1j * delta[..., None] * freq)).sum(-1).real
    np.testing.assert_allclose(scores, closed, atol=1e-4)
    assert np.ptp(scores[0]) > 0.5  # the scores do vary with the distance


# ---------------------------------------------------------------- decoder and full model


@pytest.mark.usefixtures("model_context")
@pytest.mark.parametrize("window", [0, 3])
def test_decoder_on_a_padded_batch_matches_numpy_llama(window):
    """Decoder masks and positions: [prefix; left-padded prompt; right-padded answer] with
    garbage pad embeddings gives, at real slots, a numpy LLaMA over the real tokens alone
    (positions 0..n-1; the sliding window counted in positions, not slots)."""
    cfg = decoder_config(sliding_window=window)
    decoder = randomize(Decoder(cfg, F32, StackConfig(scan=False), rngs=nnx.Rngs(0)), 1)
    rng = np.random.default_rng(8)
    # 3 prefix slots, 5 prompt slots (row 0: 2 left pads), 4 answer slots (right pads).
    real = np.ones((2, 12), bool)
    real[0, 3:5] = False
    real[0, 11:] = False
    real[1, 9:] = False
    embeds = 10.0 * rng.normal(size=(2, 12, 32))
    hidden, cache, routing = decoder(jnp.asarray(embeds, jnp.float32), jnp.asarray(real))
    assert cache is None and routing is None
    hidden = np.asarray(hidden)
    for b in range(2):
        expected = np_decoder(decoder, embeds[b, real[b]], window)
        np.testing.assert_allclose(hidden[b, real[b]], expected, rtol=1e-5, atol=1e-5)


def repad(batch: dict, extra_prompt: int, extra_answer: int, seed: int) -> dict:
    """The same examples with `extra_prompt` more left pads in the prompt and `extra_answer`
    more right pads in the answer; every pad id random (pads must not be read at all)."""
    rng = np.random.default_rng(seed)
    b = batch["prompt_ids"].shape[0]

    def garbage(ids, mask):
        return np.where(mask > 0, ids, rng.integers(1, VOCAB, ids.shape)).astype(np.int32)

    out = dict(batch)
    prompt_mask = np.concatenate([np.zeros((b, extra_prompt), np.int32), batch["prompt_mask"]], 1)
    prompt = np.concatenate([np.zeros((b, extra_prompt), np.int32), batch["prompt_ids"]], 1)
    answer_mask = np.concatenate([batch["answer_mask"], np.zeros((b, extra_answer), np.int32)], 1)
    answer = np.concatenate([batch["answer_ids"], np.zeros((b, extra_answer), np.int32)], 1)
    out.update(
        prompt_ids=garbage(prompt, prompt_mask),
        prompt_mask=prompt_mask,
        answer_ids=garbage(answer, answer_mask),
        answer_mask=answer_mask,
    )
    return out


@pytest.mark.parametrize("baseline", [False, True], ids=["full", "baseline"])
def test_answer_logits_do_not_depend_on_padding(baseline, single_device_mesh):
    """[text before image; visual; prompt; answer]: 3 more left pads in the prompt and 2 more
    right pads in the answer (random pad ids) leave the logits of every real answer slot as
    they were; changing one real prompt token does change them."""
    model = make_model(tiny_config("baseline" if baseline else None), single_device_mesh)
    batch = random_batch(batch_size=4, seed=1)
    batch["prefix_ids"] = np.random.default_rng(9).integers(5, VOCAB, (4, 2)).astype(np.int32)
    logits = nnx.jit(lambda m, b: m.llm.logits(m(b)[0]))

    def run(b):
        return np.asarray(logits(model, jax.tree.map(jnp.asarray, b)))

    reference = run(batch)
    more = repad(batch, extra_prompt=3, extra_answer=2, seed=10)
    padded = run(more)
    assert padded.shape[1] == reference.shape[1] + 2
    for b, n in enumerate(batch["answer_mask"].sum(1)):
        np.testing.assert_allclose(padded[b, :n], reference[b, :n], rtol=1e-5, atol=1e-5)
    row, slot = 0, int(np.argmax(more["prompt_mask"][0]))  # row 0's first real prompt token
    more["prompt_ids"][row, slot] = (more["prompt_ids"][row, slot] - 5 + 1) % (VOCAB - 5) + 5
    changed = run(more)
    assert np.abs(changed[row] - padded[row]).max() > 1e-3
