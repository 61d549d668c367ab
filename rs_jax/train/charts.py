"""Pictures people would rather look at than read: expert usage and training curves."""

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: files and notebooks, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def expert_usage_figure(usage: Mapping[str, Sequence[float]]) -> plt.Figure:
    """Bar chart per level of the fraction of its tokens sent to each of its experts."""
    fig, axes = plt.subplots(1, len(usage), figsize=(3 * len(usage), 2.6), squeeze=False)
    for ax, (level, fractions) in zip(axes[0], usage.items(), strict=True):
        ax.bar(np.arange(len(fractions)), fractions, color="tab:blue")
        ax.axhline(1 / len(fractions), color="grey", linestyle="--", linewidth=1)
        ax.set_title(level)
        ax.set_xlabel("expert")
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("share of tokens")
    fig.tight_layout()
    return fig


def figure_to_array(fig: plt.Figure, close: bool = True) -> np.ndarray:
    """Renders a figure to an [H, W, 3] uint8 array (e.g. for MetricWriter.write_image)."""
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    if close:
        plt.close(fig)
    return image


def training_curves_figure(scalars: Mapping[str, Sequence[tuple[int, float]]]) -> plt.Figure:
    """One panel per scalar series [(step, value), ...]."""
    fig, axes = plt.subplots(1, len(scalars), figsize=(3.2 * len(scalars), 2.6), squeeze=False)
    for ax, (tag, points) in zip(axes[0], scalars.items(), strict=True):
        steps, values = zip(*points, strict=True) if points else ((), ())
        ax.plot(steps, values)
        ax.set_title(tag)
        ax.set_xlabel("step")
    fig.tight_layout()
    return fig


def retrieved_cues_figure(
    image: np.ndarray, retrieved: Mapping[str, Sequence[tuple[str, float]]], title: str = ""
) -> plt.Figure:
    """The image beside the top-k knowledge-base entries retrieved at each level."""
    fig, (ax_image, ax_text) = plt.subplots(1, 2, figsize=(7, 3), width_ratios=(1, 1.4))
    ax_image.imshow(image)
    ax_image.set_axis_off()
    ax_image.set_title(title, fontsize=9)
    lines = []
    for level, entries in retrieved.items():
        lines.append(f"{level}:")
        lines += [f"   {name}  ({score:.2f})" for name, score in entries]
    ax_text.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=9)
    ax_text.set_axis_off()
    fig.tight_layout()
    return fig
