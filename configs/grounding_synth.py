"""Grounding on the built-in synthetic scenes: the full model learns to answer with boxes
("grounding": "[refer] where is the leftmost ship?" -> its box) and to name the object in a
box ("region_caption": "[identify] {<x1><y1><x2><y2>|<0>}" -> "ship"); a few minutes on
2 CPU cores. docs/evaluation.md, "Grounding", has the prompts and the scores.

  rs-jax train --config configs/grounding_synth.py --workdir runs/grounding
  rs-jax eval --workdir runs/grounding

Variant (`:arg`): `baseline`, plain LLaVA-1.5. Boxes are written in GeoChat's notation
(config.data.box_format, the default).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    arg = common.parse_arg(arg, baseline=False)

    config.data.tasks = ("grounding", "region_caption")
    # A GeoChat box is 18 tokens (every bracket and number one token): "[identify] <box>"
    # is 21, an answer with its stop token 19.
    config.data.max_prompt_len = 24
    config.data.max_answer_len = 20
    config.eval.max_new_tokens = 19

    # 4 px patches (an 8x8 grid on 32 px images) and an object level that keeps all 64
    # tokens: where an object is has to survive to the decoder.
    config.model.vision.patch_size = 4
    config.model.levels = (("scene", 3, 1), ("landcover", 2, 2), ("object", 1, 8))

    # bf16 compute, fp32 master weights, full remat: the fastest CPU step (configs/demo.py).
    config.model.dtype = "bfloat16"
    config.model.remat_policy = "full"

    config.train.steps = 1200
    config.train.log_every = 100

    if arg.baseline:
        common.make_baseline(config)
    return config
