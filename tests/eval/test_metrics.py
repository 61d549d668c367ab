"""TaskAccuracy, format_table, ClassificationScores and the confusion-matrix figure on
hand-computed cases."""

import warnings

import numpy as np
import pytest

from rs_jax.eval.figures import confusion_matrix_figure
from rs_jax.eval.metrics import ClassificationScores, TaskAccuracy, format_table


def filled(rows):
    accuracy = TaskAccuracy()
    hits = [accuracy.add(*row) for row in rows]
    return accuracy, hits


# presence: 3 of 4 right, references yes, yes, yes, no -> chance 3/4.
# count: 1 of 2 right, references 2, 3 -> chance 1/2 (a tie: either answer's share).
# scene: 0 of 1 right -> chance 1.
ROWS = [
    ("presence", "yes", "yes"),
    ("presence", "no", "yes"),
    ("presence", "yes", "yes"),
    ("presence", "no", "no"),
    ("count", "2", "2"),
    ("count", "4", "3"),
    ("scene", "harbor", "airport"),
]


def test_per_task_accuracy_chance_and_counts():
    accuracy, hits = filled(ROWS)
    assert hits == [True, False, True, True, True, False, False]
    tasks = accuracy.summary()["tasks"]
    assert tasks == {
        "presence": {"accuracy": 3 / 4, "chance": 3 / 4, "count": 4},
        "count": {"accuracy": 1 / 2, "chance": 1 / 2, "count": 2},
        "scene": {"accuracy": 0.0, "chance": 1.0, "count": 1},
    }


def test_chance_is_the_most_frequent_reference_not_the_most_frequent_prediction():
    """The model always says "no" but the references are mostly "yes": chance is 2/3."""
    accuracy, _ = filled([("presence", "no", "yes")] * 2 + [("presence", "no", "no")])
    row = accuracy.summary()["tasks"]["presence"]
    assert row["chance"] == pytest.approx(2 / 3)
    assert row["accuracy"] == pytest.approx(1 / 3)


def test_mean_of_tasks_differs_from_the_question_weighted_overall():
    summary = filled(ROWS)[0].summary()
    # Mean over the 3 tasks vs 4 right of 7 questions.
    assert summary["mean_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 0) / 3)
    assert summary["overall_accuracy"] == pytest.approx(4 / 7)
    assert summary["count"] == 7


@pytest.mark.parametrize(
    "prediction, reference",
    [
        ("Yes", "yes"),  # case
        ("yes.", "yes"),  # trailing punctuation
        ("  storage   tank ", "storage tank"),  # surrounding and repeated whitespace
        ("storage_tank", "storage tank"),  # underscore is punctuation, not a word character
        ("Two!", "2"),  # number words become digits
        ("bare-land", "bare land"),  # a hyphen splits words
        ("no", "No"),  # the reference is normalised too
    ],
)
def test_answers_match_after_normalisation(prediction, reference):
    assert filled([("t", prediction, reference)])[1] == [True]


@pytest.mark.parametrize(
    "prediction, reference",
    [("yes no", "yes"), ("3", "2"), ("storagetank", "storage tank"), ("", "yes")],
)
def test_different_answers_stay_different(prediction, reference):
    assert filled([("t", prediction, reference)])[1] == [False]


def test_chance_counts_references_after_normalisation():
    """ "Yes", "yes." and "YES" are one answer: chance 3/4, not 1/4 or 2/4."""
    accuracy, _ = filled([("p", "", "Yes"), ("p", "", "yes."), ("p", "", "YES"), ("p", "", "no")])
    assert accuracy.summary()["tasks"]["p"]["chance"] == pytest.approx(3 / 4)


def test_empty_summary():
    summary = TaskAccuracy().summary()
    assert summary == {"tasks": {}, "mean_accuracy": 0.0, "overall_accuracy": 0.0, "count": 0}


def test_format_table_rows():
    lines = format_table(filled(ROWS)[0].summary()).splitlines()
    assert [line.split() for line in lines] == [
        ["task", "accuracy", "chance", "n"],
        ["presence", "0.750", "0.750", "4"],
        ["count", "0.500", "0.500", "2"],
        ["scene", "0.000", "1.000", "1"],
        ["mean", "of", "tasks", "0.417"],
        ["overall", "0.571", "7"],
    ]
    # Fixed width: the numbers line up under their headers.
    assert len({len(line) for line in lines[:4]}) == 1
    assert lines[0].index("chance") + len("chance") == lines[1].index("0.750", 20) + 5


NON_ASCII_CLASSES = ["forêt dense", "Zone côtière", "水体", "居民区 dense", "Ñandú-Gebiet"]


@pytest.mark.parametrize("kind", ["wordpiece", "qwen2"])
def test_non_ascii_class_names_round_trip_through_the_tokenizer(tmp_path, kind):
    """The model answers with token ids; their decoded text must score as the class name
    it spells, whether the tokenizer strips accents and spaces out ideographs (the
    project's WordPiece) or decodes bytes exactly (a byte-level BPE)."""
    from transformers import AutoTokenizer

    from rs_jax.data.tokenizer import train_tokenizer
    from tests.chat_tokenizers import make_tokenizer

    if kind == "wordpiece":
        train_tokenizer(NON_ASCII_CLASSES, tmp_path / "tok", vocab_size=200)
    else:
        make_tokenizer(kind, tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tok")
    accuracy = TaskAccuracy()
    for name in NON_ASCII_CLASSES:
        ids = tokenizer(name, add_special_tokens=False)["input_ids"]
        decoded = tokenizer.decode(ids, skip_special_tokens=True)
        assert accuracy.add("scene", decoded, name), (name, decoded)
    # Different classes stay different after normalisation.
    assert not accuracy.add("scene", "forêt", "forêt dense")
    assert not accuracy.add("scene", "水", "水体")


# --- ClassificationScores ------------------------------------------------------------------

CLASSES = ["forest", "river", "lake"]
# Imbalanced: forest 6 of 6 right, river 1 of 2, lake 0 of 2 (one "river", one "sea").
PAIRS = [("forest", "forest")] * 5 + [("Forest.", "forest")]
PAIRS += [("river", "river"), ("forest", "river"), ("River", "lake"), ("sea", "lake")]


def scored(pairs, classes=CLASSES):
    scores = ClassificationScores(classes)
    hits = [scores.add(prediction, reference) for prediction, reference in pairs]
    return scores, hits


def test_balanced_accuracy_is_the_mean_recall_not_the_accuracy():
    scores, hits = scored(PAIRS)
    assert hits == [True] * 7 + [False] * 3
    summary = scores.summary()
    assert summary["accuracy"] == pytest.approx(7 / 10)
    assert summary["balanced_accuracy"] == pytest.approx((6 / 6 + 1 / 2 + 0 / 2) / 3)
    assert summary["per_class"] == {
        "forest": {"recall": 1.0, "count": 6},
        "river": {"recall": 0.5, "count": 2},
        "lake": {"recall": 0.0, "count": 2},
    }
    assert summary["count"] == 10
    assert summary["classes"] == CLASSES
    assert summary["columns"] == [*CLASSES, "(other)"]
    # Rows: references; columns: predictions, then "(other)".
    assert summary["confusion_matrix"] == [[6, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0, 1]]


def test_predictions_outside_the_classes_count_as_other():
    pairs = [("sea", "lake"), ("Pond!", "lake"), ("", "river"), ("forest river", "forest")]
    summary = scored(pairs)[0].summary()
    assert [row[-1] for row in summary["confusion_matrix"]] == [1, 1, 2]
    assert summary["accuracy"] == 0.0


def test_balanced_accuracy_leaves_out_classes_never_referenced():
    """ "desert" is predicted but never a reference: no recall, not in the mean, no warning."""
    pairs = [("forest", "forest"), ("desert", "forest"), ("river", "river")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = scored(pairs, ["forest", "river", "desert"])[0].summary()
    assert summary["balanced_accuracy"] == pytest.approx((1 / 2 + 1 / 1) / 2)
    assert summary["accuracy"] == pytest.approx(2 / 3)
    assert summary["per_class"]["desert"] == {"recall": None, "count": 0}


def test_classification_errors_and_empty_summary():
    with pytest.raises(ValueError, match="reference 'sea' is none of the classes"):
        ClassificationScores(CLASSES).add("sea", "sea")
    with pytest.raises(ValueError, match="'Forest' and 'forest.' are the same answer"):
        ClassificationScores(["Forest", "forest."])
    summary = ClassificationScores(["a", "b"]).summary()
    assert summary["count"] == 0
    assert summary["accuracy"] == summary["balanced_accuracy"] == 0.0
    assert summary["confusion_matrix"] == [[0, 0, 0], [0, 0, 0]]


# --- confusion_matrix_figure ---------------------------------------------------------------


def test_confusion_matrix_figure_renders_row_shares_and_counts(tmp_path):
    matrix = scored(PAIRS)[0].summary()["confusion_matrix"]
    fig = confusion_matrix_figure(matrix, CLASSES, "test split")
    fig.savefig(tmp_path / "confusion.png")
    assert (tmp_path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    shares = ax.images[0].get_array()
    np.testing.assert_allclose(shares, [[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0, 0.5, 0, 0.5]])
    assert [t.get_text() for t in ax.texts] == [str(c) for row in matrix for c in row]
    assert [t.get_text() for t in ax.get_xticklabels()] == [*CLASSES, "(other)"]
    assert [t.get_text() for t in ax.get_yticklabels()] == CLASSES
    assert len(fig.axes) == 2  # the colorbar


def test_confusion_matrix_figure_square_empty_rows_and_many_classes(tmp_path):
    fig = confusion_matrix_figure([[2, 0], [0, 0]], ["a", "b"], "")
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), [[1, 0], [0, 0]])
    big = np.eye(30, 31, dtype=int) * 5
    fig = confusion_matrix_figure(big, [f"class {i}" for i in range(30)], "30 classes")
    fig.savefig(tmp_path / "big.png")
    assert len(fig.axes[0].texts) == 0  # counts would not fit
    with pytest.raises(ValueError, match=r"\[2, 2\] or \[2, 3\], not \[2, 4\]"):
        confusion_matrix_figure(np.zeros((2, 4)), ["a", "b"], "")
