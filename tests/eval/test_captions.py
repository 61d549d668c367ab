"""caption_scores against hand-computed cases and against pycocoevalcap called directly.

METEOR starts a JVM that loads for seconds: it starts once, in the module fixture
``ptb_run``; every other test takes the Python path (PATH without java) or stubs Meteor.
"""

import math
import shutil

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from rs_jax.eval import captions
from rs_jax.eval.captions import caption_scores, format_caption_table, python_tokenize

HAS_JAVA = shutil.which("java") is not None
needs_java = pytest.mark.skipif(
    not HAS_JAVA, reason="java is not on PATH: PTBTokenizer and METEOR cannot run here"
)

# Ordinary captions: capitals, punctuation, clitics, a hyphenated word, brackets, mixed id
# types, and one empty prediction.
REFERENCES = {
    0: ["A plane is parked at the airport.", "An airplane stands on the apron near the terminal."],
    1: ["Many houses and green trees in a residential area.", "A dense residential area, trees."],
    "harbor": ["Two ships are docked in the harbor.", "Boats moored at the pier's breakwater."],
    "4": ["A baseball field next to a road.", "There's a baseball-field (and trees) by a road."],
    5: ["The river isn't wide; it crosses farmland.", "A narrow river crosses the green fields!"],
}
PREDICTIONS = {
    0: "a plane parked at the airport",
    1: "Many houses, trees and a road.",
    "harbor": "",
    "4": "A baseball field beside a road.",
    5: "a river crosses the farmland",
}
SCORE_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr")


class SpyMeteor(Meteor):
    """The real Meteor, recording its starts, what it was given and what it returned."""

    starts = 0
    calls = []

    def __init__(self):
        super().__init__()
        SpyMeteor.starts += 1

    def compute_score(self, gts, res):
        result = super().compute_score(gts, res)
        SpyMeteor.calls.append((gts, res, result))
        return result


@pytest.fixture(scope="module")
def ptb_run():
    """caption_scores on the fixtures with Java: PTBTokenizer and METEOR, whose JVM then
    scores other captions and the fixtures again: (scores, the first METEOR call, the
    later ones, JVM starts)."""
    if not HAS_JAVA:
        pytest.skip("java is not on PATH: PTBTokenizer and METEOR cannot run here")
    SpyMeteor.calls.clear()
    SpyMeteor.starts = 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(captions, "Meteor", SpyMeteor)
        scores = caption_scores(PREDICTIONS, REFERENCES)
        first = list(SpyMeteor.calls)
        caption_scores({0: "a green field", 1: "houses"}, {0: REFERENCES[1], 1: REFERENCES[0]})
        caption_scores(PREDICTIONS, REFERENCES)
    return scores, first, SpyMeteor.calls[len(first) :], SpyMeteor.starts


@pytest.fixture
def no_java(monkeypatch, tmp_path):
    """PATH holds only an empty folder: nothing can start java."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("java") is None


def direct_scores(gts, res):
    """pycocoevalcap's scorers on already tokenised captions, as COCOEvalCap calls them."""
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return dict(zip(SCORE_KEYS, [*bleu, rouge, cider]))


# --- the Java path -----------------------------------------------------------------------


@needs_java
def test_java_path_equals_pycocoevalcap_called_directly(ptb_run):
    scores, meteor_calls, _, _ = ptb_run
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in refs] for i, refs in REFERENCES.items()})
    res = tokenizer.tokenize({i: [{"caption": PREDICTIONS[i]}] for i in REFERENCES})
    assert {k: scores[k] for k in SCORE_KEYS} == direct_scores(gts, res)
    # METEOR: one JVM, given exactly PTB's tokens, its corpus score passed through.
    [(meteor_gts, meteor_res, (meteor_score, _))] = meteor_calls
    assert (meteor_gts, meteor_res) == (gts, res)
    assert scores["METEOR"] == meteor_score
    assert 0 < scores["METEOR"] < 1
    assert scores["tokenizer"] == "ptb"
    assert scores["count"] == 5
    assert scores["notes"] == [
        "1 of 5 predictions empty after tokenisation: scored as empty captions (0 for their images)"
    ]


@needs_java
def test_one_meteor_jvm_serves_every_later_score_as_a_fresh_one_would(ptb_run):
    _, [(gts, res, fresh)], later, starts = ptb_run
    assert starts == 1
    (_, _, other), (again_gts, again_res, again) = later
    assert other[0] != fresh[0]
    assert (again_gts, again_res, again) == (gts, res, fresh)


@needs_java
def test_no_java_path_equals_the_ptb_path_on_ordinary_captions(ptb_run, no_java):
    scores = caption_scores(PREDICTIONS, REFERENCES)
    assert scores["METEOR"] is None
    assert scores["tokenizer"] == "python"
    assert "METEOR needs Java, which was not found on PATH: not computed" in scores["notes"]
    assert any(note.startswith("PTBTokenizer needs Java") for note in scores["notes"])
    assert {k: scores[k] for k in SCORE_KEYS} == {k: ptb_run[0][k] for k in SCORE_KEYS}


# (caption, PTB's tokens), checked against the jar in the test after this list.
TOKENIZER_CASES = [
    ("A plane is parked at the airport.", "a plane is parked at the airport"),
    ("Many buildings, some trees and a road!", "many buildings some trees and a road"),
    # The jar lower-cases "-LRB-" after PUNCTUATIONS was written for it: brackets stay.
    ('Ships (small) docked -- by the "harbor".', "ships -lrb- small -rrb- docked by the harbor"),
    ("It isn't the pond's edge; can't be.", "it is n't the pond 's edge ca n't be"),
    ("A bare-land area of 3.5 km, 1,000 cars", "a bare-land area of 3.5 km 1,000 cars"),
    ("In the U.S., roads etc.", "in the u.s. roads etc."),
    ("don\u2019t \u2026 \u201cquoted\u201d \u2014 it cannot", "do n't quoted it can not"),
    ("  spaced\tout   words  ", "spaced out words"),
    ("", ""),
    (" ... ", ""),
    ("Wow!! ships?! ---- a road....", "wow !! ships ?! a road"),
]
ORDINARY_CAPTIONS = [
    *(c for refs in REFERENCES.values() for c in refs),
    *PREDICTIONS.values(),
    *(caption for caption, _ in TOKENIZER_CASES),
]


@needs_java
def test_python_tokenizer_equals_the_ptb_jar_on_ordinary_captions():
    ptb = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(ORDINARY_CAPTIONS)})
    assert [python_tokenize(c) for c in ORDINARY_CAPTIONS] == [ptb[i][0] for i in ptb]


@needs_java
def test_a_carriage_return_does_not_shift_captions_onto_other_images():
    captions_in = {1: ["a plane\r\nat the airport."], 2: ["two ships"], 3: [""]}
    # pycocoevalcap's tokenizer pairs output lines with images by position: "\r" splits one.
    raw = PTBTokenizer().tokenize({i: [{"caption": c} for c in v] for i, v in captions_in.items()})
    assert raw[2] == ["at the airport"]
    assert captions._ptb_tokenize(captions_in) == {
        1: ["a plane at the airport"],
        2: ["two ships"],
        3: [""],
    }


# --- the Python path and hand-computed scores ----------------------------------------------


def test_python_path_equals_pycocoevalcap_scorers_on_its_tokens(no_java):
    scores = caption_scores(PREDICTIONS, REFERENCES)
    gts = {i: [python_tokenize(c) for c in refs] for i, refs in REFERENCES.items()}
    res = {i: [python_tokenize(PREDICTIONS[i])] for i in REFERENCES}
    assert {k: scores[k] for k in SCORE_KEYS} == direct_scores(gts, res)


@pytest.mark.parametrize("caption, tokens", TOKENIZER_CASES)
def test_python_tokenizer(caption, tokens):
    assert python_tokenize(caption) == tokens


def test_identical_captions_score_one(no_java):
    # One reference per image and no word shared between images: every n-gram's IDF is
    # log(2) > 0, so CIDEr is 10 x a cosine similarity of 1.
    refs = {"a": ["A plane is parked at the airport."], "b": ["Two ships docked in harbour"]}
    scores = caption_scores(
        {"a": "a plane is parked at the airport", "b": "two ships docked in harbour"}, refs
    )
    for n in range(1, 5):
        assert scores[f"BLEU-{n}"] == pytest.approx(1.0, rel=1e-6)
    assert scores["ROUGE-L"] == 1.0
    assert scores["CIDEr"] == pytest.approx(10.0)
    assert scores["count"] == 2
    assert len(scores["notes"]) == 2  # the two no-Java notes, nothing else


def test_bleu_by_hand_with_clipping_and_brevity_penalty(no_java):
    """ "the the the ship" against two references (6 and 8 tokens).

    Unigrams: "the" clipped to 2 (its most in one reference), "ship" 1: 3 of 4.
    Bigrams: "the the" x2 unmatched, "the ship" matched: 1 of 3.
    Brevity penalty against the closest reference length, 6: exp(1 - 6/4).
    """
    refs = {7: ["The ship is near the harbor.", "A large ship is docked in a harbor."]}
    scores = caption_scores({7: "the the the ship"}, refs)
    penalty = math.exp(1 - 6 / 4)
    assert scores["BLEU-1"] == pytest.approx(3 / 4 * penalty, rel=1e-6)
    assert scores["BLEU-2"] == pytest.approx(math.sqrt(3 / 4 * 1 / 3) * penalty, rel=1e-6)
    # Recall 2/6 vs 2/8, precision 2/4 (LCS "the ship"); F with beta 1.2 on the best of each.
    p, r = 2 / 4, 2 / 6
    assert scores["ROUGE-L"] == pytest.approx((1 + 1.2**2) * p * r / (r + 1.2**2 * p))
    assert scores["CIDEr"] == 0.0
    assert "CIDEr is 0 for a single image: its IDF comes from the images scored" in scores["notes"]


def test_cider_rewards_the_closer_caption(no_java):
    def cider(prediction_0):
        return caption_scores({**PREDICTIONS, 0: prediction_0}, REFERENCES)["CIDEr"]

    closest = cider("A plane is parked at the airport.")
    close = cider("a plane parked at the airport")
    far = cider("a plane over the sea")
    none = cider("")
    assert closest > close > far > none


def test_empty_predictions_score_zero(no_java):
    refs = {"a": ["A plane is parked at the airport."], "b": ["Two ships docked in harbour"]}
    scores = caption_scores({"a": "", "b": "  "}, refs)
    assert [scores[k] for k in SCORE_KEYS] == [0.0] * 6
    assert "2 of 2 predictions empty after tokenisation" in scores["notes"][-1]
    # One exact caption and one empty: per-image means halve, corpus BLEU-1 counts the
    # empty caption in the brevity penalty (7 tokens of 12 reference tokens).
    scores = caption_scores({"a": "a plane is parked at the airport", "b": ""}, refs)
    assert scores["ROUGE-L"] == 0.5
    assert scores["CIDEr"] == pytest.approx(5.0)
    assert scores["BLEU-1"] == pytest.approx(math.exp(1 - 12 / 7), rel=1e-6)


def test_mismatched_ids_name_the_first_one():
    with pytest.raises(ValueError, match="prediction for image 'b' has no references"):
        caption_scores({"a": "x", "b": "y", "c": "z"}, {"a": ["x"]})
    with pytest.raises(ValueError, match="references of image 7 have no prediction"):
        caption_scores({1: "x"}, {1: ["x"], 7: ["y"], 8: ["z"]})
    with pytest.raises(ValueError, match="no captions to score"):
        caption_scores({}, {})


def test_bad_references(no_java):
    with pytest.raises(TypeError, match="references of image 1 are a str"):
        caption_scores({1: "a ship"}, {1: "a ship"})
    with pytest.raises(ValueError, match="image 1 has no references"):
        caption_scores({1: "a ship"}, {1: []})
    # ROUGE-L would score an empty prediction 1.0 against an empty reference.
    with pytest.raises(ValueError, match="reference 1 of image 1 is empty after tokenisation"):
        caption_scores({1: "a ship"}, {1: ["a ship", "..."]})


def test_unwritable_ptb_folder_falls_back_to_python_tokens(monkeypatch):
    """PTBTokenizer writes its input next to its jar: a read-only install cannot run it."""

    monkeypatch.setattr(captions.shutil, "which", lambda name: f"/opt/{name}")
    monkeypatch.setattr(captions.os, "access", lambda path, mode: False)
    monkeypatch.setattr(captions, "_meteor", lambda gts, res: 0.25)  # no JVM
    scores = caption_scores(PREDICTIONS, REFERENCES)
    assert scores["tokenizer"] == "python"
    assert scores["METEOR"] == 0.25
    assert "is not writable" in scores["notes"][0]


def test_format_caption_table():
    scores = {"BLEU-1": 0.61234, "BLEU-2": 0.5, "BLEU-3": 0.4, "BLEU-4": 0.3}
    scores |= {"METEOR": None, "ROUGE-L": 0.55, "CIDEr": 1.23456, "count": 12}
    assert format_caption_table(scores).splitlines() == [
        "| metric | score |",
        "|---|---|",
        "| BLEU-1 | 0.612 |",
        "| BLEU-2 | 0.500 |",
        "| BLEU-3 | 0.400 |",
        "| BLEU-4 | 0.300 |",
        "| METEOR | n/a (no Java) |",
        "| ROUGE-L | 0.550 |",
        "| CIDEr | 1.235 |",
        "| images | 12 |",
    ]
    assert "| METEOR | 0.250 |" in format_caption_table({**scores, "METEOR": 0.25})
