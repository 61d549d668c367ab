"""Model towers and the RS vision-language model."""

from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from rs_jax.models.config import ModelConfig
from rs_jax.models.rsvlm import RSVLM


def build_model(
    cfg: ModelConfig,
    kb_entry_levels: Sequence[str],
    mesh: jax.sharding.Mesh,
    rules: Sequence[tuple],
    *,
    seed: int = 0,
    kb_table: np.ndarray | None = None,
    abstract: bool = False,
) -> RSVLM:
    """Builds the model with every parameter placed by the logical-axis `rules` on `mesh`.

    abstract: shapes, dtypes and shardings only (`nnx.eval_shape`), nothing allocated.
    """

    def create() -> RSVLM:
        return RSVLM(cfg, kb_entry_levels, kb_table, rngs=nnx.Rngs(params=seed))

    with jax.set_mesh(mesh), nnx.logical_axis_rules(tuple(rules)):
        return nnx.eval_shape(create) if abstract else create()
