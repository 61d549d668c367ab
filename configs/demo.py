"""Demo: the full model on the built-in synthetic RS dataset, sized for a 2-core CPU.

  rs-jax train --config configs/demo.py --workdir runs/demo
  rs-jax train --config configs/demo.py:baseline --workdir runs/demo_baseline

Variant (`:arg`): `baseline`, plain LLaVA-1.5 (one level, MLP projector, no retrieval, no
experts).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    arg = common.parse_arg(arg, baseline=False)

    # The defaults' rs_synth data (6,000 train and 300 test images of 32 px, five tasks).
    # 8 px patches on 32 px images: a 4x4 patch grid, the object level keeps all 16 tokens.
    config.model.vision.patch_size = 8

    # bf16 compute (fp32 master weights) and full remat: the fastest step on a CPU with AMX
    # (benchmarks/README.md); the loss follows fp32's (docs/model.md).
    config.model.dtype = "bfloat16"
    config.model.remat_policy = "full"

    config.train.steps = 1500

    if arg.baseline:
        common.make_baseline(config)
    return config
