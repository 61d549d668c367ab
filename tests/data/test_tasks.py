"""Question generation: answers agree with the rendered scene; yes/no balance."""

import re

import numpy as np
import pytest

from rs_jax.data import boxes, scenes, tasks


@pytest.fixture(scope="module")
def annotated():
    out = []
    for seed in range(300):
        s = scenes.render_scene(seed, 32)
        out.append((s, tasks.generate_qas(s, np.random.default_rng(seed))))
    return out


def _object_from(question: str) -> str:
    for obj in sorted(scenes.OBJECTS, key=len, reverse=True):
        if re.search(rf"\b({obj}|{scenes.OBJECT_PLURALS[obj]})\b", question):
            return obj
    raise AssertionError(question)


def test_every_task_is_asked(annotated):
    for _, qas in annotated:
        assert {"scene", "count", "rural_urban", "caption"} <= {q.task for q in qas}
        assert set(q.task for q in qas) <= set(tasks.TASKS)


def test_answers_match_scene(annotated):
    for s, qas in annotated:
        for q in qas:
            if q.task == "scene":
                assert q.answer == s.scene
            elif q.task == "rural_urban":
                assert q.answer == s.rural_urban
            elif q.task == "count":
                assert q.answer == str(s.counts[_object_from(q.question)])
            elif q.task == "presence":
                assert q.answer == ("yes" if s.counts[_object_from(q.question)] else "no")
            elif q.task == "comparison":
                a_text, b_text = q.question.split(" than ")
                a, b = _object_from(a_text), _object_from(b_text)
                assert q.answer == ("yes" if s.counts[a] > s.counts[b] else "no")
            elif q.task == "caption":
                assert q.answer.startswith(("a ", "an ")) and s.scene in q.answer


@pytest.mark.parametrize("task", ["presence", "comparison"])
def test_yes_no_balanced(annotated, task):
    answers = [q.answer for _, qas in annotated for q in qas if q.task == task]
    yes = answers.count("yes") / len(answers)
    assert set(answers) == {"yes", "no"} and 0.4 <= yes <= 0.6, yes


def test_count_answers_spread(annotated):
    answers = {q.answer for _, qas in annotated for q in qas if q.task == "count"}
    assert answers == {"0", "1", "2", "3", "4"}


def test_several_phrasings(annotated):
    for task in ("scene", "presence", "count", "comparison", "rural_urban", "caption"):
        phrasings = {
            re.sub(r"\b[a-z ]+s\b", "", q.question)[:12]
            for _, qas in annotated
            for q in qas
            if q.task == task
        }
        assert len(phrasings) >= 2, task


def test_corpus_covers_questions(annotated):
    corpus = set(tasks.corpus_texts())
    for _, qas in annotated:
        for q in qas:
            assert q.question in corpus
            if q.task != "caption":
                assert q.answer in corpus


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  Yes. ", "yes"),
        ("Three", "3"),
        ("3", "3"),
        ("two storage-tanks!", "2 storage tanks"),
        ("Dense   Residential", "dense residential"),
        ("an AIRPORT,", "an airport"),
    ],
)
def test_normalize_answer(raw, expected):
    assert tasks.normalize_answer(raw) == expected


@pytest.mark.parametrize(
    "folder, name",
    [
        ("AnnualCrop", "annual crop"),
        ("SeaLake", "sea lake"),
        ("HerbaceousVegetation", "herbaceous vegetation"),
        ("denseresidential", "dense residential"),
        ("storage_tanks", "storage tanks"),
        ("mobilehomepark", "mobile home park"),
        ("Forest", "forest"),
        ("qwerty", "qwerty"),
    ],
)
def test_class_display_name(folder, name):
    assert tasks.class_display_name(folder) == name


def test_classification_qa():
    assert tasks.classification_qa("forest").question == tasks.CLASSIFY_PROMPTS[0]
    rng = np.random.default_rng(0)
    prompts = {tasks.classification_qa("forest", rng).question for _ in range(40)}
    assert prompts == set(tasks.CLASSIFY_PROMPTS)


def _objects(sample: scenes.SceneSample) -> list[tuple[str, boxes.Box]]:
    return [(name, box) for (name, _, _), box in zip(sample.objects, sample.boxes, strict=True)]


def _grid_box(box: boxes.Box, box_format: str) -> boxes.Box:
    """The box as its notation writes it (rounded to the grid)."""
    return boxes.parse(boxes.render([box], box_format), box_format)[0]


@pytest.mark.parametrize("box_format", boxes.FORMATS)
def test_grounding_questions_name_their_box(annotated, box_format):
    counts = {"grounding": 0, "region_caption": 0, "attribute": 0}
    for s, _ in annotated:
        objects = _objects(s)
        qas = tasks.grounding_qas(objects, box_format, np.random.default_rng(s.seed))
        again = tasks.grounding_qas(objects, box_format, np.random.default_rng(s.seed))
        assert qas == again  # deterministic for a seed
        assert {q.task for q in qas} <= set(tasks.GROUNDING_TASKS)
        assert sum(q.task == "region_caption" for q in qas) == sum(n > 0 for n in s.counts.values())
        for q in qas:
            if q.task not in counts:
                continue  # the several-box tasks: the next test
            counts[q.task] += 1
            if q.task == "region_caption":
                [box] = boxes.parse(q.question, box_format)
                assert q.question.startswith("[identify] ")
                assert box in [_grid_box(b, box_format) for n, b in objects if n == q.answer]
                continue
            [box] = boxes.parse(q.answer, box_format)  # round-trips through parse
            match = re.fullmatch(r"\[refer\] where is the (?:(\w+) )?([a-z ]+)\?", q.question)
            attribute, name = match.groups()
            if attribute in tasks.GROUNDING_PROMPTS["attributes"]:
                counts["attribute"] += 1
            else:
                name = f"{attribute} {name}" if attribute else name  # "storage tank"
            same = [b for n, b in objects if n == name]
            assert box in [_grid_box(b, box_format) for b in same]
            if len(same) > 1:
                axis, extreme = tasks.GROUNDING_PROMPTS["attributes"][attribute].values()
                centres = [(b.x1 + b.x2) / 2 if axis == "x" else (b.y1 + b.y2) / 2 for b in same]
                order = np.argsort(centres)[:: -1 if extreme == "max" else 1]
                assert _grid_box(same[order[0]], box_format) == box
                gap = abs(centres[order[0]] - centres[order[1]])
                assert gap >= tasks.MIN_ATTRIBUTE_GAP
    assert min(counts.values()) > 100, counts


@pytest.mark.parametrize("box_format", boxes.FORMATS)
def test_count_and_description_answers_hold_every_box(annotated, box_format):
    described = 0
    for s, _ in annotated:
        objects = _objects(s)
        qas = tasks.grounding_qas(objects, box_format, np.random.default_rng(s.seed))
        by_class = {}
        for name, box in objects:
            by_class.setdefault(name, []).append(_grid_box(box, box_format))
        counted = [q for q in qas if q.task == "count_boxes"]
        assert [_object_from(q.question) for q in counted] == [
            n for n in scenes.OBJECTS if n in by_class
        ]
        for q in counted:
            name = _object_from(q.question)
            assert q.answer.split(" ", 1)[0] == str(len(by_class[name]))
            assert boxes.parse(q.answer, box_format) == by_class[name]
        [description] = [q for q in qas if q.task == "grounded_description"] or [None]
        if not objects:
            assert description is None
            continue
        described += 1
        # Class by class in OBJECTS order, each with its count and boxes.
        parts = description.answer.split(", ")
        assert [_object_from(p) for p in parts] == [n for n in scenes.OBJECTS if n in by_class]
        for part in parts:
            name = _object_from(part)
            assert part.split(" ", 1)[0] == str(len(by_class[name]))
            assert boxes.parse(part, box_format) == by_class[name]
    assert described > 100


def test_grounding_corpus_covers_prompts_and_every_number(annotated):
    corpus = tasks.grounding_corpus("geochat")
    words = {w for text in corpus for w in re.findall(r"\w+", text)}
    assert {str(v) for v in range(101)} <= words
    for s, _ in annotated[:50]:
        for q in tasks.grounding_qas(_objects(s), "geochat", np.random.default_rng(0)):
            if q.task in ("grounding", "count_boxes", "grounded_description"):
                assert q.question in corpus
