"""Alignment pretraining (stage 0): before the assistant trains, the ViT and its levels'
retrieval queries learn to meet the curated knowledge base's frozen MiniLM embeddings, with
the sigmoid (SigLIP) loss chunked around the data-parallel devices (docs/alignment.md).

  rs-jax kb build --kb rs_jax/kb/data/rs_kb.jsonl --out runs/kb   # once
  rs-jax train --config configs/align_pretrain.py --workdir runs/align
  rs-jax eval --workdir runs/align          # zero-shot classification of each test split
  # the assistant, starting from the aligned tower:
  rs-jax train --config configs/eurosat.py:kb --workdir runs/eurosat_aligned \\
      --config.init.from_checkpoint=runs/align

Trains on the train splits of EuroSAT, UC Merced, AID and RSSCN7 (`<shared>`: see
configs/eurosat.py), each image against the KB entry of its class at the scene level. The
model is configs/eurosat.py's `:kb` model, so every vision and query parameter carries over
to it (and to configs/ucm_mixture.py:kb); the decoder is frozen: alignment never reaches it.
"""

import ml_collections

from configs import common
from configs.common import SHARED_DATA


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    common.from_scratch_64px(config, common.parse_arg(arg or "kb", **common.REAL_DATA_ARGS))
    config.data.name = "sources"
    config.data.sources = ml_collections.ConfigDict(
        dict(
            eurosat=common.source(
                "folder", str(SHARED_DATA / "eurosat_rgb"), class_names="EuroSAT"
            ),
            ucmerced=common.source("folder", str(SHARED_DATA / "ucmerced")),
            aid=common.source("folder", str(SHARED_DATA / "aid_150px")),
            rsscn7=common.source("folder", str(SHARED_DATA / "rsscn7"), class_names="RSSCN7"),
        )
    )
    config.data.max_prompt_len = 160  # the prompt lists AID's 30 classes (unused here)
    config.train.objective = "align"
    config.train.freeze = ("llm",)
    config.data.batch_size = 64
    config.train.steps = 2000
    return config
