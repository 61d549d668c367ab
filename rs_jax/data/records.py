"""Record sources (one image with its questions and KB labels per index) and the examples
(model inputs) made from a record and one of its questions."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from rs_jax.data import boxes, scenes, sources
from rs_jax.data import tasks as tasks_lib
from rs_jax.data.images import Bands, load_image
from rs_jax.data.packs import SkippedRecord
from rs_jax.data.rs_synth import prepare_rs_synth
from rs_jax.data.text import TextEncoder

MAX_KB_LABELS = 24


def _kb_row(ids: Sequence[int]) -> np.ndarray:
    if len(ids) > MAX_KB_LABELS:
        raise ValueError(f"{len(ids)} KB labels exceed the {MAX_KB_LABELS} per image")
    row = np.full(MAX_KB_LABELS, -1, np.int32)
    row[: len(ids)] = ids
    return row


class SynthRecords:
    """rs_synth split as records {"image", "qas": [QA], "kb_labels": int32 [24]}: the stored
    questions, then the box tasks' (tasks.grounding_qas) with boxes in box_format.

    only_with: keep only the images with a question of one of these tasks (() = all).
    """

    def __init__(
        self,
        builder: Any,
        split: str,
        box_format: str = "geochat",
        only_with: tuple[str, ...] = (),
        _kept: list[int] | None = None,
    ):
        self._source = builder.as_data_source(split)
        self.split = split
        self.box_format = box_format
        self._kept = _kept
        # generate_qas asks every image a question of each of tasks.QA_TASKS; box tasks are
        # asked only where objects were drawn. Finding those reads every image once.
        if _kept is None and only_with and not set(only_with) & set(tasks_lib.QA_TASKS):
            self._kept = [
                i
                for i in range(len(self._source))
                if any(qa.task in only_with for qa in self._read(i)["qas"])
            ]
        cfg = builder.builder_config
        self._reopen_args = (
            os.fspath(builder.data_dir_root),
            cfg.image_size,
            cfg.num_train,
            cfg.num_test,
            cfg.seed,
        )

    def __reduce__(self):
        # Grain workers unpickle this; reopening through prepare_rs_synth (files exist,
        # nothing is regenerated) avoids TFDS re-validating a pickled builder.
        return _reopen_synth_records, (
            self._reopen_args,
            self.split,
            self.box_format,
            self._kept,
        )

    def __len__(self) -> int:
        return len(self._source) if self._kept is None else len(self._kept)

    def __getitem__(self, index: int) -> dict:
        return self._read(int(index) if self._kept is None else self._kept[int(index)])

    def _read(self, index: int) -> dict:
        ex = self._source[index]
        qa = ex["qa"]
        qas = [
            tasks_lib.QA(_str(q), _str(a), _str(t))
            for q, a, t in zip(qa["question"], qa["answer"], qa["task"], strict=True)
        ]
        objects = ex["objects"]
        named = [
            (scenes.OBJECTS[int(n)], boxes.Box(*(float(v) for v in b)))
            for n, b in zip(objects["name"], objects["box"], strict=True)
        ]
        # Their own random stream (the stored questions used [seed, 1]).
        rng = np.random.default_rng([int(ex["seed"]), 2])
        qas += tasks_lib.grounding_qas(named, self.box_format, rng)
        landcover = np.asarray(ex["landcover"])
        counts = np.asarray(ex["counts"])
        kb = _kb_row(
            [scenes.kb_id("scene", scenes.SCENES[int(ex["scene"])])]
            + [scenes.kb_id("landcover", n) for n, m in zip(scenes.LANDCOVERS, landcover) if m]
            + [scenes.kb_id("object", n) for n, c in zip(scenes.OBJECTS, counts) if c > 0]
        )
        return {"image": np.asarray(ex["image"], np.uint8), "qas": qas, "kb_labels": kb}

    def qas(self, index: int) -> list[tasks_lib.QA]:
        return self[index]["qas"]


def _reopen_synth_records(
    args: tuple, split: str, box_format: str, kept: list[int] | None
) -> SynthRecords:
    return SynthRecords(prepare_rs_synth(*args), split, box_format, _kept=kept)


class ItemRecords:
    """Items of data sources (rs_jax/data/sources) as records; images are decoded on access.

    kb_labels: per item, the KB ids of its classes.
    """

    def __init__(
        self,
        items: Sequence[sources.Item],
        kb_labels: Sequence[Sequence[int]],
        image_size: int,
        bands: Bands,
    ):
        self.items = list(items)
        self.kb_labels = [_kb_row(ids) for ids in kb_labels]
        self.image_size, self.bands = int(image_size), bands

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        image = load_image(self.items[index].image, self.image_size, self.bands)
        return {"image": image, "qas": self.qas(index), "kb_labels": self.kb_labels[index]}

    def qas(self, index: int) -> list[tasks_lib.QA]:
        """Questions without decoding the image."""
        return list(self.items[int(index)].qas)


def _str(x: Any) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def make_example(
    record: dict, qa: tasks_lib.QA, task_id: int, enc: TextEncoder, answer: str | None = None
) -> dict:
    """answer: the reply trained on (default qa.answer; one of qa.references for captions)."""
    prompt_ids, prompt_mask = enc.prompt(qa.question, qa.history)
    answer_ids, answer_mask = enc.answer(qa.answer if answer is None else answer)
    return {
        "image": record["image"],
        "prefix_ids": enc.prefix_ids,
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "answer_ids": answer_ids,
        "answer_mask": answer_mask,
        "task_id": np.int32(task_id),
        "kb_labels": record["kb_labels"],
        "valid": np.int32(1),
        # A host-side retriever embeds it; device code drops strings.
        "question_text": qa.question,
    }


class VisitExamples(grain.transforms.RandomMap):
    """The examples of one visit of a record, all made from its one decoded image.

    A conversation (questions with earlier rounds as history) trains every turn of the
    tasks trained, in order, as LLaVA trains a whole conversation per visit. Any other
    record gives one question: a task uniformly among those the image has, then a question
    of that task (and, where it has several references, one of them as the answer). The
    rng comes from Grain (seed + position): deterministic.
    """

    def __init__(self, tasks: tuple[str, ...], encoder: TextEncoder):
        self.tasks = tasks
        self.encoder = encoder

    def random_map(
        self, record: dict | SkippedRecord, rng: np.random.Generator
    ) -> list[dict | SkippedRecord]:
        if isinstance(record, SkippedRecord):  # counted where the stream is read
            return [record]
        trained = [qa for qa in record["qas"] if qa.task in self.tasks]
        if not trained:
            raise ValueError(f"Record has no question for tasks {self.tasks}")
        if not any(qa.history for qa in record["qas"]):
            trained = [_one_question(trained, self.tasks, rng)]
        return [
            make_example(record, qa, self.tasks.index(qa.task), self.encoder, _answer(qa, rng))
            for qa in trained
        ]


def _one_question(
    qas: list[tasks_lib.QA], tasks: tuple[str, ...], rng: np.random.Generator
) -> tasks_lib.QA:
    by_task: dict[str, list[tasks_lib.QA]] = {}
    for qa in qas:
        by_task.setdefault(qa.task, []).append(qa)
    task = sorted(by_task, key=tasks.index)[int(rng.integers(len(by_task)))]
    return by_task[task][int(rng.integers(len(by_task[task])))]


def _answer(qa: tasks_lib.QA, rng: np.random.Generator) -> str | None:
    return qa.references[int(rng.integers(len(qa.references)))] if qa.references else None
