"""`rs-jax score`: answers from any model, scored by the evaluator's own protocol code
(rs_jax/eval/protocols.py: Scorer) against references, both as JSON lines:

  answers     {"id": ..., "answer": "..."}
  references  {"id": ..., "answer": "...", "task" or "question_type": "...",
               "references": ["...", ...] (captions), "class": "..." (classification)}

Every reference needs an answer and every answer a reference: a missing id is an error
naming it, or, with allow_missing, counted under "missing" and left out of the scores.
"""

from __future__ import annotations

from typing import Any

import pydantic

from rs_jax.data import sources
from rs_jax.data.pipeline import EvalSource
from rs_jax.eval.protocols import Scorer

# `--protocol` -> the evaluator's protocol name, and the task of a reference without one.
PROTOCOLS = {
    "classification": (sources.Protocol.CLASSIFICATION, "scene"),
    "rsvqa": (sources.Protocol.VQA, "vqa"),
    "captions": (sources.Protocol.CAPTIONING, "caption"),
    "grounding": (sources.Protocol.GROUNDING, "grounding"),
}
Id = sources.Text | int


class AnswerRecord(sources.Record):
    id: Id
    answer: sources.LongText  # an empty answer is a wrong one, not a bad line


class ReferenceRecord(sources.Record):
    model_config = pydantic.ConfigDict(populate_by_name=True)

    id: Id
    # VQA counts and yes/no may come as JSON numbers and booleans (as in vqa_jsonl).
    answer: sources.Text | bool | int | float | None = None
    task: sources.Text | None = None
    question_type: sources.Text | None = None
    references: list[sources.LongText] = []
    class_name: sources.Text | None = pydantic.Field(None, alias="class")


def _read(path: str, what: str, model: type[sources.R]) -> dict[Any, tuple[int, sources.R]]:
    """id -> (line, record) of a JSONL file; a bad or repeated line is an error naming it."""
    bad = sources.BadRecords(allow_skips=False)
    out: dict[Any, tuple[int, sources.R]] = {}
    for number, row in sources.read_jsonl(path, what):
        record = sources.parse_record(model, row, f"{what} {path} line {number}", bad)
        if record.id in out:
            raise ValueError(
                f"{what} {path} line {number}: id {record.id!r} again (first on line "
                f"{out[record.id][0]})"
            )
        out[record.id] = (number, record)
    return out


def _missing(ids: list, side: str, other: str) -> str:
    more = f" (and {len(ids) - 1} more)" if len(ids) > 1 else ""
    return f"id {ids[0]!r} of {side} is not in {other}{more}"


def score(
    protocol: str,
    pred_path: str,
    ref_path: str,
    allow_missing: bool = False,
    box_format: str = "geochat",
) -> dict[str, Any]:
    """The Scorer's results for one source of `protocol` (a key of PROTOCOLS), plus
    "missing": {"no_answer", "no_reference"} counts of ids found on one side only."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"--protocol {protocol!r}; choose from {sorted(PROTOCOLS)}")
    name, default_task = PROTOCOLS[protocol]
    classification = name == sources.Protocol.CLASSIFICATION
    refs = _read(ref_path, "--ref", ReferenceRecord)
    preds = _read(pred_path, "--pred", AnswerRecord)
    for path, flag, records in ((ref_path, "--ref", refs), (pred_path, "--pred", preds)):
        if not records:
            raise ValueError(f"{flag} {path} holds no records")
    no_answer = [i for i in refs if i not in preds]
    no_reference = [i for i in preds if i not in refs]
    if not allow_missing and (no_answer or no_reference):
        problem = (
            _missing(no_answer, f"--ref {ref_path}", f"--pred {pred_path}")
            if no_answer
            else _missing(no_reference, f"--pred {pred_path}", f"--ref {ref_path}")
        )
        raise ValueError(f"{problem}; --allow-missing scores the ids on both sides")
    if len(no_answer) == len(refs):  # a score of nothing would read as 0.000
        raise ValueError(
            f"no id of --pred {pred_path} is in --ref {ref_path}: nothing to score "
            f"(ids such as {next(iter(preds))!r} and {next(iter(refs))!r})"
        )

    rows = []  # (line, id, task, answer, references)
    for id_, (number, ref) in refs.items():
        task = ref.task or ref.question_type or default_task
        answer = ref.class_name if classification and ref.class_name else ref.answer
        if answer is None:
            answer = ref.references[0] if ref.references else None
        if answer is None:
            raise ValueError(f"--ref {ref_path} line {number}: no answer (nor class, references)")
        rows.append((number, id_, task, str(answer), tuple(ref.references) or (str(answer),)))
    tasks = tuple(dict.fromkeys(task for _, _, task, _, _ in rows))
    classes = tuple(dict.fromkeys(answer for *_, answer, _ in rows))
    source = EvalSource("answers", name, tasks, classes if classification else ())
    scorer = Scorer([source], box_format)
    for number, id_, task, answer, references in rows:
        if id_ not in preds:
            continue
        try:
            scorer.add(task, preds[id_][1].answer, answer, references)
        except ValueError as e:
            raise ValueError(f"--ref {ref_path} line {number} (id {id_!r}): {e}") from None
    results = scorer.results()
    results["missing"] = {"no_answer": len(no_answer), "no_reference": len(no_reference)}
    return results
