"""The training objectives. "answer": answer cross-entropy + MoE auxiliary losses +
retrieval loss. "align" (alignment pretraining): each level's image query against the KB
embedding of its ground-truth entry, by the sigmoid loss over the batch.

The answer loss projects only the positions that predict answer tokens onto the vocabulary,
and does so in vocabulary chunks (`vocab_chunk`), so [B, T, V] float32 logits are never
materialised: a chunk's logits live for one step of a scan and are recomputed in the
backward pass.
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from rs_jax.models.config import Precision
from rs_jax.models.experts import RoutingStats
from rs_jax.models.layers import matmul
from rs_jax.models.retrieval import hits_at_k, retrieval_loss
from rs_jax.models.rsvlm import RSVLM, example_rows
from rs_jax.sharding import dividing_batch_axes
from rs_jax.train.contrastive import chunked_sigmoid_loss

# The sigmoid loss's bias, fixed at SigLIP's initial value (SigLIP learns it; fixed here, the
# aligned model's parameters are exactly the assistant's). Its temperature is the KB's
# learned retrieval scale, exp(kb.logit_scale), which starts at SigLIP's 10.
ALIGN_BIAS = -10.0


def vocab_cross_entropy(
    hidden: jax.Array,
    head: jax.Array,
    labels: jax.Array,
    precision: Precision,
    vocab_chunk: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """hidden [N, D] through head [D, V] against labels [N] -> (cross-entropy [N], argmax
    prediction [N]), with the vocabulary taken `vocab_chunk` entries at a time (0: all).

    A running log-sum-exp and argmax are carried across chunks; logits are float32 from
    compute-dtype operands.
    """
    n, _ = hidden.shape
    v = head.shape[1]
    chunk = v if vocab_chunk <= 0 else min(vocab_chunk, v)
    num_chunks = math.ceil(v / chunk)

    def step(carry, c):
        running_max, total, best, best_id = carry
        # The last chunk is clamped to end at v; columns an earlier chunk covered are masked.
        start = jnp.minimum(c * chunk, v - chunk)
        logits = matmul(
            "nd,dv->nv", hidden, jax.lax.dynamic_slice_in_dim(head, start, chunk, 1), precision
        )
        columns = start + jnp.arange(chunk)
        logits = jnp.where(columns[None, :] >= c * chunk, logits, -jnp.inf)
        chunk_max = logits.max(-1)
        # The log-sum-exp does not depend on the shift: no gradient through the max.
        new_max = jax.lax.stop_gradient(jnp.maximum(running_max, chunk_max))
        total = total * jnp.exp(running_max - new_max) + jnp.exp(logits - new_max[:, None]).sum(-1)
        better = chunk_max > best
        best_id = jnp.where(better, start + jnp.argmax(logits, -1), best_id)
        return (new_max, total, jnp.maximum(best, chunk_max), best_id), None

    if num_chunks > 1:
        step = jax.checkpoint(step, prevent_cse=False)
    init = (
        jnp.full((n,), -jnp.inf, jnp.float32),
        jnp.zeros((n,), jnp.float32),
        jnp.full((n,), -jnp.inf, jnp.float32),
        jnp.zeros((n,), jnp.int32),
    )
    (running_max, total, _, prediction), _ = jax.lax.scan(step, init, jnp.arange(num_chunks))
    label_logit = matmul("nd,dn->n", hidden, jnp.take(head, labels, axis=1), precision)
    return running_max + jnp.log(total) - label_logit, prediction


def compute_loss(
    model: RSVLM,
    batch: dict[str, jax.Array],
    *,
    vocab_chunk: int = 0,
    jitter_key: jax.Array | None = None,
    num_tokens: jax.Array | None = None,
    num_micro_batches: int = 1,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Scalar loss and scalar metrics for one batch.

    For one of `num_micro_batches` micro-batches, `num_tokens` is the answer-token count of
    the whole batch: the answer losses of the micro-batches then add up to the whole batch's,
    and each auxiliary loss contributes 1 / num_micro_batches of its value.
    """
    cfg = model.cfg
    answer_hidden, visual = model(batch, jitter_key)
    batch = example_rows(batch)
    mask = (batch["answer_mask"] * batch["valid"][:, None]).astype(jnp.float32)
    b, t, d = answer_hidden.shape
    token_loss, prediction = vocab_cross_entropy(
        answer_hidden.reshape(b * t, d),
        model.llm.head(),
        batch["answer_ids"].reshape(b * t),
        cfg.precision,
        vocab_chunk,
    )
    mask_flat = mask.reshape(b * t)
    here = jnp.maximum(mask.sum(), 1.0)
    answer_sum = (token_loss * mask_flat).sum()
    correct = (prediction == batch["answer_ids"].reshape(b * t)).astype(jnp.float32)
    metrics = {
        "answer_loss": answer_sum / here,
        "token_accuracy": (correct * mask_flat).sum() / here,
    }
    loss = answer_sum / (here if num_tokens is None else jnp.maximum(num_tokens, 1.0))
    aux = jnp.zeros((), jnp.float32)

    # Vision-side semantic experts ("moe/") and the LLM's visual-token MoE blocks ("moe_llm/",
    # each block's auxiliary losses added, their mean reported).
    vision_routing = (
        None if visual.routing is None else jax.tree.map(lambda x: x[None], visual.routing)
    )
    for prefix, stats in (("moe", vision_routing), ("moe_llm", visual.llm_routing)):
        if stats is None:
            continue
        aux += cfg.experts.balance_loss_weight * stats.balance_loss.sum()
        aux += cfg.experts.z_loss_weight * stats.z_loss.sum()
        metrics |= {
            f"{prefix}/balance_loss": stats.balance_loss.mean(),
            f"{prefix}/z_loss": stats.z_loss.mean(),
            f"{prefix}/dropped_fraction": stats.dropped_fraction.mean(),
        }
        metrics |= expert_load_metrics(prefix, stats, cfg.level_names)

    if visual.retrieved:
        level_losses = []
        for level, (name, found) in enumerate(zip(cfg.level_names, visual.retrieved, strict=True)):
            labels = jnp.where(batch["valid"][:, None] > 0, batch["kb_labels"][:, level], -1)
            level_losses.append(retrieval_loss(found.all_scores, labels))
            has_label = (labels >= 0).any(-1)
            hits = hits_at_k(found.ids, labels) & has_label
            metrics[f"retrieval/{name}_hit@k"] = hits.sum() / jnp.maximum(has_label.sum(), 1)
        retrieval = jnp.mean(jnp.stack(level_losses))
        aux += cfg.kb.retrieval_loss_weight * retrieval
        metrics["retrieval/loss"] = retrieval

    loss = loss + aux / num_micro_batches
    metrics["loss"] = loss
    return loss, metrics


def expert_load_metrics(
    prefix: str, stats: RoutingStats, level_names: Sequence[str]
) -> dict[str, jax.Array]:
    """`<prefix>/<level>/expert_<i>`: share of the level's assignments (summed over the MoE
    layers stacked in `stats`) that went to each of its experts."""
    counts = stats.expert_counts.sum(0)  # [L, E_l]
    load = counts / jnp.maximum(counts.sum(-1, keepdims=True), 1.0)
    return {
        f"{prefix}/{name}/expert_{i}": load[level, i]
        for level, name in enumerate(level_names)
        for i in range(load.shape[1])
    }


def expert_usage_from_metrics(
    metrics: dict[str, float], level_names: Sequence[str], prefix: str = "moe"
) -> dict[str, list[float]]:
    """Inverse of expert_load_metrics on host values: {level: [share per expert]} ({} if none)."""
    usage = {}
    for name in level_names:
        shares, i = [], 0
        while f"{prefix}/{name}/expert_{i}" in metrics:
            shares.append(float(metrics[f"{prefix}/{name}/expert_{i}"]))
            i += 1
        if shares:
            usage[name] = shares
    return usage


def alignment_loss(model: RSVLM, batch: dict[str, jax.Array]) -> tuple[jax.Array, dict]:
    """Alignment pretraining: for each level, the prompt-free queries of the batch's images
    [B, Dk] against the KB rows of their ground-truth entries at that level (the first of
    kb_labels), positive where two share an entry; chunked around the data-parallel
    devices. The levels' losses are averaged over those with a labelled image."""
    cfg = model.cfg
    batch = example_rows(batch)
    table = model.kb.table()
    scale = model.kb.logit_scale[...]
    mesh = jax.sharding.get_abstract_mesh()
    axes = dividing_batch_axes(batch["image"].shape[0])
    metrics, losses, weights = {}, [], []
    for level, (name, query) in enumerate(
        zip(cfg.level_names, model.image_queries(batch["image"]), strict=True)
    ):
        entry = jnp.where(batch["valid"] > 0, batch["kb_labels"][:, level, 0], -1)
        texts = jnp.take(table, jnp.maximum(entry, 0), axis=0)
        loss = chunked_sigmoid_loss(
            query, texts, entry, entry, scale, jnp.float32(ALIGN_BIAS), mesh=mesh, axes=axes
        )
        metrics[f"align/{name}_loss"] = loss
        losses.append(loss)
        weights.append((entry >= 0).any().astype(jnp.float32))
    weights = jnp.stack(weights)
    loss = (jnp.stack(losses) * weights).sum() / jnp.maximum(weights.sum(), 1.0)
    metrics |= {"loss": loss, "align/temperature": jnp.exp(scale)}
    return loss, metrics
