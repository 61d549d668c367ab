"""The training manifest: one digest per image and its texts, written once, and the change
between two manifests named file by file."""

import hashlib
import json
import os

from rs_jax.data.manifest import (
    describe_change,
    manifest_path,
    manifest_sha256,
    training_manifest,
    write_manifest,
)
from rs_jax.data.sources import Item, Split
from rs_jax.data.tasks import QA


def split_of(root, files: dict[str, bytes], answer: str = "forest") -> Split:
    items = []
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        qa = QA("what is this?", answer, "scene")
        items.append(Item(str(root / name), (qa,), ("forest",), name))
    return Split(items, str(root))


def test_a_digest_is_of_the_image_bytes_and_the_texts(tmp_path):
    split = split_of(tmp_path, {"train/a.png": b"pixels a", "train/b.png": b"pixels b"})
    manifest = training_manifest([("ucm", split)])
    texts = json.dumps([["what is this?", "forest", "scene", [], []], ["forest"]])
    want = hashlib.sha256(b"pixels a" + texts.encode()).hexdigest()[:16]
    assert manifest["ucm:train/a.png"] == want
    assert set(manifest) == {"ucm:train/a.png", "ucm:train/b.png"}
    # An edited answer is an edit of its file's entry, as is an edited image.
    edited = training_manifest([("ucm", split_of(tmp_path, {"train/a.png": b"pixels a"}, "river"))])
    assert edited["ucm:train/a.png"] != want


def test_several_records_of_one_image_get_one_key_each(tmp_path):
    split = split_of(tmp_path, {"a.png": b"x"})
    split.items = split.items * 3
    assert list(training_manifest([("vqa", split)])) == ["vqa:a.png", "vqa:a.png#2", "vqa:a.png#3"]


def test_changes_are_named_by_kind_and_the_manifest_is_written_once(tmp_path):
    old = {f"s:{i}.png": "0" for i in range(8)} | {"s:kept.png": "1"}
    new = {"s:kept.png": "2", "s:new.png": "3"}
    write_manifest(tmp_path, old)
    path = manifest_path(tmp_path, manifest_sha256(old))
    written = path.read_bytes()
    assert describe_change(tmp_path, manifest_sha256(old), new) == (
        "1 file added (s:new.png); 8 files removed (s:0.png, s:1.png, s:2.png, s:3.png, "
        "s:4.png, and 3 more); 1 file edited (s:kept.png)"
    )
    before = os.stat(path)
    write_manifest(tmp_path, old)
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert path.read_bytes() == written
    assert manifest_sha256({}) is None
    write_manifest(tmp_path, {})  # generated data: nothing to write
    assert describe_change(tmp_path, "f" * 64, new).startswith("its manifest data_manifest-ffff")
