"""Grain input pipeline: the bundle that assembles a dataset's records (data/records.py),
the tokenizer and the text encoding (data/text.py) into padded numpy batches for the trainer.

Batch contract (numpy, B = per-host batch):
  image        uint8  [B, S, S, 3]
  prefix_ids   int32  [B, P]   the template's text before the image (the same in every row;
                               P = 0 for the "plain" template)
  prompt_ids   int32  [B, Tp]  the question's turn after the image, LEFT-padded with pad_id
  prompt_mask  int32  [B, Tp]  1 on real tokens
  answer_ids   int32  [B, Ta]  RIGHT-padded; the reply, then the template's stop token
  answer_mask  int32  [B, Ta]  1 on answer tokens and the stop token
  task_id      int32  [B]      index into DataBundle.tasks
  kb_labels    int32  [B, 24]  ids into DataBundle.kb_entries of the classes present (any
                               level), -1 padded
  valid        int32  [B]      0 on eval padding rows
  question_text  str  [B]      the question (train: a numpy str array; eval: object)
  answer_text    object [B]    eval batches only ("" on padding rows, question_text too)
  references     object [B]    eval batches only: every accepted answer (a tuple; captions
                               have several)
  kb_ids       int32  [B, L, k] host-side retrieval only (DataBundle.host_retriever): KB rows
                               per model level
Tp = config.data.max_prompt_len, Ta = config.data.max_answer_len; texts that do
not fit raise ValueError (never truncated). The text follows config.data.template
(rs_jax/data/conversation.py): "plain" is [image] bos question | answer eos.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grain
import jax
import ml_collections
import numpy as np
from etils import epath

from rs_jax.data import boxes, packs, scenes
from rs_jax.data import sources as sources_lib
from rs_jax.data import tasks as tasks_lib
from rs_jax.data import tokenizer as tokenizer_lib
from rs_jax.data.images import bands_of
from rs_jax.data.manifest import training_manifest
from rs_jax.data.packing import Packing, pack
from rs_jax.data.records import (
    ItemRecords,
    SynthRecords,
    VisitExamples,
    make_example,
)
from rs_jax.data.rs_synth import prepare_rs_synth
from rs_jax.data.text import TextEncoder
from rs_jax.kb.schema import Entry, make_id

log = logging.getLogger(__name__)

TOKENIZER_VOCAB_SIZE = 1000
# Visits read and handed over together by the training stream (train_iterator).
VISITS_PER_READ = 8


@dataclasses.dataclass(frozen=True)
class EvalSource:
    """How one source's eval split is scored: protocol (rs_jax/eval/protocols.py); tasks:
    its names in DataBundle.tasks; class_names: a classification source's classes."""

    name: str
    protocol: sources_lib.Protocol
    tasks: tuple[str, ...]
    class_names: tuple[str, ...] = ()


@dataclasses.dataclass
class DataBundle:
    """Everything the trainer needs from the data side.

    tasks: task names (task_id indexes it). rs_synth: config.data.tasks in config
    order; sources: each source's question types in order of appearance ("scene" for
    classification, "caption"), prefixed "<source>/" when there are several sources.
    kb_entries: the KB (index = KB id); kb_labels in batches refer to it.
    train_records: one record source per data source, mixed by `train_weights`.
    """

    tokenizer: Any
    pad_id: int
    eos_id: int  # where generation stops: the template's stop token
    vocab_size: int
    tasks: tuple[str, ...]
    kb_entries: list[Entry]
    image_size: int
    global_batch_size: int
    worker_count: int
    encoder: TextEncoder = dataclasses.field(repr=False)
    train_records: list[Any] = dataclasses.field(repr=False)
    train_weights: list[float]
    eval_records: Any = dataclasses.field(repr=False)
    eval_pairs: list[tuple[int, int]] = dataclasses.field(repr=False)
    eval_sources: tuple[EvalSource, ...] = ()
    # Adds kb_ids to every batch (rs_jax.kb.host_retrieval.HostRetriever); None = device mode.
    host_retriever: Any = dataclasses.field(default=None, repr=False)
    # Split -> what indexing left out (FolderDataset.report); empty for generated data.
    skips: dict[str, dict] = dataclasses.field(default_factory=dict)
    # Damaged pack records the training stream skipped (allow_skips): record -> reason.
    stream_skips: dict[str, str] = dataclasses.field(default_factory=dict)
    # Training rows packed with several examples (rs_jax/data/packing.py); None = one each.
    packing: Packing | None = None
    # Training image + texts -> digest (rs_jax/data/manifest.py); empty for generated data.
    manifest: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)
    # The texts the tokenizer is trained on (when config.data.tokenizer is "").
    corpus: list[str] = dataclasses.field(default_factory=list, repr=False)

    @property
    def num_train_images(self) -> int:
        return sum(len(r) for r in self.train_records)

    @property
    def num_eval_examples(self) -> int:
        return len(self.eval_pairs)

    def per_host_batch_size(self, global_batch_size: int) -> int:
        n = jax.process_count()
        if global_batch_size % n:
            raise ValueError(
                f"Batch size {global_batch_size} is not divisible by the {n} processes"
            )
        return global_batch_size // n

    def train_iterator(self, seed: int) -> grain.DatasetIterator:
        """Infinite, per-epoch shuffled, per-host batches; checkpointable via get/set_state.
        With `packing`, a batch is per_host packed rows of several examples each."""
        per_host = self.per_host_batch_size(self.global_batch_size)
        if self.num_train_images < self.global_batch_size:
            raise ValueError(
                f"Train split has {self.num_train_images} images, fewer than one batch; "
                f"lower config.data.batch_size={self.global_batch_size}"
            )
        streams = []
        for i, records in enumerate(self.train_records):
            ds = grain.MapDataset.source(records).seed(seed + i).shuffle().repeat(None)
            # After repeat: every visit of an image draws a fresh (but reproducible) question,
            # or trains every turn of a conversation from the one decoded image.
            streams.append(ds.random_map(VisitExamples(self.tasks, self.encoder)))
        # Each step's rows come from the sources in proportion to their weights.
        ds = streams[0] if len(streams) == 1 else grain.MapDataset.mix(streams, self.train_weights)
        # Sliced last, so the global stream (order and questions) is the same for any number
        # of hosts: host h reads visits h, h + n, ... (lazy: a host loads only its own
        # images). Where each visit is one example, its batch of k rows is its part of the
        # global batch of n * k rows; a conversation's turns stay on the host that read it.
        ds = ds[jax.process_index() :: jax.process_count()]
        # Visits are read in runs of VISITS_PER_READ: a worker hands over a run at a time
        # (each hand-over costs milliseconds), and the runs keep the stream's order.
        ds = ds.batch(VISITS_PER_READ, batch_fn=list)
        ds = ds.to_iter_dataset(
            grain.ReadOptions(
                num_threads=min(8, os.cpu_count() or 1),
                prefetch_buffer_size=64 // VISITS_PER_READ,
            )
        )
        if self.worker_count > 0:
            # Workers read, decode and encode; worker i makes runs i, i + n, ... and Grain
            # takes them in turn, so the stream is the same for any worker count. (Batches
            # made in the workers would each hold one worker's examples.)
            _ensure_absl_flags_parsed()
            ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.worker_count))
        ds = grain.experimental.FlatMapIterDataset(ds, _VisitsInOrder(self.stream_skips))
        if self.packing is not None:  # each host packs its own examples
            ds = pack(ds, self.packing, bins=per_host)
        ds = ds.batch(per_host, drop_remainder=True)
        if self.host_retriever is not None:
            # Per batch in this process: one ScaNN call per level, nothing sent to workers.
            ds = ds.map(self.host_retriever.map_batch)
        return iter(ds)

    def eval_batches(self, batch_size: int, num_examples: int = -1) -> Iterator[dict]:
        """Every (image, question) pair of the eval split, in a fixed order.

        batch_size is global; each host gets rows host_index::process_count of the
        pair list, in batches of batch_size // process_count, and every host yields
        the same number of batches (the last padded with valid=0 rows).
        """
        per_host = self.per_host_batch_size(batch_size)
        pairs = self.eval_pairs if num_examples < 0 else self.eval_pairs[:num_examples]
        if not pairs:
            return
        n_proc = jax.process_count()
        mine = pairs[jax.process_index() :: n_proc]
        num_batches = math.ceil(math.ceil(len(pairs) / n_proc) / per_host)
        filler = None
        cached: tuple[int, dict] | None = None
        for b in range(num_batches):
            rows, questions, answers, references = [], [], [], []
            for rec_idx, qa_idx in mine[b * per_host : (b + 1) * per_host]:
                if cached is None or cached[0] != rec_idx:
                    cached = (rec_idx, self.eval_records[rec_idx])
                record = cached[1]
                if isinstance(record, packs.SkippedRecord):  # (allow_skips): a padding row
                    _note_read_skips(self.eval_records, self.skips)
                    continue
                qa = record["qas"][qa_idx]
                rows.append(make_example(record, qa, self.tasks.index(qa.task), self.encoder))
                questions.append(qa.question)
                answers.append(qa.answer)
                references.append(qa.references or (qa.answer,))
            if len(rows) < per_host:
                if filler is None:
                    filler = self._filler_example(pairs)
                missing = per_host - len(rows)
                rows += [filler] * missing
                questions += [""] * missing
                answers += [""] * missing
                references += [()] * missing
            batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
            batch["question_text"] = np.array(questions, dtype=object)
            batch["answer_text"] = np.array(answers, dtype=object)
            batch["references"] = np.empty(len(references), dtype=object)
            batch["references"][:] = references
            if self.host_retriever is not None:
                batch = self.host_retriever.map_batch(batch)
            yield batch

    def _filler_example(self, pairs: list[tuple[int, int]]) -> dict:
        # A real example marked invalid keeps padding rows numerically ordinary for the model.
        (_, j), record = next(
            (pair, r)
            for pair in pairs
            if not isinstance(r := self.eval_records[pair[0]], packs.SkippedRecord)
        )
        qa = record["qas"][j]
        ex = make_example(record, qa, self.tasks.index(qa.task), self.encoder)
        ex["valid"] = np.int32(0)
        return ex


class _VisitsInOrder(grain.experimental.FlatMapTransform):
    """A run of visits' examples (VisitExamples), one after another; the damaged records
    skipped under allow_skips are noted in `skipped` (record -> reason) and logged."""

    def __init__(self, skipped: dict[str, str]):
        self.skipped = skipped

    def flat_map(self, visits: list[list[dict | packs.SkippedRecord]]) -> list[dict]:
        examples = []
        for example in itertools.chain.from_iterable(visits):
            if isinstance(example, packs.SkippedRecord):
                self.skipped[example.where] = example.reason
                log.warning(
                    "Skipped %s: %s (config.data.allow_skips; %d skipped in this run)",
                    example.where,
                    example.reason,
                    len(self.skipped),
                )
            else:
                # From a worker, the arrays live in shared memory until the last one of the
                # run is dropped; copied out, the run is freed now rather than at exit
                # (where what is left is reported as leaked shared_memory objects).
                examples.append(
                    {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in example.items()}
                )
        return examples


def worker_count(setting: int) -> int:
    """config.data.worker_count, with -1 resolved: half the cores (the other half runs the
    training loop and XLA's threads), at most 8."""
    if setting >= 0:
        return setting
    return min(8, (os.cpu_count() or 1) // 2)


def _ensure_absl_flags_parsed() -> None:
    # Grain worker processes read absl flags; unparsed flags raise inside the workers.
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _primary_then_all(fn: Callable[[], Any], tag: str) -> Any:
    """Run an idempotent preparation on process 0 first, then everywhere (reusing its output)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        if jax.process_index() == 0:
            fn()
        multihost_utils.sync_global_devices(tag)
    return fn()


def _prepare_tokenizer(spec: str, data_dir: str, corpus: list[str]) -> Any:
    if spec:
        try:
            return tokenizer_lib.load_tokenizer(spec)
        except (OSError, ValueError) as e:
            raise ValueError(f"config.data.tokenizer={spec!r}: {e}") from e
    want = tokenizer_lib.corpus_hash(corpus, TOKENIZER_VOCAB_SIZE)
    path = str(epath.Path(data_dir) / "tokenizer")  # where earlier versions kept the only one
    if tokenizer_lib.stored_corpus_hash(path) == want:
        return tokenizer_lib.load_tokenizer(path)
    # One folder per training corpus: when the data change, the tokenizer a run's
    # checkpoints were trained with stays as it was beside the new one.
    path = str(epath.Path(data_dir) / f"tokenizer-{want[:16]}")

    def ensure() -> None:
        if tokenizer_lib.stored_corpus_hash(path) != want:
            tokenizer_lib.train_tokenizer(corpus, path, TOKENIZER_VOCAB_SIZE)

    _primary_then_all(ensure, "rs_jax_tokenizer")
    return tokenizer_lib.load_tokenizer(path)


def _scene_entries(names: Sequence[str], aliases: dict[str, list[str]], source: str) -> list[Entry]:
    """The KB of datasets with scene classes: an entry per class (the spellings the data
    uses are its aliases), then the synthetic set's land-cover and object entries."""
    class_entries = [
        Entry(
            id=make_id("scene", name),
            level="scene",
            name=name,
            description=f"a remote sensing image of {name}",
            aliases=[a for a in aliases.get(name, []) if a != name],
            sources=[source],
        )
        for name in names
    ]
    return class_entries + [e for e in scenes.kb_entries() if e.level != "scene"]


def source_configs(dc: ml_collections.ConfigDict) -> list[sources_lib.SourceConfig]:
    """config.data's sources: name "folder" is one folder source at config.data.root;
    "sources" lists them in config.data.sources."""
    if dc.name == "folder":
        if not dc.root:
            raise ValueError(
                "config.data.root is not set: a folder dataset reads <root>/<split>/<class>/*"
            )
        if not epath.Path(dc.root).is_dir():
            raise FileNotFoundError(f"config.data.root={dc.root!r} does not exist")
        values = dict(
            format="folder", path=dc.root, train_split=dc.train_split, eval_split=dc.eval_split
        )
        name = epath.Path(dc.root).name
        return [sources_lib.SourceConfig.from_config(name, values)]
    if not dc.sources:
        raise ValueError(
            "config.data.sources is empty: name the datasets to mix (configs/common.py:source)"
        )
    return [
        sources_lib.SourceConfig.from_config(name, dict(values))
        for name, values in dc.sources.items()
    ]


def _fits(items: list[sources_lib.Item], encoder: TextEncoder, bad: sources_lib.BadRecords):
    """Items whose texts fit the length limits (texts are never truncated); a question that
    does not is an error naming its record, or with allow_skips a counted skip."""
    kept = []
    for item in items:
        try:
            for qa in item.qas:
                encoder.prompt(qa.question, qa.history)
                for answer in qa.references or (qa.answer,):
                    encoder.answer(answer)
        except ValueError as e:
            bad(item.record, str(e))
            continue
        kept.append(item)
    return kept


def _load_sources(dc: ml_collections.ConfigDict, data_dir: str, size: int):
    ctx = sources_lib.LoadContext(
        image_size=size,
        allow_skips=bool(dc.allow_skips),
        cache_dir=str(epath.Path(data_dir) / "image_checks"),
        bands=bands_of(dc),
        box_format=dc.get("box_format", "geochat"),  # run configs from before the key
    )
    configs = source_configs(dc)
    loaded = [(cfg, *sources_lib.load(cfg, ctx)) for cfg in configs]
    if len(configs) > 1:  # task names say which source they belong to
        qualify = lambda name, qa: qa._replace(task=f"{name}/{qa.task}")
        for cfg, *splits in loaded:
            for split in splits:
                split.items = [
                    dataclasses.replace(it, qas=tuple(qualify(cfg.name, qa) for qa in it.qas))
                    for it in split.items
                ]
    return ctx, loaded


def _merged_report(reports: list[dict]) -> dict:
    """One split's report over all sources (paths name the source)."""
    return {
        "split": "+".join(dict.fromkeys(r["split"] for r in reports)),
        "images": sum(r["images"] for r in reports),
        "skipped": {k: v for r in reports for k, v in r["skipped"].items()},
        "unsupported": [u for r in reports for u in r["unsupported"]],
    }


def _describe(loaded: list) -> tuple[tuple[str, ...], list[Entry], list[str], tuple]:
    """(task names, KB entries, tokenizer corpus, EvalSources) of the loaded sources."""
    names, aliases, corpus, tasks = [], {}, [], []
    for _, train, test in loaded:
        for split in (train, test):
            for name in (*split.class_names, *(c for it in split.items for c in it.classes)):
                if name not in names:
                    names.append(name)
            for name, spellings in split.aliases.items():
                known = aliases.setdefault(name, [])
                known += [a for a in spellings if a not in known]
            for qa in (qa for it in split.items for qa in it.qas):
                if qa.task not in tasks:
                    tasks.append(qa.task)
        # The tokenizer learns the train split's texts (and every class name) only.
        for qa in (qa for it in train.items for qa in it.qas):
            corpus += [qa.question, *(text for turn in qa.history for text in turn)]
            corpus += list(qa.references or (qa.answer,))
    kb = _scene_entries(names, aliases, "+".join(cfg.name for cfg, *_ in loaded))
    eval_sources = []
    for cfg, _, test in loaded:
        own = {qa.task for it in test.items for qa in it.qas}
        own_tasks = tuple(t for t in tasks if t in own)
        eval_sources.append(EvalSource(cfg.name, cfg.protocol, own_tasks, test.class_names))
    return tuple(tasks), kb, corpus + names, tuple(eval_sources)


def _records(loaded: list, encoder: TextEncoder, ctx, kb: list[Entry]) -> dict:
    """The train record sources, their weights, the eval records and the skip reports of
    loaded sources (DataBundle's fields)."""
    kb_id = {e.name: i for i, e in enumerate(kb) if e.level == "scene"}
    labels = lambda items: [[kb_id[c] for c in it.classes] for it in items]
    train_records, eval_items, reports = [], [], {"train": [], "eval": []}
    for cfg, train, test in loaded:
        for split, role, name in (
            (train, "train", cfg.train_split),
            (test, "eval", cfg.eval_split),
        ):
            bad = sources_lib.BadRecords(ctx.allow_skips)
            split.items = _fits(split.items, encoder, bad)
            split.skipped |= bad.skipped
            reports[role].append(split.report(name))
        train_records.append(
            ItemRecords(train.items, labels(train.items), ctx.image_size, ctx.bands)
        )
        eval_items += test.items
    eval_records = ItemRecords(eval_items, labels(eval_items), ctx.image_size, ctx.bands)
    return dict(
        train_records=train_records,
        train_weights=[cfg.weight for cfg, *_ in loaded],
        eval_records=eval_records,
        skips={role: _merged_report(r) for role, r in reports.items()},
    )


def build_data(config: ml_collections.ConfigDict, workdir: str) -> DataBundle:
    """Prepare dataset and tokenizer from ``config.data``; see the module docstring for batches."""
    dc = config.data
    data_dir = dc.data_dir or str(epath.Path(workdir) / "data")
    # Checked before any data is prepared: eval parses answers in it.
    boxes.check_format(dc.get("box_format", "geochat"))  # run configs from before the key
    if dc.get("pack"):
        parts = _from_pack(dc, data_dir)
    elif dc.name == "rs_synth":
        parts = _from_rs_synth(dc, data_dir)
    elif dc.name in ("folder", "sources"):
        parts = _from_sources(dc, data_dir)
    else:
        raise ValueError(
            f"Unknown config.data.name {dc.name!r}; expected 'rs_synth', 'folder' or 'sources'"
        )
    tok = _prepare_tokenizer(dc.tokenizer, data_dir, parts["corpus"])
    encoder = TextEncoder(tok, dc.template, dc.max_prompt_len, dc.max_answer_len)
    if "train_records" not in parts:  # sources: texts that do not fit are found with it
        parts |= _records(parts.pop("loaded"), encoder, parts.pop("ctx"), parts["kb_entries"])
    eval_pairs = _eval_pairs(parts["eval_records"], parts["tasks"], encoder, parts["skips"])
    return DataBundle(
        tokenizer=tok,
        pad_id=encoder.pad_id,
        eos_id=encoder.eos_id,
        vocab_size=len(tok),
        image_size=int(dc.image_size),
        global_batch_size=int(dc.batch_size),
        worker_count=worker_count(int(dc.worker_count)),
        encoder=encoder,
        eval_pairs=eval_pairs,
        **parts,
    )


def _eval_pairs(records: Any, tasks: tuple[str, ...], encoder: TextEncoder, skips: dict):
    """Every eval (image, question) pair, indexed once; encoding them here also reports
    texts that exceed the length limits before training starts."""
    pairs = []
    for i in range(len(records)):
        qas = records.qas(i)
        if qas is None:  # a damaged pack record, skipped under allow_skips
            _note_read_skips(records, skips)
            continue
        for j, qa in enumerate(qas):
            if qa.task in tasks:
                encoder.prompt(qa.question, qa.history)
                encoder.answer(qa.answer)
                pairs.append((i, j))
    return pairs


def _note_read_skips(records: Any, skips: dict) -> None:
    """Adds the records a pack reader skipped to the eval split's report."""
    report = skips.setdefault(
        "eval", {"split": "eval", "images": len(records), "skipped": {}, "unsupported": []}
    )
    report["skipped"] |= records.skipped


def _from_rs_synth(dc: ml_collections.ConfigDict, data_dir: str) -> dict:
    box_format = dc.get("box_format", "geochat")
    task_names = tuple(dc.tasks)
    unknown = [t for t in task_names if t not in tasks_lib.TASKS]
    if not task_names:
        raise ValueError(f"config.data.tasks is empty; choose from {tasks_lib.TASKS}")
    if unknown:
        raise ValueError(
            f"config.data.tasks: unknown task(s) {unknown}; choose from {tasks_lib.TASKS}"
        )
    size = int(dc.image_size)
    builder = _primary_then_all(
        # The data seed is not config.seed: changing the training seed keeps the data.
        lambda: prepare_rs_synth(data_dir, size, dc.num_train, dc.num_test, dc.seed),
        "rs_jax_rs_synth",
    )
    corpus = tasks_lib.corpus_texts()
    if set(task_names) & set(tasks_lib.GROUNDING_TASKS):
        # Only then: other runs keep the tokenizer they were trained with.
        corpus += tasks_lib.grounding_corpus(box_format, task_names)
    return dict(
        tasks=task_names,
        kb_entries=scenes.kb_entries(),
        corpus=corpus,
        # Training draws a question of config.data.tasks from every image it visits.
        train_records=[SynthRecords(builder, dc.train_split, box_format, task_names)],
        train_weights=[1.0],
        eval_records=SynthRecords(builder, dc.eval_split, box_format),
        eval_sources=(EvalSource("rs_synth", sources_lib.Protocol.VQA, task_names),),
        skips={},
        manifest={},
    )


def _from_sources(dc: ml_collections.ConfigDict, data_dir: str) -> dict:
    ctx, loaded = _load_sources(dc, data_dir, int(dc.image_size))
    task_names, kb, corpus, eval_sources = _describe(loaded)
    return dict(
        tasks=task_names,
        kb_entries=kb,
        corpus=corpus,
        eval_sources=eval_sources,
        manifest=training_manifest((cfg.name, train) for cfg, train, _ in loaded),
        loaded=loaded,
        ctx=ctx,
    )


def _from_pack(dc: ml_collections.ConfigDict, data_dir: str) -> dict:
    """The data `rs-jax data pack` wrote from this config.data (rs_jax/data/packs.py)."""
    pack = packs.Pack(dc.pack, dc)
    info = pack.info
    train = pack.record_sets("train", bool(dc.allow_skips))
    ((_, _, eval_records),) = pack.record_sets("test", bool(dc.allow_skips))
    return dict(
        tasks=tuple(info["tasks"]),
        kb_entries=[Entry.from_dict(e) for e in info["kb_entries"]],
        corpus=pack.read_json(packs.CORPUS),
        train_records=[records for _, _, records in train],
        train_weights=[weight for _, weight, _ in train],
        eval_records=eval_records,
        eval_sources=tuple(
            EvalSource(
                s["name"],
                sources_lib.Protocol(s["protocol"]),
                tuple(s["tasks"]),
                tuple(s["class_names"]),
            )
            for s in info["eval_sources"]
        ),
        skips={
            role: info["splits"][split]["skipped"]
            for role, split in (("train", "train"), ("eval", "test"))
            if info["splits"][split]["skipped"]
        },
        manifest=pack.read_json(packs.MANIFEST),
    )
