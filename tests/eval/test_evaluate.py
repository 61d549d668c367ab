"""The evaluator end to end on a step-0 checkpoint, with generation replaced by an oracle:
answers are decoded, matched to their references and aggregated correctly into eval.json,
and retrieval hit rates are counted over the rows that were actually retrieved for."""

import collections
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from rs_jax.config_files import load_config
from rs_jax.eval import evaluate as evaluate_lib
from rs_jax.eval import figures
from rs_jax.train import experiment as experiment_lib
from rs_jax.train.checkpointing import Checkpointer

REPO = Path(__file__).resolve().parents[2]
NUM_TEST = 3  # images; about 8 questions each: two eval batches of 16, the last padded


def run_overrides(workdir):
    """The `run` fixture's config overrides."""
    return [
        f"data.data_dir={Path(workdir) / 'data'}",
        "data.num_train=8",
        f"data.num_test={NUM_TEST}",
        # The oracle hands back the whole answer row: generation must be as long.
        "eval.max_new_tokens=8",
        "data.max_answer_len=8",
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny config and a workdir holding its freshly initialised state as step 0."""
    workdir = tmp_path_factory.mktemp("eval")
    config = load_config(str(REPO / "configs/tiny.py"), run_overrides(workdir))
    exp = experiment_lib.setup(config, str(workdir))
    checkpointer = Checkpointer(workdir)
    checkpointer.save(0, exp.state)
    checkpointer.wait()
    checkpointer.close()
    # Reference per eval question, read from the records rather than from the batches.
    references = [
        (qa.task, qa.answer)
        for i in range(len(exp.data.eval_records))
        for qa in exp.data.eval_records[i]["qas"]
        if qa.task in config.data.tasks
    ]
    return config, str(workdir), references


def oracle(rows):
    """A greedy_generate stand-in: the reference answer ids on the rows `rows(batch)`
    selects, nothing (all padding) on the others."""

    def generate(model, visual, batch, *, max_new_tokens, eos_id, pad_id, use_cache=True):
        answers = batch["answer_ids"]
        assert answers.shape[1] == max_new_tokens
        return jnp.where(rows(batch)[:, None], answers, pad_id).astype(answers.dtype)

    return generate


class FixedRetriever:
    """A host-side retriever stand-in (kb_ids on every batch) whose hits are known: per
    level, the first retrieved id is a ground-truth entry on rows 0, 3, 6, ... of a batch,
    the second on rows 1, 4, ..., neither on the others (where the level leaves room).

    tally[level] = [hit@1, hit@k, labelled] over valid rows, by set membership."""

    def __init__(self, exp):
        self.exp = exp
        self.row_of_label = exp.knowledge.row_of_label
        self.k = exp.model_config.kb.top_k
        self.levels = [(level.name, level.kb_level) for level in exp.model_config.levels]
        self.members = {
            kb_level: [n for n, e in enumerate(exp.knowledge.entries) if e.level == kb_level]
            for _, kb_level in self.levels
        }
        self.tally = {name: np.zeros(3, int) for name, _ in self.levels}

    def map_batch(self, batch):
        rows = len(batch["valid"])
        kb_ids = np.zeros((rows, len(self.levels), self.k), np.int32)
        for r in range(rows):
            labels = {int(self.row_of_label[x]) for x in batch["kb_labels"][r] if x >= 0}
            for i, (name, kb_level) in enumerate(self.levels):
                members = self.members[kb_level]
                true = [n for n in members if n in labels]
                wrong = [n for n in members if n not in labels]
                ids = wrong[: self.k]
                if true and r % 3 < 2:
                    ids.insert(r % 3, true[0])
                ids = (ids + members)[: self.k]
                kb_ids[r, i] = ids
                if batch["valid"][r]:
                    hits = [n in labels for n in ids]
                    self.tally[name] += [hits[0], any(hits), bool(true)]
        return {**batch, "kb_ids": kb_ids}


def evaluate_with(monkeypatch, run, rows):
    """evaluate() with the oracle answering `rows` and retrieval by a FixedRetriever."""
    config, workdir, _ = run
    retrievers = []

    def setup(*args, **kwargs):
        exp = real_setup(*args, **kwargs)
        exp.data.host_retriever = FixedRetriever(exp)
        retrievers.append(exp.data.host_retriever)
        return exp

    real_setup = experiment_lib.setup
    monkeypatch.setattr(experiment_lib, "setup", setup)
    monkeypatch.setattr(evaluate_lib, "greedy_generate", oracle(rows))
    results = evaluate_lib.evaluate(config, workdir)
    assert json.loads((Path(workdir) / "eval.json").read_text()) == results
    (retriever,) = retrievers
    return results, retriever


def test_reference_answers_score_one_with_counts_and_chance(monkeypatch, run):
    _, _, references = run
    results, retriever = evaluate_with(monkeypatch, run, lambda b: jnp.ones_like(b["valid"], bool))
    per_task = collections.Counter(task for task, _ in references)
    answers = collections.defaultdict(collections.Counter)
    for task, answer in references:
        answers[task][answer] += 1
    assert results["count"] == len(references) > 16  # more than one eval batch
    assert set(results["tasks"]) == set(per_task)
    for task, row in results["tasks"].items():
        assert row["accuracy"] == 1.0, task
        assert row["count"] == per_task[task], task
        assert row["chance"] == pytest.approx(max(answers[task].values()) / per_task[task])
    assert results["overall_accuracy"] == results["mean_accuracy"] == 1.0
    assert (results["step"], results["model"]) == (0, "full")
    # The model's size is that of the parameters restored (what the checkpoint holds).
    params = retriever.exp.state["params"]
    assert results["parameters"] == sum(np.prod(x.shape) for x in jax.tree.leaves(params)) > 0
    assert results["train_flops_per_example"] > 3 * 2 * results["parameters"]
    samples = results["samples"]
    assert len(samples) == 12 and all(s["correct"] for s in samples)
    # The decoded text is the reference itself, not merely equal after normalisation.
    assert [s["prediction"] for s in samples] == [s["answer"] for s in samples]


def test_empty_answers_score_zero(monkeypatch, run):
    results, _ = evaluate_with(monkeypatch, run, lambda b: jnp.zeros_like(b["valid"], bool))
    assert results["count"] == len(run[2])
    assert all(row["accuracy"] == 0.0 for row in results["tasks"].values())
    assert results["overall_accuracy"] == results["mean_accuracy"] == 0.0
    assert not any(s["correct"] for s in results["samples"])


def test_every_third_row_answered_and_retrieval_hit_rates(monkeypatch, run):
    """Rows 0, 3, 6, ... of each eval batch answered: per-task accuracy, their mean and the
    question-weighted overall are those of these positions of the question list; hit@1 /
    hit@k / labelled per level are the FixedRetriever's own tally."""
    config, _, references = run
    results, retriever = evaluate_with(
        monkeypatch, run, lambda b: jnp.arange(b["valid"].shape[0]) % 3 == 0
    )
    right, total = collections.Counter(), collections.Counter()
    for position, (task, _) in enumerate(references):
        right[task] += position % config.eval.batch_size % 3 == 0
        total[task] += 1
    want = {task: right[task] / total[task] for task in total}
    assert {task: row["accuracy"] for task, row in results["tasks"].items()} == pytest.approx(want)
    assert results["mean_accuracy"] == pytest.approx(sum(want.values()) / len(want))
    assert results["overall_accuracy"] == pytest.approx(sum(right.values()) / len(references))
    # The two aggregates differ here, so swapping them would be caught.
    assert abs(results["mean_accuracy"] - results["overall_accuracy"]) > 1e-3

    k = config.model.kb.top_k
    assert set(results["retrieval"]) == set(retriever.tally)
    for name, (hit_1, hit_k, labelled) in retriever.tally.items():
        row = results["retrieval"][name]
        assert {key: row[key] for key in ("hit@1", f"hit@{k}", "labelled")} == {
            "hit@1": pytest.approx(hit_1 / labelled),
            f"hit@{k}": pytest.approx(hit_k / labelled),
            "labelled": labelled,
        }, name
        # The oracle answers exactly the rows whose first cue is right: answers are right
        # whenever the level's top cue is, and wrong whenever it is not.
        assert row["answers_when_hit@1"] == {"accuracy": 1.0, "count": hit_1}, name
        assert row["answers_when_missed"] == {"accuracy": 0.0, "count": labelled - hit_1}, name
    assert results["cues"] == "retrieved"
    assert (Path(run[1]) / results["retrieval_figure"]).stat().st_size > 0
    # Every image has a scene: all questions labelled, a third of them hit first, two
    # thirds within k; the case distinguishes hit@1 from hit@k.
    hit_1, hit_k, labelled = retriever.tally["scene"]
    assert labelled == len(references) and 0 < hit_1 < hit_k < labelled
    usage = results["expert_usage"]
    assert set(usage) == set(retriever.tally)
    for shares in usage.values():
        assert len(shares) == config.model.experts.experts_per_level
        assert sum(shares) == pytest.approx(1.0)
    assert 0.0 <= results["expert_dropped_fraction"] <= 1.0


def test_random_cues_are_level_entries_and_their_results_go_to_their_own_folder(run):
    config, workdir, _ = run
    main = Path(workdir) / "eval.json"  # the retrieved-cue results, if any: left as they are

    def main_results():
        return main.read_bytes() if main.exists() else None

    before = main_results()
    shuffled = load_config(
        str(REPO / "configs/tiny.py"), [*run_overrides(workdir), "eval.cues=random"]
    )
    exp = experiment_lib.setup(shuffled, str(workdir), abstract=True)
    ids = evaluate_lib._random_cues(exp, 64, np.random.default_rng(0))
    levels = np.array([entry.level for entry in exp.knowledge.entries])
    for i, level in enumerate(exp.model_config.levels):
        members = set(np.flatnonzero(levels == level.kb_level))
        assert set(ids[:, i].ravel()) == members  # every entry of the level drawn, no other
        assert all(len(set(row)) == len(row) for row in ids[:, i])  # no repeats in a row
    results = evaluate_lib.evaluate(shuffled, workdir)
    assert results["cues"] == "random"
    written = json.loads((Path(workdir) / "eval_random_cues" / "eval.json").read_text())
    assert written == results
    assert main_results() == before
    with pytest.raises(ValueError, match="config.eval.cues='random' replaces retrieved cues"):
        evaluate_lib.evaluate(
            load_config(str(REPO / "configs/tiny.py:baseline"), ["eval.cues=random"]), workdir
        )


def _write_mixture(root: Path) -> None:
    """Three tiny sources in their formats: classification folders (2 classes), VQA lines
    (two question types) and captions (two references per image)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    vqa, captions = [], []
    for split, n in (("train", 4), ("test", 3)):
        for cls in ("Forest", "SeaLake"):
            for i in range(n):
                path = root / "folder" / split / cls / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(path)
                image = str(path.relative_to(root))
                vqa.append(dict(image=image, split=split, question="Is there water?",
                                answer="yes" if cls == "SeaLake" else "no",
                                question_type="presence"))  # fmt: skip
                if i == 0:
                    vqa.append(dict(image=image, split=split, question="How many ships?",
                                    answer=str(i + 2), question_type="count"))  # fmt: skip
                captions.append(dict(image=image, split=split, label=cls, captions=[
                    f"a {cls.lower()} scene .", f"an image of {cls.lower()} ."]))  # fmt: skip
    for name, rows in (("vqa.jsonl", vqa), ("captions.jsonl", captions)):
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def mixture_run(tmp_path_factory):
    from configs.common import source

    root = tmp_path_factory.mktemp("mixture")
    _write_mixture(root)
    workdir = root / "run"
    config = load_config(
        str(REPO / "configs/tiny.py:baseline"),  # scoring, not the model, is under test
        [
            f"data.data_dir={workdir / 'data'}",
            "data.max_prompt_len=32",
            "data.max_answer_len=8",
            "eval.max_new_tokens=8",
        ],
    )
    config.unlock()
    config.data.name = "sources"
    config.data.sources = dict(
        classify=source("folder", str(root / "folder")),
        vqa=source("vqa_jsonl", str(root / "vqa.jsonl")),
        captions=source("captions", str(root / "captions.jsonl")),
    )
    config.lock()
    exp = experiment_lib.setup(config, str(workdir))
    checkpointer = Checkpointer(workdir)
    checkpointer.save(0, exp.state)
    checkpointer.wait()
    checkpointer.close()
    return config, str(workdir), None


def test_each_source_scored_by_its_protocol(monkeypatch, mixture_run):
    """Reference answers everywhere: classification, VQA per type and captions all perfect,
    each under its own protocol, with the confusion matrix drawn and eval.md written."""
    _, workdir, _ = mixture_run
    monkeypatch.setattr(evaluate_lib, "greedy_generate", oracle(lambda b: b["valid"] > 0))
    results = evaluate_lib.evaluate(mixture_run[0], workdir)
    sources = results["sources"]
    assert {name: row["protocol"] for name, row in sources.items()} == {
        "classify": "classification",
        "vqa": "vqa",
        "captions": "captioning",
    }
    classify = sources["classify"]
    assert classify["accuracy"] == classify["balanced_accuracy"] == 1.0
    assert classify["confusion_matrix"] == [[3, 0, 0], [0, 3, 0]]  # rows: forest, sea lake
    assert (Path(workdir) / classify["figure"]).stat().st_size > 0
    vqa = sources["vqa"]
    assert vqa["per_type"]["presence"]["count"] == 6 and vqa["per_type"]["count"]["count"] == 2
    assert vqa["mean_of_types"] == vqa["overall"] == 1.0
    # The first reference decoded by the tokenizer, against both references: BLEU-1 is 1.
    assert sources["captions"]["count"] == 6
    assert sources["captions"]["BLEU-1"] == pytest.approx(1.0, abs=1e-6)
    assert set(results["tasks"]) == {"classify/scene", "vqa/presence", "vqa/count"}
    md = (Path(workdir) / "eval.md").read_text()
    for heading in ("## classify (classification)", "## vqa (vqa)", "## captions (captioning)"):
        assert heading in md
    assert results["notes"] == []


def test_vqa_averages_differ_when_types_differ(monkeypatch, mixture_run):
    """Only presence questions answered: the mean of types (1 + 0) / 2 and the
    question-weighted overall 6 / 8 are RSVQA's two different averages; a limited eval says
    how many it scored."""
    config, workdir, _ = mixture_run
    exp_tasks = {}

    def only_presence(batch):
        return batch["task_id"] == exp_tasks["tasks"].index("vqa/presence")

    real_setup = experiment_lib.setup

    def setup(*args, **kwargs):
        exp = real_setup(*args, **kwargs)
        exp_tasks["tasks"] = exp.data.tasks
        return exp

    monkeypatch.setattr(experiment_lib, "setup", setup)
    monkeypatch.setattr(evaluate_lib, "greedy_generate", oracle(only_presence))
    vqa = evaluate_lib.evaluate(config, workdir)["sources"]["vqa"]
    assert vqa["per_type"]["presence"]["accuracy"] == 1.0
    assert vqa["per_type"]["count"]["accuracy"] == 0.0
    assert vqa["mean_of_types"] == pytest.approx(0.5)
    assert vqa["overall"] == pytest.approx(6 / 8)

    with config.unlocked():
        config.eval.num_examples = 5
    try:
        results = evaluate_lib.evaluate(config, workdir)
    finally:
        with config.unlocked():
            config.eval.num_examples = -1
    scored = results["count"] + results["sources"]["captions"]["count"]
    assert scored == 5
    assert results["notes"] == ["scored 5 of the 20 eval examples: config.eval.num_examples=5"]


@pytest.fixture(scope="module")
def grounding_run(tmp_path_factory):
    """A tiny rs_synth run on the box tasks, its step 0 saved."""
    workdir = tmp_path_factory.mktemp("grounding")
    config = load_config(
        str(REPO / "configs/tiny.py:baseline"),  # scoring, not the model, is under test
        [
            f"data.data_dir={workdir / 'data'}",
            "data.num_train=8",
            "data.num_test=6",
            "data.tasks=('grounding','region_caption')",
            "data.max_answer_len=20",  # a box, its stop token: 19
            "eval.max_new_tokens=20",
        ],
    )
    exp = experiment_lib.setup(config, str(workdir))
    checkpointer = Checkpointer(workdir)
    checkpointer.save(0, exp.state)
    checkpointer.wait()
    checkpointer.close()
    return config, str(workdir), exp.data.tasks


def test_box_answers_scored_by_iou_and_drawn(monkeypatch, grounding_run):
    """Every other grounding question of a batch and every region caption answered with
    the reference: grounding questions score by IoU (hits exactly there), region captions
    by exact match, and the first box answers are drawn: the reference in green, answered
    ones in red over it."""
    config, workdir, tasks = grounding_run

    def answered(batch):
        boxed = batch["task_id"] == tasks.index("grounding")
        return ~boxed | (jnp.cumsum(boxed) % 2 == 1)

    monkeypatch.setattr(evaluate_lib, "greedy_generate", oracle(answered))
    results = evaluate_lib.evaluate(config, workdir)
    synth = results["sources"]["rs_synth"]
    assert set(synth["per_type"]) == {"region_caption"}  # boxes are not matched as text
    assert synth["per_type"]["region_caption"]["accuracy"] == 1.0
    grounding = synth["grounding"]
    hits = [s["correct"] for s in results["samples"] if s["task"] == "grounding"]
    assert hits and grounding["count"] >= len(hits)
    assert (
        grounding["acc@0.5"] == pytest.approx(grounding["recall@0.5"])
        and 0 < grounding["acc@0.5"] < 1
    )
    assert grounding["no_box"] == grounding["count"] - grounding["boxes"]["matched"]
    figure = Path(workdir) / synth["grounding_figure"]
    assert figure.name == "grounding_rs_synth.png"
    sheet = np.asarray(Image.open(figure).convert("RGB"))
    shown = min(grounding["count"], evaluate_lib.GROUNDING_EXAMPLES)
    assert sheet.shape == (figures.TILE + 40, shown * figures.TILE, 3)
    colours = {c: (sheet == c).all(-1).sum() for c in (figures.PREDICTED, figures.REFERENCE)}
    assert min(colours.values()) > 0, colours
    assert f"]({figure.name})" in (Path(workdir) / "eval.md").read_text()
