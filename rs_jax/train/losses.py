"""The training objective: answer cross-entropy + MoE auxiliary losses + retrieval loss."""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from rs_jax.models.lvlm import RSVLM
from rs_jax.models.retrieval import hits_at_k, retrieval_loss


def compute_loss(
    model: RSVLM, batch: dict[str, jax.Array], config: ml_collections.ConfigDict
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Scalar loss and scalar metrics for one batch (config = config.model)."""
    logits, visual = model(batch)
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

    if visual.routing is not None:
        routing = visual.routing
        loss += config.experts.balance_loss_weight * routing.balance_loss
        loss += config.experts.z_loss_weight * routing.z_loss
        metrics |= {
            "moe/balance_loss": routing.balance_loss,
            "moe/z_loss": routing.z_loss,
            "moe/dropped_fraction": routing.dropped_fraction,
        }

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
