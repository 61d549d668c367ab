"""Evaluation of the latest checkpoint: generated answers scored by each source's protocol
(rs_jax/eval/protocols.py), retrieval hit rates per level and expert usage per level,
printed and written to <workdir>/eval.json and eval.md (with confusion-matrix, expert-usage
and grounding pictures: grounding_<source>.png, the first GROUNDING_EXAMPLES box answers of
a source with the predicted boxes in red and the reference in green)."""

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath
from flax import nnx

from rs_jax.data.boxes import parse
from rs_jax.data.sources import Protocol
from rs_jax.data.tasks import BOX_TASKS
from rs_jax.eval.captions import METRICS as CAPTION_METRICS
from rs_jax.eval.figures import Example, answers_by_hit_figure, grounding_sheet
from rs_jax.eval.generation import greedy_generate
from rs_jax.eval.metrics import format_table
from rs_jax.eval.protocols import Scorer, markdown
from rs_jax.eval.zero_shot import zero_shot
from rs_jax.files import is_local, write_text_whole
from rs_jax.models.config import ModelConfig
from rs_jax.models.flops import train_flops_per_example
from rs_jax.models.retrieval import hits_at_k
from rs_jax.train import experiment as experiment_lib
from rs_jax.train.charts import expert_usage_figure
from rs_jax.train.checkpointing import open_latest
from rs_jax.train.progress import ProgressLine

GROUNDING_EXAMPLES = 6  # per source, drawn into grounding_<source>.png
SAMPLES = 12  # answers shown in eval.json with their question and reference


def make_eval_step(exp: experiment_lib.Experiment):
    """Jitted (params, batch) -> answers, retrieved ids/scores and hits per level, expert counts."""
    graphdef, data, config = exp.graphdef, exp.data, exp.config

    def eval_step(params, batch):
        with nnx.logical_axis_rules(exp.rules):
            return generate(params, batch)

    def generate(params, batch):
        model = nnx.merge(graphdef, params)
        visual = model.encode(
            batch["image"], batch["prompt_ids"], batch["prompt_mask"], batch.get("kb_ids")
        )
        answers = greedy_generate(
            model,
            visual.tokens,
            batch,
            max_new_tokens=config.eval.max_new_tokens,
            eos_id=data.eos_id,
            pad_id=data.pad_id,
        )
        out = {"answers": answers}
        for level, found in enumerate(visual.retrieved):
            out[f"ids/{level}"], out[f"scores/{level}"] = found.ids, found.scores
            labels = batch["kb_labels"][:, level]
            out[f"hit@1/{level}"] = hits_at_k(found.ids[:, :1], labels)
            out[f"hit@k/{level}"] = hits_at_k(found.ids, labels)
            out[f"labelled/{level}"] = (labels >= 0).any(-1)
        if visual.routing is not None:
            out["expert_counts"] = visual.routing.expert_counts
            out["dropped_fraction"] = visual.routing.dropped_fraction
        return out

    return jax.jit(eval_step, in_shardings=(exp.state_shardings["params"], None))


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Scores the latest checkpoint in `workdir` on the eval split; writes eval.json,
    eval.md and the pictures there (with config.eval.cues="random", in
    <workdir>/eval_random_cues), prints the tables and returns the results."""
    cues = config.eval.get("cues", "retrieved")
    model = ModelConfig.from_config(config.model, config.data.image_size)
    if cues == "random" and not model.retrieves:
        raise ValueError(
            f"config.eval.cues='random' replaces retrieved cues, but this {model.variant} "
            "model retrieves none"
        )
    exp, params, step = _restore_latest(config, workdir)
    out_dir = epath.Path(workdir) / ("eval_random_cues" if cues == "random" else "")
    out_dir.mkdir(exist_ok=True)
    box_format = config.data.get("box_format", "geochat")
    scorer = Scorer(exp.data.eval_sources, box_format)
    if config.train.get("objective", "answer") == "align":
        return _evaluate_alignment(config, exp, params, step, scorer, out_dir)
    tally = _generate_and_score(config, exp, params, scorer, box_format)
    results = _results(config, exp, step, scorer, tally, out_dir)
    write_text_whole(out_dir / "eval.json", json.dumps(results, indent=2))
    write_text_whole(out_dir / "eval.md", markdown(results))
    _print_report(results, config)
    return results


def _evaluate_alignment(
    config: ml_collections.ConfigDict,
    exp: experiment_lib.Experiment,
    params: Any,
    step: int,
    scorer: Scorer,
    out_dir: epath.Path,
) -> dict[str, Any]:
    """An aligned model answers nothing yet: its eval is zero-shot classification."""
    results = {"step": step, "model": exp.model_config.variant, "objective": "align"}
    results["zero_shot"] = zero_shot(config, exp, params, scorer)
    lines = [f"# Zero-shot classification at step {step}", ""]
    lines += [
        "| source | accuracy (KB descriptions) | accuracy (name prompts) | images | classes |",
        "|---|---|---|---|---|",
    ]
    for source, r in results["zero_shot"].items():
        accuracy, names = (
            "-" if v is None else f"{v:.3f}" for v in (r["accuracy"], r["accuracy_names"])
        )
        lines.append(f"| {source} | {accuracy} | {names} | {r['count']} | {r['classes']} |")
    write_text_whole(out_dir / "eval.json", json.dumps(results, indent=2))
    write_text_whole(out_dir / "eval.md", "\n".join(lines) + "\n")
    print("\n".join(lines[2:]) + "\n(written to eval.json, eval.md)")
    return results


def _restore_latest(
    config: ml_collections.ConfigDict, workdir: str
) -> tuple[experiment_lib.Experiment, Any, int]:
    """(the experiment, set up without initialising, its latest parameters, their step)."""
    checkpointer, step = open_latest(workdir)
    # Found now, not after the whole evaluation (a bucket's permissions show only on write).
    if is_local(workdir) and not os.access(workdir, os.W_OK):
        checkpointer.close()
        raise FileExistsError(
            f"--workdir {workdir} is not writable; eval writes eval.json and its charts there"
        )
    exp = experiment_lib.setup(config, workdir, abstract=True)
    checkpointer.check_knowledge(step, exp.knowledge.sha256, exp.knowledge.source)
    params = checkpointer.restore_params(step, exp.state["params"])
    checkpointer.close()
    return exp, params, step


@dataclasses.dataclass
class _Tally:
    """What evaluation gathers batch by batch besides the scorer's answers."""

    level_names: list[str]  # the levels that retrieve
    hits: dict[str, np.ndarray]  # level -> [hit@1, hit@k, labelled] rows
    # Level -> [[wrong, right] answers when hit@1 missed, [wrong, right] when it hit], over
    # labelled rows scored by exact match.
    answers_by_hit: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    expert_counts: Any = 0.0
    # Per batch: the share of expert assignments over capacity.
    dropped: list[float] = dataclasses.field(default_factory=list)
    samples: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # Source -> its first box answers.
    drawn: dict[str, list[Example]] = dataclasses.field(default_factory=dict)
    scored: int = 0  # valid rows: padding rows of the last batch do not count

    def add_retrieval_and_routing(
        self, out: dict[str, Any], valid: np.ndarray, right: np.ndarray, exact: np.ndarray
    ) -> None:
        """One batch's retrieval hits per level, answers by hit, and expert counts. right /
        exact [B]: the row's answer is right / is scored by exact match."""
        for level, name in enumerate(self.level_names):
            labelled = out[f"labelled/{level}"] & valid
            self.hits[name] += [
                (out[f"hit@1/{level}"] & labelled).sum(),
                (out[f"hit@k/{level}"] & labelled).sum(),
                labelled.sum(),
            ]
            counted = labelled & exact
            table = self.answers_by_hit.setdefault(name, np.zeros((2, 2), int))
            hit = out[f"hit@1/{level}"][counted].astype(int)
            np.add.at(table, (hit, right[counted].astype(int)), 1)
        # Padded rows of the last batch are routed too; their share is at most one batch.
        self.expert_counts = self.expert_counts + out.get("expert_counts", 0.0)
        if "dropped_fraction" in out:
            self.dropped.append(float(out["dropped_fraction"]))
        self.scored += int(valid.sum())


def _generate_and_score(
    config: ml_collections.ConfigDict,
    exp: experiment_lib.Experiment,
    params: Any,
    scorer: Scorer,
    box_format: str,
) -> _Tally:
    """Answers to every eval question, scored, with retrieval and routing gathered."""
    eval_step = make_eval_step(exp)
    level_names = list(exp.model_config.level_names) if exp.model_config.retrieves else []
    tally = _Tally(level_names, hits={name: np.zeros(3) for name in level_names})
    batches = list(exp.data.eval_batches(config.eval.batch_size, config.eval.num_examples))
    progress = ProgressLine(len(batches), 0, max(len(batches) // 5, 1))
    random_cues = (
        np.random.default_rng(config.seed) if config.eval.get("cues") == "random" else None
    )
    with jax.set_mesh(exp.mesh):
        for i, batch in enumerate(batches, start=1):
            if random_cues is not None:
                batch = {**batch, "kb_ids": _random_cues(exp, len(batch["valid"]), random_cues)}
            out = jax.device_get(eval_step(params, exp.shard_batch(batch)))
            texts = exp.data.tokenizer.batch_decode(out["answers"], skip_special_tokens=True)
            valid = batch["valid"] > 0
            right, exact = np.zeros_like(valid), np.zeros_like(valid)
            for row in np.flatnonzero(valid):
                right[row] = _score_answer(exp, scorer, tally, batch, row, texts[row], box_format)
                exact[row] = scorer.exact_match(exp.data.tasks[batch["task_id"][row]])
            tally.add_retrieval_and_routing(out, valid, right, exact)
            progress.update(i, {}, int(valid.sum()))
    return tally


def _random_cues(exp: experiment_lib.Experiment, rows: int, rng: np.random.Generator) -> np.ndarray:
    """KB rows [rows, L, k] drawn at random from each level's entries, without repeats in a
    row: what the model would see if retrieval told it nothing."""
    model = exp.model_config
    entry_levels = np.array([entry.level for entry in exp.knowledge.entries])
    ids = np.zeros((rows, len(model.levels), model.kb.top_k), np.int32)
    for i, level in enumerate(model.levels):
        members = np.flatnonzero(entry_levels == level.kb_level)
        order = np.argsort(rng.random((rows, len(members))), axis=1)[:, : model.kb.top_k]
        ids[:, i] = members[order]
    return ids


def _score_answer(
    exp: experiment_lib.Experiment,
    scorer: Scorer,
    tally: _Tally,
    batch: dict[str, Any],
    row: int,
    prediction: str,
    box_format: str,
) -> bool:
    """Scores the answer of one row (returns whether it is right); the first box answers of
    a source are kept to draw, the first answers of all as samples."""
    task = exp.data.tasks[batch["task_id"][row]]
    answer = str(batch["answer_text"][row])
    hit = scorer.add(task, prediction, answer, batch["references"][row])
    source = scorer.grounding_source(task)
    if source is not None and len(tally.drawn.setdefault(source, [])) < GROUNDING_EXAMPLES:
        tally.drawn[source].append(
            Example(
                batch["image"][row],
                str(batch["question_text"][row]),
                parse(prediction, box_format),
                parse(answer, box_format),
            )
        )
    if len(tally.samples) < SAMPLES:
        tally.samples.append(
            {
                "task": task,
                "question": str(batch["question_text"][row]),
                "answer": answer,
                "prediction": prediction,
                "correct": bool(hit),
            }
        )
    return bool(hit)


def _results(
    config: ml_collections.ConfigDict,
    exp: experiment_lib.Experiment,
    step: int,
    scorer: Scorer,
    tally: _Tally,
    workdir: epath.Path,
) -> dict[str, Any]:
    """eval.json's content; the pictures are written to workdir on the way."""
    data = config.data
    text_tokens = len(exp.data.encoder.prefix_ids) + data.max_prompt_len + data.max_answer_len
    results: dict[str, Any] = {
        "step": step,
        "model": exp.model_config.variant,
        "parameters": sum(int(np.prod(x.shape)) for x in jax.tree.leaves(exp.state["params"])),
        "train_flops_per_example": train_flops_per_example(
            exp.model_config, text_tokens, data.max_answer_len
        ),
    }
    results |= scorer.results(workdir)
    for source, examples in tally.drawn.items():
        file = f"grounding_{source}.png"
        with (workdir / file).open("wb") as f:
            grounding_sheet(examples).save(f, format="png")
        results["sources"][source]["grounding_figure"] = file
    # An evaluation never scores fewer examples than it was given without saying so.
    given = exp.data.num_eval_examples
    notes = []
    if tally.scored < given:
        notes.append(
            f"scored {tally.scored} of the {given} eval examples: config.eval.num_examples="
            f"{config.eval.num_examples}"
        )
    results["retrieval"] = {
        name: {
            "hit@1": float(h[0] / h[2]),
            f"hit@{config.model.kb.top_k}": float(h[1] / h[2]),
            "labelled": int(h[2]),
        }
        for name, h in tally.hits.items()
        if h[2] > 0
    }
    if results["retrieval"]:
        results["cues"] = config.eval.get("cues", "retrieved")
        results |= _answers_by_hit(tally, results["retrieval"], workdir)
    if exp.model_config.has_semantic_experts:
        results |= _expert_usage(tally, exp.model_config.level_names, workdir)
    results["samples"] = tally.samples
    if exp.data.skips:  # what indexing left out: an eval never silently scores fewer images
        results["data"] = data = exp.data.skips["eval"]
        if data["skipped"]:
            notes.append(
                f"left out {len(data['skipped'])} unreadable images or bad records of the "
                f"{data['split']} split (config.data.allow_skips; listed in eval.json)"
            )
    results["notes"] = notes
    return results


def _answers_by_hit(
    tally: _Tally, retrieval: dict[str, dict[str, Any]], workdir: epath.Path
) -> dict[str, str]:
    """Per level, the accuracy of the exact-match answers when the level's top cue is a
    ground-truth entry and when it is not (into `retrieval`); drawn to
    workdir/retrieval_answers.png."""
    for name, table in tally.answers_by_hit.items():
        if name in retrieval:
            keys = ("answers_when_missed", "answers_when_hit@1")
            for key, (wrong, right) in zip(keys, table, strict=True):
                count = int(wrong + right)
                retrieval[name][key] = {
                    "accuracy": float(right / count) if count else None,
                    "count": count,
                }
    fig = answers_by_hit_figure(retrieval)
    with (workdir / "retrieval_answers.png").open("wb") as f:
        fig.savefig(f, format="png", dpi=100)
    return {"retrieval_figure": "retrieval_answers.png"}


def _expert_usage(tally: _Tally, level_names: Sequence[str], workdir: epath.Path) -> dict[str, Any]:
    """Each level's share of tokens per expert and the share dropped over capacity; the
    usage is drawn to workdir/expert_usage.png."""
    counts = np.asarray(tally.expert_counts)
    usage = counts / np.maximum(counts.sum(-1, keepdims=True), 1)
    expert_usage = {name: usage[i].tolist() for i, name in enumerate(level_names)}
    fig = expert_usage_figure(expert_usage)
    with (workdir / "expert_usage.png").open("wb") as f:
        fig.savefig(f, format="png", dpi=100)
    return {
        "expert_usage": expert_usage,
        "expert_dropped_fraction": float(np.mean(tally.dropped)) if tally.dropped else 0.0,
    }


def _print_report(results: dict[str, Any], config: ml_collections.ConfigDict) -> None:
    print(f"\nEvaluation at step {results['step']} ({results['model']} model)")
    print(format_table(results))
    if results.get("cues") == "random":
        print("retrieval: cues drawn at random from each level's entries (config.eval.cues)")
    for name, r in results.get("retrieval", {}).items():
        hits = [f"{k} {v:.3f}" for k, v in r.items() if k.startswith("hit@")]
        answers = [
            f"{r[k]['accuracy']:.3f} {when} (n={r[k]['count']})"
            for k, when in (("answers_when_hit@1", "when hit@1"), ("answers_when_missed", "missed"))
            if r.get(k, {}).get("accuracy") is not None
        ]
        shown = "  ".join(hits) + (f"  | answers right {', '.join(answers)}" if answers else "")
        print(f"retrieval {name:<10} {shown}")
    for name, usage in results.get("expert_usage", {}).items():
        print(f"experts   {name:<10} " + " ".join(f"{u:.2f}" for u in usage))
    if "expert_dropped_fraction" in results:
        print(f"experts   dropped over capacity {results['expert_dropped_fraction']:.3f}")
    for name, r in results["sources"].items():
        if r["protocol"] == Protocol.CLASSIFICATION and r["count"]:
            print(
                f"{name:<19} accuracy {r['accuracy']:.3f}  balanced accuracy "
                f"{r['balanced_accuracy']:.3f}  ({r.get('figure', '')})"
            )
        elif r["protocol"] == Protocol.VQA:
            if len(results["sources"]) > 1:
                print(
                    f"{name:<19} mean of types {r['mean_of_types']:.3f}  overall {r['overall']:.3f}"
                )
            for box_task in (t for t in BOX_TASKS if t in r):  # its box answers, by IoU
                print(f"{name + ' ' + box_task:<19} {_grounding_line(r[box_task])}")
        elif r["protocol"] == Protocol.GROUNDING and r["count"]:
            print(f"{name:<19} {_grounding_line(r)}")
        elif r["protocol"] == Protocol.CAPTIONING and r["count"]:
            shown = [f"{m} {'n/a' if r[m] is None else f'{r[m]:.3f}'}" for m in CAPTION_METRICS]
            print(f"{name:<19} " + "  ".join(shown))
    for note in results["notes"]:
        print(f"note      {note}")
    data = results.get("data")
    if data and (data["skipped"] or data["unsupported"]):
        print(
            f"data      {data['split']} split: {data['images']} images scored; left out "
            f"{len(data['skipped'])} unreadable and {len(data['unsupported'])} unsupported "
            f"files (listed in eval.json)"
        )
    figures = [results[key] for key in ("retrieval_figure",) if key in results]
    figures += ["expert_usage.png"] * ("expert_usage" in results)
    where = " in eval_random_cues/" if results.get("cues") == "random" else ""
    print(f"(written to eval.json, eval.md{''.join(', ' + f for f in figures)}{where})")


def _grounding_line(r: dict[str, Any]) -> str:
    return (
        f"acc@0.5 {r['acc@0.5']:.3f}  acc@0.25 {r['acc@0.25']:.3f}  mean IoU "
        f"{r['mean_iou']:.3f}  precision@0.5 {r['precision@0.5']:.3f}  recall@0.5 "
        f"{r['recall@0.5']:.3f}  (n={r['count']})"
    )
