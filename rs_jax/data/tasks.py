"""Question/answer generation (RSVQA-style task kinds) and answer normalisation.

Tasks: "scene", "presence", "count", "comparison", "rural_urban", "caption" for
synthetic scenes; "grounding", "region_caption", "count_boxes" and "grounded_description"
about their objects' boxes (rs_jax/data/grounding_prompts.json); and a classification
prompt (task "scene") for folder datasets.
Answers are short canonical strings; ``normalize_answer`` maps free-form model
output onto the same canonical form before exact-match scoring.
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rs_jax.data import boxes, scenes

# Generated at build time (generate_qas), then the box tasks (grounding_qas), which are
# made when the data are read so that answers are written in config.data.box_format.
QA_TASKS: tuple[str, ...] = ("scene", "presence", "count", "comparison", "rural_urban", "caption")
# The question type whose answers are boxes, in any source (scored by IoU: eval/protocols.py).
GROUNDING_TASK = "grounding"
# Every task whose answers are boxes, each scored by IoU on its own.
BOX_TASKS: tuple[str, ...] = (GROUNDING_TASK, "count_boxes", "grounded_description")
GROUNDING_TASKS: tuple[str, ...] = (GROUNDING_TASK, "region_caption", *BOX_TASKS[1:])
TASKS: tuple[str, ...] = QA_TASKS + GROUNDING_TASKS

GROUNDING_PROMPTS = json.loads(
    Path(__file__).with_name("grounding_prompts.json").read_text(encoding="utf-8")
)
# An attribute names an object only when it stands out from the next of its class by this
# much (centres, in image widths): a tie would leave the question two right answers.
MIN_ATTRIBUTE_GAP = 0.1

SCENE_TEMPLATES = (
    "What type of scene is this?",
    "What kind of area is shown in this image?",
    "Which scene category does this image show?",
    "What is the main scene in this aerial image?",
)
PRESENCE_TEMPLATES = (
    "Is there {a_obj} in the image?",
    "Is {a_obj} present?",
    "Can you see {a_obj} in this image?",
    "Does the image contain {a_obj}?",
)
COUNT_TEMPLATES = (
    "How many {objs} are there?",
    "How many {objs} are in the image?",
    "What is the number of {objs}?",
    "Count the {objs} in the image.",
)
COMPARISON_TEMPLATES = (
    "Are there more {objs_a} than {objs_b}?",
    "Is the number of {objs_a} greater than the number of {objs_b}?",
    "Are {objs_a} more numerous than {objs_b}?",
)
RURAL_URBAN_TEMPLATES = (
    "Is this a rural or an urban area?",
    "Is this area rural or urban?",
    "Is the image of an urban or a rural area?",
)
CAPTION_TEMPLATES = (
    "Describe the image.",
    "Describe this aerial image.",
    "Write a short caption for this image.",
)
CLASSIFY_PROMPTS = (
    "What is the land use class of this image?",
    "Classify this remote sensing image.",
    "Which scene category does this image belong to?",
    "What type of scene is this?",
)

# GeoChat's scene-classification prompt (its GeoChat-Bench question files): every class,
# comma-separated, in the dataset's order.
GEOCHAT_CLASSIFY = (
    "Classify the image within one of the given classes: {classes}. "
    "Answer with one word or short phrase."
)

# fmt: off
_NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen", "twenty",
)
# fmt: on
_WORD_TO_DIGIT = {w: str(i) for i, w in enumerate(_NUMBER_WORDS)}


class QA(NamedTuple):
    """One question about an image. history: the earlier (question, answer) rounds of a
    conversation, oldest first; references: every accepted answer where there are several
    (captions), `answer` being the one trained on."""

    question: str
    answer: str
    task: str
    history: tuple[tuple[str, str], ...] = ()
    references: tuple[str, ...] = ()


# CJK ideographs, the ranges BERT-style normalisers put spaces around.
_CJK = re.compile(
    "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df"
    "\U0002a700-\U0002ceaf\U0002f800-\U0002fa1f]"
)


def normalize_answer(text: str) -> str:
    """Canonical answer form: case-folded, accents dropped, no punctuation, ideographs and
    words separated by single spaces, numbers as digits.

    Both sides of a comparison go through this, so a tokenizer that strips accents or
    spaces out CJK ideographs on decoding (BERT's normaliser) still matches the reference.
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = _CJK.sub(lambda m: f" {m.group()} ", text)
    text = re.sub(r"[^\w\s]|_", " ", text)
    return " ".join(_WORD_TO_DIGIT.get(word, word) for word in text.split())


def count_answer(n: int) -> str:
    """Counts are answered with digits (``normalize_answer`` maps number words to digits too)."""
    return str(int(n))


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _plural(noun: str) -> str:
    return scenes.OBJECT_PLURALS[noun]


def _counted(n: int, noun: str) -> str:
    """``1 ship``, ``2 ships``."""
    return f"{n} {noun if n == 1 else _plural(noun)}"


def caption_from_labels(scene: str, counts: Mapping[str, int], landcovers: Sequence[str]) -> str:
    """Template caption, e.g. "a harbor scene with 2 ships and 1 building over water."."""
    parts = [_counted(n, obj) for obj in scenes.OBJECTS if (n := counts.get(obj, 0)) > 0]
    text = f"{_a(scene)} scene"
    if parts:
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        text += f" with {listed}"
    if landcovers:
        lcs = list(landcovers)
        listed = lcs[0] if len(lcs) == 1 else ", ".join(lcs[:-1]) + " and " + lcs[-1]
        text += f" over {listed}"
    return text + "."


def generate_qas(sample: scenes.SceneSample, rng: np.random.Generator) -> list[QA]:
    """Every task's questions for one scene.

    presence and comparison get one "yes" and one "no" question where the scene
    allows, which keeps yes/no balanced overall; count asks about one present
    class and one class drawn at random (so 0 stays a possible answer).
    """
    counts = sample.counts
    pick = lambda seq: seq[int(rng.integers(len(seq)))]
    present = [o for o in scenes.OBJECTS if counts[o] > 0]
    absent = [o for o in scenes.OBJECTS if counts[o] == 0]
    qas = [QA(pick(SCENE_TEMPLATES), sample.scene, "scene")]

    for pool, answer in ((present, "yes"), (absent, "no")):
        if pool:
            q = pick(PRESENCE_TEMPLATES).format(a_obj=_a(pick(pool)))
            qas.append(QA(q, answer, "presence"))

    count_objs = ([pick(present)] if present else []) + [pick(scenes.OBJECTS)]
    for obj in count_objs:
        q = pick(COUNT_TEMPLATES).format(objs=_plural(obj))
        qas.append(QA(q, count_answer(counts[obj]), "count"))

    pairs = list(itertools.permutations(scenes.OBJECTS, 2))
    more = [(a, b) for a, b in pairs if counts[a] > counts[b]]
    # "no" pairs where at least one side is present are more informative than 0-vs-0.
    not_more = [(a, b) for a, b in pairs if counts[a] <= counts[b] and counts[b] > 0]
    not_more = not_more or [(a, b) for a, b in pairs if counts[a] <= counts[b]]
    for pool, answer in ((more, "yes"), (not_more, "no")):
        if pool:
            a, b = pick(pool)
            q = pick(COMPARISON_TEMPLATES).format(objs_a=_plural(a), objs_b=_plural(b))
            qas.append(QA(q, answer, "comparison"))

    qas.append(QA(pick(RURAL_URBAN_TEMPLATES), sample.rural_urban, "rural_urban"))
    caption = caption_from_labels(sample.scene, counts, sample.landcovers)
    qas.append(QA(pick(CAPTION_TEMPLATES), caption, "caption"))
    return qas


def grounding_qas(
    objects: Sequence[tuple[str, boxes.Box]], box_format: str, rng: np.random.Generator
) -> list[QA]:
    """Box questions about a scene's objects (name, box), for each class present in OBJECTS
    order: a "grounding" question naming one of its objects, answered with that object's box
    (a lone object by its class, "the ship"; one of several by an attribute only it has,
    "the leftmost ship", or no question when none singles one out), then a "region_caption"
    question giving one of its objects' box, answered with the class. Then, drawing nothing
    more from rng: per class a "count_boxes" question, answered with the count and every box
    ("2 {...} {...}"), and one "grounded_description" of all objects, class by class
    ("1 ship {...}, 2 buildings {...} {...}")."""
    by_class: dict[str, list[boxes.Box]] = {}
    for name, box in objects:
        by_class.setdefault(name, []).append(box)
    present = [(name, by_class[name]) for name in scenes.OBJECTS if name in by_class]
    pick = lambda seq: seq[int(rng.integers(len(seq)))]
    qas = []
    for name, found in present:
        question = None
        if len(found) == 1:
            question, target = GROUNDING_PROMPTS["refer"].format(object=name), found[0]
        elif singled := _singled_out(found):
            attribute = pick(sorted(singled))
            question = GROUNDING_PROMPTS["refer_attribute"].format(attribute=attribute, object=name)
            target = singled[attribute]
        if question is not None:
            qas.append(QA(question, boxes.render([target], box_format), GROUNDING_TASK))
        region = GROUNDING_PROMPTS["identify"].format(box=boxes.render([pick(found)], box_format))
        qas.append(QA(region, name, "region_caption"))
    written = {name: boxes.render(found, box_format) for name, found in present}
    for name, found in present:
        question = GROUNDING_PROMPTS["count"].format(objects=_plural(name))
        qas.append(QA(question, f"{len(found)} {written[name]}", "count_boxes"))
    if present:
        description = ", ".join(f"{_counted(len(f), n)} {written[n]}" for n, f in present)
        qas.append(QA(GROUNDING_PROMPTS["describe"], description, "grounded_description"))
    return qas


def _singled_out(found: Sequence[boxes.Box]) -> dict[str, boxes.Box]:
    """Attribute -> the box it names, for the attributes that name one box unambiguously."""
    out = {}
    for attribute, rule in GROUNDING_PROMPTS["attributes"].items():
        low, high = ("x1", "x2") if rule["axis"] == "x" else ("y1", "y2")
        centres = np.array([(getattr(b, low) + getattr(b, high)) / 2 for b in found])
        sign = 1 if rule["extreme"] == "min" else -1
        order = np.argsort(sign * centres, kind="stable")
        if abs(centres[order[1]] - centres[order[0]]) >= MIN_ATTRIBUTE_GAP:
            out[attribute] = found[int(order[0])]
    return out


def grounding_corpus(box_format: str, trained: Sequence[str] = GROUNDING_TASKS) -> list[str]:
    """The box tasks' prompts and answers for the tokenizer: every question form and class,
    and boxes using every grid value in box_format; the count and description prompts only
    where those tasks are `trained` (a run of the other box tasks keeps its tokenizer)."""
    texts = [GROUNDING_PROMPTS["refer"].format(object=o) for o in scenes.OBJECTS]
    texts += [
        GROUNDING_PROMPTS["refer_attribute"].format(attribute=a, object=o)
        for a in GROUNDING_PROMPTS["attributes"]
        for o in scenes.OBJECTS
    ]
    grid = boxes.grid_size(box_format)
    edges = np.arange(grid) / grid
    unit = [boxes.Box(e, e, e + 1 / grid, e + 1 / grid) for e in edges]
    texts += [GROUNDING_PROMPTS["identify"].format(box=boxes.render([b], box_format)) for b in unit]
    if "count_boxes" in trained:
        texts += [GROUNDING_PROMPTS["count"].format(objects=_plural(o)) for o in scenes.OBJECTS]
    if "grounded_description" in trained:
        texts.append(GROUNDING_PROMPTS["describe"])
    return texts


# Lower-case compound folder names (UC Merced style) split with this word list.
# fmt: off
_CLASS_WORDS = frozenset((
    "agricultural", "airplane", "airport", "annual", "bare", "baseball", "basketball", "beach",
    "bridge", "buildings", "center", "chaparral", "church", "circular", "cloud", "commercial",
    "course", "court", "crop", "dense", "desert", "diamond", "farmland", "field", "forest",
    "freeway", "golf", "ground", "harbor", "herbaceous", "highway", "home", "ice", "industrial",
    "intersection", "island", "lake", "land", "lot", "meadow", "medium", "mobile", "mountain",
    "overpass", "palace", "park", "parking", "pasture", "permanent", "playground", "pond",
    "port", "power", "railway", "rectangular", "residential", "resort", "river", "road",
    "runway", "school", "sea", "shrub", "snowberg", "sparse", "square", "stadium", "station",
    "storage", "tank", "tanks", "tennis", "terrace", "thermal", "track", "vegetation",
    "viaduct", "wetland",
))
# fmt: on


def _split_compound(word: str) -> list[str] | None:
    """Split e.g. "denseresidential" into known words (fewest pieces); None if impossible."""
    best: list[list[str] | None] = [None] * (len(word) + 1)
    best[0] = []
    for end in range(1, len(word) + 1):
        for start in range(end):
            prev = best[start]
            if prev is not None and word[start:end] in _CLASS_WORDS:
                cand = [*prev, word[start:end]]
                if best[end] is None or len(cand) < len(best[end]):
                    best[end] = cand
    return best[-1]


def class_display_name(folder_name: str) -> str:
    """Readable lower-case class name: "AnnualCrop" -> "annual crop", "storage_tanks" ->
    "storage tanks", "denseresidential" -> "dense residential"."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", folder_name)
    words = []
    for word in re.split(r"[\s_\-]+", text.lower()):
        if not word:
            continue
        split = None if word in _CLASS_WORDS else _split_compound(word)
        words.extend(split or [word])
    return " ".join(words)


def classification_qa(class_name: str, rng: np.random.Generator | None = None) -> QA:
    """Classification prompt for a folder dataset; rng=None gives the fixed eval prompt."""
    prompt = (
        CLASSIFY_PROMPTS[0]
        if rng is None
        else CLASSIFY_PROMPTS[int(rng.integers(len(CLASSIFY_PROMPTS)))]
    )
    return QA(prompt, class_name, "scene")


def corpus_texts(extra_answers: Iterable[str] = ()) -> list[str]:
    """Every prompt/answer the generators of QA_TASKS can produce (captions: one per
    scene/object/count), in a fixed order; the tokenizer is trained on it (with
    grounding_corpus when box tasks are trained)."""
    texts: list[str] = []
    texts += SCENE_TEMPLATES + RURAL_URBAN_TEMPLATES + CAPTION_TEMPLATES + CLASSIFY_PROMPTS
    for obj in scenes.OBJECTS:
        texts += [t.format(a_obj=_a(obj)) for t in PRESENCE_TEMPLATES]
        texts += [t.format(objs=_plural(obj)) for t in COUNT_TEMPLATES]
    for a, b in itertools.permutations(scenes.OBJECTS, 2):
        texts += [t.format(objs_a=_plural(a), objs_b=_plural(b)) for t in COMPARISON_TEMPLATES]
    texts += list(scenes.SCENES) + list(scenes.LANDCOVERS) + list(scenes.OBJECTS)
    texts += list(scenes.OBJECT_PLURALS.values()) + list(scenes.RURAL_URBAN) + ["yes", "no"]
    texts += [count_answer(n) for n in range(scenes.MAX_COUNT + 1)]
    for scene in scenes.SCENES:
        for obj in scenes.OBJECTS:
            for n in (1, 2):
                texts.append(caption_from_labels(scene, {obj: n}, scenes.LANDCOVERS[:2]))
    texts += list(extra_answers)
    return texts
