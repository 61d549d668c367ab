"""The smallest full model: smoke runs and the test suite (seconds per run on a CPU).

  rs-jax train --config configs/tiny.py --workdir /tmp/tiny
  rs-jax train --config configs/tiny.py:baseline --workdir /tmp/tiny_baseline

Variants (`:arg`, comma-separated): `baseline` (LLaVA-1.5); `levels2` (scene and object
only); `levels4` (a fourth level, `parcel`: land-cover cues for the fine 4x4 grid).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    arg = common.parse_arg(arg, baseline=False, levels2=False, levels4=False)

    config.data.image_size = 16
    config.data.num_train = 64
    config.data.num_test = 8
    config.data.batch_size = 8
    config.data.worker_count = 0  # 16 px images decode in microseconds; a worker starts in seconds
    config.eval.batch_size = 16
    config.eval.max_new_tokens = 4

    config.model.vision.update(patch_size=4, width=32, depth=3, num_heads=2, mlp_dim=64)
    config.model.levels = (("scene", 2, 1), ("landcover", 1, 2), ("object", 0, 4))
    if arg.levels2:
        config.model.levels = (("scene", 2, 1), ("object", 0, 4))
    if arg.levels4:
        config.model.levels = (
            ("scene", 2, 1),
            ("landcover", 1, 2),
            ("parcel", 1, 4, "landcover"),
            ("object", 0, 4),
        )
    config.model.kb.update(dim=16, top_k=2)
    config.model.augment.num_heads = 2
    config.model.experts.update(experts_per_level=2, shared_experts=1, mlp_dim=32)
    config.model.llm.update(width=32, depth=2, num_heads=4, num_kv_heads=2, mlp_dim=64)

    config.train.steps = 8
    config.train.warmup_steps = 2
    config.train.log_every = 1
    config.train.checkpoint_every = 4

    if arg.baseline:
        common.make_baseline(config)
    return config
