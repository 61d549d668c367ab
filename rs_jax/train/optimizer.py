"""AdamW with global-norm clipping and a warmup + cosine learning-rate schedule; frozen
parameters (training stages, a pretrained KB table) get no updates and no optimizer state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import optax

# Leaves with these names are never weight-decayed, whatever their rank (e.g. a
# per-expert norm scale of shape [E, D] is still a scale).
NO_DECAY_NAMES = frozenset({"bias", "scale"})
# Final learning rate as a fraction of the peak.
END_LR_FRACTION = 0.01
# LoRA adapters train even inside a frozen part: they exist to be trained.
ADAPTER_NAMES = frozenset({"lora_a", "lora_b"})


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
        names = _path_names(path)
        if names and names[-1] in NO_DECAY_NAMES:
            return False
        return getattr(leaf, "ndim", 0) >= 2

    return jax.tree_util.tree_map_with_path(decay, params)


def _path_names(path: tuple[Any, ...]) -> list[str]:
    return [n for n in map(_key_name, path) if n is not None and n != "value"]


def frozen_labels(params: Any, frozen: Sequence[str]) -> Any:
    """'frozen' for parameters under one of the dotted prefixes `frozen` (e.g. "vision",
    "llm", "kb.embeddings"), except LoRA adapters; 'train' for the rest."""
    prefixes = [tuple(prefix.split(".")) for prefix in frozen]
    paths = [_path_names(path) for path, _ in jax.tree_util.tree_leaves_with_path(params)]
    for prefix in prefixes:
        if not any(tuple(names[: len(prefix)]) == prefix for names in paths):
            parts = sorted({names[0] for names in paths if names})
            raise ValueError(
                f"config.train.freeze: {'.'.join(prefix)!r} names no parameter (the model's "
                f"parts: {', '.join(parts)})"
            )

    def label(path: tuple[Any, ...], _) -> str:
        names = _path_names(path)
        if names and names[-1] in ADAPTER_NAMES:
            return "train"
        hit = any(tuple(names[: len(p)]) == p for p in prefixes)
        return "frozen" if hit else "train"

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(
    train_config: Mapping[str, Any],
    params: Any = None,
    frozen: Sequence[str] = (),
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Global-norm clipping (if grad_clip > 0) then masked AdamW; returns (tx, schedule).

    frozen: dotted prefixes of parameters (in `params`) that get no updates and, through
    `optax.multi_transform`, no moments either.
    """
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
    if frozen:
        labels = frozen_labels(params, frozen)
        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
    return tx, schedule
