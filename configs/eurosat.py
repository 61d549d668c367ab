"""EuroSAT RGB scene classification (10 classes, 64x64 px Sentinel-2), trained from scratch.

  rs-jax train --config configs/eurosat.py --workdir runs/eurosat
  rs-jax train --config configs/eurosat.py:baseline --workdir runs/eurosat_baseline

  rs-jax kb build --kb rs_jax/kb/data/rs_kb.jsonl --out runs/kb   # once
  rs-jax train --config configs/eurosat.py:kb --workdir runs/eurosat_kb

Trains on `<shared>/eurosat_rgb/train` (3,000 images) and evaluates on its `test` split
(1,000 images) with GeoChat's protocol (every class named in the prompt; CoOp's readable
class names); `<shared>` is $RS_JAX_SHARED_DATA, by default ../shared/data next to the
repository. Override with --config.data.sources.eurosat.path=/path/to/eurosat_rgb.

Variants (`:arg`, comma-separated): `baseline` (LLaVA-1.5), `kb` (retrieve from the shipped
curated knowledge base, frozen MiniLM embeddings, built into runs/kb by `rs-jax kb build`).
"""

import ml_collections

from configs import common
from configs.common import SHARED_DATA


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    common.from_scratch_64px(config, common.parse_arg(arg, **common.REAL_DATA_ARGS))
    config.data.name = "sources"
    config.data.sources = ml_collections.ConfigDict(
        dict(
            eurosat=common.source("folder", str(SHARED_DATA / "eurosat_rgb"), class_names="EuroSAT")
        )
    )
    config.data.max_prompt_len = 64  # the prompt lists all 10 classes
    config.eval.max_new_tokens = 5
    config.train.steps = 1500
    return config
