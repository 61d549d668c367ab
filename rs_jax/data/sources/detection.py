"""Object annotations of one image -> boxes with classes, and grounding questions about them.

  DOTA v1.0 labelTxt   optional "imagesource:..." and "gsd:..." lines, then one object a line:
                       x1 y1 x2 y2 x3 y3 x4 y4 <class> <difficult>   (pixels, any corner order)
  DIOR / DIOR-R .xml   Pascal VOC style: <size>, and per <object> a <name>, <difficult> and a
                       <bndbox> (horizontal: xmin ymin xmax ymax) or a <robndbox> (oriented:
                       four named corners)

A quadrilateral becomes the minimum-area rotated rectangle around it (data/boxes.py:
from_points), in the image scaled to the unit square. A bad line or element is a ValueError
naming the file and the line or object.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import numpy as np
from etils import epath
from PIL import Image

from rs_jax.data import boxes
from rs_jax.data.tasks import GROUNDING_TASK, QA

_ROBNDBOX = ("left_top", "right_top", "right_bottom", "left_bottom")


@dataclasses.dataclass(frozen=True)
class Object:
    """One annotated object: its class as the dataset spells it, its box, and whether the
    dataset marks it difficult (DOTA, DIOR: left out of their detection scores)."""

    name: str
    box: boxes.Box
    difficult: bool


@dataclasses.dataclass(frozen=True)
class Annotation:
    image: str
    width: int
    height: int
    objects: tuple[Object, ...]


def _box(points: np.ndarray, width: int, height: int, where: str) -> boxes.Box:
    """points [N, 2] in pixels -> the rotated box around them in unit-square coordinates."""
    try:
        return boxes.from_points(points / [width, height])
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def read_dota(path: str, image: str) -> Annotation:
    """A DOTA v1.0 labelTxt file; the image (its header only) gives the size."""
    with Image.open(epath.Path(image).open("rb")) as im:
        width, height = im.size
    objects = []
    for number, line in enumerate(epath.Path(path).read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or line.startswith(("imagesource:", "gsd:")):
            continue
        where = f"{path} line {number}"
        if len(fields) not in (9, 10):
            raise ValueError(f"{where}: expected 8 coordinates, a class and a difficult flag")
        try:
            points = np.array(fields[:8], dtype=np.float64).reshape(4, 2)
        except ValueError:
            raise ValueError(f"{where}: the first 8 fields must be numbers") from None
        difficult = fields[9] if len(fields) == 10 else "0"
        if difficult not in ("0", "1"):
            raise ValueError(f"{where}: difficult flag {difficult!r} is neither 0 nor 1")
        objects.append(Object(fields[8], _box(points, width, height, where), difficult == "1"))
    return Annotation(image, width, height, tuple(objects))


def read_dior(path: str, image: str) -> Annotation:
    """A DIOR (horizontal <bndbox>) or DIOR-R (oriented <robndbox>) annotation file."""
    try:
        root = ET.fromstring(epath.Path(path).read_text())
        width, height = (int(root.findtext(f"size/{k}", "")) for k in ("width", "height"))
    except (ET.ParseError, ValueError) as e:
        raise ValueError(f"{path}: not a DIOR annotation with <size> ({e})") from None
    objects = []
    for i, element in enumerate(root.iter("object"), start=1):
        where = f"{path} object {i}"
        name = (element.findtext("name") or "").strip()
        try:
            if element.find("robndbox") is not None:
                points = [
                    [float(element.findtext(f"robndbox/{axis}_{corner}", "")) for axis in "xy"]
                    for corner in _ROBNDBOX
                ]
            else:
                x1, y1, x2, y2 = (
                    float(element.findtext(f"bndbox/{k}", ""))
                    for k in ("xmin", "ymin", "xmax", "ymax")
                )
                points = [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]
        except ValueError:
            raise ValueError(f"{where}: no complete <bndbox> or <robndbox>") from None
        if not name:
            raise ValueError(f"{where}: no <name>")
        difficult = (element.findtext("difficult") or "0").strip() == "1"
        objects.append(Object(name, _box(np.array(points), width, height, where), difficult))
    return Annotation(image, width, height, tuple(objects))


def grounding_questions(annotation: Annotation, box_format: str) -> list[QA]:
    """One question per class, "[refer] where is the <class>?", answered with the boxes of
    all its objects that are not difficult, in file order (a class with only difficult
    objects is not asked about). A format without angles (qwen) gets the horizontal box
    around each rotated one."""
    angles = boxes.writes_angle(box_format)
    by_class: dict[str, list[boxes.Box]] = {}
    for obj in annotation.objects:
        if not obj.difficult:
            box = obj.box if angles or obj.box.angle == 0 else obj.box.horizontal()
            by_class.setdefault(obj.name, []).append(box)
    return [
        QA(
            f"[refer] where is the {name.replace('-', ' ')}?",
            boxes.render(found, box_format),
            GROUNDING_TASK,
        )
        for name, found in by_class.items()
    ]
