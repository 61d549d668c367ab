"""Box notation (rs_jax/data/boxes.py): both formats round-trip on their grids, several
boxes an answer, garbage is no box, corners and the rotated-rectangle fit by hand."""

import math

import numpy as np
import pytest

from rs_jax.data.boxes import Box, check_format, from_points, parse, render


def test_geochat_round_trip_of_several_rotated_boxes():
    boxes = [Box(0.1, 0.2, 0.3, 0.4, 45.0), Box(0.0, 0.55, 1.0, 0.6, -30.0)]
    text = render(boxes, "geochat")
    assert text == "{<10><20><30><40>|<45>} {<0><55><100><60>|<-30>}"
    assert parse(text, "geochat") == boxes


def test_qwen_round_trip_on_its_finer_grid():
    boxes = [Box(0.123, 0.2, 0.301, 0.999), Box(0.5, 0.5, 0.75, 0.625)]
    text = render(boxes, "qwen")
    assert text == "<box>(123,200),(301,999)</box> <box>(500,500),(750,625)</box>"
    assert parse(text, "qwen") == boxes


def test_parse_reads_boxes_inside_prose_and_tolerates_spaces():
    text = "There are two: {< 5 ><6><7> <8>|<0>} and {<1><2><3><4>} (no angle: horizontal)."
    assert parse(text, "geochat") == [Box(0.05, 0.06, 0.07, 0.08), Box(0.01, 0.02, 0.03, 0.04)]
    qwen = "<ref>the plane</ref><box>(10, 20),(30,40)</box>"
    assert parse(qwen, "qwen") == [Box(0.01, 0.02, 0.03, 0.04)]


def test_parse_reads_boxes_as_a_wordpiece_tokenizer_decodes_them():
    # Every bracket, sign and tag a separate token: decoded with spaces between them.
    spaced = "{ < 10 > < 20 > < 30 > < 40 > | < - 45 > }"
    assert parse(spaced, "geochat") == [Box(0.1, 0.2, 0.3, 0.4, -45.0)]
    spaced = "< box > ( 438, 500 ), ( 625, 719 ) < / box >"
    assert parse(spaced, "qwen") == [Box(0.438, 0.5, 0.625, 0.719)]


@pytest.mark.parametrize(
    "text",
    [
        "I cannot see it.",
        "{<10><20><30>|<0>}",  # three numbers
        "{<10><20><300><40>|<0>}",  # off the 0-100 grid
        "{<30><20><10><40>|<0>}",  # x2 < x1: empty
        "{<10><20><10><40>|<0>}",  # zero width
        "{<a><20><30><40>|<0>}",
        "<box>(1,2),(3,4)</box>",  # the other notation
    ],
)
def test_garbage_is_no_box(text):
    assert parse(text, "geochat") == []


def test_rendering_rounds_clamps_and_keeps_a_tiny_box_a_box():
    # 0.004 wide rounds to one cell, never to an empty box; -0.02 clamps to 0.
    text = render([Box(0.501, -0.02, 0.505, 0.3, 12.4)], "geochat")
    assert text == "{<50><0><51><30>|<12>}"
    assert parse(text, "geochat") == [Box(0.5, 0.0, 0.51, 0.3, 12.0)]


def test_qwen_refuses_a_rotated_box_and_an_unknown_format_names_the_key():
    with pytest.raises(ValueError, match="no angle"):
        render([Box(0.1, 0.1, 0.2, 0.2, 5.0)], "qwen")
    with pytest.raises(ValueError, match=r"config\.data\.box_format='pixels'"):
        check_format("pixels")


def test_box_rejects_empty_and_non_finite():
    with pytest.raises(ValueError, match="empty"):
        Box(0.5, 0.1, 0.5, 0.2)
    with pytest.raises(ValueError, match="finite"):
        Box(0.1, 0.1, 0.2, 0.2, math.nan)


def test_corners_of_a_rotated_box_by_hand():
    # A 0.2 x 0.2 square at (0.5, 0.5) turned 90°: the top-left corner goes to top-right
    # (x right, y down), the rotation matrix of the docstring.
    corners = Box(0.4, 0.4, 0.6, 0.6, 90.0).corners()
    np.testing.assert_allclose(
        corners, [[0.6, 0.4], [0.6, 0.6], [0.4, 0.6], [0.4, 0.4]], atol=1e-12
    )
    # 30°: the top-left corner (-0.1, -0.1) from the centre becomes
    # (-0.1 cos30 + 0.1 sin30, -0.1 sin30 - 0.1 cos30).
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    first = Box(0.4, 0.4, 0.6, 0.6, 30.0).corners()[0]
    np.testing.assert_allclose(first, [0.5 - 0.1 * c + 0.1 * s, 0.5 - 0.1 * s - 0.1 * c])


def test_fit_of_a_horizontal_and_a_rotated_rectangle():
    fit = from_points([[0.2, 0.1], [0.4, 0.1], [0.4, 0.5], [0.2, 0.5]])
    np.testing.assert_allclose([fit.x1, fit.y1, fit.x2, fit.y2, fit.angle], [0.2, 0.1, 0.4, 0.5, 0])
    # A 0.4 x 0.1 box turned 20°, given by its corners in another order: the fit is the box.
    box = Box(0.3, 0.45, 0.7, 0.55, 20.0)
    fit = from_points(box.corners()[[2, 0, 3, 1]])
    np.testing.assert_allclose(
        [fit.x1, fit.y1, fit.x2, fit.y2, fit.angle], [0.3, 0.45, 0.7, 0.55, 20.0], atol=1e-9
    )
    # Turned 70°, the long side is nearer to vertical: the width runs along the short side.
    fit = from_points(Box(0.3, 0.45, 0.7, 0.55, 70.0).corners())
    np.testing.assert_allclose(
        [fit.x2 - fit.x1, fit.y2 - fit.y1, fit.angle], [0.1, 0.4, -20.0], atol=1e-9
    )
    with pytest.raises(ValueError, match="no area"):
        from_points([[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]])
