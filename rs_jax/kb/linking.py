"""Link a dataset's label vocabulary to the rows of a built knowledge base.

Datasets name their classes their own way ("SeaLake", "storagetank"); the KB merges such
spellings into one entry with aliases. Labels are matched by normalised name or alias,
preferring an entry of the label's own level; a class may live at another level in the KB
(EuroSAT "River" is land cover there), and its label then counts at that level.
"""

import re
from collections.abc import Sequence

import numpy as np

from rs_jax.kb.schema import Entry


def _key(text: str) -> str:
    # "Sea or Lake", "SeaLake", "sea_lake" -> "sealake"-like keys; "or"/"and" kept.
    return re.sub(r"[^a-z0-9]", "", text.lower())


def link_labels(
    label_entries: Sequence[Entry], kb_entries: Sequence[Entry]
) -> tuple[np.ndarray, list[str]]:
    """Row of the KB for each dataset label entry (-1 when none), and the unmatched names."""
    by_key: dict[str, list[int]] = {}
    for row, entry in enumerate(kb_entries):
        for text in (entry.name, *entry.aliases):
            rows = by_key.setdefault(_key(text), [])
            if row not in rows:
                rows.append(row)
    rows, unmatched = [], []
    for label in label_entries:
        candidates = [
            r for text in (label.name, *label.aliases) for r in by_key.get(_key(text), [])
        ]
        same_level = [r for r in candidates if kb_entries[r].level == label.level]
        chosen = (same_level or candidates or [-1])[0]
        rows.append(chosen)
        if chosen < 0:
            unmatched.append(f"{label.level}/{label.name}")
    return np.asarray(rows, np.int32), unmatched


def relabel(
    kb_labels: np.ndarray,
    row_of_label: np.ndarray,
    entry_levels: Sequence[str],
    model_kb_levels: Sequence[str],
) -> np.ndarray:
    """Dataset labels [B, M] -> KB rows [B, L, M] for the L model levels, -1 padded.

    entry_levels [N]: the KB level of every KB row; model_kb_levels [L]: the KB level each
    model level retrieves from. A label counts at every model level that retrieves from its
    row's KB level.
    """
    b = kb_labels.shape[0]
    flat = kb_labels.reshape(b, -1)
    rows = np.where(flat >= 0, row_of_label[np.maximum(flat, 0)], -1)
    row_levels = np.asarray(entry_levels, dtype=object)[np.maximum(rows, 0)]
    out = np.full((b, len(model_kb_levels), flat.shape[1]), -1, np.int32)
    for level, kb_level in enumerate(model_kb_levels):
        at_level = (rows >= 0) & (row_levels == kb_level)
        for i in range(b):
            found = np.unique(rows[i][at_level[i]])
            out[i, level, : len(found)] = found
    return out
