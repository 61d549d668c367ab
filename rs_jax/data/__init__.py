"""Data: synthetic scenes, TFDS builders, folder datasets, tokenizer, Grain pipelines.

Heavy modules (TFDS, Grain, transformers) load lazily, so ``rs_jax.data.synth``
and ``rs_jax.data.tasks`` stay cheap to import.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_data": "rs_jax.data.pipeline",
    "DataBundle": "rs_jax.data.pipeline",
    "prepare_rs_synth": "rs_jax.data.rs_synth",
    "FolderDataset": "rs_jax.data.folder",
    "train_tokenizer": "rs_jax.data.tokenizer",
    "load_tokenizer": "rs_jax.data.tokenizer",
    "normalize_answer": "rs_jax.data.tasks",
    "kb_entries": "rs_jax.data.synth",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
