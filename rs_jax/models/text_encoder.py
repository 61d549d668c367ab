"""BERT-family sentence encoder (the sentence-transformers all-MiniLM-L6-v2 recipe).

`BertEncoder` is the bare NNX transformer, built from the model's own layers and
`LayerStack` (sharded and scanned like every tower): token ids [B, T] -> hidden states
[B, T, D], and `embed` adds mean pooling over real tokens and L2 normalisation -> [B, D].
`SentenceEncoder` wraps it with the tokenizer and a jitted, length-bucketed forward for
embedding text on the host (knowledge-base entries, queries).
`rs_jax.convert.hf_bert.load_sentence_encoder` builds one from a Hugging Face folder; no
torch is needed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rs_jax import sharding
from rs_jax.models.attention import Attention
from rs_jax.models.config import Precision, StackConfig
from rs_jax.models.layers import Embed, LayerNorm, Mlp, constrain, masked_mean
from rs_jax.models.stack import LayerStack


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


# A frozen encoder whose embeddings are compared across runs (and with the reference):
# float32 throughout; inference only, so the stack keeps nothing for a backward pass.
_PRECISION = Precision()
_STACK = StackConfig(scan=True, remat_policy="none", attention="xla")


class BertEmbeddings(nnx.Module):
    """word + absolute position + token type embeddings, then LayerNorm: [B, T] -> [B, T, D]."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        d = config.hidden_size

        def embed(num, axes):
            return Embed(num, d, precision=_PRECISION, axes=axes, rngs=rngs)

        self.word = embed(config.vocab_size, ("vocab", "embed"))
        self.position = embed(config.max_position_embeddings, ("position", "embed"))
        self.token_type = embed(config.type_vocab_size, (None, "embed"))
        self.norm = LayerNorm(d, precision=_PRECISION, eps=config.layer_norm_eps, rngs=rngs)

    def __call__(self, ids: jax.Array, token_type_ids: jax.Array) -> jax.Array:
        positions = jnp.arange(ids.shape[1])[None, :]
        x = self.word(ids) + self.position(positions) + self.token_type(token_type_ids)
        return self.norm(x)


class BertBlock(nnx.Module):
    """Post-LN block: x = LN(x + attn(x)); x = LN(x + mlp(x)). [B, T, D] -> [B, T, D]."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        d, eps = config.hidden_size, config.layer_norm_eps
        self.attn = Attention(d, config.num_heads, precision=_PRECISION, rngs=rngs)
        self.attn_norm = LayerNorm(d, precision=_PRECISION, eps=eps, rngs=rngs)
        # BERT's "gelu" is the erf form.
        self.mlp = Mlp(
            d, config.intermediate_size, d, precision=_PRECISION, activation="gelu", rngs=rngs
        )
        self.mlp_norm = LayerNorm(d, precision=_PRECISION, eps=eps, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        x = constrain(x, ("act_batch", "act_length", "act_embed"))
        x = self.attn_norm(x + self.attn(x, mask=mask)[0])
        x = constrain(x, ("act_batch", "act_length", "act_embed"))
        return self.mlp_norm(x + self.mlp(x))


class BertEncoder(nnx.Module):
    """BERT encoder without the pooler head (sentence-transformers pools the hidden states)."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embeddings = BertEmbeddings(config, rngs=rngs)
        self.layers = LayerStack(
            lambda r: BertBlock(config, rngs=r), config.num_layers, _STACK, rngs=rngs
        )

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
        x, _ = self.layers(lambda block, x, _: (block(x, mask), None), x)
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
            # passes and miss parity with the reference by ~1e-3); activations pinned by
            # the rules, as in the model.
            with jax.default_matmul_precision("highest"), nnx.logical_axis_rules(self.rules):
                return nnx.merge(graphdef, state).embed(ids, mask, normalize)

        self._state = state
        self._forward = jax.jit(forward)

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """texts (N) -> embeddings [N, dim] float32, in the order given.

        Texts are sorted by token count and padded to power-of-two lengths and batch sizes,
        so a corpus compiles a handful of shapes and wastes little compute on padding.
        """
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
        divisor = sharding.batch_divisor(self.mesh, self.rules)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc=f"encode {self.name}", unit="text")
        pad_id = self.tokenizer.pad_token_id or 0
        with jax.set_mesh(self.mesh):
            rows_sharding = sharding.batch_sharding(self.mesh, self.rules, 2)
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
                    jax.device_put(batch_ids, rows_sharding),
                    jax.device_put(batch_mask, rows_sharding),
                )
                out[chunk] = np.asarray(emb)[: len(chunk)]
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return out
