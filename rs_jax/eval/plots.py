"""Evaluation pictures: the confusion matrix of a classification run."""

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from rs_jax.eval.metrics import OTHER

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
