"""The pictures show the numbers they are given."""

import matplotlib.pyplot as plt
import numpy as np

from rs_jax.train import charts


def test_expert_usage_bars_are_the_shares_with_the_uniform_line():
    usage = {"scene": [0.7, 0.3], "object": [0.1, 0.2, 0.3, 0.4]}
    fig = charts.expert_usage_figure(usage)
    for ax, (level, shares) in zip(fig.axes, usage.items(), strict=True):
        assert ax.get_title() == level
        np.testing.assert_allclose([bar.get_height() for bar in ax.patches], shares)
        (uniform,) = ax.lines
        np.testing.assert_allclose(uniform.get_ydata(), 1 / len(shares))
    image = charts.figure_to_array(fig)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.std() > 0  # something was drawn
    assert not plt.fignum_exists(fig.number)  # closed after rendering


def test_training_curves_plot_each_series():
    scalars = {"loss": [(1, 3.0), (2, 2.5), (3, 2.0)], "accuracy": []}
    fig = charts.training_curves_figure(scalars)
    (loss_line,) = fig.axes[0].lines
    np.testing.assert_array_equal(loss_line.get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(loss_line.get_ydata(), [3.0, 2.5, 2.0])
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    plt.close(fig)


def test_retrieved_cues_list_every_level_and_score():
    image = np.zeros((8, 8, 3), np.uint8)
    retrieved = {"scene": [("airport", 0.91), ("harbor", 0.42)], "object": [("plane", 0.8)]}
    fig = charts.retrieved_cues_figure(image, retrieved, title="q")
    text = fig.axes[1].texts[0].get_text()
    assert text.splitlines() == [
        "scene:",
        "   airport  (0.91)",
        "   harbor  (0.42)",
        "object:",
        "   plane  (0.80)",
    ]
    plt.close(fig)
