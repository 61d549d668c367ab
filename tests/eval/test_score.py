"""`rs-jax score` (rs_jax/eval/score.py): the same results as the evaluator's Scorer on the
same answers for every protocol, hand-checked values, missing ids and bad lines as
one-line errors, --allow-missing counting."""

import json

import pytest

from rs_jax import cli
from rs_jax.data.pipeline import EvalSource
from rs_jax.eval.protocols import Scorer, markdown


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _score(capsys, *args):
    assert cli.main(["score", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _evaluator(protocol, tasks, rows, class_names=(), box_format="geochat"):
    """The evaluator's code path: a Scorer over one source, fed (task, prediction, answer,
    references) as evaluate.py feeds it."""
    scorer = Scorer([EvalSource("answers", protocol, tasks, class_names)], box_format)
    for row in rows:
        scorer.add(*row)
    return scorer.results()


def test_rsvqa_equals_the_evaluator(tmp_path, capsys):
    refs = [
        {"id": 1, "answer": "yes", "question_type": "presence"},
        {"id": 2, "answer": "no", "question_type": "presence"},
        {"id": 3, "answer": 14, "question_type": "count"},
        {"id": "q4", "answer": "rural", "question_type": "rural_urban"},
    ]
    preds = [
        {"id": "q4", "answer": "Urban"},
        {"id": 1, "answer": "Yes."},
        {"id": 2, "answer": "yes"},
        {"id": 3, "answer": "fourteen"},
    ]
    args = ["--protocol", "rsvqa", "--ref", _jsonl(tmp_path / "r.jsonl", refs)]
    got = _score(capsys, *args, "--pred", _jsonl(tmp_path / "p.jsonl", preds))
    expected = _evaluator(
        "vqa",
        ("presence", "count", "rural_urban"),
        [
            ("presence", "Yes.", "yes", ()),
            ("presence", "yes", "no", ()),
            ("count", "fourteen", "14", ()),
            ("rural_urban", "Urban", "rural", ()),
        ],
    )
    assert got == {**expected, "missing": {"no_answer": 0, "no_reference": 0}}
    row = got["sources"]["answers"]
    # presence 1/2, count 1/1, rural_urban 0/1: mean of types 1/2, overall 2/4.
    assert row["mean_of_types"] == pytest.approx(0.5)
    assert row["overall"] == pytest.approx(0.5)


def test_classification_equals_the_evaluator(tmp_path, capsys):
    refs = [
        {"id": "a", "class": "airport"},
        {"id": "b", "class": "harbor"},
        {"id": "c", "answer": "harbor"},  # the answer is the class when "class" is absent
    ]
    preds = [
        {"id": "a", "answer": "Airport"},
        {"id": "b", "answer": "beach"},
        {"id": "c", "answer": "harbor"},
    ]
    got = _score(
        capsys,
        "--protocol", "classification",
        "--ref", _jsonl(tmp_path / "r.jsonl", refs),
        "--pred", _jsonl(tmp_path / "p.jsonl", preds),
    )  # fmt: skip
    expected = _evaluator(
        "classification",
        ("scene",),
        [
            ("scene", "Airport", "airport", ()),
            ("scene", "beach", "harbor", ()),
            ("scene", "harbor", "harbor", ()),
        ],
        class_names=("airport", "harbor"),
    )
    assert got == {**expected, "missing": {"no_answer": 0, "no_reference": 0}}
    row = got["sources"]["answers"]
    assert row["accuracy"] == pytest.approx(2 / 3)
    assert row["balanced_accuracy"] == pytest.approx((1 + 1 / 2) / 2)
    assert row["confusion_matrix"] == [[1, 0, 0], [0, 1, 1]]


def test_grounding_equals_the_evaluator_in_both_formats(tmp_path, capsys):
    refs = [
        {"id": 1, "answer": "{<0><0><50><50>|<0>}", "task": "grounding"},
        {"id": 2, "answer": "{<0><0><50><50>|<0>}"},
        {"id": 3, "answer": "{<10><10><20><20>|<0>} {<60><60><90><90>|<30>}"},
    ]
    preds = [
        {"id": 1, "answer": "{<0><0><50><50>|<0>}"},
        {"id": 2, "answer": "somewhere on the left"},
        {"id": 3, "answer": "{<60><60><90><90>|<30>}"},
    ]
    got = _score(
        capsys,
        "--protocol", "grounding",
        "--ref", _jsonl(tmp_path / "r.jsonl", refs),
        "--pred", _jsonl(tmp_path / "p.jsonl", preds),
    )  # fmt: skip
    rows = [("grounding", p["answer"], r["answer"], ()) for p, r in zip(preds, refs)]
    expected = _evaluator("grounding", ("grounding",), rows)
    assert got == {**expected, "missing": {"no_answer": 0, "no_reference": 0}}
    row = got["sources"]["answers"]
    assert (row["acc@0.5"], row["no_box"]) == (0.5, 1)
    assert (row["precision@0.5"], row["recall@0.5"]) == (1.0, 0.5)  # 2 of 2 given, 2 of 4

    qwen_ref = [{"id": 1, "answer": "<box>(0,0),(500,500)</box>"}]
    qwen_pred = [{"id": 1, "answer": "<ref>it</ref><box>(250,0),(750,500)</box>"}]
    got = _score(
        capsys,
        "--protocol", "grounding", "--box-format", "qwen",
        "--ref", _jsonl(tmp_path / "qr.jsonl", qwen_ref),
        "--pred", _jsonl(tmp_path / "qp.jsonl", qwen_pred),
    )  # fmt: skip
    assert got["sources"]["answers"]["mean_iou"] == pytest.approx(1 / 3)


def test_captions_equal_the_evaluator(tmp_path, capsys, monkeypatch):
    # Without java on PATH both sides take the Python tokenizer and skip METEOR: the same
    # code path either way, in 0.1 s instead of two Java starts (tests/eval/test_captions.py
    # checks the Java path).
    monkeypatch.setenv("PATH", str(tmp_path))
    refs = [
        {
            "id": 1,
            "references": ["many planes are parked at the airport", "an airport with planes"],
        },
        {"id": 2, "references": ["a green field next to a road"], "task": "caption"},
    ]
    preds = [{"id": 1, "answer": "planes at an airport"}, {"id": 2, "answer": "a green field"}]
    got = _score(
        capsys,
        "--protocol", "captions",
        "--ref", _jsonl(tmp_path / "r.jsonl", refs),
        "--pred", _jsonl(tmp_path / "p.jsonl", preds),
    )  # fmt: skip
    rows = [
        ("caption", p["answer"], r["references"][0], r["references"]) for p, r in zip(preds, refs)
    ]
    expected = _evaluator("captioning", ("caption",), rows)
    assert got == {**expected, "missing": {"no_answer": 0, "no_reference": 0}}
    assert got["sources"]["answers"]["count"] == 2


def test_missing_ids_are_one_line_errors_or_counted(tmp_path, capsys):
    ref = _jsonl(tmp_path / "r.jsonl", [{"id": i, "answer": "yes"} for i in (1, 2, 3)])
    pred = _jsonl(tmp_path / "p.jsonl", [{"id": i, "answer": "yes"} for i in (1, 2, 7)])
    assert cli.main(["score", "--protocol", "rsvqa", "--ref", ref, "--pred", pred]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"id 3 of --ref {ref} is not in --pred {pred}; --allow-missing" in err

    got = _score(capsys, "--protocol", "rsvqa", "--ref", ref, "--pred", pred, "--allow-missing")
    assert got["missing"] == {"no_answer": 1, "no_reference": 1}
    assert got["sources"]["answers"]["count"] == 2  # ids 1 and 2 only

    args = ["score", "--protocol", "rsvqa", "--ref", ref, "--pred", pred, "--allow-missing"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "1 references without an answer, 1 answers without a reference" in out
    assert "| overall (question-weighted) | 1.000 | 2 |" in out


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"id": 1, "answer": "yes"', "line 2: not valid JSON"),
        ('{"answer": "yes"}', "line 2: no id"),
        ('{"id": 1, "answer": "no"}', "line 2: id 1 again (first on line 1)"),
    ],
)
def test_a_bad_line_is_a_one_line_error_naming_file_and_line(tmp_path, capsys, line, message):
    ref = _jsonl(tmp_path / "r.jsonl", [{"id": 1, "answer": "yes"}])
    pred = tmp_path / "p.jsonl"
    pred.write_text('{"id": 1, "answer": "yes"}\n' + line + "\n")
    assert cli.main(["score", "--protocol", "rsvqa", "--ref", ref, "--pred", str(pred)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(pred) in err and message in err


def test_a_reference_without_a_box_names_its_line(tmp_path, capsys):
    ref = _jsonl(tmp_path / "r.jsonl", [{"id": "x", "answer": "the airport"}])
    pred = _jsonl(tmp_path / "p.jsonl", [{"id": "x", "answer": "{<0><0><5><5>|<0>}"}])
    assert cli.main(["score", "--protocol", "grounding", "--ref", ref, "--pred", pred]) == 2
    err = capsys.readouterr().err
    assert f"--ref {ref} line 1 (id 'x'): reference 'the airport' holds no geochat box" in err


def test_each_box_task_of_a_vqa_source_is_scored_apart():
    box_a, box_b = "{<10><10><30><30>|<0>}", "{<50><50><70><70>|<0>}"
    results = _evaluator(
        "vqa",
        ("grounding", "count_boxes", "grounded_description", "presence"),
        [
            ("grounding", box_a, box_a, ()),
            ("count_boxes", f"2 {box_a}", f"2 {box_a} {box_b}", ()),  # one box of two found
            ("grounded_description", f"1 ship {box_b}", f"1 ship {box_b}", ()),
            ("presence", "yes", "no", ()),
        ],
    )
    row = results["sources"]["answers"]
    assert set(row["per_type"]) == {"presence"}  # box answers are not matched as text
    assert (row["grounding"]["acc@0.5"], row["grounding"]["count"]) == (1.0, 1)
    assert row["count_boxes"]["boxes"] == {"matched": 1, "predicted": 1, "reference": 2}
    assert (row["count_boxes"]["precision@0.5"], row["count_boxes"]["recall@0.5"]) == (1.0, 0.5)
    assert row["grounded_description"]["acc@0.5"] == 1.0
    text = markdown(results | {"step": 0, "model": "full"})
    assert "Questions of type count_boxes:" in text and "Questions of type grounding:" in text
