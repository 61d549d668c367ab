"""DOTA and DIOR annotation readers (rs_jax/data/sources/detection.py): hand-made files with
known boxes, bad lines named, grounding questions; the shared samples when present."""

import json
import os

import numpy as np
import pytest
import shapely
from PIL import Image

from rs_jax.data.boxes import Box, parse
from rs_jax.data.sources.detection import grounding_questions, read_dior, read_dota

SHARED = os.environ.get(
    "RS_JAX_SHARED_DATA",
    os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data"),
)
SAMPLES = os.path.join(SHARED, "detection_samples")
needs_samples = pytest.mark.skipif(
    not os.path.isdir(SAMPLES), reason=f"shared detection samples not found at {SAMPLES}"
)


def _image(path, width, height):
    Image.new("RGB", (width, height)).save(path)
    return str(path)


def _close(box, expected):
    np.testing.assert_allclose(
        [box.x1, box.y1, box.x2, box.y2, box.angle],
        [expected.x1, expected.y1, expected.x2, expected.y2, expected.angle],
        atol=1e-9,
    )


def test_dota_horizontal_and_rotated_objects(tmp_path):
    image = _image(tmp_path / "p.png", 200, 100)
    # A box turned 20° in the unit square, written as DOTA pixel corners in another order.
    turned = Box(0.3, 0.45, 0.7, 0.55, 20.0)
    pixels = (turned.corners()[[1, 2, 3, 0]] * [200, 100]).ravel()
    (tmp_path / "p.txt").write_text(
        "imagesource:GoogleEarth\ngsd:0.5\n"
        "10 10 50 10 50 30 10 30 plane 0\n" + " ".join(f"{v:.12f}" for v in pixels) + " ship 1\n\n"
    )
    ann = read_dota(str(tmp_path / "p.txt"), image)
    assert (ann.width, ann.height, len(ann.objects)) == (200, 100, 2)
    plane, ship = ann.objects
    assert (plane.name, plane.difficult, ship.name, ship.difficult) == (
        "plane",
        False,
        "ship",
        True,
    )
    _close(plane.box, Box(0.05, 0.1, 0.25, 0.3))  # 10..50 of 200, 10..30 of 100
    _close(ship.box, turned)
    # The difficult ship is not asked about.
    assert grounding_questions(ann, "geochat") == [
        ("[refer] where is the plane?", "{<5><10><25><30>|<0>}", "grounding", (), ())
    ]


@pytest.mark.parametrize(
    "line, message",
    [
        ("10 10 50 10 50 30 plane 0", "line 2: expected 8 coordinates"),
        ("10 10 50 10 50 30 10 x plane 0", "line 2: the first 8 fields must be numbers"),
        ("10 10 50 10 50 30 10 30 plane 2", "line 2: difficult flag '2'"),
        ("10 10 20 20 30 30 40 40 plane 0", "line 2: points"),  # on one line: no area
    ],
)
def test_dota_bad_line_is_named(tmp_path, line, message):
    image = _image(tmp_path / "p.png", 200, 100)
    (tmp_path / "p.txt").write_text("10 10 50 10 50 30 10 30 plane 0\n" + line + "\n")
    with pytest.raises(ValueError, match=message) as info:
        read_dota(str(tmp_path / "p.txt"), image)
    assert str(tmp_path / "p.txt") in str(info.value)


DIOR = """<?xml version="1.0" encoding="UTF-8"?>
<annotation><size><width>400</width><height>200</height><depth>3</depth></size>
<object><name>airplane</name><difficult>0</difficult>
  <bndbox><xmin>40</xmin><ymin>20</ymin><xmax>120</xmax><ymax>60</ymax></bndbox></object>
<object><name>bridge</name><difficult>1</difficult><robndbox>
  <x_left_top>200</x_left_top><y_left_top>100</y_left_top>
  <x_right_top>300</x_right_top><y_right_top>100</y_right_top>
  <x_right_bottom>300</x_right_bottom><y_right_bottom>150</y_right_bottom>
  <x_left_bottom>200</x_left_bottom><y_left_bottom>150</y_left_bottom></robndbox>
  <angle>0</angle></object>
</annotation>
"""


def test_dior_horizontal_and_oriented_boxes(tmp_path):
    (tmp_path / "a.xml").write_text(DIOR)
    ann = read_dior(str(tmp_path / "a.xml"), "a.jpg")
    assert (ann.width, ann.height) == (400, 200)
    plane, bridge = ann.objects
    assert (plane.name, plane.difficult, bridge.name, bridge.difficult) == (
        "airplane", False, "bridge", True
    )  # fmt: skip
    _close(plane.box, Box(0.1, 0.1, 0.3, 0.3))
    _close(bridge.box, Box(0.5, 0.5, 0.75, 0.75))
    (tmp_path / "b.xml").write_text(DIOR.replace("<xmax>120</xmax>", ""))
    with pytest.raises(ValueError, match=r"b\.xml object 1: no complete <bndbox>"):
        read_dior(str(tmp_path / "b.xml"), "b.jpg")
    (tmp_path / "c.xml").write_text("<annotation>")
    with pytest.raises(ValueError, match=r"c\.xml: not a DIOR annotation"):
        read_dior(str(tmp_path / "c.xml"), "c.jpg")


def test_qwen_questions_get_the_horizontal_box_around_a_rotated_one(tmp_path):
    image = _image(tmp_path / "p.png", 100, 100)
    # A 0.2 square turned 45° at (0.5, 0.5): corners 0.1 sqrt2 from the centre.
    (tmp_path / "p.txt").write_text("50 35.857864 64.142136 50 50 64.142136 35.857864 50 tank 0\n")
    ann = read_dota(str(tmp_path / "p.txt"), image)
    [qa] = grounding_questions(ann, "qwen")
    assert qa.answer == "<box>(359,359),(641,641)</box>"
    [qa] = grounding_questions(ann, "geochat")
    assert qa.answer in ("{<40><40><60><60>|<-45>}", "{<40><40><60><60>|<45>}")


@needs_samples
def test_shared_dior_sample():
    ann = read_dior(os.path.join(SAMPLES, "dior", "00001.xml"), "00001.jpg")
    assert (ann.width, ann.height) == (800, 800)
    [golf] = ann.objects
    assert (golf.name, golf.difficult) == ("golffield", False)
    _close(golf.box, Box(133 / 800, 237 / 800, 684 / 800, 672 / 800))
    # 16.625 -> 17, 29.625 -> 30, 85.5 -> 86 (to even), 84.
    [qa] = grounding_questions(ann, "geochat")
    assert qa == ("[refer] where is the golffield?", "{<17><30><86><84>|<0>}", "grounding", (), ())


@needs_samples
def test_shared_dota_sample_agrees_with_annotations_jsonl():
    ann = read_dota(
        os.path.join(SAMPLES, "dota", "P1888.txt"), os.path.join(SAMPLES, "dota", "P1888.png")
    )
    assert (ann.width, ann.height) == (712, 557)
    names = [o.name for o in ann.objects]
    assert (names.count("large-vehicle"), names.count("small-vehicle"), len(names)) == (50, 14, 64)
    with open(os.path.join(SAMPLES, "annotations.jsonl")) as f:
        [row] = [r for r in map(json.loads, f) if r["image"].endswith("P1888.png")]
    for obj, ref in zip(ann.objects, row["objects"], strict=True):
        assert obj.name == ref["class"] and obj.difficult == bool(ref["difficult"])
        # Each fitted rectangle holds its quadrilateral and is no more than 1.5 times its area.
        quad = shapely.Polygon(np.array(ref["poly"]).reshape(4, 2) / [712, 557])
        assert obj.box.polygon().buffer(1e-9).contains(quad)
        assert obj.box.area <= 1.5 * quad.area
    questions = grounding_questions(ann, "geochat")
    assert [q.question for q in questions] == [
        "[refer] where is the small vehicle?",
        "[refer] where is the large vehicle?",
    ]
    assert [len(parse(q.answer, "geochat")) for q in questions] == [14, 50]
