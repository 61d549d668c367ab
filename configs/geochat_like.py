"""GeoChat-like: a CLIP ViT-L/14 at 336 px and a 7B LLaMA-family decoder (Vicuna, LLaMA,
Mistral) from folders you downloaded, trained with LLaVA's two stages.

  rs-jax train --config configs/geochat_like.py:stage1 --workdir runs/gc1 \\
      --config.init.vision=/models/clip-vit-large-patch14-336 \\
      --config.init.llm=/models/vicuna-7b-v1.5
  rs-jax train --config configs/geochat_like.py:stage2,lora --workdir runs/gc2 \\
      --config.init.vision=... --config.init.llm=... --config.init.from_checkpoint=runs/gc1

The towers' shapes come from their config.json (docs/pretrained.md); this file sets what
they do not: 336 px images, the Vicuna v1 conversation format, three semantic levels
tapping the penultimate block (where LLaVA takes its tokens) and two earlier ones, and the
expert width; `common.pretrained_stage` adds what the presets share (semantic experts, bf16
with full remat, FSDP) and the stages.
Other folder kinds are refused (config.init.vision_types / llm_types). `:tiny` is the same
recipe for random tiny towers (tests).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    arg = common.parse_arg(arg, **common.STAGE_ARGS)
    config.init.update(vision_types=("clip_vision_model",), llm_types=("llama", "mistral"))
    config.data.image_size = 336
    config.data.template = "vicuna_v1"  # as LLaVA v1.5 and GeoChat; "llama3" for Llama 3
    # CLIP-L/14 at 336 px: a 24 x 24 patch grid; blocks counted from the end of the tower.
    config.model.levels = (("scene", -2, 3), ("landcover", -7, 8), ("object", -13, 24))
    config.model.experts.mlp_dim = 4096
    common.pretrained_stage(config, arg)
    return config
