"""Grounding metrics: IoU of horizontal and rotated boxes, accuracy at IoU 0.5 and 0.25,
mean IoU, accuracy by object size, and precision / recall at IoU 0.5 with one-to-one
matching of several boxes (docs/evaluation.md, "Grounding")."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import scipy.optimize

from rs_jax.data.boxes import Box, check_format, parse

# Reference box area as a fraction of the image: COCO's 32² and 96² pixel limits taken
# relative to a 640 x 640 image, so that they hold at any image size.
SMALL_BELOW = (32 / 640) ** 2  # 0.0025
LARGE_FROM = (96 / 640) ** 2  # 0.0225
SIZES = ("small", "medium", "large")
THRESHOLDS = (0.5, 0.25)


def horizontal_iou(a: Box, b: Box) -> float:
    """IoU of the boxes' unrotated rectangles."""
    w = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    h = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = w * h
    return inter / (a.area + b.area - inter)


def iou(a: Box, b: Box) -> float:
    """Intersection over union; rotated boxes as polygons (shapely)."""
    if a.angle == 0 and b.angle == 0:
        return horizontal_iou(a, b)
    pa, pb = a.polygon(), b.polygon()
    inter = pa.intersection(pb).area
    return inter / (pa.area + pb.area - inter)


def size_of(box: Box) -> str:
    if box.area < SMALL_BELOW:
        return "small"
    return "medium" if box.area < LARGE_FROM else "large"


def match(ious: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int]]:
    """One-to-one pairs (prediction, reference) of ious [P, R] with IoU >= threshold: the
    most such pairs, and among those the largest total IoU (Hungarian algorithm)."""
    if ious.size == 0:
        return []
    ok = ious >= threshold
    # A pair's weight n + 1 + IoU (n: most pairs possible) makes one more pair outweigh
    # any gain in IoU: k pairs weigh at most k(n + 2) < (k + 1)(n + 1) for k <= n.
    n = min(ious.shape)
    weight = np.where(ok, n + 1 + ious, 0.0)
    rows, cols = scipy.optimize.linear_sum_assignment(weight, maximize=True)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if ok[i, j]]


@dataclasses.dataclass
class GroundingScores:
    """Accumulates (answer, reference) box texts in one notation (config.data.box_format).

    A reference with one box scores the answer's first box (none: IoU 0); every answer
    also counts toward precision and recall at IoU 0.5 over all its boxes, matched one to
    one. A reference must hold a box; an answer may hold none (a miss).
    """

    box_format: str = "geochat"
    ious: list[float] = dataclasses.field(default_factory=list, init=False)
    sizes: list[str] = dataclasses.field(default_factory=list, init=False)
    counts: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(3, np.int64), init=False
    )  # matched, predicted, reference boxes
    answers: int = dataclasses.field(default=0, init=False)
    no_box: int = dataclasses.field(default=0, init=False)

    def __post_init__(self):
        check_format(self.box_format)

    def add(self, prediction: str, reference: str) -> bool:
        """Whether the answer hits: IoU >= 0.5 with a single reference box, or, with
        several, every reference box matched and no extra box given."""
        refs = parse(reference, self.box_format)
        if not refs:
            raise ValueError(f"reference {reference!r} holds no {self.box_format} box")
        preds = parse(prediction, self.box_format)
        self.answers += 1
        self.no_box += not preds
        ious = np.array([[iou(p, r) for r in refs] for p in preds]).reshape(len(preds), len(refs))
        matched = len(match(ious))
        self.counts += [matched, len(preds), len(refs)]
        if len(refs) > 1:
            return matched == len(refs) == len(preds)
        first = float(ious[0, 0]) if preds else 0.0
        self.ious.append(first)
        self.sizes.append(size_of(refs[0]))
        return first >= 0.5

    def summary(self) -> dict:
        """acc@0.5, acc@0.25, mean_iou and by_size {size: {acc@0.5, count}} over answers with
        one reference box (`single`); precision and recall at IoU 0.5 over all boxes;
        count (answers) and no_box (answers without a box)."""
        ious, sizes = np.asarray(self.ious), np.asarray(self.sizes)
        out = {f"acc@{t}": _mean(ious >= t) for t in THRESHOLDS}
        out["mean_iou"] = _mean(ious)
        out["by_size"] = {
            s: {"acc@0.5": _mean(ious[sizes == s] >= 0.5), "count": int((sizes == s).sum())}
            for s in SIZES
        }
        matched, predicted, referenced = (int(c) for c in self.counts)
        out |= {
            "precision@0.5": matched / predicted if predicted else 0.0,
            "recall@0.5": matched / referenced if referenced else 0.0,
            "boxes": {"matched": matched, "predicted": predicted, "reference": referenced},
            "single": len(self.ious),
            "no_box": self.no_box,
            "count": self.answers,
        }
        return out


def _mean(values: Sequence[float] | np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) if values.size else 0.0


def format_grounding_table(row: dict) -> str:
    """A markdown table of a GroundingScores summary."""
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {k} | {row[k]:.3f} |" for k in ("acc@0.5", "acc@0.25", "mean_iou")]
    for size in SIZES:
        r = row["by_size"][size]
        lines.append(f"| acc@0.5 {size} (n={r['count']}) | {r['acc@0.5']:.3f} |")
    lines.append(f"| precision@0.5 | {row['precision@0.5']:.3f} |")
    lines.append(f"| recall@0.5 | {row['recall@0.5']:.3f} |")
    lines.append(f"| answers (one reference box) | {row['count']} ({row['single']}) |")
    lines.append(f"| answers without a box | {row['no_box']} |")
    return "\n".join(lines)
