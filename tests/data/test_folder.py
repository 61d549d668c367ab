"""Folder classification dataset: decoding, conversions and clear errors on bad input."""

import logging
import os

import numpy as np
import pytest
from PIL import Image

from rs_jax.data.folder import FolderDataset
from rs_jax.data.images import UnreadableImageError, load_image

SHARED = os.environ.get(
    "RS_JAX_SHARED_DATA",
    os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data"),
)
EUROSAT = os.path.join(SHARED, "eurosat_rgb")


def _save(path, array, mode=None, fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array, mode=mode).save(path, format=fmt)


def _rgb(seed=0, size=20):
    return np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)


@pytest.fixture
def good_root(tmp_path):
    for split in ("train", "test"):
        _save(str(tmp_path / split / "Forest" / "a.jpg"), _rgb(1))
        _save(str(tmp_path / split / "Forest" / "b.png"), _rgb(2))
        _save(str(tmp_path / split / "SeaLake" / "c.tif"), _rgb(3))
    (tmp_path / "train" / "Forest" / "notes.txt").write_text("not an image")
    return tmp_path


def test_lists_sorted_and_decodes(good_root):
    ds = FolderDataset(str(good_root), "train", 16)
    assert ds.classes == ("Forest", "SeaLake")
    assert [os.path.basename(f) for f in ds.files] == ["a.jpg", "b.png", "c.tif"]
    assert ds.labels == [0, 0, 1]
    item = ds[2]
    assert item["image"].shape == (16, 16, 3) and item["image"].dtype == np.uint8
    assert int(item["label"]) == 1


def test_grayscale_rgba_palette_to_rgb(tmp_path):
    gray = np.arange(400, dtype=np.uint8).reshape(20, 20)
    _save(str(tmp_path / "g.png"), gray, mode="L")
    img = load_image(str(tmp_path / "g.png"), 20)
    assert img.shape == (20, 20, 3)
    np.testing.assert_array_equal(img[..., 0], gray)
    np.testing.assert_array_equal(img[..., 0], img[..., 2])

    rgba = np.concatenate([_rgb(4), np.full((20, 20, 1), 7, np.uint8)], -1)
    _save(str(tmp_path / "a.png"), rgba, mode="RGBA")
    np.testing.assert_array_equal(load_image(str(tmp_path / "a.png"), 20), rgba[..., :3])

    Image.fromarray(_rgb(5)).convert("P").save(tmp_path / "p.png")
    assert load_image(str(tmp_path / "p.png"), 10).shape == (10, 10, 3)


def test_16bit_scaled_by_257(tmp_path):
    arr = np.array([[0, 257, 65535, 25700]], dtype=np.uint16).repeat(4, 0)
    Image.fromarray(arr).save(tmp_path / "d.png")
    with Image.open(tmp_path / "d.png") as im:
        assert im.mode.startswith("I")  # really stored as 16 bit
    img = load_image(str(tmp_path / "d.png"), 4)
    assert img.shape == (4, 4, 3)
    np.testing.assert_array_equal(img[0, :, 0], [0, 1, 255, 100])


def test_unreadable_files_stop_indexing_naming_the_first_and_the_count(good_root):
    jpg = good_root / "train" / "Forest" / "a.jpg"
    jpg.write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])
    junk = good_root / "train" / "SeaLake" / "junk.png"
    junk.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(
        ValueError,
        match=r"2 unreadable image\(s\) in .*train, first .*a\.jpg: .*"
        r"config\.data\.allow_skips=True",
    ):
        FolderDataset(str(good_root), "train", 16)


def test_a_file_damaged_after_indexing_is_named_when_read(good_root):
    ds = FolderDataset(str(good_root), "train", 16)
    (good_root / "train" / "Forest" / "b.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(UnreadableImageError, match="b.png"):
        ds[1]


def test_allow_skips_counts_and_reports(good_root, caplog):
    jpg = good_root / "train" / "Forest" / "a.jpg"
    jpg.write_bytes(jpg.read_bytes()[:100])
    (good_root / "train" / "SeaLake" / "junk.png").write_bytes(b"\x89PNG garbage")
    os.symlink(good_root / "gone.jpg", good_root / "train" / "SeaLake" / "link.jpg")
    with caplog.at_level(logging.WARNING):
        ds = FolderDataset(str(good_root), "train", 16, allow_skips=True)
    assert len(ds) == 2 and ds.num_skipped == 3
    assert sorted(os.path.basename(p) for p in ds.skipped) == ["a.jpg", "junk.png", "link.jpg"]
    assert "dangling" in ds.skipped[str(good_root / "train" / "SeaLake" / "link.jpg")]
    assert "skipped 3 unreadable images" in caplog.text and "junk.png" in caplog.text
    assert all(ds[i]["image"].shape == (16, 16, 3) for i in range(len(ds)))
    report = ds.report()
    assert report["images"] == 2 and len(report["skipped"]) == 3
    assert [os.path.basename(p) for p in report["unsupported"]] == ["notes.txt"]


def test_other_image_types_are_read_and_other_files_counted(good_root, caplog):
    folder = good_root / "train" / "Forest"
    for i, ext in enumerate(("bmp", "webp", "gif")):
        _save(str(folder / f"x{i}.{ext}"), _rgb(10 + i))
    (folder / "x.aux.xml").write_text("<sidecar/>")
    with caplog.at_level(logging.WARNING):
        ds = FolderDataset(str(good_root), "train", 16)
    assert sorted(os.path.basename(f) for f in ds.files[:5]) == [
        "a.jpg", "b.png", "x0.bmp", "x1.webp", "x2.gif",
    ]  # fmt: skip
    assert ds[2]["image"].shape == (16, 16, 3)
    assert sorted(os.path.basename(p) for p in ds.unsupported) == ["notes.txt", "x.aux.xml"]
    assert "ignored 2 files" in caplog.text


def test_verification_is_cached_by_size_and_mtime(good_root, tmp_path, monkeypatch):
    from rs_jax.data import images

    decoded = []
    real = images.decode_error
    monkeypatch.setattr(images, "decode_error", lambda p, b: decoded.append(p) or real(p, b))
    cache = tmp_path / "cache"
    FolderDataset(str(good_root), "train", 16, cache_dir=str(cache))
    assert len(decoded) == 3
    decoded.clear()
    FolderDataset(str(good_root), "train", 16, cache_dir=str(cache))
    assert decoded == []  # nothing changed: nothing decoded again
    jpg = good_root / "train" / "Forest" / "a.jpg"
    jpg.write_bytes(jpg.read_bytes()[:100])  # a changed file is checked again, and fails
    with pytest.raises(ValueError, match="a.jpg"):
        FolderDataset(str(good_root), "train", 16, cache_dir=str(cache))
    assert [os.path.basename(p) for p in decoded] == ["a.jpg"]
    # A cache that cannot be written is no cache, not an error.
    (tmp_path / "file").write_text("")
    ds = FolderDataset(str(good_root), "test", 16, cache_dir=str(tmp_path / "file" / "x"))
    assert len(ds) == 3


def test_structure_errors(good_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        FolderDataset(str(tmp_path / "nowhere"), "train", 16)
    with pytest.raises(FileNotFoundError, match="validation"):
        FolderDataset(str(good_root), "validation", 16)
    os.makedirs(good_root / "empty")
    with pytest.raises(ValueError, match="no class folders"):
        FolderDataset(str(good_root), "empty", 16)
    os.makedirs(good_root / "train" / "Pasture")
    with pytest.raises(ValueError, match="Pasture.*no images"):
        FolderDataset(str(good_root), "train", 16)


def test_eval_split_uses_train_classes(good_root):
    os.makedirs(good_root / "test" / "Unknown")
    _save(str(good_root / "test" / "Unknown" / "x.png"), _rgb())
    with pytest.raises(ValueError, match="Unknown"):
        FolderDataset(str(good_root), "test", 16, classes=("Forest", "SeaLake"))


@pytest.mark.skipif(not os.path.isdir(EUROSAT), reason=f"shared data not found at {EUROSAT}")
def test_real_eurosat():
    ds = FolderDataset(EUROSAT, "test", 32)
    assert len(ds) == 1000 and len(ds.classes) == 10 and ds.classes[0] == "AnnualCrop"
    for i in (0, 499, 999):
        item = ds[i]
        assert item["image"].shape == (32, 32, 3) and item["image"].std() > 1
    assert ds.labels == sorted(ds.labels)
