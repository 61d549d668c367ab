"""Typed, frozen model configs: the one schema of `config.model`.

Each dataclass holds its fields' defaults and a line on each; `model_defaults()` lays them
out as `config.model` (configs/common.py takes it from there: no default is written twice).
Each checks its own values when constructed and names the key of the first one out of
range (`config.model.llm.num_kv_heads=3: must divide llm.num_heads=4`), so a config built
by hand, a converter or `dataclasses.replace` is checked like one from a config file.
`ModelConfig.from_config(config.model, image_size)` builds them; the modules then read plain
attributes and never see the ConfigDict. Construction is by keyword only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

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
# Where the KB's top-k is found: inside jit, or by the input pipeline's ScaNN search.
RETRIEVAL_MODES = ("device", "host")
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


def _positive(section: Any, prefix: str, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        _require(isinstance(value, int) and value > 0, f"{prefix}.{name}", value, "must be >= 1")


def _one_of(value: Any, choices: tuple[str, ...], key: str) -> None:
    _require(value in choices, key, value, f"expected one of {list(choices)}")


def _keys(cls: type) -> dict[str, Any]:
    """The config keys of a section and their defaults: the fields of `cls` with a default.
    A field without one is set from outside the section (`VisionConfig.image_size`)."""
    keys = {}
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            keys[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            keys[field.name] = field.default_factory()
    return keys


def _like(default: Any, value: Any) -> Any:
    """`value` in the type of `default`: an override of a float field may be an int, a
    tuple arrives as a JSON list from a run's stored config."""
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, tuple):
        return tuple(_like(default[0], v) for v in value) if default else tuple(value)
    return value


def _read(cls: type, section: Mapping[str, Any], **given: Any) -> Any:
    """`cls` from its config section, with the `given` fields set from elsewhere."""
    keys = _keys(cls).items()
    values = {key: _like(default, section[key]) for key, default in keys if key not in given}
    return cls(**values, **given)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Precision:
    """Activations and matmul operands in `dtype` (matmuls accumulate in float32), weights
    stored in `param_dtype`. Softmax, norms, RoPE, the router and the loss run in float32.
    Set by `config.model.dtype` and `config.model.param_dtype` ("float32" | "bfloat16")."""

    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32  # and so the optimizer's master copy

    @classmethod
    def from_config(cls, model: Mapping[str, Any]) -> Precision:
        for key in ("dtype", "param_dtype"):
            _one_of(model[key], tuple(DTYPES), key)
        return cls(dtype=DTYPES[model["dtype"]], param_dtype=DTYPES[model["param_dtype"]])

    def to_config(self) -> dict[str, str]:
        names = {jnp.dtype(dtype): name for name, dtype in DTYPES.items()}
        return dict(
            dtype=names[jnp.dtype(self.dtype)], param_dtype=names[jnp.dtype(self.param_dtype)]
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class StackConfig:
    """How a stack of identical blocks (models/stack.py: LayerStack, the ViT's and the
    decoder's) runs: one `jax.lax.scan` over stacked parameters or unrolled, what its
    backward pass keeps, and which kernel computes the blocks' self-attention.
    `config.model.scan_layers`, `.remat_policy`, `.attention`."""

    # One jax.lax.scan (compile time independent of depth), else unrolled; the parameters
    # are stacked either way, so checkpoints do not depend on it.
    scan: bool = True
    remat_policy: str = "none"  # what each block keeps for the backward pass: REMAT_POLICIES
    # "xla" (einsum, the reference), "splash" (Pallas TPU kernel; interpreted on CPU),
    # "cudnn" (fused GPU kernel, bfloat16), "auto" (splash on TPU, cudnn on GPU in bf16, else xla).
    attention: str = "auto"

    # The config.model key of each field.
    KEYS: ClassVar[dict[str, str]] = dict(
        scan="scan_layers", remat_policy="remat_policy", attention="attention"
    )

    def __post_init__(self):
        _one_of(self.remat_policy, REMAT_POLICIES, "remat_policy")
        _one_of(self.attention, ATTENTION_KERNELS, "attention")

    @classmethod
    def from_config(cls, model: Mapping[str, Any]) -> StackConfig:
        return _read(cls, {field: model[key] for field, key in cls.KEYS.items()})

    def to_config(self) -> dict[str, Any]:
        return {key: getattr(self, field) for field, key in self.KEYS.items()}

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


@dataclasses.dataclass(frozen=True, kw_only=True)
class VisionConfig:
    """`config.model.vision`: a ViT. The optional parts are those of pretrained towers (set
    from config.json on import, docs/pretrained.md): CLIP has a class token, a LayerNorm
    before the blocks, no patch bias, quick GELU and no LayerNorm after the last block."""

    image_size: int  # config.data.image_size
    patch_size: int = 4
    width: int = 96
    depth: int = 4
    num_heads: int = 4
    mlp_dim: int = 192
    class_token: bool = False
    pre_norm: bool = False  # LayerNorm on the patch embeddings before the blocks (CLIP)
    final_norm: bool = True  # LayerNorm on the last block's tokens (SigLIP; not CLIP)
    patch_bias: bool = True
    activation: str = "gelu_tanh"  # the MLP's: ACTIVATIONS
    norm_eps: float = 1e-6
    # Pixels in [0, 1] become (x - mean) / std per channel, as the tower was trained.
    pixel_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    pixel_std: tuple[float, ...] = (0.5, 0.5, 0.5)

    def __post_init__(self):
        _positive(self, "vision", "patch_size", "width", "depth", "num_heads", "mlp_dim")
        _require(
            self.image_size % self.patch_size == 0,
            "vision.patch_size",
            self.patch_size,
            f"must divide config.data.image_size={self.image_size}",
        )
        _require(
            self.width % self.num_heads == 0,
            "vision.num_heads",
            self.num_heads,
            f"must divide vision.width={self.width}",
        )
        _one_of(self.activation, ACTIVATIONS, "vision.activation")
        _require(self.norm_eps > 0, "vision.norm_eps", self.norm_eps, "must be > 0")
        for key in ("pixel_mean", "pixel_std"):
            value = getattr(self, key)
            _require(len(value) == 3, f"vision.{key}", value, "expected 3 values (R, G, B)")
        _require(min(self.pixel_std) > 0, "vision.pixel_std", self.pixel_std, "must be > 0")

    @classmethod
    def from_config(cls, vision: Mapping[str, Any], image_size: int) -> VisionConfig:
        return _read(cls, vision, image_size=image_size)

    @property
    def grid(self) -> int:
        """Patches per image side."""
        return self.image_size // self.patch_size


@dataclasses.dataclass(frozen=True, kw_only=True)
class LevelConfig:
    """One semantic level: the ViT block it taps, the grid its patch tokens are pooled to,
    and the knowledge-base level its cues come from. `config.model.levels` holds one
    `(name, block, grid[, kb_level])` entry per level, coarse to fine; a negative block
    counts from the last, and kb_level defaults to the name."""

    name: str
    block: int
    grid: int
    kb_level: str

    # config.model.levels' default: a scene level on the last block but one, pooled to one
    # token; land cover on 2x2; objects on 4x4.
    DEFAULTS: ClassVar[tuple[tuple[str, int, int], ...]] = (
        ("scene", 3, 1),
        ("landcover", 2, 2),
        ("object", 1, 4),
    )

    @classmethod
    def from_config(cls, levels: Any, vision: VisionConfig) -> tuple[LevelConfig, ...]:
        """`config.model.levels`, checked against the ViT: one LevelConfig a level."""
        depth = vision.depth
        expected = "a tuple of (name, block, grid[, kb_level]) entries, coarse to fine"
        _require(isinstance(levels, tuple | list) and len(levels) > 0, "levels", levels, expected)
        parsed = []
        for i, entry in enumerate(levels):
            key = f"levels[{i}]"
            ok = isinstance(entry, tuple | list) and len(entry) in (3, 4)
            _require(ok, key, entry, expected)
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
            kb_level = kb_level[0] if kb_level else name
            parsed.append(cls(name=name, block=block % depth, grid=grid, kb_level=kb_level))
        names = [level.name for level in parsed]
        _require(len(set(names)) == len(names), "levels", levels, "level names must be unique")
        return tuple(parsed)

    def to_config(self) -> tuple[str, int, int] | tuple[str, int, int, str]:
        entry = (self.name, self.block, self.grid)
        return entry if self.kb_level == self.name else (*entry, self.kb_level)


@dataclasses.dataclass(frozen=True, kw_only=True)
class KnowledgeConfig:
    """`config.model.kb`: the knowledge base the levels retrieve their cues from, and how."""

    # "" = a learned table over the dataset's own label vocabulary; else a directory made
    # by `rs-jax kb build` (its dimension must equal dim).
    source: str = ""
    dim: int = 64
    trainable: bool = False  # built KB: fine-tune the table itself (else frozen)
    adapter: bool = False  # built KB: a trainable residual linear map on the frozen table
    top_k: int = 3
    # "device": each level's top-k of the model's learned query, inside jit. "host": a
    # frozen query (the question's sentence embedding) searches the built KB's ScaNN index
    # in the input pipeline; needs source. See docs/knowledge_base.md.
    retrieval: str = "device"
    approx: bool = False  # lax.approx_max_k instead of exact lax.top_k
    recall_target: float = 0.95  # approx_max_k's
    retrieval_loss_weight: float = 0.1

    def __post_init__(self):
        _positive(self, "kb", "dim", "top_k")
        _one_of(self.retrieval, RETRIEVAL_MODES, "kb.retrieval")
        _require(
            0 < self.recall_target <= 1, "kb.recall_target", self.recall_target, "must be in (0, 1]"
        )
        _require(
            self.retrieval_loss_weight >= 0,
            "kb.retrieval_loss_weight",
            self.retrieval_loss_weight,
            "must be >= 0",
        )

    @classmethod
    def from_config(cls, kb: Mapping[str, Any]) -> KnowledgeConfig:
        return _read(cls, kb)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    """`config.model.augment`: the cross-attention of each level's tokens to [cues; prompt]."""

    num_heads: int = 4

    def __post_init__(self):
        _positive(self, "augment", "num_heads")

    @classmethod
    def from_config(cls, augment: Mapping[str, Any]) -> AugmentConfig:
        return _read(cls, augment)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExpertsConfig:
    """`config.model.experts`: a level-grouped mixture of experts, the semantic experts and
    the decoder's MoE blocks (docs/experts.md)."""

    num_levels: int  # len(config.model.levels)
    experts_per_level: int = 2
    shared_experts: int = 1  # every token also goes through these
    top_k: int = 1  # among its level's experts
    capacity_factor: float = 1.5
    mlp_dim: int = 192
    balance_loss_weight: float = 0.01
    z_loss_weight: float = 1e-3
    # "einsum": GShard capacity dispatch (drops overflow); "dropless": shard_map +
    # all-to-all over 'expert' + ragged_dot.
    dispatch: str = "einsum"
    router_jitter: float = 0.0  # training only: router inputs times U(1 - jitter, 1 + jitter)
    # Level l's router and expert input also see level l - 1's projected mean token.
    coarse_to_fine: bool = True

    def __post_init__(self):
        _positive(self, "experts", "experts_per_level", "top_k", "mlp_dim")
        _require(
            self.shared_experts >= 0, "experts.shared_experts", self.shared_experts, "must be >= 0"
        )
        _require(
            self.top_k <= self.experts_per_level,
            "experts.top_k",
            self.top_k,
            f"exceeds experts_per_level={self.experts_per_level}: a token is routed within its "
            "level's group",
        )
        _require(
            self.capacity_factor > 0, "experts.capacity_factor", self.capacity_factor, "must be > 0"
        )
        _one_of(self.dispatch, DISPATCH_MODES, "experts.dispatch")
        _require(
            0 <= self.router_jitter < 1,
            "experts.router_jitter",
            self.router_jitter,
            "must be in [0, 1)",
        )
        for key in ("balance_loss_weight", "z_loss_weight"):
            _require(getattr(self, key) >= 0, f"experts.{key}", getattr(self, key), "must be >= 0")

    @classmethod
    def from_config(cls, experts: Mapping[str, Any], num_levels: int) -> ExpertsConfig:
        return _read(cls, experts, num_levels=num_levels)

    @property
    def num_experts(self) -> int:
        return self.num_levels * self.experts_per_level


@dataclasses.dataclass(frozen=True, kw_only=True)
class Lora:
    """`config.model.llm.lora`: low-rank adapters on the decoder's projections (stage 2
    instruction tuning with train.freeze=("vision", "llm")): y += (alpha / rank) * x A B,
    with B zero at the start (the adapted model starts as the base one)."""

    rank: int = 0  # 0: no adapters
    alpha: float = 16.0
    targets: tuple[str, ...] = PROJECTION_NAMES  # some of the q/k/v/out and MLP projections

    def __post_init__(self):
        _require(self.rank >= 0, "llm.lora.rank", self.rank, "must be >= 0 (0 = no adapters)")
        _require(self.alpha > 0, "llm.lora.alpha", self.alpha, "must be > 0")
        unknown = [t for t in self.targets if t not in PROJECTION_NAMES]
        expected = f"expected some of {list(PROJECTION_NAMES)}"
        _require(not unknown, "llm.lora.targets", self.targets, expected)

    @classmethod
    def from_config(cls, lora: Mapping[str, Any]) -> Lora:
        return _read(cls, lora)

    def applies_to(self, tag: str) -> bool:
        return self.rank > 0 and tag in self.targets

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


@dataclasses.dataclass(frozen=True, kw_only=True)
class Rope:
    """Rotary position embedding: inverse frequencies theta^(-2i/H), optionally scaled.
    `config.model.llm.rope_theta` and `config.model.llm.rope_scaling` (its `type` is
    `scaling` here)."""

    theta: float = 10_000.0
    scaling: str = "none"  # ROPE_SCALINGS: "linear" divides positions by factor
    factor: float = 1.0
    # llama3 only: wavelengths above original_max_positions / low_freq_factor are divided
    # by factor, those below original_max_positions / high_freq_factor kept, and the band
    # between interpolated.
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_positions: int = 8192

    KEY: ClassVar[str] = "llm.rope_scaling"

    def __post_init__(self):
        _require(0 < self.theta < math.inf, "llm.rope_theta", self.theta, "must be > 0 and finite")
        _one_of(self.scaling, ROPE_SCALINGS, f"{self.KEY}.type")
        _require(self.factor >= 1, f"{self.KEY}.factor", self.factor, "must be >= 1")
        _require(
            0 < self.low_freq_factor < self.high_freq_factor,
            f"{self.KEY}.low_freq_factor",
            self.low_freq_factor,
            f"must be in (0, high_freq_factor={self.high_freq_factor})",
        )
        _positive(self, self.KEY, "original_max_positions")

    @classmethod
    def from_config(cls, llm: Mapping[str, Any]) -> Rope:
        scaling = dict(llm["rope_scaling"])
        scaling["scaling"] = scaling.pop("type")
        return _read(cls, scaling | dict(theta=llm["rope_theta"]))

    def to_config(self) -> dict[str, Any]:
        scaling = {"type" if key == "scaling" else key: getattr(self, key) for key in _keys(Rope)}
        return dict(rope_theta=scaling.pop("theta"), rope_scaling=scaling)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecoderConfig:
    """`config.model.llm`: a LLaMA-family decoder (RMSNorm, RoPE, SwiGLU, grouped-query
    attention; Qwen2's q/k/v biases optional)."""

    width: int = 128
    depth: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    mlp_dim: int = 256
    rope: Rope = dataclasses.field(default_factory=Rope)
    norm_eps: float = 1e-6
    sliding_window: int = 0  # > 0: a token attends to the last this many positions (Mistral)
    lora: Lora = dataclasses.field(default_factory=Lora)
    qkv_bias: bool = False
    tie_embeddings: bool = True
    # N > 0: blocks N-1, 2N-1, ... send the visual tokens through a level-grouped MoE
    # (routing settings from config.model.experts); text tokens keep the dense FFN.
    moe_every: int = 0
    # 0 = the tokenizer's size (ModelConfig.with_vocab resolves it); larger pads the
    # embedding table (e.g. to a multiple of 128) or plans a model before its tokenizer
    # exists (benchmarks/plan_memory.py).
    vocab_size: int = 0

    def __post_init__(self):
        _positive(self, "llm", "width", "depth", "num_heads", "num_kv_heads", "mlp_dim")
        _require(self.vocab_size >= 0, "llm.vocab_size", self.vocab_size, "must be >= 0")
        _require(
            self.width % self.num_heads == 0 and (self.width // self.num_heads) % 2 == 0,
            "llm.num_heads",
            self.num_heads,
            f"must divide llm.width={self.width} into an even head size (RoPE rotates pairs)",
        )
        _require(
            self.num_heads % self.num_kv_heads == 0,
            "llm.num_kv_heads",
            self.num_kv_heads,
            f"must divide llm.num_heads={self.num_heads}",
        )
        _require(self.norm_eps > 0, "llm.norm_eps", self.norm_eps, "must be > 0")
        _require(
            self.sliding_window >= 0, "llm.sliding_window", self.sliding_window, "must be >= 0"
        )
        _require(
            self.moe_every >= 0 and (self.moe_every == 0 or self.depth % self.moe_every == 0),
            "llm.moe_every",
            self.moe_every,
            f"must be 0 or divide llm.depth={self.depth} (blocks are scanned in groups of it)",
        )

    @classmethod
    def from_config(cls, llm: Mapping[str, Any]) -> DecoderConfig:
        return _read(cls, llm, rope=Rope.from_config(llm), lora=Lora.from_config(llm["lora"]))

    def to_config(self) -> dict[str, Any]:
        values = {}
        for key in _keys(DecoderConfig):
            if key == "rope":
                values |= self.rope.to_config()
            else:
                value = getattr(self, key)
                values[key] = dataclasses.asdict(value) if key == "lora" else value
        return values

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """`config.model`: the whole network. `baseline` turns it into plain LLaVA-1.5 (every
    patch token of the last ViT block, MLP projector, no KB, no experts); the method's two
    parts can also be switched off one at a time (the ablation grid, docs/ablation.md)."""

    vision: VisionConfig
    # Semantic levels, coarse to fine; their number is the length of config.model.levels.
    levels: tuple[LevelConfig, ...]
    experts: ExpertsConfig
    baseline: bool = False
    # Each level's tokens cross-attend to [KB cues retrieved with the prompt; prompt].
    semantic_augmentation: bool = True
    # The level-grouped mixture of experts on the visual tokens.
    semantic_experts: bool = True
    kb: KnowledgeConfig = dataclasses.field(default_factory=KnowledgeConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    llm: DecoderConfig = dataclasses.field(default_factory=DecoderConfig)
    precision: Precision = dataclasses.field(default_factory=Precision)
    stack: StackConfig = dataclasses.field(default_factory=StackConfig)

    def __post_init__(self):
        _require(
            self.vision.width % self.augment.num_heads == 0,
            "augment.num_heads",
            self.augment.num_heads,
            f"must divide vision.width={self.vision.width}",
        )
        _require(
            self.experts.num_levels == len(self.levels),
            "levels",
            self.level_names,
            f"{len(self.levels)} levels, but the experts are grouped into "
            f"experts.num_levels={self.experts.num_levels}",
        )
        _require(
            self.stack.attention != "cudnn" or self.precision.dtype == jnp.bfloat16,
            "attention",
            self.stack.attention,
            "cuDNN's fused attention runs in bfloat16: set config.model.dtype='bfloat16'",
        )
        kb = self.kb
        if kb.retrieval == "host" and not kb.source and self.retrieves:
            raise ModelConfigError(
                "config.model.kb.retrieval='host' searches a built KB's ScaNN index: set "
                "config.model.kb.source to a directory made by `rs-jax kb build` (or use "
                "retrieval='device')"
            )

    @property
    def retrieves(self) -> bool:
        """Whether the levels retrieve knowledge-base cues (and so need a KB)."""
        return not self.baseline and self.semantic_augmentation

    @property
    def has_semantic_experts(self) -> bool:
        return not self.baseline and self.semantic_experts

    @property
    def variant(self) -> str:
        """What the network is, for logs and reports: "baseline", "full", or the levels
        with the parts that are on ("levels", "levels + augmentation", "levels + experts")."""
        if self.baseline:
            return "baseline"
        if self.semantic_augmentation and self.semantic_experts:
            return "full"
        parts = ["augmentation"] * self.semantic_augmentation + ["experts"] * self.semantic_experts
        return " + ".join(["levels", *parts])

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
        _check_known(model, model_defaults(), "config.model")
        precision = Precision.from_config(model)
        vision = VisionConfig.from_config(model["vision"], image_size)
        levels = LevelConfig.from_config(model["levels"], vision)
        # A run stored before the part switches existed has both parts.
        switches = {key: bool(model.get(key, _keys(cls)[key])) for key in _SWITCHES}
        return cls(
            **switches,
            vision=vision,
            levels=levels,
            kb=KnowledgeConfig.from_config(model["kb"]),
            augment=AugmentConfig.from_config(model["augment"]),
            experts=ExpertsConfig.from_config(model["experts"], len(levels)),
            llm=DecoderConfig.from_config(model["llm"]),
            precision=precision,
            stack=StackConfig.from_config(model),
        )


_SWITCHES = ("baseline", "semantic_augmentation", "semantic_experts")


def model_defaults() -> dict[str, Any]:
    """`config.model` with every key at its default (configs/common.py's): the fields of the
    dataclasses above, laid out as the config names them."""
    return (
        {key: _keys(ModelConfig)[key] for key in _SWITCHES}
        | Precision().to_config()
        | StackConfig().to_config()
        | dict(
            vision=_keys(VisionConfig),
            levels=LevelConfig.DEFAULTS,
            kb=_keys(KnowledgeConfig),
            augment=_keys(AugmentConfig),
            experts=_keys(ExpertsConfig),
            llm=DecoderConfig().to_config(),
        )
    )


def _check_known(section: Mapping[str, Any], schema: Mapping[str, Any], key: str) -> None:
    """Every key of `section` is one of `schema`'s: a key nothing reads is an error."""
    for name, value in section.items():
        if name not in schema:
            raise ModelConfigError(
                f"{key}.{name} is no model setting; {key} has {sorted(schema)} "
                "(rs_jax/models/config.py)"
            )
        if isinstance(schema[name], Mapping):
            _check_known(value, schema[name], f"{key}.{name}")
