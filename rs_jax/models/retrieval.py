"""The knowledge-base table inside the model and on-device top-k retrieval per level."""

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rs_jax.models.config import KnowledgeConfig, Precision
from rs_jax.models.layers import linear, matmul


class Retrieved(NamedTuple):
    """Top-k entries of one level: ids and scores [B, k]; scores over all entries [B, N]."""

    ids: jax.Array
    scores: jax.Array
    all_scores: jax.Array


class KnowledgeBase(nnx.Module):
    """Entry embeddings [N, Dk] on the `kb` logical axis, each entry tagged with its KB level.

    Retrieval scores are scaled cosine similarities, computed in float32 (they pick the
    cues, like a router); entries of other levels are masked out, so one table serves every
    level and can be sharded along `kb` as a whole.
    """

    def __init__(
        self,
        entry_levels: Sequence[str],
        cfg: KnowledgeConfig,
        precision: Precision,
        *,
        table: np.ndarray | None = None,
        rngs: nnx.Rngs,
    ):
        """entry_levels [N]: the KB level of every entry; table [N, dim]: embeddings of a
        built KB (None: a learned, randomly initialised table). A built table is frozen unless
        cfg.trainable (the optimizer must leave a frozen one alone too)."""
        self.entry_levels = tuple(str(level) for level in entry_levels)
        self.cfg = cfg
        self.scoring = Precision(dtype=jnp.float32, param_dtype=precision.param_dtype)
        shape = (len(self.entry_levels), cfg.dim)
        learned = table is None
        self.trainable = learned or cfg.trainable
        if learned:
            table = jax.random.normal(rngs.params(), shape).astype(precision.param_dtype)
        elif table.shape != shape:
            raise ValueError(
                f"knowledge-base table has shape {table.shape}, expected {shape} "
                "(entries, config.model.kb.dim)"
            )
        else:  # a host array, not a committed device array, so out_sharding can place it
            table = np.asarray(table, precision.param_dtype)
        self.embeddings = nnx.Param(table, out_sharding=("kb", "kb_embed"))
        # Zero-initialised residual on a built table: starts as the identity on it.
        self.adapter = (
            linear(
                cfg.dim,
                cfg.dim,
                ("kb_embed", "kb_embed_out"),
                precision=self.scoring,
                kernel_init=nnx.initializers.zeros_init(),
                rngs=rngs,
            )
            if cfg.adapter and not learned
            else None
        )
        self.logit_scale = nnx.Param(jnp.asarray(np.log(10.0), jnp.float32))

    def table(self) -> jax.Array:
        """The entry embeddings used for search and cues, [N, Dk] float32."""
        table = self.embeddings[...].astype(jnp.float32)
        if not self.trainable:
            table = jax.lax.stop_gradient(table)
        if self.adapter is not None:
            table = table + self.adapter(table)
        return table

    def scores(self, query: jax.Array, kb_level: str) -> jax.Array:
        """query [B, Dk] -> scores [B, N] (float32), -inf outside `kb_level`."""
        keys = _normalize(self.table())
        scores = matmul("bd,nd->bn", _normalize(query.astype(jnp.float32)), keys, self.scoring)
        scores = scores * jnp.exp(self.logit_scale[...])
        in_level = np.asarray(self.entry_levels) == kb_level
        return jnp.where(jnp.asarray(in_level)[None, :], scores, -jnp.inf)

    def retrieve(self, query: jax.Array, kb_level: str, ids: jax.Array | None = None) -> Retrieved:
        """query [B, Dk] -> the top-k entries of `kb_level`. ids [B, k]: entries already chosen
        (host-side retrieval); they are scored like the rest, so the query still gets
        gradients."""
        all_scores = self.scores(query, kb_level)
        if ids is not None:
            scores = jnp.take_along_axis(all_scores, ids, axis=-1)
        elif self.cfg.approx:
            scores, ids = jax.lax.approx_max_k(
                all_scores, self.cfg.top_k, recall_target=self.cfg.recall_target
            )
        else:
            scores, ids = jax.lax.top_k(all_scores, self.cfg.top_k)
        return Retrieved(ids, scores, all_scores)

    def lookup(self, ids: jax.Array) -> jax.Array:
        """ids [B, k] -> embeddings [B, k, Dk] (float32)."""
        return jnp.take(self.table(), ids, axis=0)


def _normalize(x: jax.Array) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-6)


def retrieval_loss(all_scores: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy of the ground-truth entries under the level's softmax.

    all_scores [B, N] (-inf outside the level); labels [B, M] entry ids, -1 = none.
    Examples without labels at this level do not count.
    """
    log_probs = jax.nn.log_softmax(all_scores, axis=-1)
    valid = labels >= 0
    picked = jnp.take_along_axis(log_probs, jnp.maximum(labels, 0), axis=-1)
    per_example = -(jnp.where(valid, picked, 0.0).sum(-1)) / jnp.maximum(valid.sum(-1), 1)
    has_label = valid.any(-1)
    return (per_example * has_label).sum() / jnp.maximum(has_label.sum(), 1)


def hits_at_k(ids: jax.Array, labels: jax.Array) -> jax.Array:
    """Whether any of the retrieved ids [B, k] is a ground-truth entry in labels [B, M]."""
    match = (ids[:, :, None] == labels[:, None, :]) & (labels[:, None, :] >= 0)
    return match.any(axis=(1, 2))
