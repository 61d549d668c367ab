"""Evaluation pictures: the confusion matrix of a classification run; boxes drawn on images
(grounding answers against their references)."""

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from rs_jax.data.boxes import Box
from rs_jax.eval.metrics import OTHER

PREDICTED = (255, 0, 0)  # red: the model's boxes
REFERENCE = (0, 255, 0)  # green: the reference boxes
TILE = 256  # px: the side of each image in a sheet of grounding examples
_CAPTION = 40  # px of text under each tile

# Above this many classes the counts would not fit in their cells.
MAX_CLASSES_WITH_COUNTS = 20


def confusion_matrix_figure(
    matrix: Sequence[Sequence[int]] | np.ndarray, class_names: Sequence[str], title: str = ""
) -> Figure:
    """Heat map of a confusion matrix, rows (references) normalised to sum to 1.

    ``matrix`` is [K, K] or [K, K + 1], the extra column counting predictions that are none
    of the K classes (``ClassificationScores.summary()["confusion_matrix"]``). Colours are
    row shares, so the diagonal reads as per-class recall whatever the class sizes; the
    counts are written in the cells when there are at most ``MAX_CLASSES_WITH_COUNTS``
    classes. A plain Figure, not pyplot: nothing global to close, safe off the main thread.
    """
    counts = np.asarray(matrix)
    n = len(class_names)
    if counts.ndim != 2 or counts.shape[0] != n or counts.shape[1] not in (n, n + 1):
        raise ValueError(
            f"a confusion matrix of {n} classes is [{n}, {n}] or [{n}, {n + 1}], "
            f"not {list(counts.shape)}"
        )
    columns = [*class_names, OTHER][: counts.shape[1]]
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)

    side = max(4.0, 0.45 * n + 2.5)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the reference class")
    ax.set_xticks(np.arange(len(columns)), columns, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(np.arange(n), class_names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("reference")
    ax.set_title(title)
    if n <= MAX_CLASSES_WITH_COUNTS:
        fontsize = 9 if n <= 10 else 7
        for (row, col), count in np.ndenumerate(counts):
            colour = "white" if shares[row, col] > 0.5 else "black"
            ax.text(col, row, str(count), ha="center", va="center", color=colour, fontsize=fontsize)
    return fig


def answers_by_hit_figure(retrieval: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Per retrieving level, two bars: answer accuracy when the level's top cue was a
    ground-truth entry and when it was not, each labelled with its count. `retrieval` is
    eval.json's "retrieval" ({level: {"answers_when_hit@1": {"accuracy", "count"},
    "answers_when_missed": {...}}}); a bar without answers is left out."""
    levels = list(retrieval)
    fig = Figure(figsize=(max(1.8 * len(levels) + 2.5, 5.0), 3.6), layout="constrained")
    ax = fig.add_subplot()
    bars = ((-0.2, "answers_when_hit@1", "tab:green"), (0.2, "answers_when_missed", "tab:red"))
    for offset, key, colour in bars:
        for i, level in enumerate(levels):
            row = retrieval[level].get(key) or {"accuracy": None, "count": 0}
            if row["accuracy"] is None:
                continue
            ax.bar(i + offset, row["accuracy"], 0.4, color=colour, label=key if i == 0 else None)
            ax.text(i + offset, row["accuracy"], f"n={row['count']}", ha="center", va="bottom")
    ax.set_xticks(np.arange(len(levels)), levels)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("answer accuracy (exact match)")
    ax.set_title("answers by whether the level's top cue is right")
    ax.legend(["top cue right", "top cue wrong"], loc="upper right", fontsize=8)
    return fig


def draw_boxes(
    image: np.ndarray,
    size: tuple[int, int],
    predicted: Sequence[Box] = (),
    reference: Sequence[Box] = (),
    width: int = 2,
) -> Image.Image:
    """image uint8 [H, W, 3] resized to size (width, height) px (nearest neighbour: a
    32 px image stays readable) with the outlines of the reference boxes in green and the
    predicted ones over them in red; boxes in unit-square coordinates, rotated ones as their
    four corners."""
    out = Image.fromarray(np.asarray(image, np.uint8)).resize(size, Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(out)
    for found, colour in ((reference, REFERENCE), (predicted, PREDICTED)):
        for box in found:
            corners = [(x * size[0], y * size[1]) for x, y in box.corners()]
            draw.polygon(corners, outline=colour, width=width)
    return out


class Example(NamedTuple):
    """One grounding answer to draw: the image (uint8 [H, W, 3]), the question, and the
    predicted and reference boxes."""

    image: np.ndarray
    question: str
    predicted: Sequence[Box]
    reference: Sequence[Box]


def grounding_sheet(examples: Sequence[Example]) -> Image.Image:
    """The examples side by side, TILE px each with their boxes (draw_boxes) and the
    question under them: an image of [TILE + 40, TILE * len(examples)] px."""
    sheet = Image.new("RGB", (TILE * len(examples), TILE + _CAPTION), "white")
    text = ImageDraw.Draw(sheet)
    for i, ex in enumerate(examples):
        sheet.paste(draw_boxes(ex.image, (TILE, TILE), ex.predicted, ex.reference), (i * TILE, 0))
        # About 40 characters of PIL's default font fit a tile's width: two lines.
        words, lines = ex.question.split(), [""]
        for word in words:
            if len(lines[-1]) + len(word) > 40:
                lines.append("")
            lines[-1] = f"{lines[-1]} {word}".strip()
        text.multiline_text((i * TILE + 4, TILE + 2), "\n".join(lines[:2]), fill="black")
    return sheet
