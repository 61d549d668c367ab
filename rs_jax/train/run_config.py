"""A run folder describes itself: every checkpoint stores the resolved config that wrote it,
so commands that read a trained run (eval, predict, chat, convert orbax-to-hf, compile --step
eval) need only `--workdir`. A config given beside it is compared with the stored one."""

from __future__ import annotations

import sys
from typing import Any

import ml_collections
from etils import epath

from rs_jax import sharding
from rs_jax.config_files import config_changes, config_from_dict, load_config
from rs_jax.train.checkpointing import (
    DATA_SHA256,
    KNOWLEDGE_SHA256,
    TOKENIZER_SHA256,
    open_latest,
)

# The keys whose change makes a different model or data: listed when a given config
# differs from the stored one (mesh, eval, where the data live and how they are read may
# differ freely).
COMPARED = ("model.", "data.")
NOT_COMPARED = ("data.data_dir", "data.worker_count", "data.pack")
FINGERPRINTS = (KNOWLEDGE_SHA256, TOKENIZER_SHA256, DATA_SHA256)


def stored_config(workdir: epath.PathLike) -> tuple[dict[str, Any], epath.Path]:
    """The config stored with the newest checkpoint in `workdir`, and that checkpoint."""
    checkpointer, step = open_latest(workdir)
    try:
        stored = checkpointer.stored_config(step)
    finally:
        checkpointer.close()
    where = checkpointer.step_dir(step)
    if stored is None:
        raise FileNotFoundError(
            f"{where} holds no config (saved before checkpoints stored theirs); pass --config "
            f"with the config the run was trained with"
        )
    return {k: v for k, v in stored.items() if k not in FINGERPRINTS}, where


def load(workdir: epath.PathLike, overrides: list[str]) -> ml_collections.ConfigDict:
    """The run's own config with `overrides` applied."""
    stored, where = stored_config(workdir)
    if "sharding_rules" in stored:  # JSON: lists, made tuples by config_from_dict
        rules = sharding.with_activation_rules(stored["sharding_rules"])
        stored["sharding_rules"] = [list(rule) for rule in rules]
    return config_from_dict(stored, overrides, f"config stored in {where}")


def changes_note(config: ml_collections.ConfigDict, workdir: epath.PathLike) -> str | None:
    """One line listing the model and data keys in which `config` differs from the config
    stored with the run's newest checkpoint (None: none differ, or nothing is stored)."""
    try:
        stored, where = stored_config(workdir)
    except FileNotFoundError:
        return None  # the command itself says what is missing
    resolved = config.to_dict()
    changes = {
        key: change
        for key, change in config_changes(stored, resolved).items()
        if key.startswith(COMPARED) and not key.startswith(NOT_COMPARED)
    }
    if not changes:
        return None
    listed = [f"{key}: {old!r} -> {new!r}" for key, (old, new) in changes.items()]
    shown = "; ".join(listed[:8]) + (f"; and {len(listed) - 8} more" if len(listed) > 8 else "")
    return f"rs-jax: note: --config differs from the config stored in {where}: {shown}"


def for_command(
    config_spec: str | None, workdir: str | None, overrides: list[str]
) -> ml_collections.ConfigDict:
    """A command's config: `config_spec` loaded (with a note on stderr listing the model
    and data keys in which it differs from `workdir`'s stored config), or without one, the
    config stored with `workdir`'s newest checkpoint."""
    if config_spec is None:
        if not workdir:
            raise ValueError("--config is required (or --workdir of a trained run)")
        return load(workdir, overrides)
    config = load_config(config_spec, overrides)
    note = changes_note(config, workdir) if workdir else None
    if note:
        print(note, file=sys.stderr)
    return config
