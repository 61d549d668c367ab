"""Task metrics: exact-match accuracy per question type with its chance level, and
classification scores (balanced accuracy, per-class recall, confusion matrix)."""

import collections
import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np
import sklearn.metrics

from rs_jax.data.tasks import normalize_answer

OTHER = "(other)"


@dataclasses.dataclass
class TaskAccuracy:
    """Accumulates exact-match (after normalisation) per task.

    Chance is the accuracy of always giving the task's most frequent reference answer,
    the strongest answer-only baseline. Reported as in RSVQA: the mean over tasks and the
    question-weighted overall accuracy.
    """

    correct: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    total: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    answers: dict = dataclasses.field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )

    def add(self, task: str, prediction: str, reference: str) -> bool:
        reference = normalize_answer(reference)
        hit = normalize_answer(prediction) == reference
        self.correct[task] += hit
        self.total[task] += 1
        self.answers[task][reference] += 1
        return hit

    def summary(self) -> dict:
        tasks = {}
        for task, n in self.total.items():
            tasks[task] = {
                "accuracy": self.correct[task] / n,
                "chance": self.answers[task].most_common(1)[0][1] / n,
                "count": n,
            }
        total = sum(self.total.values())
        return {
            "tasks": tasks,
            "mean_accuracy": sum(t["accuracy"] for t in tasks.values()) / max(len(tasks), 1),
            "overall_accuracy": sum(self.correct.values()) / max(total, 1),
            "count": total,
        }


def format_table(summary: dict) -> str:
    """A fixed-width per-task table of accuracy vs chance."""
    lines = [f"{'task':<14}{'accuracy':>10}{'chance':>10}{'n':>8}"]
    for task, row in summary["tasks"].items():
        lines.append(f"{task:<14}{row['accuracy']:>10.3f}{row['chance']:>10.3f}{row['count']:>8d}")
    lines.append(f"{'mean of tasks':<14}{summary['mean_accuracy']:>10.3f}")
    lines.append(
        f"{'overall':<14}{summary['overall_accuracy']:>10.3f}{'':>10}{summary['count']:>8d}"
    )
    return "\n".join(lines)


@dataclasses.dataclass
class ClassificationScores:
    """Accumulates (prediction, reference) pairs over a fixed list of classes.

    A prediction matches a class when both are equal after ``normalize_answer`` (GeoChat's
    protocol is lower-cased exact match; this also folds punctuation and spacing). A
    prediction that is none of the classes counts in an extra column, "(other)"; a reference
    must be one of the classes.
    """

    class_names: Sequence[str]
    predictions: list[int] = dataclasses.field(default_factory=list, init=False)
    references: list[int] = dataclasses.field(default_factory=list, init=False)

    def __post_init__(self):
        self.class_names = list(self.class_names)
        self._index = {}
        for i, name in enumerate(self.class_names):
            key = normalize_answer(name)
            if key in self._index:
                raise ValueError(
                    f"classes {self.class_names[self._index[key]]!r} and {name!r} are the same "
                    "answer after normalisation"
                )
            self._index[key] = i

    def add(self, prediction: str, reference: str) -> bool:
        reference_index = self._index.get(normalize_answer(reference))
        if reference_index is None:
            raise ValueError(f"reference {reference!r} is none of the classes")
        prediction_index = self._index.get(normalize_answer(prediction), len(self.class_names))
        self.predictions.append(prediction_index)
        self.references.append(reference_index)
        return prediction_index == reference_index

    def summary(self) -> dict:
        """accuracy, balanced_accuracy (mean recall over the classes that occur as
        references), per_class {name: {recall (None without references), count}}, count,
        confusion_matrix (rows: reference classes, columns: classes then "(other)"),
        classes and columns (the labels of rows and columns)."""
        n_classes = len(self.class_names)
        matrix = np.zeros((n_classes, n_classes + 1), dtype=np.int64)
        balanced = 0.0
        if self.references:  # sklearn refuses empty inputs
            # Row "(other)" is all zeros (no reference is "(other)"), so it is dropped.
            matrix = sklearn.metrics.confusion_matrix(
                self.references, self.predictions, labels=range(n_classes + 1)
            )[:n_classes]
            with warnings.catch_warnings():
                # Predicted classes that are never a reference ("(other)" above all) have no
                # recall; sklearn leaves them out of the mean, as it should, and warns.
                warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
                balanced = sklearn.metrics.balanced_accuracy_score(
                    self.references, self.predictions
                )
        support = matrix.sum(axis=1)
        per_class = {
            name: {
                "recall": float(matrix[i, i] / support[i]) if support[i] else None,
                "count": int(support[i]),
            }
            for i, name in enumerate(self.class_names)
        }
        count = len(self.references)
        return {
            "accuracy": float(np.trace(matrix) / count) if count else 0.0,
            "balanced_accuracy": float(balanced),
            "per_class": per_class,
            "count": count,
            "confusion_matrix": matrix.tolist(),
            "classes": list(self.class_names),
            "columns": [*self.class_names, OTHER],
        }
