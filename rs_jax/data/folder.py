"""Image-folder classification dataset: ``<root>/<split>/<class>/*.jpg|jpeg|png|tif|tiff``.

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

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")

log = logging.getLogger(__name__)


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
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
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


def _list_images(class_dir: str) -> list[str]:
    return sorted(
        os.path.join(class_dir, f)
        for f in os.listdir(class_dir)
        if not f.startswith(".")
        and f.lower().endswith(IMAGE_EXTENSIONS)
        and os.path.isfile(os.path.join(class_dir, f))
    )


class FolderDataset:
    """Random-access classification source over ``<root>/<split>/<class>/<image>``.

    classes: class folder names (defines the label ids); None = this split's
    folders, sorted. Pass the train split's classes when opening the eval split so
    labels agree. With ``allow_skips`` every file is decoded once up front and the
    unreadable ones are left out; ``skipped`` lists them and a log line reports them.
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
        for label, name in enumerate(classes):
            class_dir = os.path.join(split_dir, name)
            if not os.path.isdir(class_dir):
                log.warning("Split %r has no folder for class %r", split, name)
                continue
            images = _list_images(class_dir)
            if not images:
                raise ValueError(
                    f"Class folder {class_dir!r} contains no images "
                    f"({', '.join('*' + e for e in IMAGE_EXTENSIONS)})"
                )
            self.files += images
            self.labels += [label] * len(images)

        self.skipped: list[str] = []
        if allow_skips:
            self._drop_unreadable(num_threads)

    def _drop_unreadable(self, num_threads: int) -> None:
        def readable(path: str) -> bool:
            try:
                load_image(path, self.image_size)
                return True
            except UnreadableImageError:
                return False

        with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
            ok = list(pool.map(readable, self.files))
        self.skipped = [f for f, good in zip(self.files, ok, strict=True) if not good]
        if self.skipped:
            self.files = [f for f, good in zip(self.files, ok, strict=True) if good]
            self.labels = [lab for lab, good in zip(self.labels, ok, strict=True) if good]
            log.warning(
                "%s/%s: skipped %d unreadable images: %s",
                self.root,
                self.split,
                len(self.skipped),
                self.skipped,
            )
        if not self.files:
            raise ValueError(f"No readable images left in {os.path.join(self.root, self.split)!r}")

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    @property
    def skip_report(self) -> str:
        return f"skipped {len(self.skipped)} unreadable images: {self.skipped}"

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
