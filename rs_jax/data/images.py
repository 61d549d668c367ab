"""Image files -> uint8 RGB arrays, and the up-front check that every file of a split decodes.

Pixel conversion to uint8 RGB:
  * grayscale (L, 1), palette (P), LA, RGBA, CMYK: PIL ``convert("RGB")``; alpha is
    dropped (RS tiles rarely use transparency meaningfully).
  * 16-bit (I;16*, I): divided by 257, i.e. the full 0..65535 range maps onto 0..255.
    A fixed scale keeps brightness comparable between images; a per-image range
    stretch would make a dark tile and a bright tile look the same.
  * float (F): stretched per image to its min..max (there is no fixed range to use).
  * multispectral TIFF (more than 4 bands, read with tifffile): `Bands` picks the three
    shown as RGB; integer bands are scaled by a fixed `max_value` (Sentinel-2 reflectance
    x 10000 is mostly below 3000, so its full uint16 range would be nearly black), floats
    per image as above.
Images are resized to ``image_size`` x ``image_size`` with PIL bilinear resampling,
which low-pass filters when downsampling (antialiased).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from etils import epath
from PIL import Image

from rs_jax.files import absolute, stamp, write_text_whole

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif")
_TIFF = (".tif", ".tiff")

log = logging.getLogger(__name__)
# What PIL raises for a file it cannot decode (truncated, corrupt, unsupported, too large).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class UnreadableImageError(OSError):
    """An image file that cannot be decoded (truncated, corrupt, unsupported)."""


@dataclasses.dataclass(frozen=True)
class Bands:
    """Which bands of a multispectral image become R, G, B (config.data.bands; () = the
    file's own RGB) and the integer value shown as full brightness (config.data.band_max;
    0 = the dtype's maximum)."""

    indices: tuple[int, ...] = ()
    max_value: float = 0.0

    def __post_init__(self):
        if self.indices and len(self.indices) != 3:
            raise ValueError(
                f"config.data.bands={self.indices}: give three band indices (R, G, B), "
                "e.g. (3, 2, 1) for Sentinel-2's B4, B3, B2"
            )
        if any(i < 0 for i in self.indices) or self.max_value < 0:
            raise ValueError(
                f"config.data.bands={self.indices} / band_max={self.max_value}: "
                "must not be negative"
            )


RGB = Bands()


def bands_of(data) -> Bands:
    """The band selection of config.data (its `bands` and `band_max`)."""
    return Bands(tuple(int(b) for b in data.get("bands", ())), float(data.get("band_max", 0.0)))


def _to_rgb_uint8(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        arr = np.clip(arr / 257.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "F":
        return Image.fromarray(_stretch(np.asarray(img, np.float64)), mode="L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # PIL warns when a transparent palette goes straight to RGB
    return img.convert("RGB")


def _stretch(arr: np.ndarray) -> np.ndarray:
    lo, hi = np.nanmin(arr), np.nanmax(arr)
    arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    return np.nan_to_num(arr).round().astype(np.uint8)


def _read_bands(data: io.BytesIO) -> np.ndarray:
    """A TIFF's pixels [H, W, C] (any band count and dtype)."""
    import tifffile

    data.seek(0)
    arr = tifffile.imread(data)
    if arr.ndim == 2:
        return arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"{arr.ndim}-d pixel array {arr.shape}; expected [H, W, bands]")
    # Planar TIFFs store [bands, H, W]; band counts are far below tile sizes.
    return np.moveaxis(arr, 0, -1) if arr.shape[0] < min(arr.shape[1:]) else arr


def _pages_are_bands(data: io.BytesIO) -> bool:
    """Whether a multi-page TIFF holds more than 4 bands, one per page (how tifffile writes a
    [bands, H, W] array); PIL would read its first page alone as a grayscale image."""
    try:
        return _read_bands(data).shape[-1] > 4
    except _DECODE_ERRORS:
        return False


def _select_bands(arr: np.ndarray, bands: Bands) -> Image.Image:
    count = arr.shape[-1]
    if not bands.indices:
        raise ValueError(
            f"{count} bands; set config.data.bands to the three shown as RGB "
            "(e.g. (3, 2, 1) for Sentinel-2's B4, B3, B2)"
        )
    if max(bands.indices) >= count:
        raise ValueError(f"config.data.bands={bands.indices} but the image has {count} bands")
    picked = arr[..., list(bands.indices)]
    if np.issubdtype(picked.dtype, np.floating):
        rgb = _stretch(picked.astype(np.float64))
    else:
        top = bands.max_value or np.iinfo(picked.dtype).max
        rgb = np.clip(picked.astype(np.float64) / top * 255.0, 0, 255).round().astype(np.uint8)
    return Image.fromarray(rgb, mode="RGB")


def _decode(path: str, bands: Bands) -> Image.Image:
    """The file as an RGB PIL image (not resized)."""
    data = io.BytesIO(epath.Path(path).read_bytes())  # from a bucket (gs://) too
    if path.lower().endswith(_TIFF):
        try:
            with Image.open(data) as img:
                pages = getattr(img, "n_frames", 1)  # before load: counting seeks
                img.load()
                if not bands.indices and not (pages > 1 and _pages_are_bands(data)):
                    return _to_rgb_uint8(img)
        except _DECODE_ERRORS:
            pass  # more than 4 bands or a sample format PIL does not read: tifffile does
        return _select_bands(_read_bands(data), bands)
    with Image.open(data) as img:
        img.load()  # force the full decode here so truncation is caught now
        if not bands.indices:
            return _to_rgb_uint8(img)
        arr = np.asarray(img)
    return _select_bands(arr if arr.ndim == 3 else arr[..., None], bands)


def load_image(path: str, image_size: int, bands: Bands = RGB) -> np.ndarray:
    """Decode, convert and resize one file. Returns uint8 [image_size, image_size, 3].

    Raises UnreadableImageError naming the file when it cannot be decoded.
    """
    try:
        rgb = _decode(path, bands)
        if rgb.size != (image_size, image_size):
            rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
        arr = np.asarray(rgb, dtype=np.uint8)
    except _DECODE_ERRORS as e:
        raise UnreadableImageError(f"Cannot read image {path}: {type(e).__name__}: {e}") from e
    if arr.shape != (image_size, image_size, 3):
        raise UnreadableImageError(f"Image {path} decoded to unexpected shape {arr.shape}")
    return arr


def decode_error(path: str, bands: Bands = RGB) -> str | None:
    """Why `path` cannot be used as an image, or None when it decodes."""
    if not epath.Path(path).exists():
        # A link exists on this host only (False for a URL).
        return "missing" if not os.path.islink(path) else "missing (a dangling link)"
    try:
        _decode(path, bands)
    except _DECODE_ERRORS as e:
        return f"{type(e).__name__}: {e}"
    return None


class VerifiedCache:
    """Verification results of the images under one folder, keyed by file and valid while
    the file's size and modification time are unchanged. Stored as JSON under `cache_dir` (a
    folder the project owns); no cache_dir, or an unwritable one, just means no reuse."""

    def __init__(self, cache_dir: str | None, base_dir: str, bands: Bands = RGB):
        self.path, self.base_dir, self.bands = None, base_dir, bands
        self.entries: dict[str, list] = {}  # path relative to base_dir -> [size, mtime, error]
        if cache_dir:
            # Band selection changes what decodes, so it is part of the key.
            ident = f"{absolute(base_dir)}|{bands.indices}|{bands.max_value}"
            key = hashlib.sha256(ident.encode()).hexdigest()[:16]
            self.path = epath.Path(cache_dir) / f"{key}.json"
            try:
                self.entries = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.entries = {}

    @staticmethod
    def _stamp(path: str) -> list[int] | None:
        try:
            return list(stamp(path))
        except OSError:
            return None

    def errors(self, paths: Sequence[str], num_threads: int = 8) -> dict[str, str]:
        """path -> reason for every file of `paths` that does not decode."""
        paths = list(dict.fromkeys(paths))
        keys = {p: os.path.relpath(p, self.base_dir) for p in paths}
        stamps = {p: self._stamp(p) for p in paths}
        known = {
            p: self.entries[keys[p]][2]
            for p in paths
            if stamps[p] is not None and self.entries.get(keys[p], [None])[:2] == stamps[p]
        }
        todo = [p for p in paths if p not in known]
        check = lambda p: decode_error(p, self.bands)
        with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
            checked = dict(zip(todo, pool.map(check, todo), strict=True))
        if todo and self.path:
            self._save(
                {keys[p]: [*stamps[p], known.get(p, checked.get(p))] for p in paths if stamps[p]}
            )
        found = known | checked
        return {p: found[p] for p in paths if found[p]}

    def _save(self, entries: dict[str, list]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text_whole(self.path, json.dumps(entries))
        except OSError as e:
            log.info("Image verification cache not written (%s): %s", self.path, e)


def check_images(
    paths: Sequence[str],
    base_dir: str,
    *,
    allow_skips: bool,
    cache_dir: str | None,
    bands: Bands = RGB,
    referenced_by: dict[str, str] | None = None,
    num_threads: int = 8,
) -> dict[str, str]:
    """Decodes every file of `paths` once (cached, see VerifiedCache) -> {path: reason} of
    those that fail, which the caller leaves out. Without `allow_skips` a failure is one
    ValueError naming the first file (and, from `referenced_by`, the record that names it)."""
    skipped = VerifiedCache(cache_dir, base_dir, bands).errors(paths, num_threads)
    if skipped and not allow_skips:
        path, reason = next(iter(skipped.items()))
        where = f" ({referenced_by[path]})" if referenced_by and path in referenced_by else ""
        raise ValueError(
            f"{len(skipped)} unreadable image(s) in {base_dir}, first {path}{where}: "
            f"{reason}; fix or remove them, or set config.data.allow_skips=True to skip "
            f"them (counted and listed in the log and eval.json)"
        )
    if skipped:
        log.warning("%s: skipped %d unreadable images: %s", base_dir, len(skipped), skipped)
    return skipped
