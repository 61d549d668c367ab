import numpy as np

from rs_jax.kb.linking import link_labels, relabel
from rs_jax.kb.schema import Entry, make_id

KB = [
    Entry(
        id="scene/highway",
        level="scene",
        name="highway",
        description="d",
        aliases=["Highway", "freeway"],
    ),
    Entry(
        id="landcover/lake",
        level="landcover",
        name="lake",
        description="d",
        aliases=["SeaLake", "Sea or Lake"],
    ),
    Entry(
        id="object/airplane",
        level="object",
        name="airplane",
        description="d",
        aliases=["plane", "Fixed-wing Aircraft"],
    ),
    Entry(id="scene/airport", level="scene", name="airport", description="d"),
]


def _label(level: str, name: str, *aliases: str) -> Entry:
    return Entry(make_id(level, name), level, name, "d", list(aliases))


def test_labels_link_by_name_or_alias_preferring_their_level():
    labels = [
        _label("scene", "sea lake", "SeaLake"),  # EuroSAT class; land cover in the KB
        _label("scene", "highway"),
        _label("object", "Plane"),
        _label("object", "submarine"),
    ]
    rows, unmatched = link_labels(labels, KB)
    np.testing.assert_array_equal(rows, [1, 0, 2, -1])
    assert unmatched == ["object/submarine"]


def test_relabel_moves_each_label_to_its_kb_level():
    row_of_label = np.array([1, 0, 2, -1])
    entry_levels = ("scene", "landcover", "object", "scene")  # KB level of each row
    # One example: labels 0 (-> land cover row 1), 1 (-> scene row 0), 2 (-> object row 2)
    # and 3 (no KB entry), padded with -1.
    kb_labels = np.array([[0, 1, 2, 3, -1, -1]])
    out = relabel(kb_labels, row_of_label, entry_levels, ("scene", "landcover", "object"))
    assert out.shape == (1, 3, 6)
    assert set(out[0, 0][out[0, 0] >= 0]) == {0}
    assert set(out[0, 1][out[0, 1] >= 0]) == {1}
    assert set(out[0, 2][out[0, 2] >= 0]) == {2}
    # Two model levels may draw on one KB level: each gets its labels.
    shared = relabel(kb_labels, row_of_label, entry_levels, ("scene", "landcover", "landcover"))
    np.testing.assert_array_equal(shared[0, 1], shared[0, 2])
    assert set(shared[0, 2][shared[0, 2] >= 0]) == {1}
