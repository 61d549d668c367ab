"""LLaVA-1.5 proportions at a size a CPU trains: the speed benchmark's model.

ViT 256 x 4 blocks (8 px patches on 64 px rs_synth images: 64 patch tokens), a LLaMA-style
decoder 256 x 4 blocks (4 heads, 2 KV heads, SwiGLU 688), the MiniLM WordPiece tokenizer
(vocab 30,522), 24 prompt + 8 answer tokens, batch 16: 96 decoder tokens per example for
the baseline. `benchmarks/train_step.py` runs it against Hugging Face's
LlavaForConditionalGeneration at the same dims.

  rs-jax train --config configs/llava_small.py:baseline,bf16 --workdir runs/llava_small

Variants (`:arg`, comma-separated): `baseline` (LLaVA-1.5), `bf16` (bfloat16 compute).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    arg = common.parse_arg(arg, baseline=False, bf16=False)

    config.data.image_size = 64
    config.data.num_train = 512
    config.data.num_test = 32
    config.data.tokenizer = "minilm"
    config.data.max_prompt_len = 24
    config.data.max_answer_len = 8
    config.data.batch_size = 16
    config.eval.batch_size = 16

    config.model.vision.update(patch_size=8, width=256, depth=4, num_heads=4, mlp_dim=1024)
    config.model.levels = (("scene", 3, 1), ("landcover", 2, 2), ("object", 1, 8))
    config.model.augment.num_heads = 4
    config.model.experts.mlp_dim = 512
    config.model.llm.update(
        width=256, depth=4, num_heads=4, num_kv_heads=2, mlp_dim=688, tie_embeddings=False
    )

    # On XLA:CPU saving a scanned block's activations costs more than recomputing them
    # (benchmarks/README.md, scan_remat.py): recompute each block in the backward pass.
    config.model.remat_policy = "full"

    config.train.steps = 1000
    config.train.learning_rate = 3e-4
    if arg.bf16:
        config.model.dtype = "bfloat16"
    if arg.baseline:
        common.make_baseline(config)
    return config
