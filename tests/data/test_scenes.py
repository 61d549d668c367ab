"""Synthetic renderer: determinism, sizes, and labels that agree with the pixels."""

import numpy as np
import pytest

from rs_jax.data import scenes
from rs_jax.kb.curation import load_descriptions
from rs_jax.kb.schema import make_id


@pytest.fixture(scope="module")
def samples() -> list[scenes.SceneSample]:
    return [scenes.render_scene(seed, 32) for seed in range(270)]


@pytest.mark.parametrize("size", [32, 64])
def test_deterministic_by_seed(size):
    a, b = scenes.render_scene(7, size), scenes.render_scene(7, size)
    assert a.image.shape == (size, size, 3) and a.image.dtype == np.uint8
    np.testing.assert_array_equal(a.image, b.image)
    assert (a.scene, a.counts, a.landcover_fractions) == (b.scene, b.counts, b.landcover_fractions)
    assert not np.array_equal(a.image, scenes.render_scene(8, size).image)


def test_every_scene_is_rendered_with_requested_label():
    for scene in scenes.SCENES:
        for seed in range(3):
            s = scenes.render_scene(seed, 32, scene=scene)
            assert s.scene == scene


def test_labels_follow_from_content(samples):
    seen = {s.scene for s in samples}
    assert seen == set(scenes.SCENES)
    for s in samples:
        # The label is exactly what the derivation rules say about the drawn content.
        assert scenes.derive_scene(s.landcover_fractions, s.counts, s.water_shape) == s.scene
        assert s.rural_urban == scenes.derive_rural_urban(s.landcover_fractions)
        assert all(0 <= c <= scenes.MAX_COUNT for c in s.counts.values())
        drawn = {n: 0 for n in scenes.OBJECTS}
        for name, _, _ in s.objects:
            drawn[name] += 1
        assert drawn == s.counts
        assert abs(sum(s.landcover_fractions.values()) - 1.0) < 1e-6
        for i, name in enumerate(scenes.LANDCOVERS):
            assert s.landcover_fractions[name] == pytest.approx(np.mean(s.landcover_map == i))
        assert s.landcovers and all(
            s.landcover_fractions[n] >= scenes.LANDCOVER_MIN_FRACTION for n in s.landcovers
        )


def test_objects_sit_where_they_belong(samples):
    water = scenes.LANDCOVERS.index("water")
    for s in samples:
        if s.counts["airplane"] or s.counts["runway"]:
            assert s.scene == "airport"
        for name, row, col in s.objects:
            if name == "ship":  # ships only on water
                r, c = int(row), int(col)
                assert s.landcover_map[min(r, 31), min(c, 31)] == water
    assert sum(s.counts["ship"] for s in samples) > 0
    harbors = [s for s in samples if s.scene == "harbor"]
    assert harbors and all(s.counts["ship"] >= 1 for s in harbors)
    assert all(s.rural_urban == "urban" for s in samples if s.scene == "industrial")
    assert {s.rural_urban for s in samples} == {"rural", "urban"}


def test_objects_are_visible():
    # Each object changes pixels: the same seed with nothing placed would look different.
    s = scenes.render_scene(3, 32, scene="industrial")
    tank_pixels = (s.image.min(-1) > 200).sum()
    assert s.counts["storage tank"] >= 1 and tank_pixels >= 4 * s.counts["storage tank"]


def _canvas_with_one(name: str, size: int = 64, seed: int = 0) -> scenes._Canvas:
    """A canvas of black pixels (no land cover painted) with one object drawn: only the
    object's body is not black (shadows darken black to black)."""
    c = scenes._Canvas(size, np.random.default_rng(seed))
    everywhere = np.ones((size, size), bool)
    if name == "road":
        assert c.roads(1, everywhere) == 1
    elif name == "runway":
        c.runway()
    else:
        assert c.place(name, 1, everywhere) == 1
    return c


@pytest.mark.parametrize("name", scenes.OBJECTS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_box_is_tight_around_the_drawn_pixels(name, seed):
    c = _canvas_with_one(name, seed=seed)
    drawn = c.img.max(-1) > 0
    rows, cols = np.flatnonzero(drawn.any(1)), np.flatnonzero(drawn.any(0))
    [extent] = c.extents
    assert extent == (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
    assert len(c.extents) == len(c.objects)


@pytest.mark.parametrize("size", [32, 64])
def test_boxes_lie_on_the_objects_after_flips_and_rotations(size):
    """Each box holds its object's centre, and most of its pixels differ from the ground
    just around it: a box left in the canonical orientation, or turned the wrong way,
    would lie on plain ground."""
    for seed in range(60):  # every flip and rotation occurs among them
        s = scenes.render_scene(seed, size)
        assert len(s.boxes) == len(s.objects)
        img = s.image.astype(np.float64)
        for (name, row, col), box in zip(s.objects, s.boxes, strict=True):
            assert box.angle == 0
            assert box.y1 * size <= row <= box.y2 * size and box.x1 * size <= col <= box.x2 * size
            r0, c0, r1, c1 = (round(v * size) for v in (box.y1, box.x1, box.y2, box.x2))
            ring = np.zeros((size, size), bool)
            ring[max(r0 - 3, 0) : r1 + 3, max(c0 - 3, 0) : c1 + 3] = True
            ring[max(r0 - 2, 0) : r1 + 2, max(c0 - 2, 0) : c1 + 2] = False
            ground = np.median(img[ring], axis=0)
            differs = np.abs(img[r0:r1, c0:c1] - ground).sum(-1) > 40
            # 0.2: an airplane covers about a third of its box, a storage tank's inner
            # disc a quarter (its grey rim is near the grey of paved ground).
            assert differs.mean() >= 0.2, (seed, name, box)


def test_kb_entries_order_and_ids():
    entries = scenes.kb_entries()
    levels = [e.level for e in entries]
    n_s, n_l = len(scenes.SCENES), len(scenes.LANDCOVERS)
    assert levels == ["scene"] * n_s + ["landcover"] * n_l + ["object"] * len(scenes.OBJECTS)
    assert [e.name for e in entries] == [*scenes.SCENES, *scenes.LANDCOVERS, *scenes.OBJECTS]
    assert all(e.description for e in entries)
    for e in entries:
        assert entries[scenes.kb_id(e.level, e.name)] == e
        assert e.id == make_id(e.level, e.name) and e.sources == [scenes.KB_SOURCE]


def test_descriptions_file_describes_exactly_the_classes():
    text = load_descriptions(scenes.DESCRIPTIONS_FILE)
    classes = {"scene": scenes.SCENES, "landcover": scenes.LANDCOVERS, "object": scenes.OBJECTS}
    assert {level: tuple(names) for level, names in text.items()} == classes
