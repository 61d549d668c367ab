"""The "referring" format (rs_jax/data/sources/referring.py): VRSBench-style records with
known boxes, written in either box notation, scored by IoU; bad records named or skipped."""

import json
import os

import pytest
from PIL import Image

from configs import common
from rs_jax.data import sources
from rs_jax.data.images import Bands
from rs_jax.data.pipeline import EvalSource
from rs_jax.data.sources import referring
from rs_jax.eval.protocols import Scorer


def _source(path, **values):
    return sources.SourceConfig.from_config(
        "refs", dict(common.source("referring", str(path), **values))
    )


def _ctx(tmp_path, allow_skips=False, box_format="geochat"):
    return sources.LoadContext(
        image_size=32,
        allow_skips=allow_skips,
        cache_dir=str(tmp_path / "checks"),
        bands=Bands(),
        box_format=box_format,
    )


def _record(image, question, box, **more):
    return {"image_id": image, "question": question, "ground_truth": box, "type": "ref", **more}


@pytest.fixture
def folder(tmp_path):
    for name in ("P0003_0002.png", "P0007_0001.png", "P0009_0000.png"):
        Image.new("RGB", (64, 64)).save(tmp_path / name)
    test = [
        _record("P0003_0002.png", "the small white car next to the runway", "{<31><43><54><77>}"),
        _record("P0003_0002.png", "the large hangar", "{<0><0><20><10>}", unique=False),
        # DIOR-RSVG exports name the fields "image" and "expression".
        {
            "image": "P0007_0001.png",
            "expression": "the ship at the top",
            "ground_truth": "{<5><5><15><25>|<30>}",
        },
    ]
    (tmp_path / "test.json").write_text(json.dumps(test))
    train = [_record("P0009_0000.png", "the tennis court", "{<40><40><60><70>}")]
    (tmp_path / "train.json").write_text(json.dumps(train))
    return tmp_path


def test_records_become_refer_questions_answered_in_the_configured_notation(folder):
    src = _source(folder / "{split}.json")
    assert src.protocol == "grounding"
    train, test = sources.load(src, _ctx(folder))
    assert [os.path.basename(i.image) for i in train.items] == ["P0009_0000.png"]
    first, second = test.items
    assert first.record == f"{folder / 'test.json'} record 1"
    assert [(q.question, q.answer, q.task) for q in first.qas] == [
        ("[refer] the small white car next to the runway", "{<31><43><54><77>|<0>}", "grounding"),
        ("[refer] the large hangar", "{<0><0><20><10>|<0>}", "grounding"),
    ]
    assert [(q.question, q.answer) for q in second.qas] == [
        ("[refer] the ship at the top", "{<5><5><15><25>|<30>}")
    ]
    # On Qwen's 0-1000 grid; the rotated box becomes the horizontal box around it.
    _, qwen = sources.load(src, _ctx(folder, box_format="qwen"))
    assert qwen.items[0].qas[0].answer == "<box>(310,430),(540,770)</box>"
    assert qwen.items[1].qas[0].answer.startswith("<box>(")
    # Scored as grounding: the reference itself is a hit, a box beside it a miss.
    scorer = Scorer([EvalSource("refs", "grounding", ("grounding",))])
    scorer.add("grounding", "{<31><43><54><77>}", first.qas[0].answer, ())
    scorer.add("grounding", "{<60><60><80><80>}", first.qas[1].answer, ())
    assert scorer.results()["sources"]["refs"]["acc@0.5"] == 0.5


def test_one_file_with_a_split_on_every_record(folder):
    rows = [dict(r, split="test") for r in json.loads((folder / "test.json").read_text())]
    rows += [dict(r, split="train") for r in json.loads((folder / "train.json").read_text())]
    (folder / "all.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    train, test = sources.load(_source(folder / "all.jsonl"), _ctx(folder))
    assert (len(train.items), len(test.items)) == (1, 2)
    (folder / "nosplit.json").write_text(json.dumps(rows[:1] + [{"image_id": "x.png"}]))
    with pytest.raises(ValueError, match=r'nosplit\.json record 2: no "split"'):
        sources.load(_source(folder / "nosplit.json"), _ctx(folder))


def test_a_bad_record_is_named_or_skipped_when_allowed(folder):
    rows = json.loads((folder / "test.json").read_text())
    rows[1]["ground_truth"] = "at the top left"
    del rows[2]["expression"]
    (folder / "test.json").write_text(json.dumps(rows))
    src = _source(folder / "{split}.json")
    with pytest.raises(
        ValueError, match=r"test\.json record 2: \"ground_truth\" 'at the top left' is not one box"
    ):
        referring.load_split(src, "test", _ctx(folder))
    split = referring.load_split(src, "test", _ctx(folder, allow_skips=True))
    assert [len(item.qas) for item in split.items] == [1]
    assert sorted(split.skipped) == [f"{folder / 'test.json'} record {n}" for n in (2, 3)]
    assert split.skipped[f"{folder / 'test.json'} record 3"] == "no question"
    (folder / "test.json").write_text('{"image_id": "a.png"}')
    with pytest.raises(ValueError, match=r"test\.json holds a JSON dict, not a list"):
        referring.load_split(src, "test", _ctx(folder))
