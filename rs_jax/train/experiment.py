"""Everything a run needs, built once from the config: mesh, data, model, optimizer, state.

Training and evaluation share this, so both see the same mesh, shardings and state layout.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from rs_jax.data.pipeline import DataBundle, build_data
from rs_jax.models import build_model
from rs_jax.train import optimizer as optimizer_lib
from rs_jax.train import partitioning


@dataclasses.dataclass
class Experiment:
    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh
    data: DataBundle
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

    def model(self, params: nnx.State | None = None) -> nnx.Module:
        return nnx.merge(self.graphdef, self.state["params"] if params is None else params)

    def shard_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """Host batch -> global arrays; kb_labels reordered to the model's levels."""
        if "kb_labels" in batch and not self.config.model.baseline:
            order = [self.data.level_names.index(n) for n in self.config.model.level_names]
            batch = {**batch, "kb_labels": batch["kb_labels"][:, order]}
        return partitioning.shard_batch(batch, self.mesh, self.rules)


def setup(config: ml_collections.ConfigDict, workdir: str) -> Experiment:
    """Builds mesh, data and a freshly initialised, sharded train state."""
    mesh = partitioning.make_mesh(config.mesh)
    rules = tuple(config.sharding_rules)
    data = build_data(config, workdir)
    _check_batch_fits_mesh(config, mesh, rules)

    _check_level_names(config, data.level_names)
    # Entries of a level the config does not use get -1 and are never retrieved.
    model_levels = list(config.model.level_names)
    kb_levels = np.array(
        [model_levels.index(e.level) if e.level in model_levels else -1 for e in data.kb_entries]
    )
    model = build_model(config, data.vocab_size, kb_levels, mesh)
    graphdef, params = nnx.split(model)
    tx, schedule = optimizer_lib.make_optimizer(config.train)
    with jax.set_mesh(mesh):
        opt_state = jax.jit(tx.init)(params)
        step = jax.device_put(jnp.zeros((), jnp.int32), jax.NamedSharding(mesh, jax.P()))
    state = {"step": step, "params": params, "opt_state": opt_state}
    shardings = jax.tree.map(lambda x: x.sharding, state)
    return Experiment(config, mesh, data, graphdef, state, shardings, tx, schedule)


def _check_batch_fits_mesh(config, mesh, rules) -> None:
    divisor = partitioning.batch_divisor(mesh, rules)
    for name, size in (
        ("data.batch_size", config.data.batch_size),
        ("eval.batch_size", config.eval.batch_size),
    ):
        if size % (divisor * jax.process_count()):
            raise ValueError(
                f"config.{name}={size} must be divisible by the {divisor} batch shards of "
                f"mesh {dict(mesh.shape)} times {jax.process_count()} host(s)"
            )


def _check_level_names(config, data_levels) -> None:
    if config.model.baseline:
        return
    for name in config.model.level_names:
        if name not in data_levels:
            raise ValueError(
                f"config.model.levels.{name}: the dataset's knowledge base has levels "
                f"{list(data_levels)}"
            )
