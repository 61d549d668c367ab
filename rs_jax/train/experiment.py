"""Everything a run needs, built once from the config: mesh, data, model, optimizer, state.

Training and evaluation share this, so both see the same mesh, shardings and state layout.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from rs_jax.config import ConfigError
from rs_jax.data.pipeline import DataBundle, build_data
from rs_jax.kb.host_retrieval import HostRetriever, prompt_query
from rs_jax.kb.linking import link_labels, relabel
from rs_jax.kb.store import BuiltKB, check_encoder
from rs_jax.models import build_model
from rs_jax.models.config import ModelConfig
from rs_jax.train import optimizer as optimizer_lib
from rs_jax.train import partitioning


@dataclasses.dataclass
class Knowledge:
    """What the model retrieves from, and how dataset labels map onto it."""

    entries: list  # KB rows: objects with level, name, aliases
    table: np.ndarray | None  # [N, D] embeddings of a built KB; None = learned from scratch
    row_of_label: np.ndarray  # [num dataset labels] KB row of each dataset label, -1 = none
    retriever: HostRetriever | None = None  # kb.retrieval = "host": adds kb_ids to batches

    @property
    def entry_levels(self) -> tuple[str, ...]:
        """The KB level of every row [N]."""
        return tuple(e.level for e in self.entries)


@dataclasses.dataclass
class Experiment:
    config: ml_collections.ConfigDict
    model_config: ModelConfig
    mesh: jax.sharding.Mesh
    data: DataBundle
    knowledge: Knowledge
    graphdef: nnx.GraphDef
    state: dict[str, Any]  # {"step": int32 [], "params": nnx.State, "opt_state": optax state}
    state_shardings: Any
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule

    @property
    def rules(self) -> tuple:
        return tuple(self.config.sharding_rules)

    def abstract_state(self) -> Any:
        """ShapeDtypeStructs with shardings: the target a checkpoint is restored into."""
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), self.state
        )

    def shard_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """Host batch -> global arrays, with kb_labels turned into KB rows per model level."""
        if "kb_labels" in batch and not self.model_config.baseline:
            labels = relabel(
                batch["kb_labels"],
                self.knowledge.row_of_label,
                self.knowledge.entry_levels,
                self.model_config.kb_levels,
            )
            batch = {**batch, "kb_labels": labels}
        return partitioning.shard_batch(batch, self.mesh, self.rules)


def setup(
    config: ml_collections.ConfigDict,
    workdir: str,
    query_fn: Callable[[dict], np.ndarray] | None = None,
) -> Experiment:
    """Builds mesh, data and a freshly initialised, sharded train state.

    query_fn: the frozen query of host-side retrieval (default: the question's sentence
    embedding by the built KB's encoder); ignored in device mode.
    """
    _check_retrieval_mode(config)
    model_config = ModelConfig.from_config(config.model, config.data.image_size)
    mesh = partitioning.make_mesh(config.mesh)
    rules = tuple(config.sharding_rules)
    _check_batch_fits_mesh(config, mesh, rules)
    data = build_data(config, workdir)
    model_config = model_config.with_vocab(data.vocab_size)
    knowledge = load_knowledge(config, model_config, data, query_fn)
    data.host_retriever = knowledge.retriever

    model = build_model(
        model_config,
        knowledge.entry_levels,
        mesh,
        rules,
        seed=config.seed,
        kb_table=knowledge.table,
    )
    graphdef, params = nnx.split(model)
    tx, schedule = optimizer_lib.make_optimizer(config.train)
    if knowledge.table is not None and not config.model.kb.trainable:
        tx = _freeze_kb_table(tx, params)
    with jax.set_mesh(mesh):
        opt_state = jax.jit(tx.init)(params)
        step = jax.device_put(jnp.zeros((), jnp.int32), jax.NamedSharding(mesh, jax.P()))
    state = {"step": step, "params": params, "opt_state": opt_state}
    shardings = jax.tree.map(lambda x: x.sharding, state)
    return Experiment(
        config, model_config, mesh, data, knowledge, graphdef, state, shardings, tx, schedule
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
    if config.model.kb.source and not model_config.baseline:
        host = config.model.kb.retrieval == "host"
        built = BuiltKB.load(
            config.model.kb.source, expect_dim=config.model.kb.dim, load_index=host
        )
        entries, table = built.entries, built.embeddings
        if host:
            if query_fn is None:
                query_fn = prompt_query(_load_kb_encoder(built))
            retriever = HostRetriever(
                built, model_config.kb_levels, model_config.kb.top_k, query_fn
            )
    if not model_config.baseline:
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
    return Knowledge(entries, table, row_of_label, retriever)


def _check_retrieval_mode(config: ml_collections.ConfigDict) -> None:
    kb = config.model.kb
    if kb.retrieval not in ("device", "host"):
        raise ConfigError(
            f"config.model.kb.retrieval must be 'device' or 'host', got {kb.retrieval!r}"
        )
    if kb.retrieval == "host" and not kb.source and not config.model.baseline:
        raise ConfigError(
            "config.model.kb.retrieval='host' searches a built KB's ScaNN index: set "
            "config.model.kb.source to a directory made by `rs-jax kb build` (or use "
            "retrieval='device')"
        )


def _load_kb_encoder(built: BuiltKB):
    """The sentence encoder the built KB was embedded with (checked by fingerprint)."""
    from rs_jax.models.text_encoder import SentenceEncoder

    encoder = SentenceEncoder.from_pretrained(built.encoder_source)
    check_encoder(built.metadata, encoder, None, built.path)
    return encoder


def _freeze_kb_table(tx: optax.GradientTransformation, params: nnx.State):
    """Leave a pretrained KB table untouched: no updates, no weight decay, no moments."""

    def label(path, _):
        keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
        return "frozen" if keys[:2] == ["kb", "embeddings"] else "train"

    labels = jax.tree_util.tree_map_with_path(label, params)
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def _check_batch_fits_mesh(config, mesh, rules) -> None:
    divisor = partitioning.batch_divisor(mesh, rules) * jax.process_count()
    accum = config.train.grad_accum_steps
    for name, size, parts in (
        ("data.batch_size", config.data.batch_size, divisor * accum),
        ("eval.batch_size", config.eval.batch_size, divisor),
    ):
        if size % parts:
            micro = f" times config.train.grad_accum_steps={accum}" if parts != divisor else ""
            raise ValueError(
                f"config.{name}={size} must be divisible by the {divisor // jax.process_count()}"
                f" batch shards of mesh {dict(mesh.shape)} times {jax.process_count()} host(s)"
                f"{micro}"
            )
