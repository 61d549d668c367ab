"""A 7B-class model for planning pod runs: CLIP ViT-L/14 at 336 px and a LLaMA-7B decoder.

  python benchmarks/plan_memory.py   # compiles its training step ahead of time on 64 and
                                     # 256 simulated devices; nothing is allocated
  rs-jax config --config configs/llava7b_like.py

ViT-L/14 at 336 px (24 blocks of width 1024, 16 heads, MLP 4096: 576 patch tokens), three
semantic levels tapping blocks 22 (the penultimate, where LLaVA takes its tokens), 17 and 11;
a 32-block LLaMA-7B decoder (width 4096, 32 heads, MLP 11008, vocab 32,000, untied head);
semantic experts (4 per level, top-2). bf16 compute, fp32 master weights, every block
rematerialised, FSDP over 'fsdp'. The decoder's vocabulary is set here because no LLaMA
tokenizer is loaded for planning.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    common.parse_arg(arg)  # no variants: a stray :arg is an error

    config.mesh.update(data=1, fsdp=-1)
    config.data.image_size = 336
    config.data.max_prompt_len = 384
    config.data.max_answer_len = 128
    config.data.batch_size = 256
    config.eval.batch_size = 256

    config.model.dtype = "bfloat16"
    config.model.remat_policy = "full"
    config.model.vision.update(patch_size=14, width=1024, depth=24, num_heads=16, mlp_dim=4096)
    config.model.levels = (("scene", 22, 3), ("landcover", 17, 8), ("object", 11, 24))
    config.model.kb.dim = 384
    config.model.augment.num_heads = 16
    config.model.experts.update(experts_per_level=4, top_k=2, mlp_dim=4096)
    config.model.llm.update(
        width=4096,
        depth=32,
        num_heads=32,
        num_kv_heads=32,
        mlp_dim=11008,
        vocab_size=32_000,
        tie_embeddings=False,
    )
    config.train.learning_rate = 2e-5
    config.train.warmup_steps = 30
    config.train.loss_vocab_chunk = 8192
    return config
