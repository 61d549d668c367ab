"""Boxes in answer text: the `Box` type, its corners, and the two notations a model can
answer in (`config.data.box_format`; docs/evaluation.md, "Grounding").

  geochat  {<x1><y1><x2><y2>|<θ>}   integers on a 0-100 grid; θ in whole degrees
  qwen     <box>(x1,y1),(x2,y2)</box>   integers on a 0-1000 grid; horizontal only

Coordinates are plain text, not special tokens: the tokenizer learns digits and brackets
from the training texts like any other words.

Geometry lives in the image scaled to the unit square (x right, y down): (x1, y1, x2, y2)
is the box before rotation, and θ turns it about its centre by the rotation matrix
[[cos θ, -sin θ], [sin θ, cos θ]] in those axes, which looks clockwise on screen. On a
non-square image the angle is therefore measured on the image squashed to a square, as
the grid is.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import shapely

# Format -> (grid size, pattern of one box, whether it writes an angle). Whitespace between
# and inside the brackets and tags is tolerated, as a WordPiece tokenizer decodes "<box>" to
# "< box >" and "-45" to "- 45"; geochat's "|<θ>" may be left out (horizontal box).
_INT = r"\s*(\d+)\s*"
_FOUR = r"\s*".join([rf"<{_INT}>"] * 4)
_GEOCHAT = rf"\{{\s*{_FOUR}\s*(?:\|\s*<\s*(-?)\s*(\d+)\s*>)?\s*\}}"
_QWEN = rf"<\s*box\s*>\s*\({_INT},{_INT}\)\s*,\s*\({_INT},{_INT}\)\s*<\s*/\s*box\s*>"
_FORMATS = {
    "geochat": (100, re.compile(_GEOCHAT), True),
    "qwen": (1000, re.compile(_QWEN), False),
}
FORMATS = tuple(_FORMATS)


@dataclasses.dataclass(frozen=True)
class Box:
    """A box in unit-square image coordinates: x1 < x2, y1 < y2 before rotation; angle in
    degrees about the centre (0 = horizontal)."""

    x1: float
    y1: float
    x2: float
    y2: float
    angle: float = 0.0

    def __post_init__(self):
        values = (self.x1, self.y1, self.x2, self.y2, self.angle)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"box {values} has a value that is not a finite number")
        if not (self.x1 < self.x2 and self.y1 < self.y2):
            raise ValueError(f"box {values} is empty: it needs x1 < x2 and y1 < y2")

    @property
    def area(self) -> float:
        """As a fraction of the image (rotation keeps it)."""
        return (self.x2 - self.x1) * (self.y2 - self.y1)

    def corners(self) -> np.ndarray:
        """[4, 2] (x, y) of the corners after rotation: top-left, top-right, bottom-right,
        bottom-left of the unrotated box."""
        cx, cy = (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2
        half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
        half *= [(self.x2 - self.x1) / 2, (self.y2 - self.y1) / 2]
        t = math.radians(self.angle)
        rotation = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        return np.einsum("ij,cj->ci", rotation, half) + [cx, cy]

    def polygon(self) -> shapely.Polygon:
        return shapely.Polygon(self.corners())

    def horizontal(self) -> Box:
        """The smallest horizontal box around this one."""
        (x1, y1), (x2, y2) = self.corners().min(axis=0), self.corners().max(axis=0)
        return Box(float(x1), float(y1), float(x2), float(y2))


def from_points(points: np.ndarray) -> Box:
    """The minimum-area rotated rectangle around points [N, 2] (unit-square coordinates),
    as a Box whose angle is in [-45, 45): its width runs along the rectangle's edge that is
    nearer to horizontal."""
    hull = shapely.MultiPoint(np.asarray(points, dtype=np.float64)).minimum_rotated_rectangle
    if not isinstance(hull, shapely.Polygon) or hull.area == 0:
        raise ValueError(f"points {np.asarray(points).tolist()} span no area")
    corners = np.asarray(hull.exterior.coords)[:4]
    edges = corners[[1, 2]] - corners[[0, 1]]  # two adjacent sides
    lengths = np.hypot(edges[:, 0], edges[:, 1])
    # A side's direction folded to [-90, 90) (a side has no sense); the other side is 90° off.
    angles = (np.degrees(np.arctan2(edges[:, 1], edges[:, 0])) + 90) % 180 - 90
    along = 0 if -45 <= angles[0] < 45 else 1
    width, height = lengths[along], lengths[1 - along]
    cx, cy = (float(c) for c in corners.mean(axis=0))
    width, height = float(width), float(height)
    return Box(
        cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2, float(angles[along])
    )


def check_format(box_format: str) -> None:
    if box_format not in _FORMATS:
        raise ValueError(f"config.data.box_format={box_format!r}; choose from {list(FORMATS)}")


def writes_angle(box_format: str) -> bool:
    check_format(box_format)
    return _FORMATS[box_format][2]


def grid_size(box_format: str) -> int:
    """The integer a coordinate of 1 (the image's right or bottom edge) is written as."""
    check_format(box_format)
    return _FORMATS[box_format][0]


def written_in(box: Box, box_format: str) -> Box:
    """`box` as `box_format` can write it: the horizontal box around a rotated one where the
    format has no angle (qwen), else the box itself."""
    return box if box.angle == 0 or writes_angle(box_format) else box.horizontal()


def parse(text: str, box_format: str) -> list[Box]:
    """Every box written in `text`, in order. Text that is no well-formed box (a number off
    the grid, an empty box, a broken bracket) is not a box: an answer holding only such
    text has no boxes, which scores as a miss."""
    check_format(box_format)
    grid, pattern, rotated = _FORMATS[box_format]
    boxes = []
    for match in pattern.finditer(text):
        x1, y1, x2, y2 = (int(g) for g in match.groups()[:4])
        sign, degrees = match.group(5, 6) if rotated else ("", None)
        angle = float(sign + degrees) if degrees else 0.0
        if not (0 <= x1 < x2 <= grid and 0 <= y1 < y2 <= grid):
            continue
        boxes.append(Box(x1 / grid, y1 / grid, x2 / grid, y2 / grid, angle))
    return boxes


def render(boxes: list[Box], box_format: str) -> str:
    """The boxes in `box_format`, separated by spaces. Corners are rounded to the grid,
    clamped to the image and kept at least one grid step apart (a box smaller than a step
    stays a box); the angle is rounded to whole degrees. The qwen form has no angle: a
    rotated box is a ValueError."""
    check_format(box_format)
    grid, _, rotated = _FORMATS[box_format]
    out = []
    for box in boxes:
        x1, x2 = _on_grid(box.x1, box.x2, grid)
        y1, y2 = _on_grid(box.y1, box.y2, grid)
        if rotated:
            out.append(f"{{<{x1}><{y1}><{x2}><{y2}>|<{round(box.angle)}>}}")
        elif box.angle != 0:
            raise ValueError(f"{box} is rotated: the qwen box form has no angle (use geochat)")
        else:
            out.append(f"<box>({x1},{y1}),({x2},{y2})</box>")
    return " ".join(out)


def _on_grid(low: float, high: float, grid: int) -> tuple[int, int]:
    a = min(max(round(low * grid), 0), grid - 1)
    return a, min(max(round(high * grid), a + 1), grid)
