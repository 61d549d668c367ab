"""RSVQA-LR and RSVQA-HR from their official JSON files (format "rsvqa").

Download from zenodo.org/records/6344334 (LR) and zenodo.org/records/6344367 (HR) and
unpack; `path` is the folder holding `<prefix>_split_<split>_{questions,answers,images}.json`
(prefix "LR" for RSVQA-LR, "USGS" for RSVQA-HR) and `image_root` the images, `<id>.tif`
(default `<path>/Images_LR` for LR, `<path>/Data` for HR). HR's two test sets are the
splits "test" and "test_phili" (Philadelphia). Only active questions are read.

Question types: LR rural_urban, presence, comparison, count; HR presence, comparison,
count, area. `question_types` keeps some (GeoChat's protocol leaves count and area out);
another type in the files is a bad record.
"""

from __future__ import annotations

import collections

from etils import epath

from rs_jax.data import sources
from rs_jax.data import tasks as tasks_lib

QUESTION_TYPES = ("rural_urban", "presence", "comparison", "count", "area")


class Question(sources.Record):
    img_id: int
    question: sources.Text
    type: sources.Text | None = None
    answers_ids: list[int] = []


def _rows(path: str, key: str, what: str) -> list[dict]:
    """The objects of an RSVQA file's `key` list ({"questions": [{...}, ...]})."""
    data = sources.read_json(path, what)
    rows = data.get(key) if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ValueError(f'{path}: expected {{"{key}": [...]}} (the RSVQA format)')
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: {key}[{i}] is {type(row).__name__}, not an object")
    return rows


def _active(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("active", True)]


def load_split(source: sources.SourceConfig, split: str, ctx: sources.LoadContext) -> sources.Split:
    opts = source.options
    prefix = opts["prefix"]
    image_root = opts["image_root"] or str(
        epath.Path(source.path) / ("Images_LR" if prefix == "LR" else "Data")
    )
    keep = opts["question_types"] or QUESTION_TYPES
    unknown = sorted(set(keep) - set(QUESTION_TYPES))
    if unknown:
        raise ValueError(
            f"config.data.sources.{source.name}.question_types: unknown {unknown}; "
            f"RSVQA has {QUESTION_TYPES}"
        )
    files = {
        part: str(epath.Path(source.path) / f"{prefix}_split_{split}_{part}.json")
        for part in ("questions", "answers")
    }
    what = f"config.data.sources.{source.name}"
    questions = _rows(files["questions"], "questions", what)
    answers = {
        a.get("id"): a.get("answer")
        for a in _active(_rows(files["answers"], "answers", what))
        if a.get("answer") is not None and isinstance(a.get("id"), int)
    }
    bad = sources.BadRecords(ctx.allow_skips)
    by_image: dict[int, list[tasks_lib.QA]] = collections.defaultdict(list)
    suffix = opts["prompt_suffix"]
    for q in _active(questions):
        where = f"{files['questions']} question {q.get('id')}"
        record = sources.parse_record(Question, q, where, bad)
        if record is None:
            continue
        kind = record.type
        if kind not in QUESTION_TYPES:
            bad(where, f"unknown question type {kind!r} (RSVQA has {QUESTION_TYPES})")
            continue
        if kind not in keep:
            continue
        ids = [i for i in record.answers_ids if i in answers]
        if not ids:
            bad(where, f"no active answer among answers_ids {record.answers_ids}")
            continue
        question = record.question + (f" {suffix}" if suffix else "")
        by_image[record.img_id].append(tasks_lib.QA(question, str(answers[ids[0]]), kind))
    items = [
        sources.Item(
            image=str(epath.Path(image_root) / f"{img_id}.tif"),
            qas=tuple(qas),
            classes=(),
            record=f"{files['questions']} image {img_id}",
        )
        for img_id, qas in sorted(by_image.items())
    ]
    return sources.with_readable_images(
        items, image_root, ctx, bad, read_from=f"{files['questions']} (split {split!r})"
    )


FORMAT = sources.Format(
    name="rsvqa",
    protocol=sources.Protocol.VQA,
    # image_root: "" = <path>/Images_LR (prefix LR) or <path>/Data. question_types: () =
    # all (GeoChat leaves RSVQA's count and area questions out). prompt_suffix: appended
    # to every question.
    keys=dict(image_root="", prefix="LR", question_types=(), prompt_suffix=""),
    load=sources.each_split(load_split),
)
