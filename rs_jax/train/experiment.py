"""Everything a run needs, built once from the config: mesh, data, model, optimizer, state.

Training and evaluation share this, so both see the same mesh, shardings and state layout.
"""

import dataclasses
import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from etils import epath
from flax import nnx

from rs_jax import sharding
from rs_jax.config_files import ConfigError
from rs_jax.convert import pretrained
from rs_jax.data.packing import Packing
from rs_jax.data.pipeline import DataBundle, build_data
from rs_jax.data.records import MAX_KB_LABELS
from rs_jax.files import is_local
from rs_jax.kb.host_retrieval import HostRetriever, prompt_query
from rs_jax.kb.linking import link_labels, relabel
from rs_jax.kb.schema import Entry
from rs_jax.kb.store import BuiltKB, check_encoder
from rs_jax.models import build_model
from rs_jax.models.config import ModelConfig
from rs_jax.train import checkpointing
from rs_jax.train import optimizer as optimizer_lib


@dataclasses.dataclass(kw_only=True)
class Knowledge:
    """What the model retrieves from, and how dataset labels map onto it."""

    entries: list[Entry]  # KB rows
    table: np.ndarray | None  # [N, D] embeddings of a built KB; None = learned from scratch
    row_of_label: np.ndarray  # [num dataset labels] KB row of each dataset label, -1 = none
    retriever: HostRetriever | None = None  # kb.retrieval = "host": adds kb_ids to batches
    source: str = "the dataset's label vocabulary"  # or the built KB's directory

    @property
    def entry_levels(self) -> tuple[str, ...]:
        """The KB level of every row [N]."""
        return tuple(e.level for e in self.entries)

    @property
    def sha256(self) -> str:
        """Content hash of the entries (level/name, in row order) and a built table: a model
        is only meaningful with the knowledge base it was trained with."""
        h = hashlib.sha256()
        for entry in self.entries:
            h.update(f"{entry.level}/{entry.name}\n".encode())
        if self.table is not None:
            h.update(np.ascontiguousarray(self.table, np.float32).tobytes())
        return h.hexdigest()


@dataclasses.dataclass(kw_only=True)
class Experiment:
    config: ml_collections.ConfigDict
    model_config: ModelConfig
    mesh: jax.sharding.Mesh
    data: DataBundle | None  # None for a planned (abstract) experiment
    knowledge: Knowledge
    graphdef: nnx.GraphDef
    state: dict[str, Any]  # {"step": int32 [], "params": nnx.State, "opt_state": optax state}
    state_shardings: Any
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule
    frozen: tuple[str, ...] = ()  # parameter-path prefixes the optimizer leaves alone

    @property
    def rules(self) -> tuple:
        return tuple(self.config.sharding_rules)

    def param_labels(self) -> Any:
        """'train' or 'frozen' for each parameter (the optimizer's grouping)."""
        return optimizer_lib.frozen_labels(self.state["params"], self.frozen)

    def abstract_state(self) -> Any:
        """ShapeDtypeStructs with shardings: the target a checkpoint is restored into."""
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), self.state
        )

    def shard_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """Host batch -> global arrays, with kb_labels turned into KB rows per model level."""
        if "kb_labels" in batch and self.model_config.retrieves:
            labels = batch["kb_labels"]  # [..., M]: [B, M], or [B, K, M] packed
            rows = relabel(
                labels.reshape(-1, labels.shape[-1]),
                self.knowledge.row_of_label,
                self.knowledge.entry_levels,
                self.model_config.kb_levels,
            )
            batch = {**batch, "kb_labels": rows.reshape(*labels.shape[:-1], *rows.shape[1:])}
        return sharding.shard_batch(batch, self.mesh, self.rules)

    def abstract_batch(self, batch_size: int | None = None) -> dict[str, jax.ShapeDtypeStruct]:
        """What `shard_batch` hands a train step, as sharded shapes (global batch_size,
        default config.data.batch_size): for lowering a step without data."""
        data = self.config.data
        b, size = batch_size or data.batch_size, data.image_size
        prompt, answer = (b, data.max_prompt_len), (b, data.max_answer_len)
        # A planned experiment has no tokenizer: its template text before the image is unknown.
        before = (b, 0 if self.data is None else len(self.data.encoder.prefix_ids))
        labels = (b, MAX_KB_LABELS)
        if self.model_config.retrieves:
            labels = (b, len(self.model_config.levels), MAX_KB_LABELS)
        shapes = {
            "image": ((b, size, size, 3), jnp.uint8),
            "prefix_ids": (before, jnp.int32),
            "prompt_ids": (prompt, jnp.int32),
            "prompt_mask": (prompt, jnp.int32),
            "answer_ids": (answer, jnp.int32),
            "answer_mask": (answer, jnp.int32),
            "task_id": ((b,), jnp.int32),
            "kb_labels": (labels, jnp.int32),
            "valid": ((b,), jnp.int32),
        }
        return {
            key: jax.ShapeDtypeStruct(
                shape,
                dtype,
                sharding=sharding.batch_sharding(self.mesh, self.rules, len(shape)),
            )
            for key, (shape, dtype) in shapes.items()
        }


def setup(
    config: ml_collections.ConfigDict,
    workdir: str,
    query_fn: Callable[[dict], np.ndarray] | None = None,
    *,
    abstract: bool = False,
) -> Experiment:
    """Builds mesh, data and a freshly initialised, sharded train state.

    query_fn: the frozen query of host-side retrieval (default: the question's sentence
    embedding by the built KB's encoder); ignored in device mode. With `config.init.vision`
    / `config.init.llm`, `Experiment.config` holds those towers' architecture.
    abstract: the state as shapes, dtypes and shardings only, for loading a checkpoint into
    (evaluation, inference, export): no parameter or optimizer memory is initialised.
    """
    config = pretrained.resolve(config)
    model_config = ModelConfig.from_config(config.model, config.data.image_size)
    _check_kb_source(model_config)
    mesh = sharding.make_mesh(config.mesh)
    sharding.check_rules(config.sharding_rules)
    _check_batch_fits_mesh(config, mesh, tuple(config.sharding_rules))
    _check_abstract_model(config, model_config, mesh)
    data = build_data(config, workdir)
    data.packing = _packing(config, model_config, len(data.encoder.prefix_ids))
    model_config = model_config.with_vocab(data.vocab_size)
    knowledge = load_knowledge(config, model_config, data, query_fn)
    data.host_retriever = knowledge.retriever
    return _assemble(config, model_config, mesh, data, knowledge, abstract)


def initialise(exp: Experiment) -> Experiment:
    """`exp` with its state initialised (an abstract one's, from `setup(abstract=True)`):
    random weights, pretrained towers and warm starts loaded, optimizer state allocated."""
    return _assemble(exp.config, exp.model_config, exp.mesh, exp.data, exp.knowledge)


def _packing(config: ml_collections.ConfigDict, model: ModelConfig, prefix: int) -> Packing | None:
    """config.data.packing checked against the model and the text lengths (None: off)."""
    slots, length = int(config.data.packing.slots), int(config.data.packing.length)
    if slots == 0:
        return None
    if slots < 0:
        raise ConfigError(f"config.data.packing.slots must be >= 0 (0 = off), got {slots}")
    if model.kb.retrieval == "host":
        raise ConfigError(
            "config.data.packing.slots > 0 needs config.model.kb.retrieval='device' (host "
            "retrieval works on unpacked batches)"
        )
    if not model.baseline and model.llm.moe_every:
        raise ConfigError(
            "config.data.packing.slots > 0 needs config.model.llm.moe_every=0 (its MoE blocks "
            "find the visual tokens by their place in an unpacked row)"
        )
    longest = prefix + model.visual_tokens + config.data.max_prompt_len
    longest += config.data.max_answer_len
    if length < longest:
        raise ConfigError(
            f"config.data.packing.length={length} is shorter than the longest example: "
            f"{longest} tokens ({prefix} before the image + {model.visual_tokens} visual + "
            f"config.data.max_prompt_len + config.data.max_answer_len)"
        )
    return Packing(slots=slots, length=length, visual_tokens=model.visual_tokens)


def plan(
    config: ml_collections.ConfigDict,
    kb_entries: list[Entry],
    devices: Sequence[Any] | None = None,
) -> Experiment:
    """An experiment with abstract state (shapes, dtypes and shardings; nothing allocated)
    and no data, for planning memory ahead of time: lower and compile its train step.

    kb_entries: the knowledge base the model would retrieve from (a learned table of that
    size). The vocabulary is config.model.llm.vocab_size: no tokenizer is loaded.
    """
    config = pretrained.resolve(config)
    model_config = ModelConfig.from_config(config.model, config.data.image_size)
    if not model_config.llm.vocab_size:
        raise ConfigError(
            "planning needs config.model.llm.vocab_size (no tokenizer is loaded): pass "
            "--config.model.llm.vocab_size=N"
        )
    model_config = model_config.with_vocab(model_config.llm.vocab_size)
    mesh = sharding.make_mesh(config.mesh, devices)
    sharding.check_rules(config.sharding_rules)
    _check_batch_fits_mesh(config, mesh, tuple(config.sharding_rules))
    knowledge = Knowledge(entries=kb_entries, table=None, row_of_label=np.zeros((0,), np.int32))
    return _assemble(config, model_config, mesh, None, knowledge, abstract=True)


def _assemble(
    config: ml_collections.ConfigDict,
    model_config: ModelConfig,
    mesh: jax.sharding.Mesh,
    data: DataBundle | None,
    knowledge: Knowledge,
    abstract: bool = False,
) -> Experiment:
    """The model, optimizer and train state on `mesh` (abstract: ShapeDtypeStructs)."""
    rules = tuple(config.sharding_rules)
    model = build_model(
        model_config,
        knowledge.entry_levels,
        mesh,
        rules,
        seed=config.seed,
        kb_table=knowledge.table,
        abstract=abstract,
    )
    if not abstract:
        with jax.set_mesh(mesh):
            pretrained.load(model, config)
            if config.init.from_checkpoint:
                _warm_start(model, config.init.from_checkpoint)
    graphdef, params = nnx.split(model)
    if abstract:
        shardings = sharding.state_shardings(params, mesh, rules)
        params = sharding.abstract_with_shardings(params, shardings)
    frozen = list(config.train.freeze)
    if knowledge.table is not None and not config.model.kb.trainable:
        frozen.append("kb.embeddings")  # a built KB's table stays as built
    tx, schedule = optimizer_lib.make_optimizer(config.train, params, frozen)
    replicated = jax.NamedSharding(mesh, jax.P())
    # The moments live where their parameters do: fsdp shards optimizer state too.
    abstract_opt_state = jax.eval_shape(tx.init, params)
    opt_shardings = sharding.mirror_shardings(abstract_opt_state, params, replicated)
    with jax.set_mesh(mesh):
        if abstract:
            opt_state = jax.tree.map(
                lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                abstract_opt_state,
                opt_shardings,
            )
            step = jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)
        else:
            opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(params)
            step = jax.device_put(jnp.zeros((), jnp.int32), replicated)
    state = {"step": step, "params": params, "opt_state": opt_state}
    shardings = jax.tree.map(lambda x: x.sharding, state)
    return Experiment(
        config=config,
        model_config=model_config,
        mesh=mesh,
        data=data,
        knowledge=knowledge,
        graphdef=graphdef,
        state=state,
        state_shardings=shardings,
        optimizer=tx,
        schedule=schedule,
        frozen=tuple(frozen),
    )


def load_knowledge(
    config: ml_collections.ConfigDict,
    model_config: ModelConfig,
    data: DataBundle,
    query_fn: Callable[[dict], np.ndarray] | None = None,
) -> Knowledge:
    """The dataset's own label vocabulary as a learned KB, or a built KB (`kb.source`), and
    in host retrieval mode the retriever over its ScaNN index."""
    table, retriever = None, None
    entries = data.kb_entries
    if config.model.kb.source and model_config.retrieves:
        host = config.model.kb.retrieval == "host"
        built = BuiltKB.load(
            config.model.kb.source,
            expect_dim=config.model.kb.dim,
            load_index=host,
            dim_key="config.model.kb.dim",
        )
        entries, table = built.entries, built.embeddings
        if host:
            if query_fn is None:
                query_fn = prompt_query(load_kb_encoder(built))
            retriever = HostRetriever(
                built, model_config.kb_levels, model_config.kb.top_k, query_fn
            )
    if model_config.retrieves:
        kb_levels = {e.level for e in entries}
        for i, level in enumerate(model_config.levels):
            if level.kb_level not in kb_levels:
                raise ValueError(
                    f"config.model.levels[{i}] retrieves from knowledge-base level "
                    f"'{level.kb_level}' but the knowledge base "
                    f"({config.model.kb.source or 'dataset labels'}) has levels {sorted(kb_levels)}"
                )
    row_of_label, unmatched = link_labels(data.kb_entries, entries)
    if unmatched and table is not None:
        print(
            f"Note: {len(unmatched)} of {len(data.kb_entries)} dataset labels have no entry in "
            f"{config.model.kb.source}; retrieval hit rates ignore them: {', '.join(unmatched)}",
            flush=True,
        )
    knowledge = Knowledge(
        entries=entries, table=table, row_of_label=row_of_label, retriever=retriever
    )
    if config.model.kb.source and model_config.retrieves:
        knowledge.source = str(config.model.kb.source)
    return knowledge


def _check_kb_source(model: ModelConfig) -> None:
    """The built KB is where retrieval needs it: checked before the data are prepared, which
    a mistyped path should not cost."""
    source = model.kb.source
    if not source:
        return
    if model.kb.retrieval == "host" and not is_local(source):
        raise ConfigError(
            f"config.model.kb.source={source!r}: retrieval='host' reads the KB's ScaNN "
            f"index, which must be on this host (copy it here, or use retrieval='device')"
        )
    if model.retrieves and not epath.Path(source).is_dir():
        raise ConfigError(
            f"config.model.kb.source={source!r}: no such folder (expected a directory made "
            f"by `rs-jax kb build`)"
        )


def load_kb_encoder(built: BuiltKB):
    """The sentence encoder the built KB was embedded with (checked by fingerprint)."""
    from rs_jax.convert.hf_bert import load_sentence_encoder

    encoder = load_sentence_encoder(built.encoder_source)
    check_encoder(built.metadata, encoder, None, built.path)
    return encoder


def _warm_start(model: nnx.Module, source: str) -> None:
    step_dir, kept = checkpointing.warm_start(nnx.state(model, nnx.Param), source)
    note = ""
    if kept:
        shown = ", ".join(kept[:3]) + (", ..." if len(kept) > 3 else "")
        note = f"; {len(kept)} keep their initialisation ({shown})"
    print(f"Parameters from {step_dir}{note}.", flush=True)


def _check_abstract_model(config, model_config: ModelConfig, mesh) -> None:
    """Every parameter's sharded dimensions divide their mesh axes, and config.train.freeze
    names parameters: checked on the abstract model before data preparation, so a mesh the
    model cannot use fails in seconds. The vocabulary and KB size are not known yet:
    stand-ins that divide any mesh take their place (the real ones are checked when the
    model is built)."""
    fill = mesh.size * 128
    stand_in = model_config.with_vocab(model_config.llm.vocab_size or fill)
    levels = list(model_config.kb_levels) * max(fill, config.model.kb.top_k)
    model = build_model(stand_in, levels, mesh, tuple(config.sharding_rules), abstract=True)
    state = nnx.state(model)
    sharding.state_shardings(state, mesh, tuple(config.sharding_rules))
    optimizer_lib.frozen_labels(state, config.train.freeze)


def _check_batch_fits_mesh(config, mesh, rules) -> None:
    # The mesh spans every host's devices; each host also feeds an equal slice of the batch.
    shards, hosts = sharding.batch_divisor(mesh, rules), jax.process_count()
    accum = config.train.grad_accum_steps
    for name, size, micro in (
        ("data.batch_size", config.data.batch_size, accum),
        ("eval.batch_size", config.eval.batch_size, 1),
    ):
        if size % (math.lcm(shards, hosts) * micro):
            raise ValueError(
                f"config.{name}={size} must be divisible by the {shards} batch shards of mesh "
                f"{dict(mesh.shape)}"
                + (f" and the {hosts} hosts" if hosts > 1 else "")
                + (f", times config.train.grad_accum_steps={accum}" if micro > 1 else "")
            )
