"""Image-folder classification dataset: ``<root>/<split>/<class>/*.jpg|png|tif|bmp|webp|gif``.

A Grain-compatible random-access source (``__len__``/``__getitem__``). Files are
listed in sorted order, so indices are stable across runs and hosts.

Pixel conversion to uint8 RGB:
  * grayscale (L, 1), palette (P), LA, RGBA, CMYK: PIL ``convert("RGB")``; alpha is
    dropped (RS tiles rarely use transparency meaningfully).
  * 16-bit (I;16*, I): divided by 257, i.e. the full 0..65535 range maps onto 0..255.
    A fixed scale keeps brightness comparable between images; a per-image range
    stretch would make a dark tile and a bright tile look the same.
  * float (F): stretched per image to its min..max (there is no fixed range to use).
Images are resized to ``image_size`` x ``image_size`` with PIL bilinear resampling,
which low-pass filters when downsampling (antialiased).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif")

log = logging.getLogger(__name__)
# What PIL raises for a file it cannot decode (truncated, corrupt, unsupported, too large).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class UnreadableImageError(OSError):
    """An image file that PIL cannot decode (truncated, corrupt, unsupported)."""


def _to_rgb_uint8(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        arr = np.clip(arr / 257.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = np.nanmin(arr), np.nanmax(arr)
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.nan_to_num(arr).round().astype(np.uint8), mode="L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # PIL warns when a transparent palette goes straight to RGB
    return img.convert("RGB")


def load_image(path: str, image_size: int) -> np.ndarray:
    """Decode, convert and resize one file. Returns uint8 [image_size, image_size, 3].

    Raises UnreadableImageError naming the file when it cannot be decoded.
    """
    try:
        with Image.open(path) as img:
            img.load()  # force the full decode here so truncation is caught now
            rgb = _to_rgb_uint8(img)
            if rgb.size != (image_size, image_size):
                rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
            arr = np.asarray(rgb, dtype=np.uint8)
    except _DECODE_ERRORS as e:
        raise UnreadableImageError(f"Cannot read image {path}: {type(e).__name__}: {e}") from e
    if arr.shape != (image_size, image_size, 3):
        raise UnreadableImageError(f"Image {path} decoded to unexpected shape {arr.shape}")
    return arr


def _list_classes(split_dir: str) -> list[str]:
    return sorted(
        d
        for d in os.listdir(split_dir)
        if not d.startswith(".") and os.path.isdir(os.path.join(split_dir, d))
    )


def _list_files(class_dir: str) -> tuple[list[str], list[str]]:
    """(image paths, other files) of one class folder, sorted; hidden files are neither.
    A dangling link with an image extension counts as an image (it fails verification)."""
    images, others = [], []
    for name in sorted(os.listdir(class_dir)):
        path = os.path.join(class_dir, name)
        if name.startswith(".") or os.path.isdir(path):
            continue
        (images if name.lower().endswith(IMAGE_EXTENSIONS) else others).append(path)
    return images, others


def _decode_error(path: str) -> str | None:
    """Why `path` cannot be used as an image, or None when it decodes."""
    if not os.path.exists(path):
        return "missing (a dangling link)"
    try:
        with Image.open(path) as img:
            img.load()
            _to_rgb_uint8(img)
    except _DECODE_ERRORS as e:
        return f"{type(e).__name__}: {e}"
    return None


class _VerifiedCache:
    """Verification results of one split folder, keyed by file and valid while the file's
    size and modification time are unchanged. Stored as JSON under `cache_dir` (a folder
    the project owns); no cache_dir, or an unwritable one, just means no reuse."""

    def __init__(self, cache_dir: str | None, split_dir: str):
        self.path, self.split_dir = None, split_dir
        self.entries: dict[str, list] = {}  # path relative to split_dir -> [size, mtime, error]
        if cache_dir:
            key = hashlib.sha256(os.path.abspath(split_dir).encode()).hexdigest()[:16]
            self.path = os.path.join(cache_dir, f"{key}.json")
            try:
                with open(self.path) as f:
                    self.entries = json.load(f)
            except (OSError, ValueError):
                self.entries = {}

    @staticmethod
    def _stamp(path: str) -> list[int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return [st.st_size, st.st_mtime_ns]

    def errors(self, paths: list[str], num_threads: int) -> dict[str, str]:
        """path -> reason for every file of `paths` that does not decode."""
        keys = {p: os.path.relpath(p, self.split_dir) for p in paths}
        stamps = {p: self._stamp(p) for p in paths}
        known = {
            p: self.entries[keys[p]][2]
            for p in paths
            if stamps[p] is not None and self.entries.get(keys[p], [None])[:2] == stamps[p]
        }
        todo = [p for p in paths if p not in known]
        with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
            checked = dict(zip(todo, pool.map(_decode_error, todo), strict=True))
        if todo and self.path:
            self._save(
                {keys[p]: [*stamps[p], known.get(p, checked.get(p))] for p in paths if stamps[p]}
            )
        found = known | checked
        return {p: found[p] for p in paths if found[p]}

    def _save(self, entries: dict[str, list]) -> None:
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump(entries, f)
            os.replace(tmp, self.path)
        except OSError as e:
            log.info("Image verification cache not written (%s): %s", self.path, e)


class FolderDataset:
    """Random-access classification source over ``<root>/<split>/<class>/<image>``.

    classes: class folder names (defines the label ids); None = this split's
    folders, sorted. Pass the train split's classes when opening the eval split so
    labels agree. Every image is decoded once when the split is indexed (in parallel;
    results cached in `cache_dir` by file size and modification time), so a bad file is
    an error before training starts; with ``allow_skips`` it is left out instead.
    ``skipped`` (file -> reason) and ``unsupported`` (files that are not images of a
    supported type) are logged and reported.
    Items: {"image": uint8 [S,S,3], "label": int32 scalar}.
    """

    def __init__(
        self,
        root: str,
        split: str,
        image_size: int,
        *,
        classes: tuple[str, ...] | list[str] | None = None,
        allow_skips: bool = False,
        cache_dir: str | None = None,
        num_threads: int = 8,
    ):
        self.root, self.split, self.image_size = os.fspath(root), split, int(image_size)
        if not self.root or not os.path.isdir(self.root):
            raise FileNotFoundError(f"Folder dataset root {self.root!r} does not exist")
        split_dir = os.path.join(self.root, split)
        if not os.path.isdir(split_dir):
            found = _list_classes(self.root)
            raise FileNotFoundError(
                f"Split folder {split_dir!r} does not exist (folders in root: {found})"
            )
        found_classes = _list_classes(split_dir)
        if not found_classes:
            raise ValueError(f"Split folder {split_dir!r} has no class folders")
        if classes is None:
            classes = found_classes
        classes = tuple(classes)
        unknown = sorted(set(found_classes) - set(classes))
        if unknown:
            raise ValueError(
                f"Split folder {split_dir!r} has class folders {unknown} that are not among "
                f"the known classes {list(classes)}"
            )
        self.classes = classes
        self.files: list[str] = []
        self.labels: list[int] = []
        self.unsupported: list[str] = []
        for label, name in enumerate(classes):
            class_dir = os.path.join(split_dir, name)
            if not os.path.isdir(class_dir):
                log.warning("Split %r has no folder for class %r", split, name)
                continue
            images, others = _list_files(class_dir)
            self.unsupported += others
            if not images:
                raise ValueError(
                    f"Class folder {class_dir!r} contains no images "
                    f"({', '.join('*' + e for e in IMAGE_EXTENSIONS)})"
                )
            self.files += images
            self.labels += [label] * len(images)
        if self.unsupported:
            log.warning(
                "%s: ignored %d files that are not %s images: %s",
                split_dir,
                len(self.unsupported),
                "/".join(e[1:] for e in IMAGE_EXTENSIONS),
                self.unsupported,
            )

        self.skipped = _VerifiedCache(cache_dir, split_dir).errors(self.files, num_threads)
        if self.skipped and not allow_skips:
            path, reason = next(iter(self.skipped.items()))
            raise ValueError(
                f"{len(self.skipped)} unreadable image(s) in {split_dir}, first {path}: "
                f"{reason}; fix or remove them, or set config.data.allow_skips=True to skip "
                f"them (counted and listed in the log and eval.json)"
            )
        if self.skipped:
            keep = [f not in self.skipped for f in self.files]
            self.files = [f for f, good in zip(self.files, keep, strict=True) if good]
            self.labels = [lab for lab, good in zip(self.labels, keep, strict=True) if good]
            log.warning("%s: %s", split_dir, self.skip_report)
        if not self.files:
            raise ValueError(f"No readable images left in {split_dir!r}")

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    @property
    def skip_report(self) -> str:
        return f"skipped {len(self.skipped)} unreadable images: {self.skipped}"

    def report(self) -> dict:
        """What indexing left out, for results files."""
        return {
            "split": self.split,
            "images": len(self.files),
            "skipped": dict(self.skipped),
            "unsupported": list(self.unsupported),
        }

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        return {
            "image": load_image(self.files[index], self.image_size),
            "label": np.int32(self.labels[index]),
        }

    def __repr__(self) -> str:
        return (
            f"FolderDataset(root={self.root!r}, split={self.split!r}, images={len(self)}, "
            f"classes={len(self.classes)}, skipped={len(self.skipped)})"
        )
