"""Zero-shot classification of an aligned model (config.train.objective="align"): each
image's prompt-free level query against the KB embeddings of the classes, by cosine.

For every eval source the candidates are the KB entries that are the first ground-truth
entry of one of its eval images at some level (for a classification folder: its classes,
each at its KB level), each scored by cosine with the image's query of that level; an image
is right when its best candidate is one of its ground-truth entries. Two texts per class:
the KB embedding the alignment trained against ("accuracy"), and a prompt ensemble of the
entry's name ("accuracy_names": zero_shot_prompts.json, each prompt embedded by the built
KB's encoder, the unit embeddings averaged as CLIP does); docs/alignment.md.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from rs_jax.eval.protocols import Scorer
from rs_jax.kb.store import BuiltKB
from rs_jax.train import experiment as experiment_lib
from rs_jax.train.progress import ProgressLine

PROMPTS: tuple[str, ...] = tuple(
    json.loads(Path(__file__).with_name("zero_shot_prompts.json").read_text())["prompts"]
)


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def zero_shot_predictions(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """queries [N, C, D] (each image's query for each candidate: that of the candidate's
    level) and candidate embeddings [C, D] -> the index [N] of each image's candidate of
    highest cosine similarity."""
    return np.argmax(np.einsum("ncd,cd->nc", unit(queries), unit(candidates)), axis=-1)


def name_embeddings(encoder: Any, names: Sequence[str], prompts: Sequence[str] = PROMPTS):
    """names [C] -> [C, D] unit vectors: each name's prompts embedded, unit-normalised,
    averaged and normalised again (CLIP's prompt ensembles)."""
    texts = [prompt.format(name) for name in names for prompt in prompts]
    embedded = unit(encoder.encode(texts)).reshape(len(names), len(prompts), -1)
    return unit(embedded.mean(axis=1))


def zero_shot(
    config: ml_collections.ConfigDict,
    exp: experiment_lib.Experiment,
    params: Any,
    scorer: Scorer,
) -> dict[str, dict[str, dict[str, Any]]]:
    """{source: {"accuracy", "accuracy_names", "count", "classes"}} over the eval split."""
    graphdef = exp.graphdef

    @jax.jit
    def queries(params, image):
        with nnx.logical_axis_rules(exp.rules):
            model = nnx.merge(graphdef, params)
            return jax.numpy.stack(model.image_queries(image), axis=1), model.kb.table()

    gathered = collections.defaultdict(lambda: ([], []))  # source -> (queries, labels)
    table = None
    batches = list(exp.data.eval_batches(config.eval.batch_size, config.eval.num_examples))
    progress = ProgressLine(len(batches), 0, max(len(batches) // 5, 1))
    with jax.set_mesh(exp.mesh):
        for i, batch in enumerate(batches, start=1):
            sharded = exp.shard_batch(batch)
            level_queries, table = jax.device_get(queries(params, sharded["image"]))
            labels = np.asarray(jax.device_get(sharded["kb_labels"]))  # [B, L, M] KB rows
            for row in np.flatnonzero(batch["valid"] > 0):
                task = exp.data.tasks[batch["task_id"][row]]
                source = gathered[scorer.source_of[task]]
                source[0].append(level_queries[row])
                source[1].append(labels[row])
            progress.update(i, {}, int((batch["valid"] > 0).sum()))
    stacked = {name: (np.stack(q), np.stack(ls)) for name, (q, ls) in gathered.items()}
    candidates = sorted(
        {int(r) for _, ls in stacked.values() for r in ls[:, :, 0].ravel() if r >= 0}
    )
    names = None  # a learned table has no encoder to embed the names with
    if candidates and exp.knowledge.table is not None:
        encoder = experiment_lib.load_kb_encoder(BuiltKB.load(exp.knowledge.source))
        names = np.zeros_like(table, dtype=np.float64)
        entries = [exp.knowledge.entries[r].name for r in candidates]
        names[candidates] = name_embeddings(encoder, entries)
    return {
        name: _score(q, ls, table)
        | {"accuracy_names": None if names is None else _score(q, ls, names)["accuracy"]}
        for name, (q, ls) in stacked.items()
    }


def _score(queries: np.ndarray, labels: np.ndarray, table: np.ndarray) -> dict[str, Any]:
    """queries [N, L, Dk], labels [N, L, M] KB rows (-1 none) -> the accuracy over the
    images with a label. The candidates are every (level, entry) that is an image's first
    label at that level, each scored with the image's query of its level."""
    first = labels[:, :, 0]
    rows = np.flatnonzero((first >= 0).any(1))
    if not len(rows):
        return {"accuracy": None, "count": 0, "classes": 0}
    pairs = sorted({(lv, int(first[r, lv])) for r in rows for lv in np.flatnonzero(first[r] >= 0)})
    levels = np.array([lv for lv, _ in pairs])
    entries = np.array([entry for _, entry in pairs])
    picked = entries[zero_shot_predictions(queries[rows][:, levels], table[entries])]
    right = [picked[i] in labels[row] for i, row in enumerate(rows)]
    return {"accuracy": float(np.mean(right)), "count": int(len(rows)), "classes": len(pairs)}
