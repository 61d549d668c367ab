"""UC Merced as three tasks mixed: scene classification (GeoChat's prompt with all 21
classes), RSIVQA questions and UCM-captions, trained from scratch on their train splits
and scored on their test splits, each with its own protocol.

  rs-jax train --config configs/ucm_mixture.py --workdir runs/ucm
  rs-jax eval  --config configs/ucm_mixture.py --workdir runs/ucm

Reads `<shared>/ucmerced`, `<shared>/rsivqa_ucm/qa.jsonl` and
`<shared>/ucm_captions/captions.jsonl`; `<shared>` is $RS_JAX_SHARED_DATA, by default
../shared/data next to the repository. Change a source's share of each batch with e.g.
--config.data.sources.captions.weight=2.

Variants (`:arg`): `baseline` (LLaVA-1.5), `kb` (the shipped curated knowledge base,
built into runs/kb by `rs-jax kb build --kb rs_jax/kb/data/rs_kb.jsonl --out runs/kb`).
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
            classify=common.source("folder", str(SHARED_DATA / "ucmerced")),
            vqa=common.source(
                "vqa_jsonl",
                str(SHARED_DATA / "rsivqa_ucm" / "qa.jsonl"),
                image_root=str(SHARED_DATA),
            ),
            captions=common.source(
                "captions",
                str(SHARED_DATA / "ucm_captions" / "captions.jsonl"),
                image_root=str(SHARED_DATA),
            ),
        )
    )
    config.data.max_prompt_len = 96  # the classification prompt lists all 21 classes
    config.data.max_answer_len = 40  # captions (the longest UCM caption: 30 tokens)
    config.eval.max_new_tokens = 24
    config.train.steps = 1000  # 50 epochs of the 630 train images
    return config
