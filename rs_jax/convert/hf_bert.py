"""Hugging Face BERT safetensors -> `rs_jax.models.text_encoder.BertEncoder` (no torch).

HF Linear weights are [out, in]; ours are einsum kernels [in, ...out]: the query/key/value
kernels are [D, heads, head_dim] and the attention output kernel [heads, head_dim, D].
Every tensor of the file must be consumed (bar the known unused ones) and every parameter
of the module assigned, with matching shapes; otherwise a ValueError lists what differs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from jax.sharding import AbstractMesh, NamedSharding

from rs_jax.models.text_encoder import BertConfig, BertEncoder

# Present in BertModel checkpoints but unused by a mean-pooling sentence encoder:
# the position-id buffer and the [CLS] pooler head.
IGNORED_KEYS = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")

Transform = Callable[[np.ndarray], np.ndarray]


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as numpy arrays."""
    from safetensors.numpy import load_file

    return load_file(str(path))


def _strip_prefix(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    # Task models (BertForMaskedLM, ...) nest the encoder under "bert."; keep only that part.
    if any(k.startswith("bert.") for k in tensors):
        return {k.removeprefix("bert."): v for k, v in tensors.items() if k.startswith("bert.")}
    return dict(tensors)


def weight_map(config: BertConfig) -> dict[tuple, tuple[str, Transform]]:
    """Our parameter path -> (HF tensor name, HF array -> our array)."""
    d, n = config.hidden_size, config.num_heads
    h = d // n
    same: Transform = lambda w: w
    dense: Transform = lambda w: w.T  # [out, in] -> [in, out]
    to_heads: Transform = lambda w: w.T.reshape(d, n, h)  # [N*H, D] -> [D, N, H]
    bias_heads: Transform = lambda b: b.reshape(n, h)
    from_heads: Transform = lambda w: w.T.reshape(n, h, d)  # [D, N*H] -> [N, H, D]

    def norm(ours: tuple, theirs: str) -> dict:
        return {
            (*ours, "scale"): (f"{theirs}.weight", same),
            (*ours, "bias"): (f"{theirs}.bias", same),
        }

    mapping = {
        ("embeddings", "word", "embedding"): ("embeddings.word_embeddings.weight", same),
        ("embeddings", "position", "embedding"): ("embeddings.position_embeddings.weight", same),
        ("embeddings", "token_type", "embedding"): (
            "embeddings.token_type_embeddings.weight",
            same,
        ),
        **norm(("embeddings", "norm"), "embeddings.LayerNorm"),
    }
    for i in range(config.num_layers):
        ours, theirs = ("layers", i), f"encoder.layer.{i}"
        for proj in ("query", "key", "value"):
            src = f"{theirs}.attention.self.{proj}"
            mapping[(*ours, "attention", proj, "kernel")] = (f"{src}.weight", to_heads)
            mapping[(*ours, "attention", proj, "bias")] = (f"{src}.bias", bias_heads)
        src = f"{theirs}.attention.output.dense"
        mapping[(*ours, "attention", "out", "kernel")] = (f"{src}.weight", from_heads)
        mapping[(*ours, "attention", "out", "bias")] = (f"{src}.bias", same)
        mapping.update(norm((*ours, "attention_norm"), f"{theirs}.attention.output.LayerNorm"))
        mapping[(*ours, "mlp_in", "kernel")] = (f"{theirs}.intermediate.dense.weight", dense)
        mapping[(*ours, "mlp_in", "bias")] = (f"{theirs}.intermediate.dense.bias", same)
        mapping[(*ours, "mlp_out", "kernel")] = (f"{theirs}.output.dense.weight", dense)
        mapping[(*ours, "mlp_out", "bias")] = (f"{theirs}.output.dense.bias", same)
        mapping.update(norm((*ours, "mlp_norm"), f"{theirs}.output.LayerNorm"))
    return mapping


def _path_str(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def load_bert_weights(model: BertEncoder, tensors: Mapping[str, np.ndarray]) -> None:
    """Set every parameter of `model` in place from HF BERT `tensors` (name -> array).

    `model` may be abstract (`nnx.eval_shape`, which skips the random init): call this under
    `jax.set_mesh(mesh)` then. Each parameter gets the sharding it was declared with.
    Raises ValueError naming missing/unexpected tensors, unassigned parameters and shape
    mismatches, all at once.
    """
    tensors = _strip_prefix(tensors)
    mapping = weight_map(model.config)
    params = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))

    expected = {name for name, _ in mapping.values()}
    missing = sorted(expected - tensors.keys())
    unexpected = sorted(tensors.keys() - expected - set(IGNORED_KEYS))
    unassigned = sorted(_path_str(p) for p in params.keys() - mapping.keys())
    unknown = sorted(_path_str(p) for p in mapping.keys() - params.keys())
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected)}")
    if unassigned:
        problems.append(f"parameters with no source tensor: {', '.join(unassigned)}")
    if unknown:
        problems.append(f"mapped parameters the model lacks: {', '.join(unknown)}")

    values = {}
    for path, (name, transform) in mapping.items():
        if name not in tensors or path not in params:
            continue
        var = params[path]
        try:
            value = transform(np.asarray(tensors[name]))
        except ValueError:  # a reshape that cannot fit
            value = None
        current = var.get_value()
        if value is None or value.shape != current.shape:
            problems.append(
                f"{name} has shape {tuple(tensors[name].shape)}, parameter {_path_str(path)} "
                f"needs {tuple(current.shape)}"
            )
            continue
        values[path] = value.astype(current.dtype)
    if problems:
        raise ValueError("BERT checkpoint does not match the model:\n  " + "\n  ".join(problems))

    for path, value in values.items():
        var = params[path]
        var.set_value(jax.device_put(value, _concrete_sharding(var.get_value())))


def _concrete_sharding(value: jax.Array | jax.ShapeDtypeStruct) -> jax.sharding.Sharding | None:
    sharding = getattr(value, "sharding", None)
    if isinstance(sharding, NamedSharding) and isinstance(sharding.mesh, AbstractMesh):
        mesh = jax.sharding.get_mesh()
        if mesh.empty:
            raise ValueError("loading into an abstract model needs jax.set_mesh(mesh) in scope")
        return NamedSharding(mesh, sharding.spec)
    return sharding
