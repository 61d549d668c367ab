"""Captioning scores as COCO reports them, computed by pycocoevalcap (the reference code).

Protocol, that of ``pycocoevalcap.eval.COCOEvalCap.evaluate``:

- references and predictions are tokenised by pycocoevalcap's Stanford PTBTokenizer
  (lower-cased, punctuation tokens dropped);
- scorers: ``Bleu(4)``, ``Meteor``, ``Rouge`` (ROUGE-L), ``Cider``, with their defaults;
- scores are corpus-level as COCO reports them: BLEU-n is ``Bleu(4)``'s corpus score (n-gram
  counts summed over all images, brevity penalty from the closest reference length), not a
  mean of per-image BLEU; METEOR is the jar's aggregate; ROUGE-L and CIDEr are means over
  images. CIDEr's IDF comes from the references of the images scored, so it is 0 for a
  single image and depends on which images are scored together.

SPICE is left out: it downloads Stanford CoreNLP models at run time.

PTBTokenizer and METEOR run Java; the first METEOR score of a process starts the JVM that
serves the later ones (each start loads METEOR's paraphrase tables, about 8 s). Without
``java`` on PATH, METEOR is None and captions are tokenised by ``python_tokenize``, which
gives PTBTokenizer's output on ordinary captions; BLEU, ROUGE-L and CIDEr still come from
pycocoevalcap's scorers. ``notes`` says so.
"""

import atexit
import os
import re
import shutil
from collections.abc import Mapping, Sequence

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer import ptbtokenizer

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")

ImageId = str | int

# PTBTokenizer normalises these before its clitic rules see them ("don’t" -> "do n't").
_UNICODE_PUNCTUATION = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2026": "...",
     "\u2013": "--", "\u2014": "--"}
)  # fmt: skip
# Clitics split from their word, and "cannot" into "can not", as PTB does.
_CLITIC = re.compile(r"(?<=\w)(n't|'(?:s|re|ve|ll|d|m))\b|(?<=\bcan)(?=not\b)")
_TOKEN = re.compile(
    r"n't\b|'(?:s|re|ve|ll|d|m)\b"  # clitics, already split from their word
    r"|\d+(?:[.,:/]\d+)+"  # 3.5, 1,000, 10:30 stay whole
    r"|\w+(?:\.\w+)+\.?|(?:mrs?|ms|dr|vs|etc)\.(?!\w)"  # u.s., mr., etc. keep their period
    r"|\w+(?:[-/]\w+)*"  # bare-land, a/b stay whole
    r"|[?!]{2,}"  # "?!", "!!": one token, which PUNCTUATIONS keeps
    r"|\.{3,}|-{2,}"  # PTB's "..." and "--", which it drops
    r"|\S"  # any other character is a token of its own
)
# With -lowerCase the jar writes brackets as "-lrb-" etc., which PTBTokenizer's
# PUNCTUATIONS ("-LRB-", ...) never match: they survive as tokens, so they must here too.
_PTB_SYMBOLS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_PTB_SYMBOLS['"'] = "''"  # a quote is dropped either way: `` and '' are in PUNCTUATIONS
_DROPPED = frozenset(ptbtokenizer.PUNCTUATIONS)


def python_tokenize(caption: str) -> str:
    """PTBTokenizer's output (as pycocoevalcap uses it) for ordinary captions, without Java.

    Lower-cases, splits off punctuation and clitics ("isn't" -> "is n't", "pond's" -> "pond
    's"), keeps numbers, hyphenated words and abbreviations ("u.s.", "etc.") whole, and drops
    the tokens in pycocoevalcap's PTBTokenizer.PUNCTUATIONS. Differs from the jar on rarer
    text: abbreviations other than a few common ones, "<tags>", "@names", "gonna", a comma
    between a word and a digit.
    """
    text = _CLITIC.sub(r" \1", caption.translate(_UNICODE_PUNCTUATION).lower())
    tokens = (_PTB_SYMBOLS.get(token, token) for token in _TOKEN.findall(text))
    return " ".join(t for t in tokens if t not in _DROPPED and not t.startswith(("...", "--")))


def _python_tokenize_all(captions: Mapping[ImageId, list[str]]) -> dict[ImageId, list[str]]:
    return {i: [python_tokenize(c) for c in caps] for i, caps in captions.items()}


def _ptb_tokenize(captions: Mapping[ImageId, list[str]]) -> dict[ImageId, list[str]]:
    # PTBTokenizer writes one caption per line and pairs the jar's output lines back by
    # position, replacing only "\n": a "\r" (or another line break) in a caption would shift
    # every later caption onto the wrong image. Whitespace does not change PTB tokens.
    tokenized = ptbtokenizer.PTBTokenizer().tokenize(
        {i: [{"caption": " ".join(c.split())} for c in caps] for i, caps in captions.items()}
    )
    for i, caps in captions.items():
        if len(tokenized.get(i, ())) != len(caps):
            raise RuntimeError(
                f"PTBTokenizer returned {len(tokenized.get(i, ()))} captions for image {i!r}, "
                f"given {len(caps)}: is `java` on PATH a working Java?"
            )
    return tokenized


# The process's METEOR JVM (module docstring): an eval scores each caption source apart.
_meteor_jvm: Meteor | None = None


def _meteor(gts: dict, res: dict) -> float:
    global _meteor_jvm
    # A new one after a JVM that died, or when Meteor names another class (a test's spy).
    if not isinstance(_meteor_jvm, Meteor) or _meteor_jvm.meteor_p.poll() is not None:
        _stop_meteor()
        _meteor_jvm = Meteor()
    try:
        score, _ = _meteor_jvm.compute_score(gts, res)
    except BaseException:
        _stop_meteor()
        raise
    return float(score)


@atexit.register
def _stop_meteor() -> None:
    global _meteor_jvm
    meteor, _meteor_jvm = _meteor_jvm, None
    if meteor is None:
        return
    # Meteor.__del__ stops the JVM under a lock that compute_score leaves held when it
    # raises (a JVM that died): stop it here and free the lock, or collection hangs.
    meteor.meteor_p.kill()
    meteor.meteor_p.wait()
    if meteor.lock.locked():
        meteor.lock.release()


def _check_inputs(
    predictions: Mapping[ImageId, str], references: Mapping[ImageId, Sequence[str]]
) -> list[ImageId]:
    for i in predictions:
        if i not in references:
            raise ValueError(f"the prediction for image {i!r} has no references")
    for i in references:
        if i not in predictions:
            raise ValueError(f"the references of image {i!r} have no prediction")
    if not predictions:
        raise ValueError("no captions to score")
    for i, refs in references.items():
        # A bare string would be scored as one reference per character.
        if isinstance(refs, str):
            raise TypeError(f"the references of image {i!r} are a str, not a list of captions")
        if not refs:
            raise ValueError(f"image {i!r} has no references")
    return list(predictions)


def caption_scores(
    predictions: Mapping[ImageId, str], references: Mapping[ImageId, Sequence[str]]
) -> dict:
    """COCO caption scores of one predicted caption per image against its references.

    Returns {"BLEU-1", ..., "BLEU-4", "METEOR", "ROUGE-L", "CIDEr": float (METEOR None
    without Java), "count": images scored, "tokenizer": "ptb" or "python", "notes": [str]}.
    An empty prediction scores 0 for its image. ValueError for an image with a prediction
    but no references or the reverse (naming the first), no images, an image without
    references or a reference empty after tokenisation; TypeError for references given as a
    bare string.
    """
    ids = _check_inputs(predictions, references)
    notes = []
    java = shutil.which("java") is not None
    ptb_dir = os.path.dirname(os.path.abspath(ptbtokenizer.__file__))
    use_ptb = java and os.access(ptb_dir, os.W_OK)
    if not java:
        notes.append("METEOR needs Java, which was not found on PATH: not computed")
        notes.append(
            "PTBTokenizer needs Java, which was not found on PATH: captions tokenised in "
            "Python (rs_jax.eval.captions.python_tokenize), as PTB does ordinary captions"
        )
    elif not use_ptb:
        notes.append(
            f"PTBTokenizer writes its input next to its jar and {ptb_dir} is not writable: "
            "captions tokenised in Python (rs_jax.eval.captions.python_tokenize)"
        )
    tokenize = _ptb_tokenize if use_ptb else _python_tokenize_all
    gts = tokenize({i: list(references[i]) for i in ids})
    res = tokenize({i: [predictions[i]] for i in ids})
    for i in ids:
        for j, ref in enumerate(gts[i]):
            # pycocoevalcap's ROUGE-L gives an empty prediction 1.0 against an empty reference.
            if not ref:
                raise ValueError(f"reference {j} of image {i!r} is empty after tokenisation")
    empty = sum(not res[i][0] for i in ids)
    if empty:
        notes.append(
            f"{empty} of {len(ids)} predictions empty after tokenisation: scored as empty "
            "captions (0 for their images)"
        )
    if len(ids) == 1:
        notes.append("CIDEr is 0 for a single image: its IDF comes from the images scored")

    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)  # verbose=1 (the default) prints
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    scores = {f"BLEU-{n}": float(b) for n, b in enumerate(bleu, start=1)}
    scores["METEOR"] = _meteor(gts, res) if java else None
    scores["ROUGE-L"] = float(rouge)
    scores["CIDEr"] = float(cider)
    return {
        **scores,
        "count": len(ids),
        "tokenizer": "ptb" if use_ptb else "python",
        "notes": notes,
    }


def format_caption_table(scores: Mapping) -> str:
    """A markdown table, one row per metric, then the number of images."""
    lines = ["| metric | score |", "|---|---|"]
    for name in METRICS:
        value = scores[name]
        lines.append(f"| {name} | {'n/a (no Java)' if value is None else f'{value:.3f}'} |")
    lines.append(f"| images | {scores['count']} |")
    return "\n".join(lines)
