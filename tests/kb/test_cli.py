"""``rs-jax kb validate|build|search`` end to end (fake encoder; the real one when present)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rs_jax import cli
from rs_jax.kb import cli as kb_cli
from tests.fakes import FakeEncoder

REPO = Path(__file__).resolve().parents[2]
SHIPPED_KB = REPO / "rs_jax" / "kb" / "data" / "rs_kb.jsonl"

GOOD = [
    {"id": "scene/airport", "level": "scene", "name": "airport",
     "description": "Runways, taxiways, aprons and terminal buildings.",
     "contains": ["object/runway"]},
    {"id": "scene/farmland", "level": "scene", "name": "farmland",
     "description": "Fields of crops in regular parcels."},
    {"id": "landcover/water", "level": "landcover", "name": "water",
     "description": "Open water: lakes, rivers and sea."},
    {"id": "object/runway", "level": "object", "name": "runway",
     "description": "Long paved strip where aircraft take off and land."},
    {"id": "object/ship", "level": "object", "name": "ship", "description": "A vessel on water."},
]  # fmt: skip


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def fake_encoder(monkeypatch) -> dict:
    made = {}

    def load(name: str) -> FakeEncoder:
        made[name] = FakeEncoder(name=name, fingerprint=made.get("_fingerprint", "fp-1"))
        return made[name]

    monkeypatch.setattr(kb_cli, "load_encoder", load)
    return made


def test_validate_good_file(tmp_path, capsys):
    kb = write_jsonl(tmp_path / "kb.jsonl", GOOD)
    assert cli.main(["kb", "validate", str(kb)]) == 0
    assert capsys.readouterr().out.strip() == "OK: 5 entries (scene 2, landcover 1, object 2)"


def test_validate_bad_file(tmp_path, capsys):
    bad = [GOOD[0], {**GOOD[1], "level": "planet", "id": "planet/farmland"},
           {k: v for k, v in GOOD[2].items() if k != "description"}, "{not json"]  # fmt: skip
    kb = write_jsonl(tmp_path / "bad.jsonl", bad)
    assert cli.main(["kb", "validate", str(kb)]) == 1
    out = capsys.readouterr().out
    assert "line 2" in out and "'level'" in out
    assert "line 3" in out and "description" in out
    assert "line 4" in out
    assert not out.startswith("OK")


def test_validate_missing_file_is_one_line(tmp_path, capsys):
    assert cli.main(["kb", "validate", str(tmp_path / "nope.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rs-jax: error:") and "nope.jsonl" in err and err.count("\n") == 1


def test_build_and_search(tmp_path, capsys, fake_encoder):
    kb = write_jsonl(tmp_path / "kb.jsonl", GOOD)
    out = tmp_path / "built"
    assert cli.main(["kb", "build", "--kb", str(kb), "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "Built 5 entries" in summary and "minilm" in summary
    assert json.loads((out / "metadata.json").read_text())["encoder"]["fingerprint"] == "fp-1"

    assert cli.main(["kb", "search", str(out), "ship on the water", "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "score", "level", "name", "id"]
    assert len(lines) == 4 and lines[1].split()[0] == "1"
    assert cli.main(["kb", "search", str(out), "runway", "--level", "scene"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [r.split()[2] for r in rows] == ["scene", "scene"]
    # More results than entries: all of them, said so (no buffer sized by -k).
    assert cli.main(["kb", "search", str(out), "runway", "-k", "1000000000"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "(-k 1000000000: the search covers 5 entries; showing them all)"
    assert len(lines) == 1 + 1 + 5


def test_build_never_replaces_a_folder_it_did_not_make(tmp_path, capsys, fake_encoder):
    """A dataset folder with a metadata.json of its own survives `kb build --out` with or
    without --overwrite, before anything is embedded; a KB built earlier needs
    --overwrite."""
    kb = write_jsonl(tmp_path / "kb.jsonl", GOOD)
    dataset = tmp_path / "eurosat"
    dataset.mkdir()
    (dataset / "metadata.json").write_text('{"classes": 10}')
    for extra in ([], ["--overwrite"]):
        command = ["kb", "build", "--kb", str(kb), "--out", str(dataset), *extra]
        assert cli.main(command) == 2
        assert "is not a knowledge base built by rs-jax" in capsys.readouterr().err
        assert not fake_encoder  # refused before loading the encoder
    assert [p.name for p in dataset.iterdir()] == ["metadata.json"]
    out = tmp_path / "built"
    assert cli.main(["kb", "build", "--kb", str(kb), "--out", str(out)]) == 0
    assert cli.main(["kb", "build", "--kb", str(kb), "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert cli.main(["kb", "build", "--kb", str(kb), "--out", str(out), "--overwrite"]) == 0


def test_search_refuses_other_encoder_weights(tmp_path, capsys, fake_encoder):
    kb = write_jsonl(tmp_path / "kb.jsonl", GOOD)
    out = tmp_path / "built"
    assert cli.main(["kb", "build", "--kb", str(kb), "--out", str(out)]) == 0
    fake_encoder["_fingerprint"] = "fp-2"  # same name, other weights
    assert cli.main(["kb", "search", str(out), "airport"]) == 2
    err = capsys.readouterr().err
    assert "fp-1" in err and "fp-2" in err and str(out) in err


def test_build_refuses_invalid_kb(tmp_path, capsys, fake_encoder):
    kb = write_jsonl(tmp_path / "bad.jsonl", [GOOD[0], {"id": "x"}])
    out = tmp_path / "built"
    assert cli.main(["kb", "build", "--kb", str(kb), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "line 2" in captured.out and "refusing to build" in captured.err
    assert not out.exists() and not fake_encoder


def test_search_missing_directory(tmp_path, capsys):
    assert cli.main(["kb", "search", str(tmp_path / "none"), "q"]) == 2
    assert "not found" in capsys.readouterr().err


def _real_encoder_available() -> str | None:
    if not SHIPPED_KB.is_file():
        return f"shipped KB not found at {SHIPPED_KB}"
    try:
        from rs_jax.models.text_encoder import SentenceEncoder  # noqa: F401
    except ImportError as e:
        return f"text encoder not importable: {e}"
    return None


@pytest.mark.skipif(_real_encoder_available() is not None, reason=str(_real_encoder_available()))
def test_shipped_kb_airport_runway(tmp_path, capsys):
    out = tmp_path / "built"
    assert cli.main(["kb", "build", "--kb", str(SHIPPED_KB), "--out", str(out)]) == 0
    capsys.readouterr()
    assert cli.main(["kb", "search", str(out), "airport runway", "-k", "3"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    ids = [r.split()[-1] for r in rows]
    assert any(w in ids[0] for w in ("airport", "runway")), rows
    for level, word in (("scene", "airport"), ("object", "runway")):
        assert cli.main(["kb", "search", str(out), "airport runway", "--level", level]) == 0
        top = capsys.readouterr().out.splitlines()[1]
        assert word in top.split()[-1], top
