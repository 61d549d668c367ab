"""Multispectral TIFFs: band selection (config.data.bands / band_max), the errors that name
the key, and the verification cache keyed by the band selection (rs_jax/data/images.py)."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from rs_jax.data import images
from rs_jax.data.images import Bands, UnreadableImageError, check_images, load_image

SIZE, BANDS = 16, 13
S2_RGB = Bands((3, 2, 1), 3000)


def _bands(seed=0, dtype=np.uint16):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.floating):
        return rng.uniform(-0.2, 0.9, (SIZE, SIZE, BANDS)).astype(dtype)
    # Reflectance x 10000, some of it above band_max (clipped to 255).
    return rng.integers(0, 4500, (SIZE, SIZE, BANDS)).astype(dtype)


def _write(path, hwc, layout):
    """A 13-band TIFF: "contig" [H, W, C] pixel-interleaved, "planar" [C, H, W] in one page
    (PlanarConfiguration separate), "pages" one page per band (tifffile's default for a
    3-d array)."""
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if layout == "contig":
        tifffile.imwrite(path, hwc, photometric="minisblack", planarconfig="contig")
    elif layout == "planar":
        chw = np.moveaxis(hwc, -1, 0)
        tifffile.imwrite(path, chw, photometric="minisblack", planarconfig="separate")
    else:
        tifffile.imwrite(path, np.moveaxis(hwc, -1, 0))
    stored = images._read_bands(io.BytesIO(Path(path).read_bytes()))
    np.testing.assert_array_equal(stored, hwc)  # as stored, [H, W, C]
    return path


LAYOUTS = ["contig", "planar", "pages"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_multispectral_needs_bands(tmp_path, layout):
    path = _write(tmp_path / "s2.tif", _bands(), layout)
    with pytest.raises(UnreadableImageError) as e:
        load_image(path, SIZE)
    message = str(e.value)
    assert path in message and "13 bands" in message and "config.data.bands" in message
    assert images.decode_error(path) is not None


@pytest.mark.parametrize("layout", LAYOUTS)
def test_band_selection_scaled_by_band_max(tmp_path, layout):
    hwc = _bands(1)
    path = _write(tmp_path / "s2.tif", hwc, layout)
    got = load_image(path, SIZE, S2_RGB)
    want = np.clip(hwc[..., [3, 2, 1]].astype(np.float64) / 3000 * 255, 0, 255).round()
    assert got.dtype == np.uint8 and got.shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(got, want.astype(np.uint8))
    assert (got == 255).any() and (got < 255).any()  # some clipped, some not
    # band_max 0: the dtype's maximum.
    got = load_image(path, SIZE, Bands((0, 4, 12)))
    want = (hwc[..., [0, 4, 12]].astype(np.float64) / 65535 * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(got, want)
    # Resized like any image.
    assert load_image(path, 8, S2_RGB).shape == (8, 8, 3)


def test_band_index_out_of_range_names_the_key(tmp_path):
    path = _write(tmp_path / "s2.tif", _bands(), "contig")
    with pytest.raises(UnreadableImageError, match=r"config\.data\.bands=\(3, 2, 13\).*13 bands"):
        load_image(path, SIZE, Bands((3, 2, 13), 3000))
    with pytest.raises(ValueError, match=r"config\.data\.bands=\(3, 2\): give three"):
        Bands((3, 2))
    with pytest.raises(ValueError, match=r"config\.data\.bands=\(3, -1, 1\)"):
        Bands((3, -1, 1))


def test_float_bands_stretched_per_image(tmp_path):
    hwc = _bands(2, np.float32)
    path = _write(tmp_path / "s2.tif", hwc, "contig")
    got = load_image(path, SIZE, S2_RGB)  # band_max does not apply to floats
    picked = hwc[..., [3, 2, 1]].astype(np.float64)
    lo, hi = picked.min(), picked.max()
    want = ((picked - lo) / (hi - lo) * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(got, want)
    assert got.min() == 0 and got.max() == 255
    # Another image, ten times brighter, looks the same: the stretch is per image.
    bright = _write(tmp_path / "bright.tif", hwc * 10, "planar")
    np.testing.assert_array_equal(load_image(bright, SIZE, S2_RGB), want)


def test_rgb_tiff_unchanged_without_bands(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    path = str(tmp_path / "rgb.tif")
    tifffile.imwrite(path, rgb, photometric="rgb")
    np.testing.assert_array_equal(load_image(path, SIZE), rgb)
    # A two-page RGB TIFF (a reduced-size second page) is still read as its first page.
    tifffile.imwrite(path, rgb, photometric="rgb")
    tifffile.imwrite(path, rgb[::2, ::2], photometric="rgb", append=True)
    np.testing.assert_array_equal(load_image(path, SIZE), rgb)


def test_verification_cache_is_keyed_by_bands(tmp_path, monkeypatch):
    path = _write(tmp_path / "imgs" / "s2.tif", _bands(), "contig")
    base, cache = str(tmp_path / "imgs"), str(tmp_path / "cache")
    check = lambda bands: check_images([path], base, allow_skips=True, cache_dir=cache, bands=bands)
    failed = check(Bands())
    assert list(failed) == [path] and "13 bands" in failed[path]
    # The result cached without bands is not reused with them: the file decodes.
    assert check(S2_RGB) == {}
    assert len(os.listdir(cache)) == 2  # one cache file per band selection

    # Both results are cached now: no decoding for either selection ...
    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(images, "decode_error", no_decoding)
    assert list(check(Bands())) == [path]
    assert check(S2_RGB) == {}
    # ... while a selection not seen before (another band_max) is checked afresh.
    with pytest.raises(AssertionError, match="decoded again"):
        check(Bands((3, 2, 1), 4000))

    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"1 unreadable image\(s\).*13 bands"):
        check_images([path], base, allow_skips=False, cache_dir=cache, bands=Bands())
