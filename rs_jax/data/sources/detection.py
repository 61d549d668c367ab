"""Object annotations -> boxes with classes, and grounding questions about them (format
"detection"): a folder of annotation files, one per image.

  DOTA v1.0 labelTxt   optional "imagesource:..." and "gsd:..." lines, then one object a line:
  (<stem>.txt)         x1 y1 x2 y2 x3 y3 x4 y4 <class> <difficult>   (pixels, any corner order)
  DIOR / DIOR-R /      Pascal VOC style: <size>, and per <object> a <name>, <difficult> and a
  DIOR-RSVG .xml       <bndbox> (horizontal: xmin ymin xmax ymax) or a <robndbox> (oriented:
                       four named corners); DIOR-RSVG adds a referring <description>

A quadrilateral becomes the minimum-area rotated rectangle around it (data/boxes.py:
from_points), in the image scaled to the unit square. A bad line or element is a ValueError
naming the file and the line or object. `path` is the folder of annotations (`{split}` in it
names a folder per split); the image of `<stem>.txt|.xml` is `<image_root>/<stem>.<ext>`
(default: the same folder). `questions`: "classes" asks where each class is (detection as
grounding), "descriptions" asks for each described object by its description (DIOR-RSVG).
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import numpy as np
from etils import epath
from PIL import Image

from rs_jax.data import boxes, sources
from rs_jax.data.images import IMAGE_EXTENSIONS
from rs_jax.data.tasks import GROUNDING_TASK, QA

_ROBNDBOX = ("left_top", "right_top", "right_bottom", "left_bottom")
QUESTIONS = ("classes", "descriptions")


@dataclasses.dataclass(frozen=True)
class Object:
    """One annotated object: its class as the dataset spells it, its box, and whether the
    dataset marks it difficult (DOTA, DIOR: left out of their detection scores), and its
    referring expression where the dataset gives one (DIOR-RSVG), else ""."""

    name: str
    box: boxes.Box
    difficult: bool
    description: str = ""


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
        description = " ".join((element.findtext("description") or "").split())
        box = _box(np.array(points), width, height, where)
        objects.append(Object(name, box, difficult, description))
    return Annotation(image, width, height, tuple(objects))


def grounding_questions(
    annotation: Annotation, box_format: str, questions: str = "classes"
) -> list[QA]:
    """questions="classes": one question per class, "[refer] where is the <class>?",
    answered with the boxes of all its objects that are not difficult, in file order (a
    class with only difficult objects is not asked about). "descriptions": one question per
    described object, "[refer] <description>", answered with its box. A format without
    angles (qwen) gets the horizontal box around each rotated one."""
    if questions == "descriptions":
        return [
            QA(
                f"[refer] {obj.description}",
                boxes.render([boxes.written_in(obj.box, box_format)], box_format),
                GROUNDING_TASK,
            )
            for obj in annotation.objects
            if obj.description and not obj.difficult
        ]
    by_class: dict[str, list[boxes.Box]] = {}
    for obj in annotation.objects:
        if not obj.difficult:
            by_class.setdefault(obj.name, []).append(boxes.written_in(obj.box, box_format))
    return [
        QA(
            f"[refer] where is the {name.replace('-', ' ')}?",
            boxes.render(found, box_format),
            GROUNDING_TASK,
        )
        for name, found in by_class.items()
    ]


_READERS = {".txt": read_dota, ".xml": read_dior}


def _image_of(stem: str, root: epath.Path) -> epath.Path | None:
    return next(
        (p for p in (root / f"{stem}{ext}" for ext in IMAGE_EXTENSIONS) if p.exists()), None
    )


def load_split(source: sources.SourceConfig, split: str, ctx: sources.LoadContext) -> sources.Split:
    """Every annotation file of the split's folder with its image and questions; an image
    without a question (no object, or only difficult ones) is left out."""
    key = f"config.data.sources.{source.name}"
    asked = source.options["questions"]
    if asked not in QUESTIONS:
        raise ValueError(f"{key}.questions={asked!r}; choose from {QUESTIONS}")
    folder = epath.Path(source.split_path(split))
    if not folder.is_dir():
        raise FileNotFoundError(f"{key}.path: {folder} is not a folder of annotations")
    image_root = epath.Path(source.options["image_root"].replace("{split}", split) or folder)
    bad = sources.BadRecords(ctx.allow_skips)
    items = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in _READERS):
        image = _image_of(path.stem, image_root)
        if image is None:
            bad(str(path), f"no image {path.stem}.* in {image_root}")
            continue
        try:
            annotation = _READERS[path.suffix.lower()](str(path), str(image))
        except (ValueError, OSError) as e:  # OSError: an image PIL cannot open (DOTA's size)
            bad(str(path), str(e).removeprefix(str(path)).lstrip(": "))
            continue
        qas = grounding_questions(annotation, ctx.box_format, asked)
        if qas:
            items.append(sources.Item(str(image), tuple(qas), (), str(path)))
    return sources.with_readable_images(
        items, str(image_root), ctx, bad, read_from=f"{folder} (split {split!r})"
    )


FORMAT = sources.Format(
    name="detection",
    protocol=sources.Protocol.GROUNDING,
    # image_root: "" = the annotations' folder ({split} is filled in). questions:
    # "classes" or "descriptions" (QUESTIONS).
    keys=dict(image_root="", questions="classes"),
    load=sources.each_split(load_split),
)
