"""DOTA and DIOR annotation readers and the "detection" format (rs_jax/data/sources/
detection.py): hand-made files with known boxes, bad lines and files named, grounding
questions by class or by description, scored by boxes; the shared samples when present."""

import json
import os

import numpy as np
import pytest
import shapely
from PIL import Image

from configs import common
from rs_jax.data import sources
from rs_jax.data.boxes import Box, parse
from rs_jax.data.images import Bands
from rs_jax.data.pipeline import EvalSource
from rs_jax.data.sources import detection
from rs_jax.data.sources.detection import grounding_questions, read_dior, read_dota
from rs_jax.eval.protocols import Scorer

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


# DIOR-RSVG: DIOR's annotation with a referring <description> per object.
RSVG = DIOR.replace(
    "<difficult>0</difficult>",
    "<difficult>0</difficult><description>the  airplane at the top left</description>",
)


def _detection(path, **values):
    return sources.SourceConfig.from_config(
        "dets", dict(common.source("detection", str(path), **values))
    )


def _ctx(tmp_path, allow_skips=False):
    return sources.LoadContext(
        image_size=32, allow_skips=allow_skips, cache_dir=str(tmp_path / "checks"), bands=Bands()
    )


def test_detection_format_asks_where_each_class_is_and_scores_by_boxes(tmp_path):
    # DOTA's layout: <split>/labelTxt/<stem>.txt beside <split>/images/<stem>.png.
    for split, stems in (("train", ("p", "q")), ("test", ("r",))):
        (tmp_path / split / "labelTxt").mkdir(parents=True)
        (tmp_path / split / "images").mkdir()
        for stem in stems:
            _image(tmp_path / split / "images" / f"{stem}.png", 200, 100)
            line = "10 10 50 10 50 30 10 30 plane 0" if stem != "q" else "1 1 9 1 9 9 1 9 ship 1"
            (tmp_path / split / "labelTxt" / f"{stem}.txt").write_text(line + "\n")
    src = _detection(
        tmp_path / "{split}" / "labelTxt", image_root=str(tmp_path / "{split}" / "images")
    )
    assert src.protocol == "grounding"
    train, test = sources.load(src, _ctx(tmp_path))
    # q.png's only object is difficult: nothing to ask, so it is left out.
    assert [os.path.basename(item.image) for item in train.items] == ["p.png"]
    [item] = test.items
    assert item.record == str(tmp_path / "test" / "labelTxt" / "r.txt")
    [qa] = item.qas
    assert (qa.question, qa.answer) == ("[refer] where is the plane?", "{<5><10><25><30>|<0>}")
    scorer = Scorer([EvalSource("dets", "grounding", ("grounding",))])
    scorer.add("grounding", "{<5><10><25><31>|<0>}", qa.answer, ())
    assert scorer.results()["sources"]["dets"]["acc@0.5"] == 1.0


def test_detection_format_asks_for_rsvg_descriptions(tmp_path):
    (tmp_path / "a.xml").write_text(RSVG)
    _image(tmp_path / "a.jpg", 400, 200)
    src = _detection(tmp_path, questions="descriptions")
    [item] = detection.load_split(src, "test", _ctx(tmp_path)).items
    # The difficult bridge has a description too, but is not asked about.
    assert [(q.question, q.answer) for q in item.qas] == [
        ("[refer] the airplane at the top left", "{<10><10><30><30>|<0>}")
    ]
    classes = _detection(tmp_path)
    [item] = detection.load_split(classes, "test", _ctx(tmp_path)).items
    assert [q.question for q in item.qas] == ["[refer] where is the airplane?"]


def test_detection_format_names_a_bad_file_or_skips_it_when_allowed(tmp_path):
    (tmp_path / "a.xml").write_text(DIOR)
    _image(tmp_path / "a.jpg", 400, 200)
    (tmp_path / "b.xml").write_text(DIOR)  # no b.* image
    (tmp_path / "c.txt").write_text("10 10 50 10 plane 0\n")
    _image(tmp_path / "c.png", 100, 100)
    src = _detection(tmp_path)
    with pytest.raises(ValueError, match=r"b\.xml: no image b\.\* in .*allow_skips"):
        detection.load_split(src, "test", _ctx(tmp_path))
    split = detection.load_split(src, "test", _ctx(tmp_path, allow_skips=True))
    assert [os.path.basename(item.image) for item in split.items] == ["a.jpg"]
    assert split.skipped == {
        str(tmp_path / "b.xml"): f"no image b.* in {tmp_path}",
        str(tmp_path / "c.txt"): "line 1: expected 8 coordinates, a class and a difficult flag",
    }
    with pytest.raises(ValueError, match=r"config\.data\.sources\.dets\.questions='boxes'"):
        detection.load_split(_detection(tmp_path, questions="boxes"), "test", _ctx(tmp_path))


@needs_samples
def test_shared_samples_as_a_detection_source(tmp_path):
    # The samples' two folders stand in for two splits.
    src = _detection(os.path.join(SAMPLES, "{split}"), train_split="dota", eval_split="dior")
    dota, dior = sources.load(src, _ctx(tmp_path))
    [item] = dota.items
    assert [len(parse(q.answer, "geochat")) for q in item.qas] == [14, 50]
    [item] = dior.items
    assert [q.answer for q in item.qas] == ["{<17><30><86><84>|<0>}"]
