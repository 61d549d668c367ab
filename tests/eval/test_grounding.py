"""Grounding metrics (rs_jax/eval/grounding.py) on hand-made boxes with answers worked out
by hand: IoU of horizontal and rotated boxes, one-to-one matching, the accumulated scores;
the evaluator's Scorer routing box questions to them; config.data.box_format checked."""

import math

import numpy as np
import pytest

from configs.common import base_config
from rs_jax.data.boxes import Box
from rs_jax.data.pipeline import EvalSource, build_data
from rs_jax.eval.grounding import GroundingScores, horizontal_iou, iou, match, size_of
from rs_jax.eval.protocols import Scorer, markdown


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (Box(0.1, 0.2, 0.4, 0.6), Box(0.1, 0.2, 0.4, 0.6), 1.0),  # identical
        (Box(0.0, 0.0, 0.5, 0.5), Box(0.5, 0.0, 1.0, 0.5), 0.0),  # touching along an edge
        (Box(0.0, 0.0, 0.5, 0.5), Box(0.6, 0.6, 1.0, 1.0), 0.0),  # apart
        (Box(0.0, 0.0, 1.0, 1.0), Box(0.25, 0.25, 0.75, 0.75), 0.25),  # nested: 0.25 / 1
        (Box(0.0, 0.0, 0.5, 0.5), Box(0.25, 0.0, 0.75, 0.5), 1 / 3),  # 0.125 / 0.375
    ],
)
def test_horizontal_iou(a, b, expected):
    assert horizontal_iou(a, b) == pytest.approx(expected)
    assert iou(a, b) == pytest.approx(expected)
    # The polygon path agrees where both apply: the same boxes turned by a full turn.
    turned = lambda box: Box(box.x1, box.y1, box.x2, box.y2, 360.0)
    assert iou(turned(a), turned(b)) == pytest.approx(expected, abs=1e-9)


def test_square_turned_45_degrees_against_itself():
    # Side s: the turned square's four corners stick out as right isosceles triangles of
    # height h = s(sqrt2 - 1)/2 and area h², so the overlap is s²(2 sqrt2 - 2), the union
    # s²(4 - 2 sqrt2), and IoU = (sqrt2 - 1)/(2 - sqrt2) = 1/sqrt2.
    square = Box(0.25, 0.25, 0.75, 0.75)
    assert iou(square, Box(0.25, 0.25, 0.75, 0.75, 45.0)) == pytest.approx(1 / math.sqrt(2))
    assert iou(Box(0.25, 0.25, 0.75, 0.75, 45.0), Box(0.25, 0.25, 0.75, 0.75, -45.0)) == (
        pytest.approx(1.0)
    )


def test_rotated_boxes():
    # A 0.6 x 0.2 bar and the same bar turned 90°: a 0.2 x 0.2 overlap over 0.12 + 0.12 - 0.04.
    bar = Box(0.2, 0.4, 0.8, 0.6)
    assert iou(bar, Box(0.2, 0.4, 0.8, 0.6, 90.0)) == pytest.approx(0.04 / 0.2)
    # Two diamonds (squares turned 45°, half-diagonal 0.1 sqrt2) whose tips touch: IoU 0.
    d = 0.1 * math.sqrt(2)
    left = Box(0.3, 0.4, 0.5, 0.6, 45.0)
    right = Box(0.3 + 2 * d, 0.4, 0.5 + 2 * d, 0.6, 45.0)
    assert iou(left, right) == pytest.approx(0.0, abs=1e-9)
    # Nested: a 0.1 square turned 45° (half-diagonal 0.071) inside a 0.2 square: 0.01 / 0.04.
    assert iou(Box(0.4, 0.4, 0.6, 0.6), Box(0.45, 0.45, 0.55, 0.55, 45.0)) == pytest.approx(0.25)


def test_matching_prefers_more_pairs_over_more_iou():
    ious = np.array([[0.99, 0.5, 0.0], [0.0, 0.99, 0.5], [0.5, 0.0, 0.0]])
    # Most total IoU would pair the two 0.99s (2 pairs); three pairs at 0.5 are better.
    assert sorted(match(ious)) == [(0, 1), (1, 2), (2, 0)]
    # Below the threshold a pair does not count; no boxes, no pairs.
    assert match(np.array([[0.49, 0.2]])) == []
    assert match(np.zeros((0, 2))) == []
    assert sorted(match(np.array([[0.6, 0.7], [0.8, 0.1]]))) == [(0, 1), (1, 0)]


def test_size_buckets():
    assert size_of(Box(0.0, 0.0, 0.04, 0.04)) == "small"  # 0.0016 < 0.0025
    assert size_of(Box(0.0, 0.0, 0.05, 0.05)) == "medium"  # 0.0025: from medium on
    assert size_of(Box(0.0, 0.0, 0.1, 0.2)) == "medium"  # 0.02
    assert size_of(Box(0.0, 0.0, 0.15, 0.15)) == "large"  # 0.0225


def test_scores_by_hand():
    scores = GroundingScores("geochat")
    half = "{<0><0><50><50>|<0>}"  # area 0.25: large
    hits = [
        scores.add(half, half),  # IoU 1
        scores.add("It is {<25><0><75><50>|<0>}.", half),  # IoU 1/3
        scores.add("garbage {<1><2>", "{<0><0><4><4>|<0>}"),  # no box: IoU 0, small
        # Two reference boxes, one found: matched 1 of 1 given, 2 referenced.
        scores.add("{<0><0><10><10>|<0>}", "{<0><0><10><10>|<0>} {<50><50><60><60>|<0>}"),
    ]
    assert hits == [True, False, False, False]
    s = scores.summary()
    assert s["acc@0.5"] == pytest.approx(1 / 3)
    assert s["acc@0.25"] == pytest.approx(2 / 3)
    assert s["mean_iou"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert s["by_size"] == {
        "small": {"acc@0.5": 0.0, "count": 1},
        "medium": {"acc@0.5": 0.0, "count": 0},
        "large": {"acc@0.5": 0.5, "count": 2},
    }
    # matched 1 + 0 + 0 + 1, given 1 + 1 + 0 + 1, referenced 1 + 1 + 1 + 2.
    assert s["precision@0.5"] == pytest.approx(2 / 3)
    assert s["recall@0.5"] == pytest.approx(2 / 5)
    assert (s["single"], s["no_box"], s["count"]) == (3, 1, 4)


def test_a_reference_without_a_box_is_an_error():
    with pytest.raises(ValueError, match="holds no geochat box"):
        GroundingScores().add("{<0><0><50><50>|<0>}", "the airport")
    assert GroundingScores("qwen").add("<box>(0,0),(500,500)</box>", "<box>(0,0),(500,500)</box>")


def test_scorer_scores_grounding_questions_of_a_vqa_source_by_boxes():
    scorer = Scorer([EvalSource("geo", "vqa", ("geo/presence", "geo/grounding"))], "geochat")
    assert scorer.add("geo/presence", "yes", "yes", ())
    # Not exact match: the same box written with spaces is a hit.
    assert scorer.add("geo/grounding", "{<0> <0> <50> <50>|<0>}", "{<0><0><50><50>|<0>}", ())
    assert not scorer.add("geo/grounding", "no idea", "{<0><0><50><50>|<0>}", ())
    results = scorer.results()
    assert list(results["tasks"]) == ["geo/presence"]  # box answers stay out of exact match
    row = results["sources"]["geo"]
    assert row["count"] == 1 and row["grounding"]["count"] == 2
    assert row["grounding"]["acc@0.5"] == 0.5
    text = markdown({**results, "step": 3, "model": "full"})
    assert "Questions of type grounding:" in text and "| acc@0.5 | 0.500 |" in text


def test_an_unknown_box_format_stops_build_data_naming_the_key(tmp_path):
    config = base_config()
    config.data.box_format = "pixels"
    with pytest.raises(ValueError, match=r"config\.data\.box_format='pixels'; choose from"):
        build_data(config, str(tmp_path))
