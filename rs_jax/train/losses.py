"""The training objective: answer cross-entropy + MoE auxiliary losses + retrieval loss."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

from rs_jax.models.experts import RoutingStats
from rs_jax.models.lvlm import RSVLM
from rs_jax.models.retrieval import hits_at_k, retrieval_loss


def compute_loss(
    model: RSVLM,
    batch: dict[str, jax.Array],
    config: ml_collections.ConfigDict,
    jitter_key: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Scalar loss and scalar metrics for one batch (config = config.model)."""
    logits, visual = model(batch, jitter_key)
    mask = (batch["answer_mask"] * batch["valid"][:, None]).astype(jnp.float32)
    token_loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["answer_ids"])
    num_tokens = jnp.maximum(mask.sum(), 1.0)
    answer_loss = (token_loss * mask).sum() / num_tokens
    correct = (jnp.argmax(logits, -1) == batch["answer_ids"]).astype(jnp.float32)
    metrics = {
        "answer_loss": answer_loss,
        "token_accuracy": (correct * mask).sum() / num_tokens,
    }
    loss = answer_loss

    # Vision-side semantic experts ("moe/") and the LLM's visual-token MoE blocks ("moe_llm/",
    # each block's auxiliary losses added, their mean reported).
    for prefix, stats in (("moe", (visual.routing,)), ("moe_llm", visual.llm_routing)):
        stats = tuple(s for s in stats if s is not None)
        if not stats:
            continue
        balance = jnp.stack([s.balance_loss for s in stats])
        z_loss = jnp.stack([s.z_loss for s in stats])
        loss += config.experts.balance_loss_weight * balance.sum()
        loss += config.experts.z_loss_weight * z_loss.sum()
        metrics |= {
            f"{prefix}/balance_loss": balance.mean(),
            f"{prefix}/z_loss": z_loss.mean(),
            f"{prefix}/dropped_fraction": jnp.stack([s.dropped_fraction for s in stats]).mean(),
        }
        metrics |= expert_load_metrics(prefix, stats, config.level_names)

    if visual.retrieved:
        level_losses = []
        for level, (name, found) in enumerate(
            zip(config.level_names, visual.retrieved, strict=True)
        ):
            labels = jnp.where(batch["valid"][:, None] > 0, batch["kb_labels"][:, level], -1)
            level_losses.append(retrieval_loss(found.all_scores, labels))
            has_label = (labels >= 0).any(-1)
            hits = hits_at_k(found.ids, labels) & has_label
            metrics[f"retrieval/{name}_hit@k"] = hits.sum() / jnp.maximum(has_label.sum(), 1)
        retrieval = jnp.mean(jnp.stack(level_losses))
        loss += config.kb.retrieval_loss_weight * retrieval
        metrics["retrieval/loss"] = retrieval

    metrics["loss"] = loss
    return loss, metrics


def expert_load_metrics(
    prefix: str, stats: Sequence[RoutingStats], level_names: Sequence[str]
) -> dict[str, jax.Array]:
    """`<prefix>/<level>/expert_<i>`: share of the level's assignments (summed over the MoE
    layers in `stats`) that went to each of its experts."""
    counts = sum(s.expert_counts for s in stats)  # [L, E_l]
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
