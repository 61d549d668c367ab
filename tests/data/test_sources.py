"""Dataset formats (rs_jax/data/sources): RSVQA, captions, LLaVA conversations, VQA JSONL and
classification folders read from fixture files in their official layouts; source configs;
mixing sources by weight in build_data; the UC Merced mixture on the shared data."""

import collections
import dataclasses
import json
import os
import re
import threading

import ml_collections
import numpy as np
import pytest
from PIL import Image

from configs import common
from configs.common import base_config
from rs_jax.data import boxes, sources
from rs_jax.data import records as records_lib
from rs_jax.data import tasks as tasks_lib
from rs_jax.data.images import Bands
from rs_jax.data.pipeline import EvalSource, build_data
from rs_jax.data.sources import (
    captions,
    classification,
    detection,
    instruct,
    referring,
    rsvqa,
    vqa_jsonl,
)
from rs_jax.data.tasks import QA
from rs_jax.eval.protocols import Scorer

SHARED = os.environ.get(
    "RS_JAX_SHARED_DATA",
    os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data"),
)
SIZE = 16


def _image(path, seed=0, size=SIZE):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(str(path))
    return str(path)


def _json(path, value):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f)
    return str(path)


def _jsonl(path, rows):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return str(path)


def _source(name, fmt, path, **values):
    return sources.SourceConfig.from_config(name, dict(common.source(fmt, str(path), **values)))


def _ctx(tmp_path, allow_skips=False):
    return sources.LoadContext(
        image_size=SIZE,
        allow_skips=allow_skips,
        cache_dir=str(tmp_path / "image_checks"),
        bands=Bands(),
    )


def _qas(split):
    return {os.path.basename(it.image): it.qas for it in split.items}


# --- RSVQA -----------------------------------------------------------------------------------


def _rsvqa(root, prefix, split, questions, answers, images_dir):
    """The three official files of one split and an image `<id>.tif` per image id."""
    q_rows = [
        dict(id=i, img_id=img, type=kind, question=text, answers_ids=[100 + i], active=active)
        for i, (img, kind, text, active) in enumerate(questions)
    ]
    a_rows = [
        dict(id=100 + i, question_id=i, answer=answer, active=True)
        for i, answer in enumerate(answers)
    ]
    ids = sorted({img for img, *_ in questions})
    images = [
        dict(id=img, questions_ids=[i for i, q in enumerate(questions) if q[0] == img], active=True)
        for img in ids
    ]
    _json(root / f"{prefix}_split_{split}_questions.json", {"questions": q_rows})
    _json(root / f"{prefix}_split_{split}_answers.json", {"answers": a_rows})
    _json(root / f"{prefix}_split_{split}_images.json", {"images": images})
    for img in ids:
        _image(root / images_dir / f"{img}.tif", seed=img)


LR_QUESTIONS = [
    (0, "rural_urban", "Is it a rural or an urban area", True),
    (0, "presence", "Is there a road?", True),
    (1, "comparison", "Are there more roads than buildings?", True),
    (1, "count", "How many buildings are there?", True),
    (1, "presence", "Is there a water area?", False),  # inactive
    (2, "count", "How many roads are there?", True),
]
LR_ANSWERS = ["rural", "yes", "no", "4", "yes", "2"]


@pytest.fixture
def rsvqa_lr(tmp_path):
    root = tmp_path / "RSVQA_LR"
    for split in ("train", "test"):
        _rsvqa(root, "LR", split, LR_QUESTIONS, LR_ANSWERS, "Images_LR")
    return root


def test_rsvqa_lr_groups_questions_per_image_with_types(rsvqa_lr, tmp_path):
    train, test = sources.load(_source("lr", "rsvqa", rsvqa_lr), _ctx(tmp_path))
    assert [it.image for it in train.items] == [
        str(rsvqa_lr / "Images_LR" / f"{i}.tif") for i in (0, 1, 2)
    ]
    assert _qas(train) == {
        "0.tif": (
            QA("Is it a rural or an urban area", "rural", "rural_urban"),
            QA("Is there a road?", "yes", "presence"),
        ),
        # The inactive presence question is not read.
        "1.tif": (
            QA("Are there more roads than buildings?", "no", "comparison"),
            QA("How many buildings are there?", "4", "count"),
        ),
        "2.tif": (QA("How many roads are there?", "2", "count"),),
    }
    assert all(it.classes == () for it in train.items)
    assert train.items[0].record.endswith("LR_split_train_questions.json image 0")
    assert len(test.items) == 3 and test.skipped == {}


def test_rsvqa_question_types_filter_and_prompt_suffix(rsvqa_lr, tmp_path):
    src = _source(
        "lr",
        "rsvqa",
        rsvqa_lr,
        question_types=("rural_urban", "presence", "comparison"),
        prompt_suffix="Answer with one word.",
    )
    split = rsvqa.load_split(src, "train", _ctx(tmp_path))
    qas = _qas(split)
    # Image 2 had only a count question: it is gone.
    assert sorted(qas) == ["0.tif", "1.tif"]
    assert [qa.task for q in qas.values() for qa in q] == ["rural_urban", "presence", "comparison"]
    assert qas["1.tif"][0].question == "Are there more roads than buildings? Answer with one word."
    src = _source("lr", "rsvqa", rsvqa_lr, question_types=("presence", "shape"))
    with pytest.raises(ValueError, match=r"config\.data\.sources\.lr\.question_types.*'shape'"):
        rsvqa.load_split(src, "train", _ctx(tmp_path))


def test_rsvqa_hr_prefix_split_and_data_folder(tmp_path):
    root = tmp_path / "RSVQA_HR"
    questions = [
        (7, "area", "What is the area covered by buildings?", True),
        (7, "presence", "Is there a residential building?", True),
        (9, "count", "How many roads are there?", True),
    ]
    _rsvqa(root, "USGS", "test_phili", questions, ["0m2", "yes", "3"], "Data")
    src = _source("hr", "rsvqa", root, prefix="USGS", question_types=("presence", "comparison"))
    split = rsvqa.load_split(src, "test_phili", _ctx(tmp_path))
    assert [it.image for it in split.items] == [str(root / "Data" / "7.tif")]
    assert split.items[0].qas == (QA("Is there a residential building?", "yes", "presence"),)
    split = rsvqa.load_split(
        _source("hr", "rsvqa", root, prefix="USGS"), "test_phili", _ctx(tmp_path)
    )
    assert [qa.task for it in split.items for qa in it.qas] == ["area", "presence", "count"]


def test_rsvqa_unknown_question_type_names_file_and_question(tmp_path):
    root = tmp_path / "lr"
    questions = [*LR_QUESTIONS[:3], (1, "shape", "What shape is the field?", True)]
    _rsvqa(root, "LR", "train", questions, [*LR_ANSWERS[:3], "round"], "Images_LR")
    questions_file = str(root / "LR_split_train_questions.json")
    with pytest.raises(ValueError) as e:
        rsvqa.load_split(_source("lr", "rsvqa", root), "train", _ctx(tmp_path))
    assert f"{questions_file} question 3: unknown question type 'shape'" in str(e.value)
    assert "config.data.allow_skips" in str(e.value)

    split = rsvqa.load_split(_source("lr", "rsvqa", root), "train", _ctx(tmp_path, True))
    assert list(split.skipped) == [f"{questions_file} question 3"]
    assert "'shape'" in split.skipped[f"{questions_file} question 3"]
    assert sum(len(it.qas) for it in split.items) == 3
    assert split.report("train")["skipped"] == split.skipped


def test_rsvqa_question_without_text_names_it(tmp_path):
    root = tmp_path / "lr"
    questions = [*LR_QUESTIONS[:2], (1, "presence", "", True)]
    _rsvqa(root, "LR", "train", questions, LR_ANSWERS[:3], "Images_LR")
    with pytest.raises(ValueError, match=r"LR_split_train_questions\.json question 2: no question"):
        rsvqa.load_split(_source("lr", "rsvqa", root), "train", _ctx(tmp_path))
    questions = [*LR_QUESTIONS[:2], (1, "presence", ["Is there a road?"], True)]
    _rsvqa(root, "LR", "train", questions, LR_ANSWERS[:3], "Images_LR")
    message = r'question 2: "question": input should be a valid string \(got list'
    with pytest.raises(ValueError, match=message):
        rsvqa.load_split(_source("lr", "rsvqa", root), "train", _ctx(tmp_path))


# --- captions ----------------------------------------------------------------------------------


def _karpathy(tmp_path, images):
    return _json(tmp_path / "RSICD" / "dataset_rsicd.json", {"images": images})


def _sentences(*texts):
    return [{"raw": t, "tokens": t.split()} for t in texts]


def test_captions_karpathy_splits_and_references(tmp_path):
    root = tmp_path / "RSICD" / "RSICD_images"
    for i, name in enumerate(("airport_1.jpg", "beach_2.jpg", "bridge_3.jpg")):
        _image(root / name, seed=i)
    path = _karpathy(
        tmp_path,
        [
            dict(filename="airport_1.jpg", split="train", sentences=_sentences(" many planes . ")),
            dict(filename="beach_2.jpg", split="val", sentences=_sentences("a beach .")),
            dict(
                filename="bridge_3.jpg",
                split="test",
                sentences=_sentences("a bridge over a river .", "  ", "a long bridge ."),
            ),
        ],
    )
    src = _source("rsicd", "captions", path, image_root=str(root))
    assert src.protocol == "captioning"
    train, test = sources.load(src, _ctx(tmp_path))
    prompt = "Describe the image."  # the default prompt
    assert _qas(train) == {
        "airport_1.jpg": (QA(prompt, "many planes .", "caption", references=("many planes .",)),)
    }
    # Evaluation scores against every (non-empty) reference.
    assert _qas(test) == {
        "bridge_3.jpg": (
            QA(
                prompt,
                "a bridge over a river .",
                "caption",
                references=("a bridge over a river .", "a long bridge ."),
            ),
        )
    }
    assert test.items[0].record == f"{path} images[2] (bridge_3.jpg)"
    val = captions.load_split(src, "val", _ctx(tmp_path))
    assert [os.path.basename(it.image) for it in val.items] == ["beach_2.jpg"]
    # The instruction is the source's own prompt.
    src = _source("rsicd", "captions", path, image_root=str(root), prompt="Caption it.")
    assert {qa.question for it in captions.load_split(src, "test", _ctx(tmp_path)).items
            for qa in it.qas} == {"Caption it."}  # fmt: skip


def test_captions_jsonl_label_becomes_class_and_alias(tmp_path):
    for i in range(3):
        _image(tmp_path / "imgs" / f"{i}.png", seed=i)
    path = _jsonl(
        tmp_path / "captions.jsonl",
        [
            dict(image="imgs/0.png", split="train", captions=["a", "b"], label="denseresidential"),
            dict(image="imgs/1.png", split="test", captions=["c"], label="storage_tanks"),
            dict(image="imgs/2.png", split="train", captions=["d"]),
        ],
    )
    train, test = sources.load(_source("c", "captions", path), _ctx(tmp_path))
    assert [it.classes for it in train.items] == [("dense residential",), ()]
    assert train.aliases == {"dense residential": ["denseresidential"]}
    assert test.items[0].classes == ("storage tanks",)
    assert test.items[0].qas[0].references == ("c",)
    assert train.items[0].record == f"{path} line 1"


def test_captions_bad_records_name_the_record(tmp_path):
    _image(tmp_path / "RSICD" / "a.jpg")
    path = _karpathy(
        tmp_path,
        [
            dict(filename="a.jpg", split="train", sentences=_sentences("fine .")),
            dict(filename="b.jpg", split="train", sentences=_sentences(" ", "")),
        ],
    )
    src = _source("c", "captions", path)
    with pytest.raises(ValueError, match=re.escape(f"{path} images[1] (b.jpg): no captions")):
        captions.load_split(src, "train", _ctx(tmp_path))
    split = captions.load_split(src, "train", _ctx(tmp_path, allow_skips=True))
    assert split.skipped == {f"{path} images[1] (b.jpg)": "no captions"}

    # An image the record names that is not there: the message names image and record.
    path = _karpathy(
        tmp_path, [dict(filename="gone.jpg", split="train", sentences=_sentences("x ."))]
    )
    with pytest.raises(ValueError) as e:
        captions.load_split(_source("c", "captions", path), "train", _ctx(tmp_path))
    assert str(tmp_path / "RSICD" / "gone.jpg") in str(e.value)
    assert f"({path} images[0] (gone.jpg)): missing" in str(e.value)

    path = _jsonl(tmp_path / "c.jsonl", [dict(split="train", captions=["x"])])
    with pytest.raises(ValueError, match=re.escape(f"{path} line 1: no image")):
        captions.load_split(_source("c", "captions", path), "train", _ctx(tmp_path))
    # A string where the list of captions belongs is not split into characters.
    path = _jsonl(tmp_path / "c.jsonl", [dict(split="train", image="a.jpg", captions="a string")])
    message = f"{path} line 1: \"captions\": input should be a valid list (got str 'a string')"
    with pytest.raises(ValueError, match=re.escape(message)):
        captions.load_split(_source("c", "captions", path), "train", _ctx(tmp_path))
    path = _karpathy(tmp_path, [dict(filename="a.jpg", split="train", sentences=["a string"])])
    with pytest.raises(ValueError, match=re.escape('(a.jpg): "sentences.0": input should be')):
        captions.load_split(_source("c", "captions", path), "train", _ctx(tmp_path))


# --- instruct (LLaVA / GeoChat conversations) --------------------------------------------------


def _turns(*pairs):
    return [{"from": role, "value": text} for role, text in pairs]


TWO_ROUNDS = _turns(
    ("human", "<image>\nWhat is in the image?"),
    ("gpt", "Two ships."),
    ("human", "Where are they?"),
    ("gpt", "Near the harbor."),
)


def _record(rid, image, turns, **extra):
    return dict(id=rid, image=image, conversations=turns, **extra)


def test_instruct_one_qa_per_gpt_turn_with_history(tmp_path):
    _image(tmp_path / "p1.png", 1)
    _image(tmp_path / "p2.png", 2)
    records = [
        _record("P1", "p1.png", TWO_ROUNDS),
        _record(
            "P2",
            "p2.png",
            _turns(("human", "How many planes?\n<image>"), ("gpt", "3")),
            task="count",
        ),
    ]
    path = _json(tmp_path / "chat_train.json", records)
    src = _source("chat", "instruct", tmp_path / "chat_{split}.json")
    assert src.protocol == "vqa"
    split = instruct.load_split(src, "train", _ctx(tmp_path))
    assert _qas(split) == {
        "p1.png": (
            QA("What is in the image?", "Two ships.", "instruct"),
            QA(
                "Where are they?",
                "Near the harbor.",
                "instruct",
                history=(("What is in the image?", "Two ships."),),
            ),
        ),
        "p2.png": (QA("How many planes?", "3", "count"),),
    }
    assert split.items[0].record == f"{path} record 0 (id 'P1')"


@pytest.mark.parametrize(
    "turns, reason",
    [
        (_turns(("human", "What is it?"), ("gpt", "A port.")), "0 image placeholders"),
        (_turns(("human", "<image> What is it? <image>"), ("gpt", "A port.")), "2 image"),
        (
            _turns(("human", "What is it?"), ("gpt", "<image> A port.")),
            "the image placeholder is in a gpt turn (1)",
        ),
        (
            _turns(("gpt", "<image> Hello."), ("human", "What is it?")),
            "turns 0, 1 are from 'gpt', 'human'",
        ),
        (
            _turns(("human", "<image> What?"), ("gpt", "A port."), ("gpt", "And a ship.")),
            "has 3 turns; expected human, gpt pairs",
        ),
        (
            _turns(("human", "What?"), ("gpt", "A port."), ("gpt", "<image> A ship.")),
            "has 3 turns",
        ),
        (_turns(("human", "<image> What?")), "needs at least one human and one gpt turn"),
        # Wrong JSON types: the field, what it must be, what it was.
        (["<image> What is it?", "A port."], '"conversations.0": input should be a valid'),
        (
            [{"from": "human", "value": ["<image> What?"]}, {"from": "gpt", "value": "A port."}],
            '"conversations.0.value": input should be a valid string (got list',
        ),
        ("a string", '"conversations": input should be a valid list (got str'),
    ],  # fmt: skip
)
def test_instruct_bad_conversation_names_file_and_record(tmp_path, turns, reason):
    _image(tmp_path / "good.png")
    good = _record("G", "good.png", TWO_ROUNDS)
    path = _json(tmp_path / "chat_train.json", [good, _record("B7", "good.png", turns)])
    src = _source("chat", "instruct", tmp_path / "chat_{split}.json")
    with pytest.raises(ValueError) as e:
        instruct.load_split(src, "train", _ctx(tmp_path))
    assert f"{path} record 1 (id 'B7'): " in str(e.value)
    assert reason in str(e.value)
    split = instruct.load_split(src, "train", _ctx(tmp_path, allow_skips=True))
    assert [it.record for it in split.items] == [f"{path} record 0 (id 'G')"]
    assert list(split.skipped) == [f"{path} record 1 (id 'B7')"]
    assert reason in split.skipped[f"{path} record 1 (id 'B7')"]


def test_instruct_missing_image_names_image_and_record(tmp_path):
    _image(tmp_path / "imgs" / "here.png")
    path = _json(
        tmp_path / "chat.json",
        [
            _record("A", "here.png", TWO_ROUNDS, split="train"),
            _record("Z9", "gone.png", TWO_ROUNDS, split="train"),
            _record("T", "gone2.png", TWO_ROUNDS, split="test"),
        ],
    )
    src = _source("chat", "instruct", path, image_root=str(tmp_path / "imgs"))
    with pytest.raises(ValueError) as e:
        instruct.load_split(src, "train", _ctx(tmp_path))
    message = str(e.value)
    assert str(tmp_path / "imgs" / "gone.png") in message
    assert f"{path} record 1 (id 'Z9')" in message
    split = instruct.load_split(src, "train", _ctx(tmp_path, allow_skips=True))
    assert [os.path.basename(it.image) for it in split.items] == ["here.png"]
    assert list(split.skipped) == [str(tmp_path / "imgs" / "gone.png")]
    assert split.report("train")["images"] == 1


def test_instruct_split_from_path_or_field(tmp_path):
    _image(tmp_path / "a.png", 1)
    _image(tmp_path / "b.png", 2)
    # One file with a "split" per record.
    path = _json(
        tmp_path / "all.json",
        [
            _record("A", "a.png", TWO_ROUNDS, split="train"),
            _record("B", "b.png", TWO_ROUNDS, split="test"),
        ],
    )
    train, test = sources.load(_source("c", "instruct", path), _ctx(tmp_path))
    assert [os.path.basename(it.image) for it in train.items] == ["a.png"]
    assert [os.path.basename(it.image) for it in test.items] == ["b.png"]
    # A file per split: its records need no "split" (and one present is not consulted).
    _json(tmp_path / "per_train.json", [_record("B", "b.png", TWO_ROUNDS, split="test")])
    _json(tmp_path / "per_test.json", [_record("A", "a.png", TWO_ROUNDS)])
    train, test = sources.load(
        _source("c", "instruct", tmp_path / "per_{split}.json"), _ctx(tmp_path)
    )
    assert [os.path.basename(it.image) for it in train.items] == ["b.png"]
    assert [os.path.basename(it.image) for it in test.items] == ["a.png"]
    # Neither: an error naming the record and both ways out.
    path = _json(tmp_path / "nosplit.json", [_record("N", "a.png", TWO_ROUNDS)])
    with pytest.raises(ValueError, match=r"record 0 \(id 'N'\): no \"split\".*\{split\}"):
        instruct.load_split(_source("c", "instruct", path), "train", _ctx(tmp_path))


# GeoChat's instruction data as its JSON has it: task tags at the start of the question,
# boxes {<x1><y1><x2><y2>|<θ>} on the 0-100 grid in the answers.
GEOCHAT_RECORD = {
    "id": "P0003_0002",
    "image": "P0003_0002.png",
    "conversations": _turns(
        ("human", "<image>\n[refer] give me the location of <p>the large white ship</p>"),
        ("gpt", "<p>the large white ship</p> {<40><12><62><30>|<-45>}"),
        ("human", "[grounding] Describe the image in detail"),
        ("gpt", "There are <p>2 small vehicles</p> {<10><20><14><24>|<0>}{<50><60><54><64>|<0>}"),
        ("human", "[identify] {<40><12><62><30>|<-45>}"),
        ("gpt", "A large white ship."),
        ("human", "[refer] where is the harbor?"),
        ("gpt", "I cannot find a harbor."),
        ("human", "How many ships? {<1><2><3><4>|<0>}"),
        ("gpt", "One ship {<40><12><62><30>|<-45>}"),
    ),
}


def test_instruct_geochat_refer_and_grounding_turns_are_scored_by_boxes(tmp_path):
    _image(tmp_path / "P0003_0002.png")
    _json(tmp_path / "geochat_test.json", [GEOCHAT_RECORD])
    src = _source("geochat", "instruct", tmp_path / "geochat_{split}.json")
    (item,) = instruct.load_split(src, "test", _ctx(tmp_path)).items
    # [refer] and [grounding] with boxes in the answer; [identify] has its box in the
    # question, the unanswered [refer] none, the untagged question no tag.
    assert [qa.task for qa in item.qas] == [
        "grounding",
        "grounding",
        "instruct",
        "instruct",
        "instruct",
    ]
    refer, described = (boxes.parse(qa.answer, "geochat") for qa in item.qas[:2])
    assert refer == [boxes.Box(0.4, 0.12, 0.62, 0.3, -45.0)] and len(described) == 2
    # In another box notation the answers hold no box: they stay text.
    qwen = dataclasses.replace(_ctx(tmp_path), box_format="qwen")
    (item,) = instruct.load_split(src, "test", qwen).items
    assert {qa.task for qa in item.qas} == {"instruct"}
    # Scored as grounding answers by the source's vqa protocol.
    scorer = Scorer([EvalSource("geochat", "vqa", ("grounding", "instruct"))])
    assert scorer.add("grounding", "{<40><12><62><30>|<-45>}", item.qas[0].answer, ())
    assert scorer.results()["sources"]["geochat"]["grounding"]["acc@0.5"] == 1.0


def _sources_config(data_dir, srcs, **data):
    config = base_config()
    config.data.update(
        dict(
            name="sources",
            image_size=SIZE,
            batch_size=8,
            worker_count=0,
            data_dir=str(data_dir),
            max_prompt_len=64,
            max_answer_len=16,
        )
    )
    config.data.sources = ml_collections.ConfigDict(srcs)
    config.data.update(data)
    return config


@pytest.fixture(scope="module")
def instruct_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("instruct")
    records = []
    for i in range(8):
        _image(root / f"{i}.png", seed=i)
        records.append(_record(f"R{i}", f"{i}.png", TWO_ROUNDS))
    _json(root / "chat_train.json", records)
    _json(root / "chat_test.json", records[:2])
    config = _sources_config(
        root / "data", {"chat": common.source("instruct", str(root / "chat_{split}.json"))}
    )
    return build_data(config, "/nonexistent-workdir")


def test_instruct_end_to_end_second_round_prompt_holds_the_first(instruct_bundle):
    b = instruct_bundle
    # One source: task names are not prefixed.
    assert b.tasks == ("instruct",)
    assert b.num_eval_examples == 4  # 2 conversations x 2 rounds
    batch = next(b.eval_batches(4))
    decode = lambda ids, mask: b.tokenizer.decode(ids[mask.astype(bool)], skip_special_tokens=True)
    rows = {q: i for i, q in enumerate(batch["question_text"])}
    second, first = rows["Where are they?"], rows["What is in the image?"]
    prompt = decode(batch["prompt_ids"][second], batch["prompt_mask"][second])
    assert "what is in the image" in prompt and "two ships" in prompt
    assert prompt.index("two ships") < prompt.index("where are they")
    answer = decode(batch["answer_ids"][second], batch["answer_mask"][second])
    assert answer.replace(" .", ".") == "near the harbor."
    # The first round's prompt has no history, its answer only its own reply.
    prompt = decode(batch["prompt_ids"][first], batch["prompt_mask"][first])
    assert prompt.replace(" ?", "?") == "what is in the image?"
    answer = decode(batch["answer_ids"][first], batch["answer_mask"][first])
    assert answer.replace(" .", ".") == "two ships."
    assert batch["answer_ids"][second][batch["answer_mask"][second].sum() - 1] == b.eos_id


def test_instruct_visit_trains_every_turn_from_one_decoded_image(instruct_bundle, monkeypatch):
    b = instruct_bundle
    it = b.train_iterator(seed=0)
    batches = [next(it) for _ in range(2)]  # 16 examples: 8 visits of two rounds each
    questions = np.concatenate([batch["question_text"] for batch in batches]).tolist()
    assert questions == ["What is in the image?", "Where are they?"] * 8
    images = np.concatenate([batch["image"] for batch in batches])
    assert all((images[i] == images[i + 1]).all() for i in range(0, 16, 2))
    assert len({images[i].tobytes() for i in range(0, 16, 2)}) == 8  # each conversation once
    it.close()
    # Both rounds hold the array of the visit's one decode. (Counted in this thread: a
    # read-ahead thread of the stream above may still be decoding.)
    decoded = []
    load_image, here = records_lib.load_image, threading.get_ident()

    def counted(*args):
        if threading.get_ident() == here:
            decoded.append(args)
        return load_image(*args)

    monkeypatch.setattr(records_lib, "load_image", counted)
    record = b.train_records[0][3]
    first, second = records_lib.VisitExamples(b.tasks, b.encoder).random_map(
        record, np.random.default_rng(0)
    )
    assert len(decoded) == 1 and first["image"] is second["image"] is record["image"]


# --- VQA JSON lines ------------------------------------------------------------------------------


def test_vqa_jsonl_groups_questions_labels_and_types(tmp_path):
    for name in ("a", "b", "c"):
        _image(tmp_path / "imgs" / f"{name}.png")
    rows = [
        dict(image="imgs/a.png", split="train", question="Is there a plane?", answer="yes",
             question_type="presence", label="airplane"),
        dict(image="imgs/b.png", split="train", question="What is this?", answer="harbor",
             label="harbor"),
        dict(image="imgs/a.png", split="train", question="How many planes?", answer=3,
             question_type="count", label="airplane"),
        dict(image="imgs/c.png", split="test", question="Is it urban?", answer="no",
             label="mediumresidential"),
    ]  # fmt: skip
    path = _jsonl(tmp_path / "qa.jsonl", rows)
    src = _source("v", "vqa_jsonl", path, prompt_suffix="Answer briefly.")
    assert src.protocol == "vqa"
    train, test = sources.load(src, _ctx(tmp_path))
    assert _qas(train) == {
        "a.png": (
            QA("Is there a plane? Answer briefly.", "yes", "presence"),
            QA("How many planes? Answer briefly.", "3", "count"),
        ),
        "b.png": (QA("What is this? Answer briefly.", "harbor", "vqa"),),
    }
    assert [it.classes for it in train.items] == [("airplane",), ("harbor",)]
    assert train.items[0].record == f"{path} line 1"
    assert test.items[0].classes == ("medium residential",)
    assert test.aliases == {"medium residential": ["mediumresidential"]}

    only = _source("v", "vqa_jsonl", path, question_types=("count",))
    split = vqa_jsonl.load_split(only, "train", _ctx(tmp_path))
    assert _qas(split) == {"a.png": (QA("How many planes?", "3", "count"),)}


def test_vqa_jsonl_bad_lines_named(tmp_path):
    _image(tmp_path / "a.png")
    good = json.dumps(dict(image="a.png", split="train", question="q?", answer="yes"))
    path = tmp_path / "qa.jsonl"
    path.write_text(f"{good}\n\n{{'image': 'a.png'}}\n")
    with pytest.raises(ValueError, match=re.escape(f"{path} line 3: not valid JSON")):
        vqa_jsonl.load_split(_source("v", "vqa_jsonl", path), "train", _ctx(tmp_path))
    path.write_text(f"{good}\n" + json.dumps(dict(image="a.png", question="q?", answer="no")))
    with pytest.raises(ValueError, match=re.escape(f'{path} line 2: no "split"')):
        vqa_jsonl.load_split(_source("v", "vqa_jsonl", path), "train", _ctx(tmp_path))
    path.write_text(f"{good}\n" + json.dumps(dict(image="a.png", split="train", answer="no")))
    with pytest.raises(ValueError, match=re.escape(f"{path} line 2: no question")):
        vqa_jsonl.load_split(_source("v", "vqa_jsonl", path), "train", _ctx(tmp_path))
    path.write_bytes(f"{good}\n{good}\n".encode() + b'{"question": "caf\xe9?"}\n')
    with pytest.raises(ValueError, match=re.escape(f"{path} line 3: not UTF-8 text (invalid")):
        vqa_jsonl.load_split(_source("v", "vqa_jsonl", path), "train", _ctx(tmp_path))
    # Wrong JSON types, nulls and runaway text: the field, what it must be, what it was.
    for row, message in [
        (dict(image="a.png", question=["q?"], answer="no"), r'"question": input should be a '
         r"valid string \(got list \['q\?'\]\)"),
        (dict(image=7, question="q?", answer="no"), r'"image": .* \(got int 7\)'),
        (dict(image="a.png", question="q?", answer=None), r'"answer": .* \(got null\)'),
        (dict(image="a.png", question="q" * 100_000, answer="no"),
         r'"question" has 100,000 characters, more than 4,000'),
        ([1, 2], r"expected an object"),
    ]:  # fmt: skip
        path.write_text(
            f"{good}\n" + json.dumps({"split": "train", **row} if isinstance(row, dict) else row)
        )
        with pytest.raises(ValueError, match=re.escape(f"{path} line 2") + ".*" + message):
            vqa_jsonl.load_split(_source("v", "vqa_jsonl", path), "train", _ctx(tmp_path))
    # Nothing of the split asked for: the message says what was looked for.
    path.write_text(good + "\n")
    with pytest.raises(ValueError, match=r"No usable records left in .* \(no record of this split"):
        vqa_jsonl.load_split(_source("v", "vqa_jsonl", path), "test", _ctx(tmp_path))


# --- classification folders ---------------------------------------------------------------------

EUROSAT_FOLDERS = ("AnnualCrop", "HerbaceousVegetation", "SeaLake")


@pytest.fixture
def eurosat_like(tmp_path):
    for split in ("train", "test"):
        for i, folder in enumerate(EUROSAT_FOLDERS):
            _image(tmp_path / "eurosat" / split / folder / f"{folder}_{i}.png", seed=i)
    return tmp_path / "eurosat"


def test_folder_readable_names_and_geochat_prompt(eurosat_like, tmp_path):
    src = _source("es", "folder", eurosat_like, class_names="EuroSAT")
    train, test = sources.load(src, _ctx(tmp_path))
    names = ("annual crop land", "herbaceous vegetation land", "sea or lake")
    assert train.class_names == test.class_names == names
    assert train.aliases == dict(zip(names, ([f] for f in EUROSAT_FOLDERS), strict=True))
    question = tasks_lib.GEOCHAT_CLASSIFY.format(classes=",".join(names))
    assert question.startswith("Classify the image within one of the given classes: annual crop")
    for split in (train, test):
        assert [it.qas for it in split.items] == [(QA(question, n, "scene"),) for n in names]
        assert [it.classes for it in split.items] == [(n,) for n in names]
    # Without a table: names made from the folder names.
    train, _ = sources.load(_source("es", "folder", eurosat_like), _ctx(tmp_path))
    assert train.class_names == ("annual crop", "herbaceous vegetation", "sea lake")


def test_folder_plain_prompt_varies_in_training_only(eurosat_like, tmp_path):
    src = _source("es", "folder", eurosat_like, prompt="plain")
    train, test = sources.load(src, _ctx(tmp_path))
    assert [qa.question for qa in train.items[0].qas] == list(tasks_lib.CLASSIFY_PROMPTS)
    assert {qa.answer for qa in train.items[0].qas} == {"annual crop"}
    assert test.items[2].qas == (QA(tasks_lib.CLASSIFY_PROMPTS[0], "sea lake", "scene"),)
    assert not any("annual crop" in qa.question for it in train.items for qa in it.qas)


def test_folder_bad_options_name_the_key(eurosat_like, tmp_path):
    src = _source("es", "folder", eurosat_like, class_names="EuroSat")
    with pytest.raises(ValueError, match=r"config\.data\.sources\.es\.class_names='EuroSat'"):
        sources.load(src, _ctx(tmp_path))
    src = _source("es", "folder", eurosat_like, prompt="fancy")
    with pytest.raises(ValueError, match=r"config\.data\.sources\.es\.prompt='fancy'"):
        sources.load(src, _ctx(tmp_path))


# --- source configs ------------------------------------------------------------------------------


def test_formats_are_the_modules_that_declare_one():
    """Each format's module declares its name, keys, protocol and load (FORMAT)."""
    found = sources.formats()
    modules = dict(
        folder=classification, rsvqa=rsvqa, vqa_jsonl=vqa_jsonl, captions=captions,
        instruct=instruct, detection=detection, referring=referring,
    )  # fmt: skip
    assert {name: f.name for name, f in found.items()} == {name: name for name in modules}
    assert all(found[name] is module.FORMAT for name, module in modules.items())
    assert {name: (f.protocol, f.keys) for name, f in found.items()} == {
        "folder": ("classification", dict(prompt="geochat", class_names="")),
        "rsvqa": ("vqa", dict(image_root="", prefix="LR", question_types=(), prompt_suffix="")),
        "vqa_jsonl": ("vqa", dict(image_root="", question_types=(), prompt_suffix="")),
        "captions": ("captioning", dict(image_root="", prompt="Describe the image.")),
        "instruct": ("vqa", dict(image_root="")),
        "detection": ("grounding", dict(image_root="", questions="classes")),
        "referring": ("grounding", dict(image_root="")),
    }


def test_source_config_errors_name_the_key():
    from_config = sources.SourceConfig.from_config
    with pytest.raises(
        ValueError, match=r"config\.data\.sources\.x: unknown key\(s\) \['prompt'\]"
    ):
        from_config("x", dict(format="rsvqa", path="/p", prompt="plain"))
    with pytest.raises(ValueError, match=r"config\.data\.sources\.x\.format='coco'"):
        from_config("x", dict(format="coco", path="/p"))
    with pytest.raises(ValueError, match=r"config\.data\.sources\.x\.format=''"):
        from_config("x", dict(path="/p"))
    for weight in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"config\.data\.sources\.x\.weight=.*finite.*> 0"):
            from_config("x", dict(format="folder", path="/p", weight=weight))
    with pytest.raises(ValueError, match=r"config\.data\.sources\.x\.path is not set"):
        from_config("x", dict(format="folder"))
    cfg = from_config("x", dict(format="rsvqa", path="/p", question_types=["presence"]))
    assert cfg.options == dict(
        image_root="", prefix="LR", question_types=("presence",), prompt_suffix=""
    )
    assert (cfg.weight, cfg.train_split, cfg.eval_split) == (1.0, "train", "test")


def test_common_source_checks_keys_up_front():
    with pytest.raises(ValueError, match=r"source format 'json'"):
        common.source("json", "/p")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['prefix'\] for format 'folder'"):
        common.source("folder", "/p", prefix="LR")
    with pytest.raises(ValueError, match=r"weight=0"):
        common.source("folder", "/p", weight=0)
    src = common.source("captions", "/p/c.jsonl", weight=2.0)
    assert dict(src) == dict(
        format="captions",
        path="/p/c.jsonl",
        weight=2.0,
        train_split="train",
        eval_split="test",
        image_root="",
        prompt="Describe the image.",
    )


# --- mixtures in build_data -------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    qa_rows, caption_rows = [], []
    for i in range(8):
        _image(root / "imgs" / f"{i}.png", seed=i)
        qa_rows.append(
            dict(image=f"imgs/{i}.png", split="train", question="Is there a quokka?",
                 answer="quokka", question_type="presence")
        )  # fmt: skip
        caption_rows.append(dict(image=f"imgs/{i}.png", split="train", captions=["a wharf ."]))
    # Only in the test split: "zygomorphic" (answer) and "xylophone" (caption).
    qa_rows.append(
        dict(image="imgs/0.png", split="test", question="Is there a quokka?",
             answer="zygomorphic", question_type="presence")
    )  # fmt: skip
    caption_rows.append(dict(image="imgs/1.png", split="test", captions=["a xylophone ."]))
    srcs = dict(
        qa=common.source("vqa_jsonl", _jsonl(root / "qa.jsonl", qa_rows), weight=3),
        cap=common.source("captions", _jsonl(root / "captions.jsonl", caption_rows), weight=1),
    )
    return build_data(_sources_config(root / "data", srcs), "/nonexistent-workdir")


def test_mixture_follows_the_weights(mixture):
    b = mixture
    assert b.tasks == ("cap/caption", "qa/presence")  # several sources: prefixed
    assert b.train_weights == [1.0, 3.0]
    assert [s.name for s in b.eval_sources] == ["cap", "qa"]
    assert [s.tasks for s in b.eval_sources] == [("cap/caption",), ("qa/presence",)]
    it = b.train_iterator(seed=0)
    task_ids = np.concatenate([next(it)["task_id"] for _ in range(8)])  # 64 examples
    counts = collections.Counter(b.tasks[t] for t in task_ids.tolist())
    assert abs(counts["qa/presence"] - 48) <= 1 and abs(counts["cap/caption"] - 16) <= 1
    # Within every batch of 8 the share holds too (the mix interleaves, it does not block).
    for start in range(0, 64, 8):
        assert 5 <= (task_ids[start : start + 8] == b.tasks.index("qa/presence")).sum() <= 7


def test_mixture_tokenizer_learns_train_texts_only(mixture):
    tok = mixture.tokenizer
    evaluated = {mixture.eval_records.qas(i)[j].answer for i, j in mixture.eval_pairs}
    assert evaluated == {"zygomorphic", "a xylophone ."}  # the test words are in the data
    assert tok.tokenize("quokka") == ["quokka"]  # a train answer
    assert tok.tokenize("wharf") == ["wharf"]  # a train caption
    for word in ("zygomorphic", "xylophone"):  # test split only
        pieces = tok.tokenize(word)
        assert len(pieces) > 1 or pieces == [tok.unk_token], (word, pieces)


# --- the shared data --------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.isdir(SHARED), reason=f"shared data not found at {SHARED}")
def test_ucm_mixture_on_shared_data(tmp_path):
    from configs import ucm_mixture

    assert os.path.samefile(common.SHARED_DATA, SHARED)  # where the config reads from
    config = ucm_mixture.get_config()
    config.data.data_dir = str(tmp_path / "data")
    b = build_data(config, str(tmp_path))
    assert [len(r) for r in b.train_records] == [210, 210, 210]
    assert b.num_train_images == 630
    assert {s.name: s.protocol for s in b.eval_sources} == dict(
        captions="captioning", classify="classification", vqa="vqa"
    )
    per_source = collections.Counter(
        b.eval_records.qas(i)[j].task.split("/")[0] for i, j in b.eval_pairs
    )
    assert per_source == dict(classify=105, vqa=199, captions=105)
    with open(os.path.join(SHARED, "rsivqa_ucm", "qa.jsonl")) as f:
        kinds = {json.loads(line)["question_type"] for line in f if line.strip()}
    assert {f"vqa/{k}" for k in kinds} <= set(b.tasks)
    assert {t for s in b.eval_sources if s.name == "vqa" for t in s.tasks} == {
        f"vqa/{k}" for k in kinds
    }
    classify = next(s for s in b.eval_sources if s.name == "classify")
    assert len(classify.class_names) == 21 and "dense residential" in classify.class_names
    assert b.skips["train"]["skipped"] == {} and b.skips["eval"]["images"] == 315


@pytest.mark.skipif(not os.path.isdir(SHARED), reason=f"shared data not found at {SHARED}")
@pytest.mark.parametrize(
    "dataset",
    ["EuroSAT", "UC-Merced-LandUse", "AID", "NWPU-RESISC45", "WHU-RS19", "RSSCN7", "PatternNet"],
)
def test_taxonomy_classes_get_readable_names(dataset):
    with open(os.path.join(SHARED, "rs_taxonomies.json")) as f:
        folders = json.load(f)["datasets"][dataset]["classes"]
    table = dataset if dataset in ("EuroSAT", "RSSCN7") else ""  # data/class_names.json
    names = classification.readable_names(tuple(folders), table, "key")
    assert len(names) == len(folders) == len(set(names))
    for folder, name in zip(folders, names, strict=True):
        assert re.fullmatch(r"[a-z]+( [a-z]+)*", name), (folder, name)
    if dataset == "EuroSAT":
        assert names[folders.index("SeaLake")] == "sea or lake"


def test_class_folders_that_read_as_one_class_are_refused():
    """Three spellings of one class would train as three labels of the same name."""
    folders = ("DenseResidential", "dense_residential", "forest")
    message = r"key: class folders 'DenseResidential' and 'dense_residential' are both the "
    with pytest.raises(ValueError, match=message + r"class 'dense residential'"):
        classification.readable_names(folders, "", "key")
