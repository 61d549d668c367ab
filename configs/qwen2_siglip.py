"""A SigLIP vision tower (so400m/14 at 384 px) with a Qwen2 / Qwen2.5 decoder, from
folders you downloaded, trained with LLaVA's two stages.

  rs-jax train --config configs/qwen2_siglip.py:stage1 --workdir runs/qs1 \\
      --config.init.vision=/models/siglip-so400m-patch14-384 \\
      --config.init.llm=/models/Qwen2.5-1.5B
  rs-jax train --config configs/qwen2_siglip.py:stage2 --workdir runs/qs2 \\
      --config.init.vision=... --config.init.llm=... --config.init.from_checkpoint=runs/qs1

As configs/geochat_like.py, with SigLIP's 27 x 27 patch grid (levels of 3, 9 and 27) and
Qwen2's tokenizer (no begin token). `:tiny` is the recipe for random tiny towers (tests).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    arg = common.parse_arg(arg, **common.STAGE_ARGS)
    config.init.update(vision_types=("siglip_vision_model",), llm_types=("qwen2",))
    config.data.update(image_size=384, template="chatml")
    config.model.levels = (("scene", -2, 3), ("landcover", -9, 9), ("object", -18, 27))
    config.model.experts.mlp_dim = 4304
    common.pretrained_stage(config, arg)
    return config
