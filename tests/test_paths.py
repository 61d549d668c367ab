"""gs:// paths reach the filesystem layer unmangled (rs_jax/files.py and its users).

Nothing here contacts Cloud Storage: the `bucket` fixture stands in for epath's gs://
backend, keeping objects under a local folder and recording every path it is handed. A
path that lost its scheme on the way (pathlib makes gs://b/x into gs:/b/x) would not reach
it at all but land in a local `gs:` folder, which the fixture checks is absent.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from etils import epath
from etils.epath import backend, gpath
from PIL import Image

from rs_jax import files
from rs_jax.data.folder import FolderDataset
from rs_jax.data.images import load_image
from rs_jax.data.sources import image_path, read_json, read_jsonl
from rs_jax.data.tokenizer import load_tokenizer, stored_corpus_hash, train_tokenizer
from rs_jax.kb.schema import Entry, load_kb, write_kb
from rs_jax.kb.store import BuiltKB, write_built_kb
from rs_jax.train import checkpointing, trainer
from rs_jax.train.lock import WorkdirLock
from tests.fakes import FakeEncoder


class FakeBucket:
    """epath's backend for gs://: objects under `root`, every path handed to it in `seen`."""

    def __init__(self, root: str):
        self.root, self.seen = root, []

    def local(self, path) -> str:
        path = os.fspath(path)
        assert path.startswith("gs://"), path
        self.seen.append(path)
        return os.path.join(self.root, path.removeprefix("gs://"))

    def url(self, path: str) -> str:
        return "gs://" + os.path.relpath(path, self.root)

    def open(self, path, mode: str):
        path = self.local(path)
        if "r" not in mode:  # an object store has no folders to create first
            os.makedirs(os.path.dirname(path), exist_ok=True)
        return backend.os_backend.open(path, mode)

    def glob(self, pattern: str) -> list[str]:
        return [self.url(p) for p in backend.os_backend.glob(self.local(pattern))]

    def walk(self, top, **kwargs):
        for root, dirs, names in backend.os_backend.walk(self.local(top), **kwargs):
            yield self.url(root), dirs, names

    def __getattr__(self, name: str):
        method = getattr(backend.os_backend, name)

        def call(path, *args, **kwargs):
            args = [self.local(a) if str(a).startswith("gs://") else a for a in args]
            return method(self.local(path), *args, **kwargs)

        return call


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    store = tmp_path / "store"
    (store / "bucket").mkdir(parents=True)
    fake = FakeBucket(str(store))
    monkeypatch.setitem(gpath._PREFIX_TO_BACKEND, "gs", fake)
    monkeypatch.chdir(tmp_path)
    yield fake
    assert not (tmp_path / "gs:").exists(), "a gs:// path lost its scheme"


def test_epath_keeps_the_scheme_where_pathlib_does_not():
    assert str(epath.Path("gs://bucket/run") / "checkpoints") == "gs://bucket/run/checkpoints"
    assert str(files.absolute("gs://bucket/run")) == "gs://bucket/run"
    # What files.absolute avoids: epath's own absolute() treats a URL as a relative path.
    assert str(epath.Path("gs://bucket/run").absolute()) != "gs://bucket/run"


def test_local_only_places_name_the_setting_and_the_url():
    with pytest.raises(ValueError, match=r"--out='gs://bucket/kb': this must be a local path"):
        files.local_path("gs://bucket/kb", "--out")
    assert files.local_path("runs/kb", "--out") == epath.Path("runs/kb")


def test_write_whole_writes_into_the_bucket(bucket):
    files.write_text_whole("gs://bucket/run/eval.json", '{"step": 3}')
    assert json.loads(epath.Path("gs://bucket/run/eval.json").read_text()) == {"step": 3}
    assert os.listdir(os.path.join(bucket.root, "bucket/run")) == ["eval.json"]
    partial = f"gs://bucket/run/.eval.json.{os.getpid()}.partial"
    assert partial in bucket.seen and "gs://bucket/run/eval.json" in bucket.seen
    with pytest.raises(FileExistsError), files.write_whole("gs://bucket/run/eval.json", False):
        pass
    assert epath.Path("gs://bucket/run/eval.json").read_text() == '{"step": 3}'


def test_checkpoints_of_a_bucket_workdir_go_to_the_bucket(monkeypatch):
    given = []
    monkeypatch.setattr(
        checkpointing.ocp, "CheckpointManager", lambda directory, **_: given.append(directory)
    )
    checkpointer = checkpointing.Checkpointer("gs://bucket/run")
    assert [str(d) for d in given] == ["gs://bucket/run/checkpoints"]
    assert isinstance(given[0], epath.Path)
    assert str(checkpointer.step_dir(7)) == "gs://bucket/run/checkpoints/7"


def test_the_lock_of_a_bucket_workdir(bucket):
    with WorkdirLock("gs://bucket/run"):
        holder = json.loads(epath.Path("gs://bucket/run/.rs_jax.lock").read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(FileExistsError, match="Another run"):
            WorkdirLock("gs://bucket/run").__enter__()
    assert not epath.Path("gs://bucket/run/.rs_jax.lock").exists()


def test_config_record_in_a_bucket_keeps_the_earlier_one(bucket):
    run = epath.Path("gs://bucket/run")
    run.mkdir(parents=True)
    trainer._write_config_record(run, {"lr": 1})
    trainer._write_config_record(run, {"lr": 2})
    names = sorted(p.name for p in run.iterdir())
    assert names[0].startswith("config.2") and names[1] == "config.json"
    assert json.loads((run / "config.json").read_text()) == {"lr": 2}
    assert json.loads((run / names[0]).read_text()) == {"lr": 1}


def test_data_files_and_images_are_read_from_the_bucket(bucket):
    data = epath.Path("gs://bucket/data")
    data.mkdir(parents=True)
    (data / "q.json").write_text('{"questions": []}')
    (data / "q.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n')
    with (data / "tile.png").open("wb") as f:
        Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(f, format="PNG")

    assert read_json("gs://bucket/data/q.json", "test") == {"questions": []}
    assert list(read_jsonl("gs://bucket/data/q.jsonl", "test")) == [(1, {"a": 1}), (3, {"a": 2})]
    assert load_image("gs://bucket/data/tile.png", 4).tolist() == np.full((4, 4, 3), 200).tolist()
    assert image_path("gs://bucket/data", "tile.png") == "gs://bucket/data/tile.png"
    assert image_path("/local/images", "gs://bucket/data/tile.png") == "gs://bucket/data/tile.png"


def test_a_folder_dataset_in_a_bucket(bucket):
    for name in ("forest", "river"):
        folder = epath.Path(f"gs://bucket/ds/train/{name}")
        folder.mkdir(parents=True)
        with (folder / "0.png").open("wb") as f:
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(f, format="PNG")
    ds = FolderDataset("gs://bucket/ds", "train", 4, cache_dir="gs://bucket/run/data/checks")
    assert ds.classes == ("forest", "river")
    assert ds.files == ["gs://bucket/ds/train/forest/0.png", "gs://bucket/ds/train/river/0.png"]
    assert ds[1]["label"] == 1 and ds[1]["image"].shape == (4, 4, 3)
    # The verification cache went to the bucket too.
    assert len(list(epath.Path("gs://bucket/run/data/checks").glob("*.json"))) == 1


def test_a_tokenizer_folder_in_a_bucket(bucket):
    folder = "gs://bucket/run/data/tokenizer-abc"
    train_tokenizer(["a river beside a forest", "two ships"], folder, vocab_size=80)
    assert stored_corpus_hash(folder) is not None
    assert epath.Path(folder, "tokenizer.json").exists()
    tok = load_tokenizer(folder)
    assert tok.name_or_path == folder
    assert tok.decode(tok("a river")["input_ids"], skip_special_tokens=True) == "a river"
    assert stored_corpus_hash(tok.name_or_path) == stored_corpus_hash(folder)


def test_a_built_kb_in_a_bucket(bucket, tmp_path):
    entries = [
        Entry("scene/airport", "scene", "airport", "Runways and terminals."),
        Entry("object/ship", "object", "ship", "A vessel on water."),
    ]
    write_kb(entries, "gs://bucket/kb.jsonl")
    assert load_kb("gs://bucket/kb.jsonl") == entries
    encoder = FakeEncoder()
    embeddings = encoder.encode([e.name for e in entries])
    with pytest.raises(ValueError, match=r"--out='gs://bucket/built'"):
        write_built_kb("gs://bucket/built", entries, embeddings, encoder=encoder)
    # Built here, then copied to the bucket: the table is read from there; ScaNN's index
    # (host retrieval) reads local files only.
    write_built_kb(tmp_path / "built", entries, embeddings, encoder=encoder)
    shutil.copytree(tmp_path / "built", os.path.join(bucket.root, "bucket/built"))
    kb = BuiltKB.load("gs://bucket/built", expect_dim=encoder.dim, load_index=False)
    assert str(kb.path) == "gs://bucket/built" and kb.entries == entries
    np.testing.assert_allclose(kb.embeddings, embeddings)
    with pytest.raises(ValueError, match="ScaNN index folder='gs://bucket/built/scann/"):
        BuiltKB.load("gs://bucket/built")
