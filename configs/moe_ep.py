"""Semantic experts with expert parallelism: a small model on rs_synth, experts over 'expert'.

  RS_JAX_CPU_DEVICES=8 rs-jax train --config configs/moe_ep.py:e=8,k=2,dispatch=dropless \\
      --config.mesh.data=2 --config.mesh.expert=4 --workdir /tmp/ep

Variants (`:arg`, comma-separated `key=value`):

  e=<int>         experts per level (default 8; 3 levels, so 3 * e experts in all)
  k=<int>         top-k within the token's level (default 2)
  cap=<float>     capacity factor of the einsum path (default 1.25)
  dispatch=einsum|dropless
                  dispatch path (default einsum; docs/experts.md)
  jitter=<float>  router jitter during training (default 0)

The mesh defaults to expert=4 with data filling the remaining devices; set it with
--config.mesh.*. The number of experts (3 * e) must divide by the mesh 'expert' size.
"""

import ml_collections

from configs import common, tiny


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = common.parse_arg(arg, e=8, k=2, cap=1.25, dispatch="einsum", jitter=0.0)
    # The tiny model with more data, a batch that splits over up to 16 devices, and the
    # variant's experts.
    config = tiny.get_config()
    config.mesh.update(data=-1, expert=4)
    config.data.num_train = 128
    config.data.num_test = 16
    config.data.batch_size = 16
    config.model.experts.update(
        experts_per_level=arg.e,
        top_k=arg.k,
        capacity_factor=arg.cap,
        dispatch=arg.dispatch,
        router_jitter=arg.jitter,
    )
    config.train.steps = 50
    config.train.warmup_steps = 5
    config.train.log_every = 5
    config.train.checkpoint_every = 50
    return config
