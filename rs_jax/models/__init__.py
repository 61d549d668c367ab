"""Model towers and the RS vision-language model."""

import jax
import ml_collections
import numpy as np
from flax import nnx

from rs_jax.models.lvlm import RSVLM


def build_model(
    config: ml_collections.ConfigDict,
    vocab_size: int,
    kb_entry_levels: np.ndarray,
    mesh: jax.sharding.Mesh,
    kb_table: np.ndarray | None = None,
) -> RSVLM:
    """Builds the model with every parameter placed by `config.sharding_rules` on `mesh`."""
    with jax.set_mesh(mesh), nnx.logical_axis_rules(config.sharding_rules):
        return RSVLM(
            config.model,
            config.data.image_size,
            vocab_size,
            kb_entry_levels,
            kb_table,
            rngs=nnx.Rngs(params=config.seed),
        )
