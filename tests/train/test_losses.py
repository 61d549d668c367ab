"""The answer loss: vocabulary-chunked cross-entropy against optax on full logits, and
compute_loss (masks, normalisation, retrieval and MoE terms) on hand-computed cases."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rs_jax.models.config import Precision
from rs_jax.models.experts import RoutingStats
from rs_jax.models.retrieval import Retrieved, retrieval_loss
from rs_jax.models.rsvlm import VisualOutput
from rs_jax.train.losses import compute_loss, vocab_cross_entropy


def problem(n=24, d=16, v=50, seed=0):
    rng = np.random.default_rng(seed)
    hidden = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
    head = jnp.asarray(rng.normal(size=(d, v)) / 4, jnp.float32)
    labels = jnp.asarray(rng.integers(0, v, n), jnp.int32)
    return hidden, head, labels


def reference(hidden, head, labels):
    logits = hidden @ head
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels), logits.argmax(-1)


# 0 and 50: one chunk; 7 does not divide 50 (the last chunk overlaps and is masked).
@pytest.mark.parametrize("chunk", [0, 7, 16, 50, 64])
def test_chunked_cross_entropy_equals_full_logits(chunk):
    hidden, head, labels = problem()
    loss, prediction = vocab_cross_entropy(hidden, head, labels, Precision(), chunk)
    want_loss, want_prediction = reference(hidden, head, labels)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(prediction, want_prediction)

    def total(fn):
        return lambda h, w: fn(h, w)[0].sum()

    grads = jax.grad(
        total(lambda h, w: vocab_cross_entropy(h, w, labels, Precision(), chunk)), argnums=(0, 1)
    )(hidden, head)
    want = jax.grad(total(lambda h, w: reference(h, w, labels)), argnums=(0, 1))(hidden, head)
    for got, expected in zip(grads, want, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_chunks_never_hold_the_whole_vocabulary():
    """With chunk 16 of 4096 entries no [N, V] array appears in the compiled gradient."""
    hidden, head, labels = problem(n=8, d=16, v=4096)
    grad = jax.jit(
        jax.grad(lambda h: vocab_cross_entropy(h, head, labels, Precision(), 16)[0].sum())
    )
    hlo = grad.lower(hidden).compile().as_text()
    assert "f32[8,4096]" not in hlo and "f32[8,16]" in hlo


def test_bfloat16_operands_accumulate_in_float32():
    hidden, head, labels = problem(v=300)
    bf16 = Precision(dtype=jnp.bfloat16, param_dtype=jnp.float32)
    loss, _ = vocab_cross_entropy(hidden, head, labels, bf16, 64)
    assert loss.dtype == jnp.float32
    rounded = reference(
        hidden.astype(jnp.bfloat16).astype(jnp.float32),
        head.astype(jnp.bfloat16).astype(jnp.float32),
        labels,
    )[0]
    np.testing.assert_allclose(loss, rounded, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------- compute_loss on a fake
# A stand-in model whose hidden states are the logits themselves (head = identity), so every
# expected value below is a log of small integers, worked out by hand.

# Rows are weights w (the hidden states are log w): softmax probability of entry j is
# w_j / sum(w).
W = np.array(
    [
        [[1, 2, 1, 4], [3, 1, 1, 1], [1, 1, 1, 100]],  # example 0: 2 answer tokens + padding
        [[1, 1, 2, 5], [1, 1, 1, 100], [1, 1, 1, 100]],  # example 1: 1 answer token
        [[1, 1, 1, 100], [1, 1, 1, 100], [1, 1, 1, 100]],  # example 2: invalid (eval padding)
    ],
    np.float32,
)
ANSWER_IDS = np.array([[3, 0, 0], [2, 0, 0], [0, 0, 0]], np.int32)
ANSWER_MASK = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1]], np.int32)
VALID = np.array([1, 1, 0], np.int32)
# Cross-entropies log(sum(w) / w_label) of the 3 counted tokens: 8/4, 6/3, 9/2.
TOKEN_CE = np.log([2.0, 2.0, 4.5])
# Argmax vs label of the counted tokens: 3 == 3, 0 == 0, 3 != 2.
TOKEN_CORRECT = [1.0, 1.0, 0.0]


class FakeModel:
    """What compute_loss reads of an RSVLM: cfg, llm.head() and the forward pass."""

    def __init__(self, retrieved=(), routing=None, level_names=("scene", "object")):
        self.cfg = SimpleNamespace(
            precision=Precision(),
            experts=SimpleNamespace(balance_loss_weight=0.01, z_loss_weight=1e-3),
            kb=SimpleNamespace(retrieval_loss_weight=0.1),
            level_names=level_names,
        )
        self.llm = SimpleNamespace(head=lambda: jnp.eye(4))
        self.visual = VisualOutput(jnp.zeros((3, 1, 4)), tuple(retrieved), routing)

    def __call__(self, batch, jitter_key=None):
        return jnp.asarray(np.log(W)), self.visual


def fake_batch(kb_labels=None):
    batch = {"answer_ids": ANSWER_IDS, "answer_mask": ANSWER_MASK, "valid": VALID}
    if kb_labels is not None:
        batch["kb_labels"] = kb_labels
    return {k: jnp.asarray(v) for k, v in batch.items()}


# 1: one vocabulary entry per chunk; 3 does not divide the 4 entries (overlapping last chunk).
@pytest.mark.parametrize("chunk", [0, 1, 3])
def test_answer_loss_is_the_per_token_mean_over_masked_valid_tokens(chunk):
    """Padding tokens and invalid rows (whose tokens have a large loss) do not count; the
    mean is over answer tokens, not over examples; chunking changes nothing."""
    loss, metrics = compute_loss(FakeModel(), fake_batch(), vocab_chunk=chunk)
    per_token = TOKEN_CE.mean()  # (log 2 + log 2 + log 4.5) / 3
    np.testing.assert_allclose(float(metrics["answer_loss"]), per_token, rtol=1e-6)
    np.testing.assert_allclose(float(loss), per_token, rtol=1e-6)
    # Guards the choice of normaliser: the per-example mean differs on this batch.
    per_example = (TOKEN_CE[:2].mean() + TOKEN_CE[2]) / 2
    assert abs(per_token - per_example) > 0.05
    np.testing.assert_allclose(float(metrics["token_accuracy"]), np.mean(TOKEN_CORRECT))


def test_token_accuracy_counts_only_masked_tokens():
    """A wrong label on a counted token lowers the accuracy; one on padding does not."""
    batch = fake_batch()
    wrong_counted = batch | {"answer_ids": batch["answer_ids"].at[0, 1].set(1)}
    wrong_padding = batch | {"answer_ids": batch["answer_ids"].at[0, 2].set(1)}
    _, metrics = compute_loss(FakeModel(), wrong_counted)
    np.testing.assert_allclose(float(metrics["token_accuracy"]), 1 / 3, rtol=1e-6)
    # The relabelled token's loss is log(6 / 1) instead of log(6 / 3).
    want = (np.log(2.0) + np.log(6.0) + np.log(4.5)) / 3
    np.testing.assert_allclose(float(metrics["answer_loss"]), want, rtol=1e-6)
    _, metrics = compute_loss(FakeModel(), wrong_padding)
    np.testing.assert_allclose(float(metrics["token_accuracy"]), 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["answer_loss"]), TOKEN_CE.mean(), rtol=1e-6)


def test_micro_batch_loss_divides_by_the_whole_batch_token_count():
    """With num_tokens the answer sum is divided by it (micro-batches add up); the auxiliary
    losses are split over the micro-batches."""
    routing = RoutingStats(
        balance_loss=jnp.float32(2.0),
        z_loss=jnp.float32(3.0),
        expert_counts=jnp.array([[3.0, 1.0], [0.0, 0.0]]),
        dropped_fraction=jnp.float32(0.25),
    )
    model = FakeModel(routing=routing)
    loss, metrics = compute_loss(model, fake_batch(), num_tokens=jnp.float32(6.0))
    aux = 0.01 * 2.0 + 1e-3 * 3.0
    np.testing.assert_allclose(float(loss), TOKEN_CE.sum() / 6 + aux, rtol=1e-6)
    # The reported answer loss stays this micro-batch's own per-token mean.
    np.testing.assert_allclose(float(metrics["answer_loss"]), TOKEN_CE.mean(), rtol=1e-6)
    loss, _ = compute_loss(model, fake_batch(), num_tokens=jnp.float32(6.0), num_micro_batches=2)
    np.testing.assert_allclose(float(loss), TOKEN_CE.sum() / 6 + aux / 2, rtol=1e-6)
    # Expert load: each level's counts as shares; a level without assignments stays at 0.
    for name, want in [
        ("moe/scene/expert_0", 0.75),
        ("moe/scene/expert_1", 0.25),
        ("moe/object/expert_0", 0.0),
        ("moe/dropped_fraction", 0.25),
        ("moe/balance_loss", 2.0),
    ]:
        np.testing.assert_allclose(float(metrics[name]), want, err_msg=name)


def test_retrieval_loss_and_hit_rate_enter_the_objective():
    """One level with hand-made scores: its loss is weighted into the total, and the hit
    rate counts valid rows with a label only (the invalid row's hit does not count)."""
    with np.errstate(divide="ignore"):
        all_scores = np.log(
            np.array([[1.0, 3.0, 0.0, 0.0], [2.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
        )  # log 0 = -inf: entry outside the level
    ids = jnp.array([[1, 0], [1, 2], [3, 0]])
    found = Retrieved(ids, jnp.zeros((3, 2)), jnp.asarray(all_scores, jnp.float32))
    # [B, L=1, M=2]: row 0 labelled 0 (retrieved 2nd), row 1 labelled 0 (not retrieved),
    # row 2 (invalid) labelled 3 (retrieved first).
    kb_labels = np.array([[[0, -1]], [[0, -1]], [[3, -1]]], np.int32)
    model = FakeModel(retrieved=[found], level_names=("scene",))
    loss, metrics = compute_loss(model, fake_batch(kb_labels))
    # -log p(label): row 0 p = 1/4, row 1 p = 2/4; row 2 is invalid.
    retrieval = (np.log(4.0) + np.log(2.0)) / 2
    np.testing.assert_allclose(float(metrics["retrieval/loss"]), retrieval, rtol=1e-6)
    np.testing.assert_allclose(float(loss), TOKEN_CE.mean() + 0.1 * retrieval, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["retrieval/scene_hit@k"]), 1 / 2)


def test_answer_loss_of_the_model_equals_numpy_cross_entropy(single_device_mesh):
    """On the tiny model: the answer loss equals a float64 numpy cross-entropy of its own
    hidden states through its LM head, masked; chunked equals unchunked."""
    from tests.models.conftest import make_model, random_batch, tiny_config

    model = make_model(tiny_config(), single_device_mesh)
    batch = random_batch()
    batch["valid"][-1] = 0
    batch = {k: jnp.asarray(v) for k, v in batch.items()}

    @nnx.jit
    def run(model, batch):
        hidden, _ = model(batch)
        losses = [compute_loss(model, batch, vocab_chunk=c)[1]["answer_loss"] for c in (0, 7)]
        return hidden, model.llm.head(), losses

    hidden, head, losses = run(model, batch)
    logits = np.asarray(hidden, np.float64) @ np.asarray(head, np.float64)
    logits -= logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    labels = np.asarray(batch["answer_ids"])
    ce = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    mask = np.asarray(batch["answer_mask"]) * np.asarray(batch["valid"])[:, None]
    want = (ce * mask).sum() / mask.sum()
    for loss in losses:
        np.testing.assert_allclose(float(loss), want, rtol=1e-5)


def test_retrieval_loss_exact_value():
    """Mean over labelled rows of the mean -log p over each row's labels (-1 padding)."""
    with np.errstate(divide="ignore"):
        scores = np.log(
            np.array(
                [
                    [1.0, 3.0, 0.0, 0.0],  # entries 2, 3 outside the level (log 0 = -inf)
                    [1.0, 1.0, 2.0, 0.0],
                    [5.0, 1.0, 1.0, 1.0],  # no label: must not count
                ]
            )
        )
    labels = jnp.array([[1, -1, -1], [0, 2, -1], [-1, -1, -1]])
    got = retrieval_loss(jnp.asarray(scores, jnp.float32), labels)
    # Row 0: -log(3/4); row 1: (-log(1/4) - log(2/4)) / 2.
    want = (np.log(4 / 3) + (np.log(4.0) + np.log(2.0)) / 2) / 2
    np.testing.assert_allclose(float(got), want, rtol=1e-6)
    assert float(retrieval_loss(jnp.asarray(scores, jnp.float32), jnp.full((3, 2), -1))) == 0.0


def test_alignment_loss_matches_each_levels_queries_to_their_entries_on_any_mesh(
    single_device_mesh, multi_device_mesh
):
    """The level queries against the KB rows of each image's first label, a padding row and
    an unlabelled level left out; equal on 1 device (whole) and 8 (chunked around the ring)."""
    from rs_jax.train.contrastive import sigmoid_loss
    from rs_jax.train.losses import ALIGN_BIAS, alignment_loss
    from tests.models.conftest import make_model, random_batch, tiny_config

    config = tiny_config()
    batch = random_batch()
    batch["valid"][5] = 0
    batch["kb_labels"][:, 1] = -1  # no image has a land-cover label

    def loss_on(mesh):
        model = make_model(config, mesh)
        graphdef, params = nnx.split(model)
        with jax.set_mesh(mesh):
            placed = jax.device_put(batch, jax.NamedSharding(mesh, jax.P(("data", "fsdp"))))

            @jax.jit
            def f(params, batch):
                with nnx.logical_axis_rules(config.sharding_rules):
                    return alignment_loss(nnx.merge(graphdef, params), batch)

            return f(params, placed), model

    (loss, metrics), model = loss_on(single_device_mesh)
    queries, table = model.image_queries(jnp.asarray(batch["image"])), model.kb.table()
    scale = model.kb.logit_scale[...]
    want = []
    for level in (0, 2):
        entry = np.where(batch["valid"] > 0, batch["kb_labels"][:, level, 0], -1)
        texts = table[np.maximum(entry, 0)]
        want.append(sigmoid_loss(queries[level], texts, entry, entry, scale, ALIGN_BIAS))
    np.testing.assert_allclose(float(loss), float(np.mean(want)), rtol=1e-5)
    assert float(metrics["align/landcover_loss"]) == 0.0
    (loss8, _), _ = loss_on(multi_device_mesh)
    np.testing.assert_allclose(float(loss8), float(loss), rtol=1e-5)
