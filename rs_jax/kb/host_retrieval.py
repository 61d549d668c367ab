"""Host-side retrieval: a frozen query searches the built KB's ScaNN index per model level.

`config.model.kb.retrieval = "host"` swaps the model's on-device top-k for ids found here,
inside the Grain pipeline. The model still scores those ids with its learned query, so the
answer and retrieval losses keep training the query projection; only the choice of ids is
frozen. On the same query embeddings both modes pick the same ids (tests/kb).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rs_jax.kb.store import BuiltKB

QueryFn = Callable[[dict[str, Any]], np.ndarray]  # one example -> query embedding [D]


class HostRetriever:
    """Adds `kb_ids` int32 [L, k] (global KB rows, model levels in order) to an example.

    `__call__` maps one example (a Grain map function); `map_batch` maps a batch with one
    ScaNN call per level, which is how the pipeline applies it (in the main process, after
    batching and any worker processes, so neither the index nor the encoder is pickled).
    """

    def __init__(self, built_kb: BuiltKB, kb_levels: Sequence[str], k: int, query_fn: QueryFn):
        """kb_levels [L]: the KB level each model level retrieves from, coarse to fine."""
        if built_kb.index is None:
            raise ValueError(
                f"{built_kb.path} was loaded without its ScaNN index; host retrieval needs "
                "BuiltKB.load(..., load_index=True)"
            )
        self.index = built_kb.index
        self.dim = built_kb.dim
        self.kb_levels = tuple(kb_levels)
        self.k = int(k)
        self.query_fn = query_fn
        for name in set(self.kb_levels):
            count = len(self.index.row_ids.get(name, ()))
            if count < self.k:
                raise ValueError(
                    f"host retrieval: level '{name}' of {built_kb.path} has {count} indexed "
                    f"entries, fewer than config.model.kb.top_k={self.k}"
                )
        # ScaNN ranks by dot product, the model by cosine: the same order only on unit rows.
        norms = np.linalg.norm(built_kb.embeddings, axis=1)
        if len(norms) and np.abs(norms - 1.0).max() > 1e-3:
            raise ValueError(
                f"{built_kb.path}: host retrieval needs L2-normalised KB embeddings (row norms "
                f"range {norms.min():.3g}..{norms.max():.3g}); rebuild with `rs-jax kb build`"
            )

    def search(self, queries: np.ndarray) -> np.ndarray:
        """queries [Q, D] -> ids int32 [Q, L, k]."""
        q = np.asarray(queries, np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(
                f"host retrieval: query embeddings have shape {q.shape}, expected [Q, "
                f"{self.dim}] (the built KB's dimension)"
            )
        ids = np.stack([self.index.search(q, name, self.k)[0] for name in self.kb_levels], 1)
        if (ids < 0).any():
            raise ValueError("host retrieval: the ScaNN index returned fewer than k hits")
        return ids.astype(np.int32)

    def __call__(self, example: dict[str, Any]) -> dict[str, Any]:
        """One example -> the example with `kb_ids` int32 [L, k]."""
        query = np.asarray(self.query_fn(example), np.float32)
        return {**example, "kb_ids": self.search(query[None])[0]}

    def map_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """A batch [B, ...] -> the batch with `kb_ids` int32 [B, L, k]."""
        size = len(next(iter(batch.values())))
        queries = [self.query_fn({key: v[i] for key, v in batch.items()}) for i in range(size)]
        return {**batch, "kb_ids": self.search(np.stack(queries))}


class PromptQuery:
    """The default frozen query: the sentence embedding [D] of the example's question text.

    Text only: the image does not shape it. Questions repeat a lot, so each distinct one is
    encoded once.
    """

    def __init__(self, encoder: Any):
        self.encoder = encoder  # e.g. rs_jax.models.text_encoder.SentenceEncoder
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, example: dict[str, Any]) -> np.ndarray:
        question = str(example["question_text"])
        query = self._cache.get(question)
        if query is None:
            query = self.encoder.encode([question])[0]
            self._cache[question] = query
        return query


def prompt_query(encoder: Any) -> PromptQuery:
    """The default `query_fn`: `encoder.encode([question_text])[0]`, cached per question."""
    return PromptQuery(encoder)
