"""Hugging Face LLaMA-family decoders (LLaMA 2/3, Mistral, Qwen2/2.5) -> `models.decoder.Decoder`.

From a local folder (`config.json` + safetensors, sharded or not; a LLaVA folder works too:
its `text_config` and language-model tensors are used). `llm_settings` derives the
`config.model.llm` values from `config.json` and refuses what the decoder cannot honour,
naming the key. HF Linear weights are [out, in]; our q/k/v kernels are [D, heads, head_dim]
and the output kernel [heads, head_dim, D]; blocks are stacked on a leading 'layers' axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
from flax import nnx

from rs_jax.convert import weights
from rs_jax.models.config import DecoderConfig, Precision, StackConfig
from rs_jax.models.decoder import Decoder
from rs_jax.models.layers import merge_lora

MODEL_TYPES = ("llama", "mistral", "qwen2")
ROPE_TYPES = {"default": "none", "linear": "linear", "llama3": "llama3"}
# config.model.llm key <-> config.json key, for the values that carry over unchanged.
SAME_VALUES = (
    ("vocab_size", "vocab_size"),
    ("width", "hidden_size"),
    ("depth", "num_hidden_layers"),
    ("num_heads", "num_attention_heads"),
    ("num_kv_heads", "num_key_value_heads"),
    ("mlp_dim", "intermediate_size"),
    ("norm_eps", "rms_norm_eps"),
    ("tie_embeddings", "tie_word_embeddings"),
)


def llm_settings(folder: str | Path) -> dict[str, Any]:
    """`config.model.llm` values equivalent to `folder`'s config.json; ValueError naming
    the config.json key of anything the decoder does not support."""
    folder = Path(folder)
    hf = weights.read_hf_config(folder, "text_config")
    weights.check_fits(hf.model_type, "model_type", MODEL_TYPES, folder)
    weights.check_fits(hf.hidden_act, "hidden_act", ("silu",), folder)
    head_dim = hf.hidden_size // hf.num_attention_heads
    weights.check_fits(getattr(hf, "head_dim", None) or head_dim, "head_dim", (head_dim,), folder)
    for key in ("attention_bias", "mlp_bias", "use_sliding_window"):
        weights.check_fits(bool(getattr(hf, key, False)), key, (False,), folder)
    rope = dict(hf.rope_parameters)
    rope_type = rope.get("rope_type", "default")
    weights.check_fits(rope_type, "rope_parameters.rope_type", tuple(ROPE_TYPES), folder)
    sliding_window = getattr(hf, "sliding_window", None) if hf.model_type == "mistral" else None
    if hf.num_key_value_heads is None:  # older configs: multi-head attention
        hf.num_key_value_heads = hf.num_attention_heads
    return dict(
        {ours: getattr(hf, theirs) for ours, theirs in SAME_VALUES},
        rope_theta=float(rope["rope_theta"]),
        rope_scaling=dict(
            type=ROPE_TYPES[rope_type],
            factor=float(rope.get("factor", 1.0)),
            low_freq_factor=float(rope.get("low_freq_factor", 1.0)),
            high_freq_factor=float(rope.get("high_freq_factor", 4.0)),
            original_max_positions=int(rope.get("original_max_position_embeddings", 8192)),
        ),
        sliding_window=int(sliding_window or 0),
        qkv_bias=hf.model_type == "qwen2",
    )


def weight_map(cfg: DecoderConfig, group_size: int, prefix: str, head: str) -> dict:
    """Our parameter path -> weights.Source. Blocks are scanned in groups of `group_size`
    (`llm.moe_every`), so block i of group g is HF layer g * group_size + i."""
    d, n, k, h = cfg.width, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    mapping = {
        ("embedding", "embedding"): weights.Source(f"{prefix}embed_tokens.weight"),
        ("final_norm", "scale"): weights.Source(f"{prefix}norm.weight"),
    }
    if not cfg.tie_embeddings:
        mapping[("lm_head",)] = weights.Source(head, weights.TRANSPOSED)
    groups = cfg.depth // group_size
    for i in range(group_size):

        def layers(name: str, i=i) -> tuple[str, ...]:
            return tuple(f"{prefix}layers.{g * group_size + i}.{name}" for g in range(groups))

        block = ("groups", "blocks", "blocks", i)
        for ours, theirs, heads in (("query", "q", n), ("key", "k", k), ("value", "v", k)):
            mapping[(*block, "attn", ours, "kernel")] = weights.Source(
                layers(f"self_attn.{theirs}_proj.weight"), weights.split_heads(d, heads, h)
            )
            if cfg.qkv_bias:
                mapping[(*block, "attn", ours, "bias")] = weights.Source(
                    layers(f"self_attn.{theirs}_proj.bias"), weights.bias_heads(heads, h)
                )
        mapping[(*block, "attn", "out", "kernel")] = weights.Source(
            layers("self_attn.o_proj.weight"), weights.merge_heads(n, h, d)
        )
        mapping[(*block, "attn_norm", "scale")] = weights.Source(layers("input_layernorm.weight"))
        mapping[(*block, "mlp_norm", "scale")] = weights.Source(
            layers("post_attention_layernorm.weight")
        )
        for proj in ("gate", "up", "down"):
            mapping[(*block, "mlp", proj, "kernel")] = weights.Source(
                layers(f"mlp.{proj}_proj.weight"), weights.TRANSPOSED
            )
    return mapping


def load_weights(decoder: Decoder, folder: str | Path) -> None:
    """Sets every pretrained parameter of `decoder` from `folder`, streamed shard by shard
    onto the parameters' shardings (a visual-token MoE, if any, keeps its own init)."""
    checkpoint = weights.Checkpoint(folder)
    prefix = weights.find_prefix(
        checkpoint.names, "embed_tokens.weight", "decoder", checkpoint.folder
    )
    head = prefix.removesuffix("model.").removesuffix("language_model.") + "lm_head.weight"
    if not decoder.cfg.tie_embeddings and head not in checkpoint.names:
        head = weights.find_prefix(checkpoint.names, "lm_head.weight", "decoder", checkpoint.folder)
        head += "lm_head.weight"
    mapping = weight_map(decoder.cfg, decoder.group_size, prefix, head)
    weights.load_into(
        decoder,
        mapping,
        checkpoint,
        what="decoder",
        owned=lambda name: name.startswith(prefix) or name == head,
        # Older checkpoints store RoPE's inverse frequencies; they follow from config.json.
        ignored=lambda name: name.endswith("rotary_emb.inv_freq"),
        # New parts trained from their own init: a visual-token MoE, LoRA adapters.
        fresh=lambda path: "moe" in path or path[-1] in ("lora_a", "lora_b"),
    )


def load_decoder(
    folder: str | Path,
    mesh: jax.sharding.Mesh,
    rules: Sequence[tuple],
) -> Decoder:
    """A `Decoder` holding `folder`'s weights, sharded on `mesh` by the logical `rules`;
    no random initialisation happens and no tensor is held twice."""
    no_lora = {"rank": 0, "alpha": 1.0, "targets": ()}
    settings = {**llm_settings(folder), "moe_every": 0, "lora": no_lora}
    cfg = DecoderConfig.from_config(settings)
    make = lambda: Decoder(cfg, Precision(), StackConfig(), rngs=nnx.Rngs(0))
    return weights.load_abstract(make, lambda decoder: load_weights(decoder, folder), mesh, rules)


def hf_config(cfg: DecoderConfig, model_type: str | None = None) -> Any:
    """The transformers config of `cfg`: LLaMA, Mistral (with a sliding window) or Qwen2
    (q/k/v biases), by default the one whose features `cfg` uses."""
    import transformers

    model_type = model_type or (
        "qwen2" if cfg.qkv_bias else "mistral" if cfg.sliding_window else "llama"
    )
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type={model_type!r}: expected one of {', '.join(MODEL_TYPES)}")
    if cfg.qkv_bias != (model_type == "qwen2"):
        raise ValueError(f"llm.qkv_bias={cfg.qkv_bias} has no {model_type} equivalent")
    if cfg.sliding_window and model_type != "mistral":
        raise ValueError(f"llm.sliding_window={cfg.sliding_window} has no {model_type} equivalent")
    rope = cfg.rope
    rope_type = {value: key for key, value in ROPE_TYPES.items()}[rope.scaling]
    rope_parameters = {"rope_type": rope_type, "rope_theta": rope.theta}
    if rope.scaling != "none":
        rope_parameters["factor"] = rope.factor
    if rope.scaling == "llama3":
        rope_parameters |= {
            "low_freq_factor": rope.low_freq_factor,
            "high_freq_factor": rope.high_freq_factor,
            "original_max_position_embeddings": rope.original_max_positions,
        }
    config_class = {
        "llama": transformers.LlamaConfig,
        "mistral": transformers.MistralConfig,
        "qwen2": transformers.Qwen2Config,
    }[model_type]
    extra = {"sliding_window": cfg.sliding_window or None} if model_type == "mistral" else {}
    return config_class(
        **{theirs: getattr(cfg, ours) for ours, theirs in SAME_VALUES},
        hidden_act="silu",
        rope_parameters=rope_parameters,
        # Positions are not bounded by the model; RoPE scaling needs a larger bound.
        max_position_embeddings=int(max(4096, rope.factor * rope.original_max_positions)),
        **extra,
    )


def export_decoder(
    decoder: Decoder, folder: str | Path, *, model_type: str | None = None, dtype: Any = None
) -> None:
    """Writes `decoder` as a transformers folder (`config.json` + safetensors) that
    `AutoModelForCausalLM.from_pretrained` loads, LoRA adapters merged into the kernels.
    `folder` must not hold a model already."""
    if decoder.group_size > 1:
        raise ValueError(
            "a decoder with visual-token MoE blocks (llm.moe_every) has no transformers "
            "equivalent; export the dense decoder (llm.moe_every=0)"
        )
    folder = Path(folder)
    if (folder / "config.json").exists():
        raise FileExistsError(f"{folder} already holds a model (config.json); choose another")
    config = hf_config(decoder.cfg, model_type)
    if decoder.cfg.lora.rank:
        decoder = merge_lora(decoder)
    head = "lm_head.weight"
    weights.export_from(decoder, weight_map(decoder.cfg, 1, "model.", head), folder, dtype=dtype)
    config.save_pretrained(folder)
