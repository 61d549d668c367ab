"""Typed, frozen model configs, built once from `config.model` and handed to the modules.

`ModelConfig.from_config(config.model)` checks every value and names the key of the first
one out of range; the modules then read plain attributes and never see the ConfigDict.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# none: keep every activation for the backward pass. dots: keep the output of every matmul
# with a weight, recompute the rest. projections: keep only the q/k/v/out and MLP
# projections. full: keep only each block's input and recompute the block.
REMAT_POLICIES = ("none", "dots", "projections", "full")
# How attention is computed (models/attention.py); "auto" picks by the compiled-for platform.
ATTENTION_KERNELS = ("auto", "xla", "splash", "cudnn")
DISPATCH_MODES = ("einsum", "dropless")
# The ViT MLP's nonlinearity: SigLIP's tanh-approximated GELU, exact GELU, CLIP's x*sigmoid(1.702x).
ACTIVATIONS = ("gelu_tanh", "gelu", "quick_gelu")
# RoPE frequency scaling: none, positions divided by a factor, or Llama 3's per-band scaling.
ROPE_SCALINGS = ("none", "linear", "llama3")
# Activations named with `jax.ad_checkpoint.checkpoint_name`; the `projections` policy saves
# these and recomputes everything else in a block.
PROJECTION_NAMES = ("query", "key", "value", "attention_out", "mlp_in", "mlp_out")
# Every other weight matmul (layers.Einsum) names its output this.
DENSE_NAME = "dense"


class ModelConfigError(ValueError):
    """A `config.model` value is out of range; the message names the key."""


def _require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ModelConfigError(f"config.model.{key}={value!r}: {expected}")


def _positive(section: Mapping[str, Any], prefix: str, *keys: str) -> None:
    for key in keys:
        value = section[key]
        _require(isinstance(value, int) and value > 0, f"{prefix}.{key}", value, "must be >= 1")


@dataclasses.dataclass(frozen=True)
class Precision:
    """Activations and matmul operands in `dtype` (matmuls accumulate in float32), weights
    stored in `param_dtype`. Softmax, norms, RoPE, the router and the loss run in float32."""

    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32


@dataclasses.dataclass(frozen=True)
class Layers:
    """How a stack of identical blocks runs: one `jax.lax.scan` over stacked parameters
    (compile time independent of depth) or unrolled, what the backward pass keeps, and which
    kernel computes the blocks' self-attention."""

    scan: bool = True
    remat_policy: str = "none"
    attention: str = "auto"

    def checkpoint_policy(self):
        """The `jax.checkpoint` policy of `remat_policy` (None: no rematerialisation)."""
        policies = jax.checkpoint_policies
        return {
            "none": None,
            # By name as well: below float32 the matmuls run inside a custom VJP, which the
            # primitive-based policy does not see.
            "dots": policies.save_from_both_policies(
                policies.dots_with_no_batch_dims_saveable,
                policies.save_only_these_names(*PROJECTION_NAMES, DENSE_NAME),
            ),
            "projections": policies.save_only_these_names(*PROJECTION_NAMES),
            "full": policies.nothing_saveable,
        }[self.remat_policy]


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """A ViT. The optional parts are those of pretrained towers: CLIP has a class token, a
    LayerNorm before the blocks, no patch bias and quick GELU; SigLIP none of these."""

    image_size: int
    patch_size: int
    width: int
    depth: int
    num_heads: int
    mlp_dim: int
    class_token: bool = False
    pre_norm: bool = False
    final_norm: bool = True  # LayerNorm on the last block's tokens (SigLIP; not CLIP)
    patch_bias: bool = True
    activation: str = "gelu_tanh"
    norm_eps: float = 1e-6
    # Pixels in [0, 1] are normalised as (x - mean) / std per channel, as the tower was trained.
    pixel_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    pixel_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @property
    def grid(self) -> int:
        """Patches per image side."""
        return self.image_size // self.patch_size


@dataclasses.dataclass(frozen=True)
class LevelConfig:
    """One semantic level: the ViT block it taps, the grid its patch tokens are pooled to,
    and the knowledge-base level its cues come from."""

    name: str
    block: int
    grid: int
    kb_level: str


@dataclasses.dataclass(frozen=True)
class KnowledgeConfig:
    dim: int
    top_k: int
    approx: bool
    recall_target: float
    trainable: bool
    adapter: bool
    retrieval_loss_weight: float


@dataclasses.dataclass(frozen=True)
class ExpertsConfig:
    """A level-grouped mixture of experts: the semantic experts and the decoder's MoE blocks."""

    num_levels: int
    experts_per_level: int
    shared_experts: int
    top_k: int
    capacity_factor: float
    mlp_dim: int
    dispatch: str
    router_jitter: float
    coarse_to_fine: bool
    balance_loss_weight: float
    z_loss_weight: float

    @property
    def num_experts(self) -> int:
        return self.num_levels * self.experts_per_level


@dataclasses.dataclass(frozen=True)
class Lora:
    """Low-rank adapters on the decoder's projections: y += (alpha / rank) * x A B, with
    B zero at the start (the adapted model starts as the base one). rank 0: none."""

    rank: int = 0
    alpha: float = 16.0
    targets: tuple[str, ...] = PROJECTION_NAMES

    def applies_to(self, tag: str) -> bool:
        return self.rank > 0 and tag in self.targets

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


@dataclasses.dataclass(frozen=True)
class Rope:
    """Rotary position embedding: inverse frequencies theta^(-2i/H), optionally scaled."""

    theta: float = 10_000.0
    scaling: str = "none"
    factor: float = 1.0
    # llama3 only: wavelengths above original_max_positions / low_freq_factor are divided
    # by factor, those below original_max_positions / high_freq_factor kept, and the band
    # between interpolated.
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_positions: int = 8192


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int  # 0 until resolved against the tokenizer (ModelConfig.with_vocab)
    width: int
    depth: int
    num_heads: int
    num_kv_heads: int
    mlp_dim: int
    rope: Rope
    qkv_bias: bool
    tie_embeddings: bool
    moe_every: int  # 0: dense; N: blocks N-1, 2N-1, ... route the visual tokens
    norm_eps: float = 1e-6
    sliding_window: int = 0  # > 0: a token attends to the last this many positions only
    lora: Lora = Lora()

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    baseline: bool
    vision: VisionConfig
    levels: tuple[LevelConfig, ...]
    kb: KnowledgeConfig
    augment_heads: int
    experts: ExpertsConfig
    llm: DecoderConfig
    precision: Precision
    layers: Layers

    @property
    def level_names(self) -> tuple[str, ...]:
        return tuple(level.name for level in self.levels)

    @property
    def visual_tokens(self) -> int:
        """Visual tokens per image in the decoder's sequence (V)."""
        if self.baseline:
            return self.vision.grid**2
        return sum(level.grid**2 for level in self.levels)

    @property
    def kb_levels(self) -> tuple[str, ...]:
        """The knowledge-base level each model level retrieves from, coarse to fine."""
        return tuple(level.kb_level for level in self.levels)

    def with_vocab(self, tokenizer_size: int) -> ModelConfig:
        """Resolve `llm.vocab_size` (0 = the tokenizer's size; larger pads the table)."""
        size = self.llm.vocab_size or tokenizer_size
        _require(
            size >= tokenizer_size,
            "llm.vocab_size",
            self.llm.vocab_size,
            f"smaller than the tokenizer's {tokenizer_size} tokens",
        )
        return dataclasses.replace(self, llm=dataclasses.replace(self.llm, vocab_size=size))

    @classmethod
    def from_config(cls, model: Mapping[str, Any], image_size: int) -> ModelConfig:
        """From `config.model` (and `config.data.image_size`); raises naming the bad key."""
        for key in ("dtype", "param_dtype"):
            _require(model[key] in DTYPES, key, model[key], f"expected one of {list(DTYPES)}")
        _require(
            model.remat_policy in REMAT_POLICIES,
            "remat_policy",
            model.remat_policy,
            f"expected one of {list(REMAT_POLICIES)}",
        )
        _require(
            model.attention in ATTENTION_KERNELS,
            "attention",
            model.attention,
            f"expected one of {list(ATTENTION_KERNELS)}",
        )
        _require(
            model.attention != "cudnn" or model.dtype == "bfloat16",
            "attention",
            model.attention,
            "cuDNN's fused attention runs in bfloat16: set config.model.dtype='bfloat16'",
        )
        vision = vision_config(model.vision, image_size)
        levels = _levels(model.levels, vision)
        llm = decoder_config(model.llm)
        return cls(
            baseline=bool(model.baseline),
            vision=vision,
            levels=levels,
            kb=_knowledge(model.kb),
            augment_heads=_augment_heads(model.augment, vision.width),
            experts=_experts(model.experts, len(levels)),
            llm=llm,
            precision=Precision(DTYPES[model.dtype], DTYPES[model.param_dtype]),
            layers=Layers(bool(model.scan_layers), model.remat_policy, model.attention),
        )


def vision_config(v: Mapping[str, Any], image_size: int) -> VisionConfig:
    _positive(v, "vision", "patch_size", "width", "depth", "num_heads", "mlp_dim")
    _require(
        image_size % v.patch_size == 0,
        "vision.patch_size",
        v.patch_size,
        f"must divide config.data.image_size={image_size}",
    )
    _require(
        v.width % v.num_heads == 0,
        "vision.num_heads",
        v.num_heads,
        f"must divide vision.width={v.width}",
    )
    _require(
        v.activation in ACTIVATIONS,
        "vision.activation",
        v.activation,
        f"expected one of {list(ACTIVATIONS)}",
    )
    _require(v.norm_eps > 0, "vision.norm_eps", v.norm_eps, "must be > 0")
    for key in ("pixel_mean", "pixel_std"):
        value = tuple(v[key])
        _require(len(value) == 3, f"vision.{key}", value, "expected 3 values (R, G, B)")
    _require(min(v.pixel_std) > 0, "vision.pixel_std", tuple(v.pixel_std), "must be > 0")
    return VisionConfig(
        image_size,
        v.patch_size,
        v.width,
        v.depth,
        v.num_heads,
        v.mlp_dim,
        class_token=bool(v.class_token),
        pre_norm=bool(v.pre_norm),
        final_norm=bool(v.final_norm),
        patch_bias=bool(v.patch_bias),
        activation=v.activation,
        norm_eps=float(v.norm_eps),
        pixel_mean=tuple(float(x) for x in v.pixel_mean),
        pixel_std=tuple(float(x) for x in v.pixel_std),
    )


def _levels(levels: Any, vision: VisionConfig) -> tuple[LevelConfig, ...]:
    depth = vision.depth
    expected = "a tuple of (name, block, grid[, kb_level]) entries, coarse to fine"
    _require(isinstance(levels, tuple | list) and len(levels) > 0, "levels", levels, expected)
    parsed = []
    for i, entry in enumerate(levels):
        key = f"levels[{i}]"
        _require(isinstance(entry, tuple | list) and len(entry) in (3, 4), key, entry, expected)
        name, block, grid, *kb_level = entry
        _require(isinstance(name, str) and bool(name), key, entry, "the name must be a string")
        _require(
            isinstance(block, int) and -depth <= block < depth,
            key,
            entry,
            f"block {block} is outside the ViT's {depth} blocks",
        )
        _require(
            isinstance(grid, int) and grid >= 1 and vision.grid % grid == 0,
            key,
            entry,
            f"grid must be >= 1 and divide the ViT's {vision.grid}x{vision.grid} patch grid",
        )
        parsed.append(LevelConfig(name, block % depth, grid, kb_level[0] if kb_level else name))
    names = [level.name for level in parsed]
    _require(len(set(names)) == len(names), "levels", levels, "level names must be unique")
    return tuple(parsed)


def _knowledge(kb: Mapping[str, Any]) -> KnowledgeConfig:
    _positive(kb, "kb", "dim", "top_k")
    _require(0 < kb.recall_target <= 1, "kb.recall_target", kb.recall_target, "must be in (0, 1]")
    _require(
        kb.retrieval_loss_weight >= 0,
        "kb.retrieval_loss_weight",
        kb.retrieval_loss_weight,
        "must be >= 0",
    )
    return KnowledgeConfig(
        kb.dim,
        kb.top_k,
        bool(kb.approx),
        float(kb.recall_target),
        bool(kb.trainable),
        bool(kb.adapter),
        float(kb.retrieval_loss_weight),
    )


def _augment_heads(augment: Mapping[str, Any], width: int) -> int:
    _positive(augment, "augment", "num_heads")
    _require(
        width % augment.num_heads == 0,
        "augment.num_heads",
        augment.num_heads,
        f"must divide vision.width={width}",
    )
    return augment.num_heads


def _experts(e: Mapping[str, Any], num_levels: int) -> ExpertsConfig:
    _positive(e, "experts", "experts_per_level", "top_k", "mlp_dim")
    _require(e.shared_experts >= 0, "experts.shared_experts", e.shared_experts, "must be >= 0")
    _require(
        e.top_k <= e.experts_per_level,
        "experts.top_k",
        e.top_k,
        f"exceeds experts_per_level={e.experts_per_level}: a token is routed within its "
        "level's group",
    )
    _require(e.capacity_factor > 0, "experts.capacity_factor", e.capacity_factor, "must be > 0")
    _require(
        e.dispatch in DISPATCH_MODES,
        "experts.dispatch",
        e.dispatch,
        f"expected one of {list(DISPATCH_MODES)}",
    )
    _require(
        0 <= e.router_jitter < 1, "experts.router_jitter", e.router_jitter, "must be in [0, 1)"
    )
    for key in ("balance_loss_weight", "z_loss_weight"):
        _require(e[key] >= 0, f"experts.{key}", e[key], "must be >= 0")
    return ExpertsConfig(
        num_levels=num_levels,
        experts_per_level=e.experts_per_level,
        shared_experts=e.shared_experts,
        top_k=e.top_k,
        capacity_factor=float(e.capacity_factor),
        mlp_dim=e.mlp_dim,
        dispatch=e.dispatch,
        router_jitter=float(e.router_jitter),
        coarse_to_fine=bool(e.coarse_to_fine),
        balance_loss_weight=float(e.balance_loss_weight),
        z_loss_weight=float(e.z_loss_weight),
    )


def decoder_config(llm: Mapping[str, Any]) -> DecoderConfig:
    _positive(llm, "llm", "width", "depth", "num_heads", "num_kv_heads", "mlp_dim")
    _require(llm.vocab_size >= 0, "llm.vocab_size", llm.vocab_size, "must be >= 0")
    _require(
        llm.width % llm.num_heads == 0 and (llm.width // llm.num_heads) % 2 == 0,
        "llm.num_heads",
        llm.num_heads,
        f"must divide llm.width={llm.width} into an even head size (RoPE rotates pairs)",
    )
    _require(
        llm.num_heads % llm.num_kv_heads == 0,
        "llm.num_kv_heads",
        llm.num_kv_heads,
        f"must divide llm.num_heads={llm.num_heads}",
    )
    _require(
        0 < llm.rope_theta < math.inf, "llm.rope_theta", llm.rope_theta, "must be > 0 and finite"
    )
    _require(llm.norm_eps > 0, "llm.norm_eps", llm.norm_eps, "must be > 0")
    _require(llm.sliding_window >= 0, "llm.sliding_window", llm.sliding_window, "must be >= 0")
    _require(
        llm.moe_every >= 0 and (llm.moe_every == 0 or llm.depth % llm.moe_every == 0),
        "llm.moe_every",
        llm.moe_every,
        f"must be 0 or divide llm.depth={llm.depth} (blocks are scanned in groups of it)",
    )
    return DecoderConfig(
        vocab_size=llm.vocab_size,
        width=llm.width,
        depth=llm.depth,
        num_heads=llm.num_heads,
        num_kv_heads=llm.num_kv_heads,
        mlp_dim=llm.mlp_dim,
        rope=_rope(llm.rope_theta, llm.rope_scaling),
        qkv_bias=bool(llm.qkv_bias),
        tie_embeddings=bool(llm.tie_embeddings),
        moe_every=llm.moe_every,
        norm_eps=float(llm.norm_eps),
        sliding_window=llm.sliding_window,
        lora=_lora(llm.lora),
    )


def _lora(lora: Mapping[str, Any]) -> Lora:
    _require(lora.rank >= 0, "llm.lora.rank", lora.rank, "must be >= 0 (0 = no adapters)")
    _require(lora.alpha > 0, "llm.lora.alpha", lora.alpha, "must be > 0")
    targets = tuple(lora.targets)
    unknown = [t for t in targets if t not in PROJECTION_NAMES]
    _require(not unknown, "llm.lora.targets", targets, f"expected some of {list(PROJECTION_NAMES)}")
    return Lora(lora.rank, float(lora.alpha), targets)


def _rope(theta: float, scaling: Mapping[str, Any]) -> Rope:
    key = "llm.rope_scaling"
    _require(
        scaling.type in ROPE_SCALINGS,
        f"{key}.type",
        scaling.type,
        f"expected one of {list(ROPE_SCALINGS)}",
    )
    _require(scaling.factor >= 1, f"{key}.factor", scaling.factor, "must be >= 1")
    _require(
        0 < scaling.low_freq_factor < scaling.high_freq_factor,
        f"{key}.low_freq_factor",
        scaling.low_freq_factor,
        f"must be in (0, high_freq_factor={scaling.high_freq_factor})",
    )
    _positive(scaling, key, "original_max_positions")
    return Rope(
        theta=float(theta),
        scaling=scaling.type,
        factor=float(scaling.factor),
        low_freq_factor=float(scaling.low_freq_factor),
        high_freq_factor=float(scaling.high_freq_factor),
        original_max_positions=scaling.original_max_positions,
    )
