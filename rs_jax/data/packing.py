"""Sequence packing for training: several examples in one decoder row.

Unpacked, every example fills a fixed row of [text before the image P; visual V; prompt Tp;
answer Ta] tokens, sized for the longest prompt and answer: a class name or a yes/no
answer leaves most of a caption-sized row padding. Packed (config.data.packing), each row
holds up to `slots` examples' real tokens one after another in `length` tokens, placed by
Grain's first-fit packing; a token attends only within its own example and RoPE counts
from 0 in each (models/decoder.py), so an example's loss is the same packed or not
(tests/data/test_packing.py). Evaluation and generation stay unpacked.

A packed row (numpy; B = per-host rows, K = slots, T = length):
  image, prefix_ids, prompt_ids, prompt_mask, answer_ids, answer_mask, task_id,
  kb_labels, valid      the unpacked fields with a slot axis: [B, K, ...]; valid 0 marks
                        an empty slot
  token_index    int32 [B, T]  the token's place among the row's slots laid side by side
                               as unpacked rows ([K * (P + V + Tp + Ta)]); 0 on padding
  token_segment  int32 [B, T]  1 + its slot; 0 on padding
  token_position int32 [B, T]  its position within its example (RoPE)
  answer_position int32 [B, K, Ta]  where the token that predicts each answer token sits
"""

from __future__ import annotations

import dataclasses

import grain
import numpy as np

# Per-example fields carried into a slot of the packed row.
SLOT_FIELDS = (
    "image",
    "prefix_ids",
    "prompt_ids",
    "prompt_mask",
    "answer_ids",
    "answer_mask",
    "task_id",
    "kb_labels",
)


# The fields only a packed batch has.
PACKING_FIELDS = ("token_index", "token_segment", "token_position", "answer_position")


@dataclasses.dataclass(frozen=True)
class Packing:
    """slots: examples per row at most (K); length: decoder tokens per row (T);
    visual_tokens: V, the model's visual tokens per image."""

    slots: int
    length: int
    visual_tokens: int


def _widths(example: dict, visual_tokens: int) -> tuple[int, int, int, int]:
    return (
        len(example["prefix_ids"]),
        visual_tokens,
        len(example["prompt_ids"]),
        len(example["answer_ids"]),
    )


def _to_pieces(example: dict, visual_tokens: int) -> dict:
    """An example as Grain's packer sees it: one-element sequences of its fields, and the
    sequence of its real tokens' places in its unpacked row."""
    prefix, visual, prompt, _ = _widths(example, visual_tokens)
    start = prefix + visual
    tokens = np.concatenate(
        [
            np.arange(start),
            start + np.flatnonzero(example["prompt_mask"]),
            start + prompt + np.flatnonzero(example["answer_mask"]),
        ]
    ).astype(np.int32)
    pieces = {key: np.asarray(example[key])[None] for key in SLOT_FIELDS}
    pieces["token"] = tokens
    return pieces


def _to_row(packed: dict, visual_tokens: int, slots: int) -> dict:
    prefix, visual, prompt, answer = _widths(
        {k: packed[k][0] for k in ("prefix_ids", "prompt_ids", "answer_ids")}, visual_tokens
    )
    width = prefix + visual + prompt + answer
    segment = packed["token_segment_ids"].astype(np.int32)
    real = segment > 0
    token_index = np.where(real, (segment - 1) * width + packed["token"], 0).astype(np.int32)
    position_of = np.zeros(slots * width, np.int32)
    position_of[token_index[real]] = np.flatnonzero(real)
    answer_tokens = np.arange(slots)[:, None] * width + prefix + visual + prompt
    answer_tokens = answer_tokens + np.arange(answer)[None]
    answer_position = np.where(packed["answer_mask"] > 0, position_of[answer_tokens] - 1, 0)
    row = {key: packed[key] for key in SLOT_FIELDS}
    row["valid"] = (packed["image_segment_ids"] > 0).astype(np.int32)
    row["token_index"] = token_index
    row["token_segment"] = segment
    row["token_position"] = packed["token_positions"].astype(np.int32)
    row["answer_position"] = answer_position.astype(np.int32)
    return row


def pack(ds: grain.IterDataset, packing: Packing, bins: int) -> grain.IterDataset:
    """Examples -> packed rows (see the module docstring); `bins` rows are filled at once
    (first fit), so a larger number wastes less room."""
    visual = packing.visual_tokens
    ds = ds.map(lambda example: _to_pieces(example, visual))
    lengths = {key: packing.slots for key in SLOT_FIELDS} | {"token": packing.length}
    ds = grain.experimental.FirstFitPackIterDataset(
        ds, length_struct=lengths, num_packing_bins=bins, shuffle_bins=False
    )
    return ds.map(lambda packed: _to_row(packed, visual, packing.slots))
