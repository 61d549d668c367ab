"""Model FLOPs of one training example, counted from the model config.

XLA's cost analysis counts a scanned loop's body once, so a scanned tower's FLOPs come
from the shapes instead. Matmuls only (2 FLOPs a multiply-add); training is three forward
passes (the forward and a backward twice its size), as in the usual model-FLOPs
utilisation: recomputation under remat is not counted.
"""

from rs_jax.models.config import ModelConfig


def _attention_block(tokens: int, context: int, width: int, q_dim: int, kv_dim: int) -> float:
    """Projections (query, key, value, out) and the two attention matmuls of one block."""
    projections = 2 * tokens * width * (2 * q_dim) + 2 * context * width * (2 * kv_dim)
    return projections + 2 * 2 * tokens * context * q_dim


def forward_flops(cfg: ModelConfig, text_tokens: int, answer_tokens: int) -> float:
    """Matmul FLOPs of one example's forward pass; text_tokens = the decoder's sequence
    without the visual tokens (template text, prompt and answer)."""
    vision, llm = cfg.vision, cfg.llm
    patches = vision.grid**2 + int(vision.class_token)
    depth = vision.depth if cfg.baseline else max(level.block for level in cfg.levels) + 1
    flops = 2 * patches * vision.patch_size**2 * 3 * vision.width  # patch embedding
    vit_block = _attention_block(patches, patches, vision.width, vision.width, vision.width)
    flops += depth * (vit_block + 2 * 2 * patches * vision.width * vision.mlp_dim)
    visual = cfg.visual_tokens
    if cfg.has_semantic_experts:
        experts = cfg.experts
        active = experts.top_k + experts.shared_experts
        flops += 2 * 3 * visual * vision.width * experts.mlp_dim * active  # SwiGLU experts
    if cfg.retrieves:
        for level in cfg.levels:  # the knowledge cross-attention over top-k cues + prompt
            tokens = level.grid**2
            context = cfg.kb.top_k + text_tokens
            flops += _attention_block(tokens, context, vision.width, vision.width, vision.width)
    flops += 2 * visual * (vision.width * llm.width + llm.width * llm.width)  # projector
    head_dim = llm.width // llm.num_heads
    tokens = visual + text_tokens
    llm_block = _attention_block(
        tokens, tokens, llm.width, llm.num_heads * head_dim, llm.num_kv_heads * head_dim
    )
    flops += llm.depth * (llm_block + 2 * 3 * tokens * llm.width * llm.mlp_dim)
    return flops + 2 * answer_tokens * llm.width * llm.vocab_size  # the loss's projection


def train_flops_per_example(cfg: ModelConfig, text_tokens: int, answer_tokens: int) -> float:
    return 3 * forward_flops(cfg, text_tokens, answer_tokens)
