"""How each eval source is scored, and the results table.

Every generated answer is compared after `normalize_answer` (lower-cased, accents and
punctuation folded, number words as digits). Per source (DataBundle.eval_sources):

- "vqa": exact match per question type; reported as RSVQA does, both the mean over types
  and the question-weighted overall accuracy, each type with its answer-only chance level
  (always the most frequent reference answer).
- "classification": GeoChat's protocol (every class name in the prompt, greedy decoding,
  lower-cased exact match), plus balanced accuracy (mean per-class recall), per-class recall
  and a confusion matrix (an answer that is no class counts as "(other)").
- "captioning": BLEU-1..4, METEOR, ROUGE-L and CIDEr of the generated caption against all
  of the image's references, through pycocoevalcap (rs_jax/eval/captions.py).
- "grounding": boxes read from the answer in config.data.box_format (rs_jax/data/boxes.py),
  scored by IoU against the reference's (rs_jax/eval/grounding.py). Questions of a box type
  (tasks.BOX_TASKS: "grounding", "count_boxes", "grounded_description") in a vqa source are
  scored so too, each under the source's key of that name.

Exact-match accuracy of vqa and classification tasks is also gathered over all tasks
("tasks", "mean_accuracy", "overall_accuracy": the mean of tasks and the question-weighted
accuracy over every exact-match question).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from etils import epath

from rs_jax.data.sources import Protocol
from rs_jax.data.tasks import BOX_TASKS, GROUNDING_TASK
from rs_jax.eval.captions import caption_scores, format_caption_table
from rs_jax.eval.figures import confusion_matrix_figure
from rs_jax.eval.grounding import GroundingScores, format_grounding_table
from rs_jax.eval.metrics import ClassificationScores, TaskAccuracy


class Scorer:
    """Accumulates generated answers for every eval source; `results` scores them."""

    def __init__(self, eval_sources: Sequence[Any], box_format: str = "geochat"):
        self.sources = {s.name: s for s in eval_sources}
        self.source_of = {task: s.name for s in eval_sources for task in s.tasks}
        self.exact = TaskAccuracy()
        self.per_source = {
            s.name: TaskAccuracy() for s in eval_sources if s.protocol == Protocol.VQA
        }
        self.classification = {
            s.name: ClassificationScores(s.class_names)
            for s in eval_sources
            if s.protocol == Protocol.CLASSIFICATION
        }
        self.captions: dict[str, tuple[dict, dict]] = {
            s.name: ({}, {}) for s in eval_sources if s.protocol == Protocol.CAPTIONING
        }
        # (source, box task) -> its scores; a grounding source's tasks all count as one.
        self.box_format = box_format
        self.boxes: dict[tuple[str, str], GroundingScores] = {}

    def grounding_source(self, task: str) -> str | None:
        """The source whose answers to `task` are boxes, or None where they are text."""
        return None if self._box_task(task) is None else self.source_of[task]

    def exact_match(self, task: str) -> bool:
        """Whether answers to `task` are scored right or wrong by exact match (not captions,
        not boxes)."""
        protocol = self.sources[self.source_of[task]].protocol
        return self._box_task(task) is None and protocol != Protocol.CAPTIONING

    def _box_task(self, task: str) -> str | None:
        """The box task `task` is scored as (its key in the source's results), or None."""
        name = self.source_of[task]
        if self.sources[name].protocol == Protocol.GROUNDING:
            return GROUNDING_TASK
        bare = task.removeprefix(f"{name}/")
        return bare if bare in BOX_TASKS else None

    def _box_scores(self, name: str, box_task: str) -> GroundingScores:
        key = (name, box_task)
        if key not in self.boxes:
            self.boxes[key] = GroundingScores(self.box_format)
        return self.boxes[key]

    def add(self, task: str, prediction: str, answer: str, references: Sequence[str]) -> bool:
        """Scores one answer; the return value (shown with samples) is exact match, or for
        boxes a hit (GroundingScores.add)."""
        name = self.source_of[task]
        protocol = self.sources[name].protocol
        if (box_task := self._box_task(task)) is not None:
            return self._box_scores(name, box_task).add(prediction, answer)
        if protocol == Protocol.CAPTIONING:
            predictions, refs = self.captions[name]
            key = len(predictions)
            predictions[key], refs[key] = prediction, list(references)
            return False
        hit = self.exact.add(task, prediction, answer)
        if protocol == Protocol.CLASSIFICATION:
            self.classification[name].add(prediction, answer)
        else:
            self.per_source[name].add(task.removeprefix(f"{name}/"), prediction, answer)
        return hit

    def results(self, figures_dir: epath.Path | None = None) -> dict[str, Any]:
        """{"tasks", "mean_accuracy", "overall_accuracy", "count"} over exact-match tasks and
        "sources": {name: protocol results}; a classification source's confusion matrix is
        drawn to figures_dir/confusion_<source>.png."""
        out = self.exact.summary()
        sources = {}
        for name, source in self.sources.items():
            if source.protocol == Protocol.VQA:
                s = self.per_source[name].summary()
                row = {
                    "per_type": s["tasks"],
                    "mean_of_types": s["mean_accuracy"],
                    "overall": s["overall_accuracy"],
                    "count": s["count"],
                }
                for box_task in BOX_TASKS:
                    if (name, box_task) in self.boxes:
                        row[box_task] = self.boxes[name, box_task].summary()
            elif source.protocol == Protocol.CLASSIFICATION:
                row = self.classification[name].summary()
                if figures_dir is not None and row["count"]:
                    fig = confusion_matrix_figure(
                        row["confusion_matrix"], row["classes"], f"{name}: confusion matrix"
                    )
                    file = f"confusion_{name}.png"
                    with (figures_dir / file).open("wb") as f:
                        fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
                    row["figure"] = file
            elif source.protocol == Protocol.GROUNDING:
                row = self._box_scores(name, GROUNDING_TASK).summary()
            else:
                predictions, refs = self.captions[name]
                row = caption_scores(predictions, refs) if predictions else {"count": 0}
            sources[name] = {"protocol": source.protocol, **row}
        out["sources"] = sources
        return out


def markdown(results: dict[str, Any], title: str | None = None) -> str:
    """The results as markdown tables: exact-match tasks, then each source's protocol.
    title: default "Evaluation at step S (M model)"."""
    title = title or f"Evaluation at step {results['step']} ({results['model']} model)"
    lines = [f"# {title}"]
    if results["tasks"]:  # none when every source is scored otherwise (captions, boxes)
        lines += ["", "| task | accuracy | chance | n |", "|---|---|---|---|"]
        for task, row in results["tasks"].items():
            lines.append(
                f"| {task} | {row['accuracy']:.3f} | {row['chance']:.3f} | {row['count']} |"
            )
        lines.append(f"| mean of tasks | {results['mean_accuracy']:.3f} | | |")
        lines.append(f"| overall | {results['overall_accuracy']:.3f} | | {results['count']} |")
    for name, row in results["sources"].items():
        lines += ["", f"## {name} ({row['protocol']})", ""]
        if row["protocol"] == Protocol.VQA:
            lines += ["| question type | accuracy | n |", "|---|---|---|"]
            lines += [
                f"| {t} | {r['accuracy']:.3f} | {r['count']} |" for t, r in row["per_type"].items()
            ]
            lines.append(f"| mean of types | {row['mean_of_types']:.3f} | |")
            lines.append(f"| overall (question-weighted) | {row['overall']:.3f} | {row['count']} |")
            for box_task in (t for t in BOX_TASKS if t in row):
                lines += ["", f"Questions of type {box_task}:", ""]
                lines.append(format_grounding_table(row[box_task]))
        elif row["protocol"] == Protocol.CLASSIFICATION:
            lines += ["| metric | value |", "|---|---|"]
            lines.append(f"| accuracy | {row['accuracy']:.3f} |")
            lines.append(f"| balanced accuracy | {row['balanced_accuracy']:.3f} |")
            lines.append(f"| images | {row['count']} |")
            if "figure" in row:
                lines += ["", f"![confusion matrix]({row['figure']})"]
        elif row["protocol"] == Protocol.GROUNDING:
            lines.append(format_grounding_table(row))
        elif row["count"]:
            lines.append(format_caption_table(row))
            lines += [f"- {note}" for note in row["notes"]]
        if "grounding_figure" in row:
            lines += ["", f"![boxes: predicted red, reference green]({row['grounding_figure']})"]
    for note in results.get("notes", []):
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"
