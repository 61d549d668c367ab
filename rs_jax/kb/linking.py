"""Link a dataset's label vocabulary to the rows of a built knowledge base.

Datasets name their classes their own way ("SeaLake", "storagetank"); the KB merges such
spellings into one entry with aliases. Labels are matched by normalised name or alias,
preferring an entry of the label's own level; a class may live at another level in the KB
(EuroSAT "River" is land cover there), and its label then counts at that level.
"""

import re
from collections.abc import Sequence

import numpy as np


def _key(text: str) -> str:
    # "Sea or Lake", "SeaLake", "sea_lake" -> "sealake"-like keys; "or"/"and" kept.
    return re.sub(r"[^a-z0-9]", "", text.lower())


def link_labels(label_entries: Sequence, kb_entries: Sequence) -> tuple[np.ndarray, list[str]]:
    """Row of the KB for each dataset label entry (-1 when none), and the unmatched names.

    Both sequences hold objects with `level`, `name` and `aliases`.
    """
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
    kb_labels: np.ndarray, row_of_label: np.ndarray, row_level: np.ndarray, num_levels: int
) -> np.ndarray:
    """Dataset labels [B, L_data, M] -> KB rows [B, num_levels, M'], each at its KB level.

    row_level [N] is the model level of every KB row (-1: a level the model does not use).
    """
    b = kb_labels.shape[0]
    flat = kb_labels.reshape(b, -1)
    rows = np.where(flat >= 0, row_of_label[np.maximum(flat, 0)], -1)
    levels = np.where(rows >= 0, row_level[np.maximum(rows, 0)], -1)
    out = np.full((b, num_levels, flat.shape[1]), -1, np.int32)
    for level in range(num_levels):
        for i in range(b):
            found = np.unique(rows[i][levels[i] == level])
            out[i, level, : len(found)] = found
    return out
