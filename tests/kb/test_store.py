"""The built knowledge-base folder: round trip, search, and clear errors on mismatches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rs_jax.kb.schema import Entry
from rs_jax.kb.store import BuiltKB, write_built_kb
from tests.fakes import FakeEncoder

ENTRIES = [
    Entry("scene/airport", "scene", "airport", "Runways, taxiways and terminals."),
    Entry("scene/farmland", "scene", "farmland", "Fields of crops in regular parcels."),
    Entry("landcover/water", "landcover", "water", "Open water: lakes, rivers, sea."),
    Entry("object/runway", "object", "runway", "Long paved strip where aircraft land."),
    Entry("object/ship", "object", "ship", "A vessel on water."),
]


@pytest.fixture
def built(tmp_path) -> tuple[BuiltKB, FakeEncoder]:
    kb_file = tmp_path / "kb.jsonl"
    kb_file.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in ENTRIES))
    encoder = FakeEncoder()
    emb = encoder.encode([f"{e.name}. {e.description}" for e in ENTRIES])
    kb = write_built_kb(tmp_path / "built", ENTRIES, emb, encoder=encoder, kb_path=kb_file)
    return kb, encoder


def test_store_round_trip(built):
    kb, encoder = built
    names = sorted(p.name for p in kb.path.iterdir())
    assert names == ["embeddings.npy", "entries.jsonl", "metadata.json", "scann"]
    loaded = BuiltKB.load(kb.path, expect_encoder=encoder, expect_dim=64)
    np.testing.assert_array_equal(loaded.embeddings, kb.embeddings)
    assert loaded.entries == ENTRIES
    meta = loaded.metadata
    assert meta["encoder"] == {"name": "fake", "fingerprint": "fp-1", "source": None}
    assert loaded.encoder_source == "fake"
    assert meta["count"] == 5 and meta["dim"] == 64
    assert meta["levels"] == {"scene": 2, "landcover": 1, "object": 2}
    assert len(meta["kb_sha256"]) == 64 and meta["rs_jax_version"]
    hits = loaded.search(encoder.encode(["ship"]), level="object", k=5)[0]
    assert [h.entry.id for h in hits] == ["object/ship", "object/runway"]
    query = encoder.encode(["ship"])[0]
    rows = [next(i for i, e in enumerate(ENTRIES) if e.id == h.entry.id) for h in hits]
    # Ranked by the inner product with the query, the score being that product.
    assert [h.rank for h in hits] == [1, 2]
    np.testing.assert_allclose([h.score for h in hits], kb.embeddings[rows] @ query, rtol=1e-6)
    # Rebuilding over a built KB replaces it only when asked to.
    with pytest.raises(ValueError, match="holds a built knowledge base; pass --overwrite"):
        write_built_kb(kb.path, ENTRIES[:2], kb.embeddings[:2], encoder=encoder)
    write_built_kb(kb.path, ENTRIES[:2], kb.embeddings[:2], encoder=encoder, overwrite=True)
    assert BuiltKB.load(kb.path).metadata["count"] == 2


def test_encoder_mismatch_names_both_and_the_path(built):
    kb, _ = built
    with pytest.raises(ValueError) as err:
        BuiltKB.load(kb.path, expect_encoder=FakeEncoder(name="other"))
    assert "'fake'" in str(err.value) and "'other'" in str(err.value)
    assert str(kb.path) in str(err.value)
    with pytest.raises(ValueError, match="fingerprint fp-1.*fingerprint fp-2"):
        BuiltKB.load(kb.path, expect_encoder=FakeEncoder(fingerprint="fp-2"))
    with pytest.raises(ValueError, match="'other'"):
        BuiltKB.load(kb.path, expect_encoder="other")


def test_dimension_mismatch(built):
    kb, _ = built
    with pytest.raises(ValueError, match=r"64-dimensional.*but the query expects 384") as err:
        BuiltKB.load(kb.path, expect_dim=384)
    assert str(kb.path) in str(err.value)
    with pytest.raises(ValueError, match="64-dimensional"):
        BuiltKB.load(kb.path, expect_encoder=FakeEncoder(dim=384))


@pytest.mark.parametrize("file", ["entries.jsonl", "embeddings.npy"])
def test_a_reordered_or_edited_file_is_refused(built, file):
    """Row i of the entries goes with row i of the embeddings: a reordered entries file
    would serve the wrong entries, so the build's hashes of both are checked at load."""
    kb, _ = built
    path = kb.path / file
    if file == "entries.jsonl":
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[::-1]))
    else:
        np.save(path, np.load(path)[::-1])
    with pytest.raises(ValueError, match=rf"{file} changed since the knowledge base was built"):
        BuiltKB.load(kb.path)


def test_missing_files_are_named(built, tmp_path):
    kb, _ = built
    (kb.path / "embeddings.npy").unlink()
    with pytest.raises(FileNotFoundError, match="missing embeddings.npy"):
        BuiltKB.load(kb.path)
    with pytest.raises(FileNotFoundError, match="not found"):
        BuiltKB.load(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "files",
    [
        {"a.txt": "keep me"},
        # A dataset folder with its own metadata.json is not a KB.
        {"metadata.json": '{"name": "eurosat"}', "images.txt": "x"},
        # A built KB's metadata but a file the build did not write: never deleted.
        {"metadata.json": None, "notes.txt": "mine"},
    ],
)
def test_a_folder_the_build_did_not_make_is_never_replaced(built, tmp_path, files):
    kb, _ = built
    folder = tmp_path / "folder"
    folder.mkdir()
    for name, text in files.items():
        if text is None:
            text = (kb.path / "metadata.json").read_text()
        (folder / name).write_text(text)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="not a knowledge base built by rs-jax"):
            write_built_kb(
                folder, ENTRIES, kb.embeddings, encoder=FakeEncoder(), overwrite=overwrite
            )
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        write_built_kb(tmp_path / "file", ENTRIES, kb.embeddings, encoder=FakeEncoder())
