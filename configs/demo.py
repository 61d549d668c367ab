"""Demo: the full model on the built-in synthetic RS dataset, sized for a 2-core CPU.

  rs-jax train --config configs/demo.py --workdir runs/demo
  rs-jax train --config configs/demo.py:baseline --workdir runs/demo_baseline

`arg` (after the colon) is a comma-separated list of variants:
  baseline: plain LLaVA-1.5 (one level, MLP projector, no retrieval, no experts).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    variants = common.parse_variants(arg, allowed=("baseline",))

    config.data.name = "rs_synth"
    config.data.image_size = 32
    config.data.num_train = 6000
    config.data.num_test = 300
    config.data.tasks = ("scene", "presence", "count", "comparison", "rural_urban")
    config.data.batch_size = 32

    # 8 px patches on 32 px images: a 4x4 patch grid, the object level keeps all 16 tokens.
    config.model.vision.patch_size = 8

    # bf16 compute (fp32 master weights) and full remat: the fastest step on a CPU with AMX
    # (benchmarks/README.md); the loss follows fp32's (docs/model.md).
    config.model.dtype = "bfloat16"
    config.model.remat_policy = "full"

    config.train.steps = 1500
    config.train.learning_rate = 1e-3
    config.train.warmup_steps = 100
    config.train.log_every = 50
    config.train.checkpoint_every = 500

    if "baseline" in variants:
        common.make_baseline(config)
    return config
