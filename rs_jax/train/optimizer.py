"""AdamW with global-norm clipping and a warmup + cosine learning-rate schedule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import optax

# Leaves with these names are never weight-decayed, whatever their rank (e.g. a
# per-expert norm scale of shape [E, D] is still a scale).
NO_DECAY_NAMES = frozenset({"bias", "scale"})
# Final learning rate as a fraction of the peak.
END_LR_FRACTION = 0.01


def make_schedule(train_config: Mapping[str, Any]) -> optax.Schedule:
    """0 -> learning_rate over warmup_steps, then cosine to 1% of it at ``steps``."""
    peak = float(train_config["learning_rate"])
    steps = int(train_config["steps"])
    # A short smoke run (steps < warmup) should still train: shrink the warmup
    # rather than refuse or never reach the peak.
    warmup = min(int(train_config["warmup_steps"]), max(steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak,
        warmup_steps=warmup,
        decay_steps=max(steps, warmup + 1),
        end_value=peak * END_LR_FRACTION,
    )


def _key_name(key: Any) -> str | None:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return None


def decay_mask(params: Any) -> Any:
    """True for leaves to weight-decay: rank >= 2 and not named bias/scale."""

    def decay(path: tuple[Any, ...], leaf: Any) -> bool:
        names = [n for n in map(_key_name, path) if n is not None and n != "value"]
        if names and names[-1] in NO_DECAY_NAMES:
            return False
        return getattr(leaf, "ndim", 0) >= 2

    return jax.tree_util.tree_map_with_path(decay, params)


def make_optimizer(
    train_config: Mapping[str, Any],
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Global-norm clipping (if grad_clip > 0) then masked AdamW; returns (tx, schedule)."""
    schedule = make_schedule(train_config)
    grad_clip = float(train_config["grad_clip"])
    # grad_clip <= 0 disables clipping (identity keeps the optimizer state layout).
    clip = optax.clip_by_global_norm(grad_clip) if grad_clip > 0 else optax.identity()
    tx = optax.chain(
        clip,
        optax.adamw(
            learning_rate=schedule,
            b1=float(train_config["b1"]),
            b2=float(train_config["b2"]),
            eps=float(train_config["eps"]),
            weight_decay=float(train_config["weight_decay"]),
            mask=decay_mask,
        ),
    )
    return tx, schedule
