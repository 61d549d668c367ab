"""Zero-shot classification on hand-made embeddings: cosine, not dot product; each class
scored with the query of its own level; name prompt ensembles; an aligned run end to end."""

import json
from pathlib import Path

import numpy as np
import pytest

from rs_jax.config_files import load_config
from rs_jax.data.scenes import kb_entries
from rs_jax.eval.evaluate import evaluate
from rs_jax.eval.zero_shot import _score, name_embeddings, zero_shot_predictions
from rs_jax.kb.schema import Entry, make_id
from rs_jax.kb.store import write_built_kb
from rs_jax.train import experiment as experiment_lib
from rs_jax.train.trainer import train
from tests.fakes import FakeEncoder

REPO = Path(__file__).resolve().parents[2]


def test_the_nearest_class_by_angle_wins_whatever_the_lengths():
    classes = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # Image 0 points at class 1 but is short; image 1 is long and nearer class 0 by angle.
    queries = np.array([[0.01, 0.2], [9.0, 4.0]])
    per_class = np.repeat(queries[:, None], 3, axis=1)
    assert zero_shot_predictions(per_class, classes).tolist() == [1, 0]
    # A dot product would pick class 0 for image 0 once the class vectors differ in length.
    assert np.argmax(queries @ (classes * [[30], [1], [1]]).T, axis=-1).tolist() == [0, 0]
    assert zero_shot_predictions(per_class, classes * [[30], [1], [1]]).tolist() == [1, 0]


def test_each_class_is_scored_with_the_query_of_its_level():
    # KB rows 0, 1 are scene entries, row 2 a land-cover entry; 2-d embeddings.
    table = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # Per image, its scene query and its land-cover query [N, L=2, D].
    queries = np.array(
        [
            [[1.0, 0.1], [-1.0, 0.0]],  # scene query near row 0, land cover far from row 2
            [[0.0, 1.0], [1.0, 0.2]],  # scene query on row 1, land cover off row 2
            [[-1.0, 0.5], [1.0, 0.9]],  # scene query nearer row 1, land cover near row 2
            [[0.2, 1.0], [0.0, 0.0]],  # no label anywhere: not counted
        ]
    )
    labels = np.full((4, 2, 3), -1)
    labels[0, 0, 0] = 0  # image 0: scene row 0
    labels[1, 0, 0] = 1  # image 1: scene row 1
    labels[2, 1, 0] = 2  # image 2: land-cover row 2
    result = _score(queries, labels, table)
    assert result == {"accuracy": 1.0, "count": 3, "classes": 3}
    # Image 2 said to be scene row 0: its scene query is nearer row 1, so it is now wrong.
    labels[2, 1, 0], labels[2, 0, 0] = -1, 0
    assert _score(queries, labels, table) == {"accuracy": 2 / 3, "count": 3, "classes": 2}


def test_a_name_is_the_normalised_mean_of_its_unit_prompt_embeddings():
    encoder = FakeEncoder(dim=16)
    prompts = ("a satellite image of {}.", "{}")
    got = name_embeddings(encoder, ["dense forest", "harbor"], prompts)
    for row, name in zip(got, ["dense forest", "harbor"], strict=True):
        each = encoder.encode([p.format(name) for p in prompts])
        each /= np.linalg.norm(each, axis=1, keepdims=True)
        mean = each.mean(0)
        np.testing.assert_allclose(row, mean / np.linalg.norm(mean), atol=1e-6)
    assert name_embeddings(encoder, ["harbor"])[0] @ name_embeddings(encoder, ["harbor"])[0] > 0.999


@pytest.mark.parametrize("built", [True, False])
def test_an_aligned_run_is_scored_zero_shot_by_descriptions_and_by_name_prompts(
    tmp_path, monkeypatch, built
):
    """`rs-jax train` with objective=align on the tiny config, then `evaluate`: zero-shot
    accuracy per source from both texts, the name prompts embedded by the built KB's
    encoder; a learned table (no built KB) has no name prompts."""
    entries = [
        Entry(id=make_id(e.level, e.name), level=e.level, name=e.name, description=e.description)
        for e in kb_entries()
    ]
    encoder = FakeEncoder(dim=24)
    table = encoder.encode([f"{e.name}. {e.description}" for e in entries])
    write_built_kb(tmp_path / "kb", entries, table, encoder=encoder)
    encoded = []

    def load(built):
        encoded.append(str(built.path))
        return encoder

    monkeypatch.setattr(experiment_lib, "load_kb_encoder", load)
    overrides = {
        **({"model.kb.source": tmp_path / "kb", "model.kb.dim": 24} if built else {}),
        "data.data_dir": tmp_path / "data",
        "train.objective": "align",
        "train.freeze": "('llm',)",
        "train.steps": 3,
    }
    config = load_config(str(REPO / "configs/tiny.py"), [f"{k}={v}" for k, v in overrides.items()])
    train(config, str(tmp_path / "run"))
    results = evaluate(config, str(tmp_path / "run"))
    [(source, scores)] = results["zero_shot"].items()
    assert scores["count"] > 0 and scores["classes"] > 1
    assert 0.0 <= scores["accuracy"] <= 1.0
    if built:
        assert 0.0 <= scores["accuracy_names"] <= 1.0
        assert encoded == [str(tmp_path / "kb")]
    else:
        assert scores["accuracy_names"] is None and encoded == []
    saved = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert saved["zero_shot"] == results["zero_shot"]
    assert "accuracy (name prompts)" in (tmp_path / "run" / "eval.md").read_text()
