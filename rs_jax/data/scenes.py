"""Procedural synthetic aerial scenes with object, land-cover and scene labels.

Every image is rendered from a seed alone (numpy only), at any size. Sizes of
objects scale with ``image_size / 32`` so that at 32 px an object is a few
pixels wide: large enough for a tiny ViT to recognise and count.

A scene is built from a recipe (one per scene class), but its label is then
*derived from the rendered content* by fixed rules (``derive_scene``); a recipe
whose outcome does not derive back to the intended scene is re-drawn, so the
label always agrees with what is in the picture.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rs_jax.data.boxes import Box
from rs_jax.kb.curation import load_descriptions
from rs_jax.kb.schema import Entry, make_id

SCENES: tuple[str, ...] = (
    "airport",
    "harbor",
    "residential",
    "industrial",
    "farmland",
    "forest",
    "lake",
    "river",
    "desert",
)
LANDCOVERS: tuple[str, ...] = (
    "water",
    "forest",
    "cropland",
    "grassland",
    "bare land",
    "impervious surface",
)
OBJECTS: tuple[str, ...] = (
    "building",
    "road",
    "vehicle",
    "ship",
    "airplane",
    "storage tank",
    "tree",
    "runway",
)
OBJECT_PLURALS: dict[str, str] = {
    "building": "buildings",
    "road": "roads",
    "vehicle": "vehicles",
    "ship": "ships",
    "airplane": "airplanes",
    "storage tank": "storage tanks",
    "tree": "trees",
    "runway": "runways",
}
RURAL_URBAN: tuple[str, ...] = ("rural", "urban")
MAX_COUNT = 4
# A land-cover class is "present" when it covers at least this share of the pixels.
LANDCOVER_MIN_FRACTION = 0.05
URBAN_MIN_IMPERVIOUS = 0.25

_WATER, _FOREST, _CROP, _GRASS, _BARE, _IMPERVIOUS = range(len(LANDCOVERS))


# The `sources` of the synthetic set's KB entries: the data set's name in configs.
KB_SOURCE = "rs_synth"
DESCRIPTIONS_FILE = Path(__file__).with_name("scene_descriptions.json")


def kb_entries() -> list[Entry]:
    """The global KB list: scene entries, then landcover, then object; index = KB id."""
    text = load_descriptions(DESCRIPTIONS_FILE)
    classes = [("scene", n) for n in SCENES] + [("landcover", n) for n in LANDCOVERS]
    classes += [("object", n) for n in OBJECTS]
    return [
        Entry(
            id=make_id(level, name),
            level=level,
            name=name,
            description=text[level][name],
            aliases=[OBJECT_PLURALS[name]] if level == "object" else [],
            sources=[KB_SOURCE],
        )
        for level, name in classes
    ]


def kb_id(level: str, name: str) -> int:
    """KB id (index into ``kb_entries()``) of a synthetic class."""
    if level == "scene":
        return SCENES.index(name)
    if level == "landcover":
        return len(SCENES) + LANDCOVERS.index(name)
    if level == "object":
        return len(SCENES) + len(LANDCOVERS) + OBJECTS.index(name)
    raise ValueError(f"Unknown KB level {level!r}")


@dataclasses.dataclass(frozen=True)
class SceneSample:
    """A rendered scene and its labels.

    image: uint8 [S, S, 3]; landcover_map: int8 [S, S] (index into LANDCOVERS);
    objects: (name, row, col) centre of every counted object, in pixels.
    boxes: the box of each of `objects` (same order) in unit-square coordinates: the tight
    horizontal box around the object's drawn pixels, shadow left out. Every object is drawn
    axis-aligned (ships lie along a row or a column), so no box is rotated.
    """

    image: np.ndarray
    landcover_map: np.ndarray
    scene: str
    landcover_fractions: dict[str, float]
    counts: dict[str, int]
    objects: tuple[tuple[str, float, float], ...]
    boxes: tuple[Box, ...]
    rural_urban: str
    water_shape: str  # "none" | "blob" | "band" | "edge"
    seed: int

    @property
    def landcovers(self) -> tuple[str, ...]:
        """Land-cover classes present (>= LANDCOVER_MIN_FRACTION), in LANDCOVERS order."""
        return tuple(n for n in LANDCOVERS if self.landcover_fractions[n] >= LANDCOVER_MIN_FRACTION)


def derive_scene(
    fractions: dict[str, float], counts: dict[str, int], water_shape: str
) -> str | None:
    """Scene label from content; first matching rule wins. None = no rule matches."""
    if counts["runway"] > 0 and counts["airplane"] > 0:
        return "airport"
    if counts["ship"] > 0 and fractions["water"] >= 0.2 and fractions["impervious surface"] >= 0.2:
        return "harbor"
    if counts["storage tank"] > 0 and fractions["impervious surface"] >= 0.3:
        return "industrial"
    if counts["building"] >= 2 and (fractions["impervious surface"] >= 0.3 or counts["road"] > 0):
        return "residential"
    if fractions["water"] >= 0.1 and water_shape in ("blob", "band"):
        return "river" if water_shape == "band" else "lake"
    if fractions["cropland"] >= 0.4:
        return "farmland"
    if fractions["forest"] >= 0.4:
        return "forest"
    if fractions["bare land"] >= 0.4:
        return "desert"
    return None


def derive_rural_urban(fractions: dict[str, float]) -> str:
    return "urban" if fractions["impervious surface"] >= URBAN_MIN_IMPERVIOUS else "rural"


# ----------------------------------------------------------------------------- rendering


class _Canvas:
    """Mutable rendering state in the canonical orientation (before the final flip/rotate)."""

    def __init__(self, size: int, rng: np.random.Generator):
        self.size = size
        self.s = size / 32.0  # object scale: 1 at 32 px
        self.rng = rng
        self.yy, self.xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
        self.lc = np.full((size, size), _GRASS, np.int8)
        self.img = np.zeros((size, size, 3), np.float32)
        self.occupied = np.zeros((size, size), bool)
        self.road = np.zeros((size, size), bool)
        self.objects: list[tuple[str, float, float]] = []
        # Per object: (row0, col0, row1, col1) pixel edges of its drawn body.
        self.extents: list[tuple[float, float, float, float]] = []
        self.water_shape = "none"
        self.industrial_roofs = 0.0  # probability that a building gets a large grey roof

    def px(self, units: float) -> int:
        """A length given in 32-px units, in pixels (at least 1)."""
        return max(1, int(round(units * self.s)))

    # --- land cover layout
    def fill(self, lc: int) -> None:
        self.lc[:] = lc

    def half_plane(self, lc: int, frac: float, angle_jitter: float = 0.35) -> np.ndarray:
        """Paint the top ``frac`` of the image (boundary tilted by up to angle_jitter rad)."""
        angle = self.rng.uniform(-angle_jitter, angle_jitter)
        cx = self.rng.uniform(0.3, 0.7) * self.size
        boundary = frac * self.size + (self.xx - cx) * np.tan(angle)
        mask = self.yy < boundary
        self.lc[mask] = lc
        return mask

    def blob(self, lc: int, area: float) -> np.ndarray:
        """A wobbly ellipse centred near the middle covering about ``area`` of the image."""
        n = self.size
        cy, cx = self.rng.uniform(0.4, 0.6, size=2) * n
        aspect = self.rng.uniform(0.7, 1.4)
        r = np.sqrt(area / np.pi) * n
        ry, rx = r * np.sqrt(aspect), r / np.sqrt(aspect)
        theta = np.arctan2(self.yy - cy, self.xx - cx)
        wobble = 1.0 + 0.12 * np.sin(3 * theta + self.rng.uniform(0, 2 * np.pi))
        d = ((self.yy - cy) / ry) ** 2 + ((self.xx - cx) / rx) ** 2
        mask = d < wobble**2
        self.lc[mask] = lc
        return mask

    def band(self, lc: int, width: float) -> np.ndarray:
        """A sinuous band across the image (a river), ``width`` as a fraction of the size."""
        n = self.size
        centre = self.rng.uniform(0.35, 0.65) * n
        amp = self.rng.uniform(0.05, 0.15) * n
        phase = self.rng.uniform(0, 2 * np.pi)
        freq = self.rng.uniform(0.6, 1.4)
        line = centre + amp * np.sin(2 * np.pi * freq * self.xx / n + phase)
        mask = np.abs(self.yy - line) < width * n / 2
        self.lc[mask] = lc
        return mask

    # --- texturing
    def _smooth_noise(self, cells: int) -> np.ndarray:
        n = self.size
        grid = self.rng.normal(size=(cells + 1, cells + 1)).astype(np.float32)
        t = (np.arange(n, dtype=np.float32) + 0.5) * cells / n
        i0 = np.minimum(t.astype(int), cells - 1)
        f = t - i0
        rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
        return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]

    def _texture(self, lc: int) -> np.ndarray:
        n, rng = self.size, self.rng
        fine = rng.normal(size=(n, n)).astype(np.float32)
        coarse = self._smooth_noise(4)
        if lc == _WATER:
            base = np.array([28, 66, 125], np.float32) * rng.uniform(0.85, 1.15)
            tex = base + (6 * coarse + 3 * fine)[..., None]
        elif lc == _FOREST:
            base = np.array([34, 84, 38], np.float32) * rng.uniform(0.85, 1.15)
            blotch = self._smooth_noise(max(4, n // 3))
            tex = base * (1 + 0.22 * blotch + 0.12 * fine)[..., None]
        elif lc == _CROP:
            tex = self._cropland()
        elif lc == _GRASS:
            base = np.array([122, 162, 84], np.float32) * rng.uniform(0.9, 1.1)
            tex = base + (8 * coarse + 3 * fine)[..., None]
        elif lc == _BARE:
            base = np.array([206, 184, 142], np.float32) * rng.uniform(0.9, 1.08)
            angle = rng.uniform(0, np.pi)
            period = 9 * self.s
            proj = self.xx * np.cos(angle) + self.yy * np.sin(angle)
            dunes = np.sin(2 * np.pi * proj / period + 2 * coarse)
            tex = base * (1 + 0.06 * dunes + 0.03 * fine)[..., None]
        else:  # impervious: grey with a faint block grid
            base = np.array([138, 138, 136], np.float32) * rng.uniform(0.9, 1.1)
            step = self.px(8)
            off = rng.integers(0, step)
            grid = ((self.yy.astype(int) + off) % step == 0) | (
                (self.xx.astype(int) + off) % step == 0
            )
            tex = base * (1 + 0.05 * fine - 0.12 * grid)[..., None] + (4 * coarse)[..., None]
        return tex

    def _cropland(self) -> np.ndarray:
        """2-4 rectangular parcels, each with its own colour and stripe direction."""
        n, rng = self.size, self.rng
        palette = np.array(
            [[176, 164, 82], [108, 152, 58], [142, 110, 68], [150, 176, 70]], np.float32
        )
        cut_y = int(rng.uniform(0.3, 0.7) * n)
        cut_x = int(rng.uniform(0.3, 0.7) * n)
        tex = np.empty((n, n, 3), np.float32)
        period = 3 * self.s
        for y0, y1 in ((0, cut_y), (cut_y, n)):
            for x0, x1 in ((0, cut_x), (cut_x, n)):
                colour = palette[rng.integers(len(palette))] * rng.uniform(0.9, 1.1)
                angle = rng.choice([0.0, np.pi / 2, np.pi / 4, 3 * np.pi / 4])
                yy, xx = self.yy[y0:y1, x0:x1], self.xx[y0:y1, x0:x1]
                rows = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
                tex[y0:y1, x0:x1] = colour * (1 + 0.12 * np.sign(rows))[..., None]
        # A thin dark boundary between parcels reads as field edges.
        tex[max(cut_y - 1, 0), :] *= 0.8
        tex[:, max(cut_x - 1, 0)] *= 0.8
        return tex

    def paint_landcover(self) -> None:
        for lc in np.unique(self.lc):
            mask = self.lc == lc
            self.img[mask] = self._texture(int(lc))[mask]

    # --- objects
    def free(self, y0: int, x0: int, h: int, w: int, allowed: np.ndarray, margin: int) -> bool:
        n = self.size
        if y0 < 0 or x0 < 0 or y0 + h > n or x0 + w > n:
            return False
        if not allowed[y0 : y0 + h, x0 : x0 + w].all():
            return False
        m0y, m0x = max(y0 - margin, 0), max(x0 - margin, 0)
        return not self.occupied[m0y : y0 + h + margin, m0x : x0 + w + margin].any()

    def find_spot(
        self, h: int, w: int, allowed: np.ndarray, margin: int = 1
    ) -> tuple[int, int] | None:
        """Top-left corner of a free h x w box fully inside ``allowed``; None after many tries."""
        candidates = np.flatnonzero(allowed)
        if candidates.size == 0:
            return None
        for idx in self.rng.choice(candidates, size=min(80, candidates.size), replace=False):
            y0, x0 = divmod(int(idx), self.size)
            y0, x0 = y0 - h // 2, x0 - w // 2
            if self.free(y0, x0, h, w, allowed, margin):
                return y0, x0
        return None

    def place(self, name: str, count: int, allowed: np.ndarray) -> int:
        """Draw up to ``count`` objects of one class; returns how many fitted."""
        if name != "vehicle":  # only vehicles may sit on a road
            allowed = allowed & ~self.road
        placed = 0
        for _ in range(count):
            placed += self._draw_one(name, allowed)
        return placed

    def _draw_one(self, name: str, allowed: np.ndarray) -> bool:
        """Draws one object of class `name` on a free spot of `allowed`; False where none
        was found."""
        draw = {
            "building": self._draw_building,
            "storage tank": self._draw_storage_tank,
            "tree": self._draw_tree,
            "vehicle": self._draw_vehicle,
            "ship": self._draw_ship,
            "airplane": self._draw_airplane,
        }.get(name)
        if draw is None:
            raise ValueError(f"Object {name!r} is not placed with _draw_one")
        return draw(allowed)

    def _draw_building(self, allowed: np.ndarray) -> bool:
        rng, px = self.rng, self.px
        industrial = rng.random() < self.industrial_roofs
        h, w = (
            (px(rng.uniform(5, 7)), px(rng.uniform(5, 7)))
            if industrial
            else (px(rng.uniform(3.5, 5)), px(rng.uniform(3.5, 5)))
        )
        shadow = px(1)
        spot = self.find_spot(h + shadow, w + shadow, allowed)
        if spot is None:
            return False
        y0, x0 = spot
        if industrial:
            roof = np.array([[168, 178, 196], [112, 130, 160]][rng.integers(2)], np.float32)
        else:
            roof = np.array(
                [[184, 70, 50], [206, 112, 60], [152, 58, 62]][rng.integers(3)], np.float32
            )
        self.img[y0 + shadow : y0 + h + shadow, x0 + shadow : x0 + w + shadow] *= 0.45
        self.img[y0 : y0 + h, x0 : x0 + w] = roof * rng.uniform(0.92, 1.08)
        self._mark("building", y0, x0, h + shadow, w + shadow, (y0, x0, y0 + h, x0 + w))
        return True

    def _draw_storage_tank(self, allowed: np.ndarray) -> bool:
        px = self.px
        r = 2.0 * self.s * self.rng.uniform(0.9, 1.2)
        d = int(np.ceil(2 * r)) + 1
        spot = self.find_spot(d + px(1), d + px(1), allowed)
        if spot is None:
            return False
        y0, x0 = spot
        cy, cx = y0 + d / 2, x0 + d / 2
        dist = np.hypot(self.yy - cy, self.xx - cx)
        shadow = np.hypot(self.yy - cy - px(1), self.xx - cx - px(1)) < r
        self.img[shadow] *= 0.5
        self.img[dist < r] = (150, 150, 148)
        self.img[dist < r - max(0.8, 0.6 * self.s)] = (232, 232, 226)
        self._mark("storage tank", y0, x0, d + px(1), d + px(1), _extent(dist < r))
        return True

    def _draw_tree(self, allowed: np.ndarray) -> bool:
        r = 1.6 * self.s * self.rng.uniform(0.9, 1.15)
        d = int(np.ceil(2 * r)) + 1
        spot = self.find_spot(d + 1, d + 1, allowed)
        if spot is None:
            return False
        y0, x0 = spot
        cy, cx = y0 + d / 2, x0 + d / 2
        shadow = np.hypot(self.yy - cy - 1, self.xx - cx - 1) < r
        self.img[shadow] *= 0.4
        crown = np.hypot(self.yy - cy, self.xx - cx) < r
        self.img[crown] = (18, 62, 22)
        self._mark("tree", y0, x0, d + 1, d + 1, _extent(crown))
        return True

    def _draw_vehicle(self, allowed: np.ndarray) -> bool:
        rng = self.rng
        h, w = self.px(1.5), self.px(3)
        if rng.random() < 0.5:
            h, w = w, h
        spot = self.find_spot(h, w, allowed, margin=1)
        if spot is None:
            return False
        y0, x0 = spot
        colours = [[246, 222, 40], [60, 204, 232], [224, 40, 128], [40, 70, 226]]
        self.img[y0 : y0 + h, x0 : x0 + w] = colours[rng.integers(len(colours))]
        self._mark("vehicle", y0, x0, h, w, (y0, x0, y0 + h, x0 + w))
        return True

    def _draw_ship(self, allowed: np.ndarray) -> bool:
        rng, px = self.rng, self.px
        length, width = px(rng.uniform(6, 7.5)), px(2)
        vertical = rng.random() < 0.5
        h, w = (length, width) if vertical else (width, length)
        spot = self.find_spot(h + 2, w + 2, allowed)
        if spot is None:
            return False
        y0, x0 = spot[0] + 1, spot[1] + 1
        along = self.yy - y0 if vertical else self.xx - x0
        across = (self.xx - x0 if vertical else self.yy - y0) - width / 2
        # Hull tapers to a bow over its last ``width`` pixels.
        half = np.minimum(width / 2, (length - along) * 0.5 + 0.25)
        hull = (along >= 0) & (along < length) & (np.abs(across) <= half)
        self.img[hull] = (236, 236, 232)
        self._mark("ship", y0 - 1, x0 - 1, h + 2, w + 2, _extent(hull))
        return True

    def _draw_airplane(self, allowed: np.ndarray) -> bool:
        rng, px = self.rng, self.px
        span = px(rng.uniform(7, 8))
        spot = self.find_spot(span, span, allowed)
        if spot is None:
            return False
        y0, x0 = spot
        t = px(1)
        c = y0 + span // 2 - t // 2, x0 + span // 2 - t // 2
        body = np.zeros((self.size, self.size), bool)
        body[y0 : y0 + span, c[1] : c[1] + t] = True  # fuselage
        wing_row = y0 + int(span * 0.35)
        body[wing_row : wing_row + t, x0 : x0 + span] = True  # wings
        tail = px(3)
        body[y0 + span - t : y0 + span, c[1] - tail // 2 : c[1] + t + tail // 2] = True
        if rng.random() < 0.5:  # nose up or down; the final dihedral adds the rest
            body[y0 : y0 + span] = body[y0 : y0 + span][::-1]
        self.img[body] = (232, 234, 240)
        self._mark("airplane", y0, x0, span, span, _extent(body))
        return True

    def _mark(self, name: str, y0: int, x0: int, h: int, w: int, body: tuple[float, ...]) -> None:
        """Records an object: (y0, x0, h, w) its footprint with shadow and margin (kept
        free of later objects; its centre is the object's), body its drawn extent."""
        self.occupied[max(y0, 0) : y0 + h, max(x0, 0) : x0 + w] = True
        self.objects.append((name, y0 + h / 2, x0 + w / 2))
        self.extents.append(tuple(float(v) for v in body))

    def roads(self, count: int, allowed: np.ndarray) -> int:
        """Straight roads spanning the image (horizontal or vertical), drawn only on ``allowed``."""
        n, width = self.size, self.px(2)
        used: list[tuple[bool, int]] = []
        for _ in range(count):
            for _try in range(20):
                vertical = bool(self.rng.random() < 0.5)
                pos = int(self.rng.uniform(0.15, 0.85) * n)
                if all(v != vertical or abs(p - pos) > self.px(7) for v, p in used):
                    break
            else:
                continue
            line = np.zeros((n, n), bool)
            if vertical:
                line[:, pos : pos + width] = True
            else:
                line[pos : pos + width, :] = True
            line &= allowed
            if line.sum() < n * width // 2:
                continue
            used.append((vertical, pos))
            self.img[line] = (86, 86, 90)
            self.road |= line
            self.objects.append(("road", *np.argwhere(line).mean(0).tolist()))
            self.extents.append(_extent(line))
        return len(used)

    def runway(self) -> np.ndarray:
        """A horizontal runway across the image; returns its mask."""
        n, width = self.size, self.px(4)
        pos = int(self.rng.uniform(0.12, 0.25) * n)
        strip = np.zeros((n, n), bool)
        strip[pos : pos + width] = True
        self.img[strip] = (66, 66, 72)
        dash = self.px(3)
        centre = pos + width // 2
        cols = (np.arange(n) // dash) % 2 == 0
        self.img[centre, cols] = (236, 236, 236)
        self.occupied[max(pos - 1, 0) : pos + width + 1] = True
        self.lc[strip] = _IMPERVIOUS
        self.objects.append(("runway", pos + width / 2, n / 2))
        self.extents.append((float(pos), 0.0, float(min(pos + width, n)), float(n)))
        return strip


def _extent(mask: np.ndarray) -> tuple[float, float, float, float]:
    """(row0, col0, row1, col1): the pixel edges around the True pixels of mask [S, S]."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return float(rows[0]), float(cols[0]), float(rows[-1] + 1), float(cols[-1] + 1)


def _orient(
    extent: tuple[float, ...], n: int, flip: bool, k_rot: int
) -> tuple[float, float, float, float]:
    """A pixel-edge extent (row0, col0, row1, col1) after the final flip and rotations."""
    r0, c0, r1, c1 = extent
    if flip:
        c0, c1 = n - c1, n - c0
    for _ in range(k_rot):  # np.rot90: (row, col) -> (n - col, row)
        r0, c0, r1, c1 = n - c1, r0, n - c0, r1
    return r0, c0, r1, c1


def _count(rng: np.random.Generator, lo: int, hi: int) -> int:
    """How many objects of a class to try: lo..hi, both included."""
    return int(rng.integers(lo, hi + 1))


# One recipe per scene class: land cover and objects in the canonical orientation.


def _airport(c: _Canvas) -> None:
    rng = c.rng
    c.fill(_IMPERVIOUS)
    c.half_plane(_GRASS, rng.uniform(0.25, 0.4), angle_jitter=0.0)
    c.paint_landcover()
    strip = c.runway()
    apron = (c.lc == _IMPERVIOUS) & ~strip
    c.place("airplane", _count(rng, 1, 4), apron)
    c.industrial_roofs = 1.0
    c.place("building", _count(rng, 0, 2), apron)
    c.place("vehicle", _count(rng, 0, 2), apron)


def _harbor(c: _Canvas) -> None:
    rng = c.rng
    c.fill(_IMPERVIOUS)
    c.half_plane(_WATER, rng.uniform(0.35, 0.6))
    c.water_shape = "edge"
    c.paint_landcover()
    land = c.lc == _IMPERVIOUS
    c.roads(_count(rng, 0, 1), land)
    c.place("ship", _count(rng, 1, 4), c.lc == _WATER)
    c.industrial_roofs = 0.7
    c.place("storage tank", _count(rng, 0, 2), land)
    c.place("building", _count(rng, 0, 2), land)
    c.place("vehicle", _count(rng, 0, 2), land)


def _residential(c: _Canvas) -> None:
    rng = c.rng
    rural = rng.random() < 0.35
    if rural:
        c.fill(_GRASS)
        if rng.random() < 0.5:
            c.half_plane(_CROP, rng.uniform(0.2, 0.35))
    else:
        c.fill(_IMPERVIOUS)
        if rng.random() < 0.6:
            c.half_plane(_GRASS, rng.uniform(0.15, 0.35))
    c.paint_landcover()
    land = c.lc != _WATER
    c.roads(_count(rng, 1, 2), land)
    c.place("building", _count(rng, 2, 4), land & (c.lc != _CROP))
    c.place("tree", _count(rng, 0, 4), land & (c.lc != _CROP))
    c.place("vehicle", _count(rng, 0, 3), c.road | (c.lc == _IMPERVIOUS))


def _industrial(c: _Canvas) -> None:
    rng = c.rng
    c.fill(_IMPERVIOUS)
    if rng.random() < 0.4:
        c.half_plane(_BARE, rng.uniform(0.2, 0.4))
    c.paint_landcover()
    c.roads(_count(rng, 0, 1), np.ones_like(c.occupied))
    paved = c.lc == _IMPERVIOUS
    c.place("storage tank", _count(rng, 1, 4), paved)
    c.industrial_roofs = 1.0
    c.place("building", _count(rng, 0, 3), paved)
    c.place("vehicle", _count(rng, 0, 3), paved | c.road)


def _farmland(c: _Canvas) -> None:
    rng = c.rng
    c.fill(_CROP)
    if rng.random() < 0.5:
        c.half_plane(rng.choice([_GRASS, _FOREST]), rng.uniform(0.15, 0.35))
    c.paint_landcover()
    c.roads(_count(rng, 0, 1), np.ones_like(c.occupied))
    c.place("building", _count(rng, 0, 1), c.lc != _FOREST)
    c.place("tree", _count(rng, 0, 3), c.lc != _FOREST)
    c.place("vehicle", _count(rng, 0, 1), c.road)


def _forest(c: _Canvas) -> None:
    rng = c.rng
    c.fill(_FOREST)
    if rng.random() < 0.5:
        c.half_plane(rng.choice([_GRASS, _BARE]), rng.uniform(0.15, 0.35))
    c.paint_landcover()
    c.roads(_count(rng, 0, 1), np.ones_like(c.occupied))
    c.place("tree", _count(rng, 0, 3), (c.lc != _FOREST) & ~c.road)


def _inland_water(c: _Canvas, water_shape: str) -> None:
    """A lake (water_shape "blob") or a river ("band") on open land."""
    rng = c.rng
    c.fill(int(rng.choice([_GRASS, _FOREST, _CROP, _BARE])))
    if rng.random() < 0.4:
        c.half_plane(int(rng.choice([_GRASS, _FOREST, _CROP])), rng.uniform(0.2, 0.4))
    if water_shape == "blob":
        c.blob(_WATER, rng.uniform(0.15, 0.35))
    else:
        c.band(_WATER, rng.uniform(0.16, 0.26))
    c.water_shape = water_shape
    c.paint_landcover()
    land = (c.lc != _WATER) & (c.lc != _FOREST)
    c.place("ship", _count(rng, 0, 1), c.lc == _WATER)
    c.place("tree", _count(rng, 0, 3), land)
    c.place("building", _count(rng, 0, 1), land)


def _desert(c: _Canvas) -> None:
    rng = c.rng
    c.fill(_BARE)
    c.paint_landcover()
    c.roads(_count(rng, 0, 1), np.ones_like(c.occupied))
    c.place("vehicle", _count(rng, 0, 2), c.road)
    c.place("building", _count(rng, 0, 1), ~c.road)


_RECIPES: dict[str, Callable[[_Canvas], None]] = {
    "airport": _airport,
    "harbor": _harbor,
    "residential": _residential,
    "industrial": _industrial,
    "farmland": _farmland,
    "forest": _forest,
    "lake": functools.partial(_inland_water, water_shape="blob"),
    "river": functools.partial(_inland_water, water_shape="band"),
    "desert": _desert,
}


def _recipe(c: _Canvas, scene: str) -> None:
    """Lay out land cover and objects for an intended scene (canonical orientation)."""
    if scene not in _RECIPES:
        raise ValueError(f"Unknown scene {scene!r}; expected one of {SCENES}")
    _RECIPES[scene](c)


def render_scene(seed: int, image_size: int = 32, scene: str | None = None) -> SceneSample:
    """Render one scene deterministically from ``seed``.

    scene: the intended scene class; None draws one uniformly from SCENES.
    Returns a SceneSample whose labels describe exactly what was drawn.
    """
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    rng = np.random.default_rng(seed)
    intended = scene if scene is not None else SCENES[int(rng.integers(len(SCENES)))]
    for _attempt in range(20):
        c = _Canvas(image_size, rng)
        _recipe(c, intended)
        counts = {n: 0 for n in OBJECTS}
        for name, _, _ in c.objects:
            counts[name] += 1
        if max(counts.values()) > MAX_COUNT:
            continue
        fractions = {n: float(np.mean(c.lc == i)) for i, n in enumerate(LANDCOVERS)}
        if derive_scene(fractions, counts, c.water_shape) == intended:
            break
    else:
        raise RuntimeError(f"Could not render a consistent {intended!r} scene for seed {seed}")

    # Global lighting jitter and sensor noise, then a random flip/rotation (label-preserving).
    img = c.img * rng.uniform(0.9, 1.1) + rng.normal(0, 2.0, size=c.img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    lc = c.lc
    n = image_size
    objects = list(c.objects)
    k_rot = int(rng.integers(4))
    flip = bool(rng.random() < 0.5)
    if flip:
        img, lc = img[:, ::-1], lc[:, ::-1]
        objects = [(name, r, n - col) for name, r, col in objects]
    for _ in range(k_rot):
        # np.rot90 (counter-clockwise): new (row, col) = (n - col, row)
        img, lc = np.rot90(img), np.rot90(lc)
        objects = [(name, n - col, r) for name, r, col in objects]
    boxes = []
    for extent in c.extents:
        r0, c0, r1, c1 = _orient(extent, n, flip, k_rot)
        boxes.append(Box(c0 / n, r0 / n, c1 / n, r1 / n))
    return SceneSample(
        image=np.ascontiguousarray(img),
        landcover_map=np.ascontiguousarray(lc),
        scene=intended,
        landcover_fractions=fractions,
        counts=counts,
        objects=tuple(objects),
        boxes=tuple(boxes),
        rural_urban=derive_rural_urban(fractions),
        water_shape=c.water_shape,
        seed=seed,
    )


def example_seed(base_seed: int, split: str, index: int) -> int:
    """Per-example seed so that splits and indices never share a random stream."""
    split_id = {"train": 0, "test": 1, "validation": 2}.get(split, 3)
    return int(np.random.SeedSequence([base_seed, split_id, index]).generate_state(1)[0])
