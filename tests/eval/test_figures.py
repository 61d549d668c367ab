"""Grounding pictures (rs_jax/eval/figures.py): boxes drawn in their colours where they are,
on an image of the asked size, and a sheet of examples written as a PNG."""

import io

import numpy as np
from PIL import Image

from rs_jax.data.boxes import Box
from rs_jax.eval.figures import PREDICTED, REFERENCE, TILE, Example, draw_boxes, grounding_sheet

GREY = (128, 128, 128)


def _grey(size: int = 32) -> np.ndarray:
    return np.full((size, size, 3), GREY, np.uint8)


def test_boxes_in_their_colours_where_they_are():
    predicted, reference = Box(0.25, 0.25, 0.75, 0.5), Box(0.1, 0.6, 0.3, 0.9)
    out = np.asarray(draw_boxes(_grey(), (200, 100), [predicted], [reference]))
    assert out.shape == (100, 200, 3)  # (width, height) as PIL has it
    colour = lambda x, y: tuple(int(v) for v in out[y, x])
    # The outline runs along each edge (x from the width, y from the height).
    assert colour(50, 35) == colour(150, 40) == colour(100, 25) == PREDICTED
    assert colour(20, 75) == colour(60, 80) == colour(40, 60) == REFERENCE
    assert colour(100, 37) == colour(40, 75) == colour(5, 5) == GREY  # inside and outside
    # The prediction is drawn over the reference where both run.
    same = np.asarray(draw_boxes(_grey(), (100, 100), [predicted], [predicted]))
    assert tuple(same[25, 50]) == PREDICTED


def test_a_rotated_box_is_drawn_through_its_corners():
    box = Box(0.3, 0.3, 0.7, 0.7, 45.0)  # a diamond: corners on the centre lines
    out = np.asarray(draw_boxes(_grey(), (100, 100), [box]))
    top, left = box.corners().min(axis=0) * 100
    assert tuple(out[int(top) + 1, 50]) == PREDICTED  # top corner, below the 0.3 edge
    assert tuple(out[30, 30]) == GREY  # where the unrotated box's corner would be


def test_sheet_is_a_png_of_tiles_with_the_boxes():
    ship, tree = "[refer] where is the ship?", "[refer] where is the leftmost tree?"
    examples = [
        Example(_grey(), ship, [Box(0.5, 0.5, 0.9, 0.9)], [Box(0, 0, 0.2, 0.2)]),
        Example(_grey(16), tree, [], [Box(0.5, 0.0, 1.0, 0.5)]),
    ]
    buffer = io.BytesIO()
    grounding_sheet(examples).save(buffer, format="png")
    sheet = Image.open(io.BytesIO(buffer.getvalue()))
    assert sheet.format == "PNG" and sheet.size == (2 * TILE, TILE + 40)
    pixels = np.asarray(sheet.convert("RGB"))
    assert tuple(pixels[int(0.7 * TILE), int(0.5 * TILE)]) == PREDICTED
    assert tuple(pixels[int(0.1 * TILE), 0]) == REFERENCE
    assert tuple(pixels[int(0.25 * TILE), TILE + int(0.5 * TILE)]) == REFERENCE
    assert not (pixels[:TILE, TILE:] == PREDICTED).all(-1).any()  # no answer, no red
    assert (pixels[TILE:] < 100).all(-1).any()  # the question written under the tiles


def test_answers_by_hit_bars_are_the_accuracies_by_level():
    from rs_jax.eval.figures import answers_by_hit_figure

    retrieval = {
        "scene": {
            "answers_when_hit@1": {"accuracy": 0.8, "count": 40},
            "answers_when_missed": {"accuracy": 0.25, "count": 8},
        },
        # No answer missed the object level's top cue: its red bar is left out.
        "object": {
            "answers_when_hit@1": {"accuracy": 0.5, "count": 48},
            "answers_when_missed": {"accuracy": None, "count": 0},
        },
    }
    fig = answers_by_hit_figure(retrieval)
    (ax,) = fig.axes
    bars = sorted((round(p.get_x() + p.get_width() / 2, 2), p.get_height()) for p in ax.patches)
    assert bars == [(-0.2, 0.8), (0.2, 0.25), (0.8, 0.5)]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["scene", "object"]
    assert {t.get_text() for t in ax.texts} == {"n=40", "n=8", "n=48"}
