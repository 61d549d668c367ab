"""Task metrics: exact-match accuracy per question type with its chance level."""

import collections
import dataclasses

from rs_jax.data.tasks import normalize_answer


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
