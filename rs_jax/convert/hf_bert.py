"""Hugging Face BERT safetensors -> `rs_jax.models.text_encoder.BertEncoder` (no torch).

HF Linear weights are [out, in]; ours are einsum kernels [in, ...out]: the query/key/value
kernels are [D, heads, head_dim] and the attention output kernel [heads, head_dim, D].
Every tensor of the file must be consumed (bar the known unused ones) and every parameter
of the module assigned, with matching shapes; otherwise a ValueError lists what differs
(`rs_jax.convert.weights`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rs_jax.convert.weights import (
    TRANSPOSED,
    Checkpoint,
    Source,
    bias_heads,
    find_prefix,
    load_into,
    merge_heads,
    split_heads,
)
from rs_jax.models.text_encoder import BertConfig, BertEncoder

# Present in BertModel checkpoints but unused by a mean-pooling sentence encoder:
# the position-id buffer and the [CLS] pooler head.
IGNORED_KEYS = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as numpy arrays."""
    from safetensors.numpy import load_file

    return load_file(str(path))


def weight_map(config: BertConfig, prefix: str = "") -> dict[tuple, Source]:
    """Our parameter path -> Source (HF tensor name under `prefix`, layout transform)."""
    d, n = config.hidden_size, config.num_heads
    h = d // n

    def norm(ours: tuple, theirs: str) -> dict:
        return {
            (*ours, "scale"): Source(f"{prefix}{theirs}.weight"),
            (*ours, "bias"): Source(f"{prefix}{theirs}.bias"),
        }

    embeddings = f"{prefix}embeddings"
    mapping = {
        ("embeddings", "word", "embedding"): Source(f"{embeddings}.word_embeddings.weight"),
        ("embeddings", "position", "embedding"): Source(f"{embeddings}.position_embeddings.weight"),
        ("embeddings", "token_type", "embedding"): Source(
            f"{embeddings}.token_type_embeddings.weight"
        ),
        **norm(("embeddings", "norm"), "embeddings.LayerNorm"),
    }
    for i in range(config.num_layers):
        ours, theirs = ("layers", i), f"{prefix}encoder.layer.{i}"
        for proj in ("query", "key", "value"):
            src = f"{theirs}.attention.self.{proj}"
            mapping[(*ours, "attention", proj, "kernel")] = Source(
                f"{src}.weight", split_heads(d, n, h)
            )
            mapping[(*ours, "attention", proj, "bias")] = Source(f"{src}.bias", bias_heads(n, h))
        src = f"{theirs}.attention.output.dense"
        mapping[(*ours, "attention", "out", "kernel")] = Source(
            f"{src}.weight", merge_heads(n, h, d)
        )
        mapping[(*ours, "attention", "out", "bias")] = Source(f"{src}.bias")
        layer = f"encoder.layer.{i}"
        mapping.update(norm((*ours, "attention_norm"), f"{layer}.attention.output.LayerNorm"))
        mapping[(*ours, "mlp_in", "kernel")] = Source(
            f"{theirs}.intermediate.dense.weight", TRANSPOSED
        )
        mapping[(*ours, "mlp_in", "bias")] = Source(f"{theirs}.intermediate.dense.bias")
        mapping[(*ours, "mlp_out", "kernel")] = Source(f"{theirs}.output.dense.weight", TRANSPOSED)
        mapping[(*ours, "mlp_out", "bias")] = Source(f"{theirs}.output.dense.bias")
        mapping.update(norm((*ours, "mlp_norm"), f"{layer}.output.LayerNorm"))
    return mapping


def load_bert_weights(model: BertEncoder, tensors: Mapping[str, np.ndarray] | Checkpoint) -> None:
    """Set every parameter of `model` in place from HF BERT `tensors` (name -> array, or a
    `Checkpoint`); task checkpoints' "bert." prefix is found and their heads ignored.

    `model` may be abstract (`nnx.eval_shape`, which skips the random init): call this under
    `jax.set_mesh(mesh)` then. Raises ValueError listing every mismatch at once.
    """
    if not isinstance(tensors, Checkpoint):
        tensors = Checkpoint.from_arrays(tensors)
    anchor = "embeddings.word_embeddings.weight"
    prefix = find_prefix(tensors.names, anchor, "BERT", tensors.folder)
    load_into(
        model,
        weight_map(model.config, prefix),
        tensors,
        what="BERT",
        owned=lambda name: name.startswith(prefix),
        ignored=lambda name: name[len(prefix) :] in IGNORED_KEYS,
    )
