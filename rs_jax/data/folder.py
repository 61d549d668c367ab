"""Image-folder classification dataset: ``<root>/<split>/<class>/*.jpg|png|tif|bmp|webp|gif``.

A Grain-compatible random-access source (``__len__``/``__getitem__``). Files are
listed in sorted order, so indices are stable across runs and hosts. Decoding and the
up-front check of every file: rs_jax/data/images.py.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from etils import epath

from rs_jax.data.images import IMAGE_EXTENSIONS, RGB, Bands, check_images, load_image

log = logging.getLogger(__name__)


def _list_classes(split_dir: str) -> list[str]:
    return sorted(
        d.name for d in epath.Path(split_dir).iterdir() if not d.name.startswith(".") and d.is_dir()
    )


def _list_files(class_dir: str) -> tuple[list[str], list[str]]:
    """(image paths, other files) of one class folder, sorted; hidden files are neither.
    A dangling link with an image extension counts as an image (it fails verification)."""
    images, others = [], []
    for path in sorted(epath.Path(class_dir).iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or path.is_dir():
            continue
        (images if path.name.lower().endswith(IMAGE_EXTENSIONS) else others).append(str(path))
    return images, others


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
        bands: Bands = RGB,
        num_threads: int = 8,
    ):
        self.root, self.split, self.image_size = os.fspath(root), split, int(image_size)
        self.bands = bands
        if not self.root or not epath.Path(self.root).is_dir():
            raise FileNotFoundError(f"Folder dataset root {self.root!r} does not exist")
        split_dir = str(epath.Path(self.root) / split)
        if not epath.Path(split_dir).is_dir():
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
            class_dir = str(epath.Path(split_dir) / name)
            if not epath.Path(class_dir).is_dir():
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

        self.skipped = check_images(
            self.files,
            split_dir,
            allow_skips=allow_skips,
            cache_dir=cache_dir,
            bands=bands,
            num_threads=num_threads,
        )
        if self.skipped:
            keep = [f not in self.skipped for f in self.files]
            self.files = [f for f, good in zip(self.files, keep, strict=True) if good]
            self.labels = [lab for lab, good in zip(self.labels, keep, strict=True) if good]
        if not self.files:
            raise ValueError(f"No readable images left in {split_dir!r}")

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

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
            "image": load_image(self.files[index], self.image_size, self.bands),
            "label": np.int32(self.labels[index]),
        }

    def __repr__(self) -> str:
        return (
            f"FolderDataset(root={self.root!r}, split={self.split!r}, images={len(self)}, "
            f"classes={len(self.classes)}, skipped={len(self.skipped)})"
        )
