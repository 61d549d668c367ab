"""Defaults shared by every experiment config; each experiment file overrides what it needs."""

import os
from pathlib import Path
from typing import Any

import ml_collections

# Mesh axes (outermost first) and the logical-axis -> mesh-axes rules every parameter and
# activation is placed by live in rs_jax/sharding.py.
from rs_jax.config_files import parse_value
from rs_jax.data.sources import COMMON_KEYS, SourceConfig, formats
from rs_jax.models.config import model_defaults
from rs_jax.sharding import MESH_AXES, SHARDING_RULES

REPO = Path(__file__).resolve().parents[1]
# The real RS subsets the configs train on: $RS_JAX_SHARED_DATA, by default ../shared/data
# next to the repository (see its README for sources and licenses).
SHARED_DATA = Path(os.environ.get("RS_JAX_SHARED_DATA", REPO.parent / "shared" / "data"))


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.mesh = ml_collections.ConfigDict({axis: 1 for axis in MESH_AXES})
    config.mesh.data = -1
    config.sharding_rules = SHARDING_RULES

    config.data = ml_collections.ConfigDict()
    # "rs_synth" (generated), "folder" (one classification folder at `root`) or "sources"
    # (the datasets of `sources`, mixed by weight; rs_jax/data/sources/).
    config.data.name = "rs_synth"
    config.data.data_dir = ""  # TFDS data dir for rs_synth; "" = <workdir>/data
    config.data.root = ""  # folder dataset: <root>/<split>/<class>/*.jpg|png|tif
    # name "sources": {name: source(format, path, ...)}; see source() below.
    config.data.sources = ml_collections.ConfigDict()
    config.data.train_split = "train"
    config.data.eval_split = "test"
    config.data.image_size = 32
    config.data.num_train = 6000  # rs_synth only
    config.data.num_test = 300  # rs_synth only
    config.data.tasks = ("scene", "presence", "count", "comparison", "rural_urban")
    config.data.tokenizer = ""  # "" = train a WordPiece tokenizer on the task corpus
    # The conversation format (rs_jax/data/templates.json): "plain" (rs-jax's own),
    # "vicuna_v1" (LLaVA, GeoChat), "llama3", "chatml" (Qwen2); a pretrained decoder answers
    # best in the one it was tuned with.
    config.data.template = "plain"
    # How answers write boxes (rs_jax/data/boxes.py; docs/evaluation.md, "Grounding"):
    # "geochat" ({<x1><y1><x2><y2>|<θ>} on a 0-100 grid, rotated) | "qwen" (<box>(x1,y1),
    # (x2,y2)</box> on a 0-1000 grid, horizontal). Grounding answers are written and scored
    # in it.
    config.data.box_format = "geochat"
    config.data.max_prompt_len = 24  # tokens of the question's turn, after the image
    config.data.max_answer_len = 8
    config.data.batch_size = 32  # global, across all hosts (packed: rows)
    # Training rows hold up to `slots` examples' real tokens in `length` decoder tokens
    # (rs_jax/data/packing.py; 0 = one example a row, padded). `length` must hold the
    # longest example: text before the image + visual tokens + max_prompt_len +
    # max_answer_len. Not with host retrieval or config.model.llm.moe_every.
    config.data.packing = ml_collections.ConfigDict(dict(slots=0, length=0))
    # Processes that read and decode training examples beside the training loop (Grain
    # workers; the stream is the same for any count). -1 = half the cores, at most 8;
    # 0 = in the training process.
    config.data.worker_count = -1
    # A pack of this data written by `rs-jax data pack` (local or gs://): read from there,
    # decoded lazily, instead of from the files ("" = the files; docs/data.md, "Packs").
    config.data.pack = ""
    # Skip unreadable images and bad records (counted, listed in the log and eval.json)
    # instead of stopping with an error naming them.
    config.data.allow_skips = False
    # Multispectral images: the three bands shown as R, G, B (e.g. (3, 2, 1): Sentinel-2's
    # B4, B3, B2; () = the file's RGB) and the integer value shown as full brightness
    # (0 = the dtype's maximum; Sentinel-2 L1C reflectance x 10000: about 3000).
    config.data.bands = ()
    config.data.band_max = 0.0
    config.data.seed = 0  # rs_synth: renders the dataset; independent of config.seed

    # Pretrained towers: Hugging Face folders (config.json + *.safetensors) whose
    # architecture replaces config.model.vision / config.model.llm and whose weights
    # initialise them (docs/pretrained.md). "" = train that tower from scratch.
    # from_checkpoint: a run's workdir (its latest checkpoint) or one step directory whose
    # parameters start this run where shapes match (stage 2 from stage 1); new parameters
    # (LoRA adapters) keep their initialisation. A checkpoint of this run's own workdir
    # takes precedence (resuming).
    # vision_types / llm_types: the config.json model_types a preset was made for (empty =
    # any supported); another kind of folder is an error naming the key.
    config.init = ml_collections.ConfigDict(
        dict(vision="", llm="", from_checkpoint="", vision_types=(), llm_types=())
    )
    # Every key, its default and what it means: the dataclasses of rs_jax/models/config.py.
    config.model = ml_collections.ConfigDict(model_defaults())

    config.train = ml_collections.ConfigDict()
    # "answer": the assistant's (answer tokens, with the auxiliary losses). "align":
    # alignment pretraining of the ViT and its levels' queries against the KB's embeddings
    # (configs/align_pretrain.py; rs_jax/train/losses.py).
    config.train.objective = "answer"
    config.train.steps = 2500
    config.train.learning_rate = 1e-3
    config.train.warmup_steps = 100
    config.train.weight_decay = 0.01
    config.train.b1 = 0.9  # AdamW moments
    config.train.b2 = 0.999
    config.train.eps = 1e-8
    config.train.grad_clip = 1.0
    # N > 1: each step sums the gradients of N micro-batches of data.batch_size / N.
    config.train.grad_accum_steps = 1
    # Parts of the model that do not train (no updates, no optimizer state), as dotted
    # parameter-path prefixes: ("vision", "llm") is LLaVA's stage 1 (projector, semantic
    # augmentation and experts train); LoRA adapters inside a frozen part still train.
    config.train.freeze = ()
    # The answer loss projects onto the vocabulary this many entries at a time, so
    # [tokens, vocab] float32 logits never exist at once (0 = the whole vocabulary).
    config.train.loss_vocab_chunk = 0
    config.train.log_every = 50
    config.train.checkpoint_every = 500
    config.train.keep_checkpoints = 2
    config.train.async_checkpoints = True  # write in the background while training goes on
    # A step whose loss, gradients or update are not finite is never applied. "stop": the
    # run ends with an error naming the step (its batch written to the workdir); "skip":
    # the step is dropped, counted and reported.
    config.train.on_nonfinite = "stop"

    config.eval = ml_collections.ConfigDict()
    config.eval.batch_size = 100
    config.eval.max_new_tokens = 6
    config.eval.num_examples = -1  # -1 = the whole eval split
    # "random": each level's cues are drawn at random from its KB entries instead of
    # retrieved (does the model use them?); written to <workdir>/eval_random_cues.
    config.eval.cues = "retrieved"
    return config


def source(format: str, path: str, **values: Any) -> ml_collections.ConfigDict:
    """One entry of config.data.sources: a dataset in `format` at `path` with the format's
    keys (the `FORMAT` of its module in rs_jax/data/sources/) at their defaults but for `values`.
    `source("folder", ".../ucmerced", weight=2.0)`; an unknown key is an error naming it."""
    if format not in formats():
        raise ValueError(f"source format {format!r}; choose from {sorted(formats())}")
    fields = COMMON_KEYS | formats()[format].keys | dict(format=format, path=path)
    SourceConfig.from_config(f"<{format}>", fields | values)  # names an unknown key now
    return ml_collections.ConfigDict(fields | values)


# The rungs of the ablation grid (benchmarks/ablation.py; at most one at a time): the
# baseline, then each part of the method alone on it, then a baseline as large as the full
# model. The config as it is, is the full model.
ABLATIONS = ("baseline", "levels", "retrieval", "experts", "wide")
# The real-data configs' variants (configs/eurosat.py, configs/ucm_mixture.py).
REAL_DATA_ARGS = dict.fromkeys(ABLATIONS, False) | dict(kb=False)
# `wide`: the baseline's MLPs widened until it has the full model's parameters (within 2%
# without the embeddings, which both share; tests/test_config_files.py checks it).
WIDE_MLP_DIMS = dict(vision=576, llm=656)


def from_scratch_64px(config: ml_collections.ConfigDict, arg: ml_collections.ConfigDict) -> None:
    """The real-data configs' model: trained from scratch on 64 px images (8 px patches: an
    8x8 grid), bf16 compute with fp32 master weights and full remat. Variants: `baseline`
    (LLaVA-1.5), `kb` (the shipped curated KB, frozen MiniLM embeddings, built into runs/kb
    by `rs-jax kb build --kb rs_jax/kb/data/rs_kb.jsonl --out runs/kb`)."""
    config.data.image_size = 64
    config.eval.batch_size = 100
    config.model.vision.update(patch_size=8, width=96, depth=4, num_heads=4, mlp_dim=192)
    config.model.dtype = "bfloat16"
    config.model.remat_policy = "full"
    config.train.log_every = 100
    if arg.kb:
        config.model.kb.update(source=str(REPO / "runs" / "kb"), dim=384, top_k=5)
    ablate(config, arg)


def ablate(config: ml_collections.ConfigDict, arg: ml_collections.ConfigDict) -> None:
    """One rung of the ablation grid, ABLATIONS (docs/ablation.md). levels: the tapped
    levels alone (no retrieval, no experts). retrieval / experts: that part alone, on one
    level holding every patch token of the last block, as the baseline's; retrieval takes
    the coarsest level's KB cues. wide: the baseline with wider MLPs."""
    chosen = [name for name in ABLATIONS if arg[name]]
    if len(chosen) > 1:
        raise ValueError(f"choose at most one of the variants {', '.join(chosen)}")
    model = config.model
    if arg.baseline or arg.wide:
        make_baseline(config)
    if arg.wide:
        model.vision.mlp_dim = WIDE_MLP_DIMS["vision"]
        model.llm.mlp_dim = WIDE_MLP_DIMS["llm"]
    if arg.levels:
        model.update(semantic_augmentation=False, semantic_experts=False)
    if arg.retrieval or arg.experts:
        grid = config.data.image_size // model.vision.patch_size
        model.levels = ((model.levels[0][0], -1, grid),)
        model.update(semantic_augmentation=arg.retrieval, semantic_experts=arg.experts)


def make_baseline(config: ml_collections.ConfigDict) -> None:
    """Plain LLaVA-1.5: every patch token of the last block, MLP projector, no KB, no experts."""
    config.model.baseline = True


# The presets' `:stage1` / `:stage2[,lora]` / `:tiny` variants (configs/geochat_like.py).
STAGE_ARGS = dict(stage1=False, stage2=False, lora=False, tiny=False)


def pretrained_stage(config: ml_collections.ConfigDict, arg: ml_collections.ConfigDict) -> None:
    """LLaVA's recipe on a preset built from pretrained towers. stage1: the towers frozen,
    the rest trains at 1e-3. stage2: the decoder tuned at 2e-5, or with `lora` LoRA
    adapters (rank 128, alpha 256) at 2e-4 on the frozen decoder; start it from stage 1 with
    --config.init.from_checkpoint. tiny: the same recipe at the test size (random tiny
    towers with 3 blocks at 16 px). The preset sets its towers' own values first (image
    size, template, levels, expert width)."""
    # What every preset shares: FSDP, LLaVA's text lengths and batch, bf16 with full remat,
    # the MiniLM-sized KB, four experts per level, top-2.
    config.mesh.update(data=1, fsdp=-1)
    config.data.update(max_prompt_len=384, max_answer_len=128, batch_size=128)
    config.data.tokenizer = ""  # the decoder folder's tokenizer
    config.eval.batch_size = 128
    config.model.update(dtype="bfloat16", remat_policy="full")
    config.model.kb.dim = 384
    config.model.augment.num_heads = 16
    config.model.experts.update(experts_per_level=4, top_k=2)
    config.train.update(steps=5000, warmup_steps=150, loss_vocab_chunk=8192)
    if arg.stage1 and arg.stage2:
        raise ValueError("choose one of the variants stage1 and stage2")
    if arg.stage1:
        config.train.freeze = ("vision", "llm")
        config.train.learning_rate = 1e-3
    if arg.stage2:
        config.train.freeze = ("vision", "llm") if arg.lora else ("vision",)
        config.train.learning_rate = 2e-4 if arg.lora else 2e-5
        if arg.lora:
            config.model.llm.lora.update(rank=128, alpha=256.0)
    if arg.tiny:
        config.mesh.update(data=-1, fsdp=1)
        config.data.update(image_size=16, num_train=64, num_test=8, batch_size=8)
        config.data.update(max_prompt_len=64, max_answer_len=16)
        config.eval.batch_size = 8
        config.model.update(dtype="float32", remat_policy="none")
        config.model.levels = (("scene", -1, 1), ("landcover", -2, 2), ("object", -3, 4))
        config.model.kb.dim = 16
        config.model.augment.num_heads = 2
        config.model.experts.update(experts_per_level=2, top_k=1, mlp_dim=32)
        config.model.llm.lora.rank = min(config.model.llm.lora.rank, 4)
        config.train.update(steps=2, warmup_steps=1, log_every=1, checkpoint_every=2)
        config.train.loss_vocab_chunk = 0


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
    """A config file's `:arg`: comma-separated `key=value` pairs, each typed by its default,
    where a bare `key` sets a bool to True (big_vision's convention); every key must be one
    of `defaults`. `parse_arg("e=4,dropless", e=8, dropless=False)` -> {e: 4, dropless: True}.
    """
    values = ml_collections.ConfigDict(defaults)
    terms = [term.strip() for term in (arg or "").split(",") if term.strip()]
    unknown = [term.split("=")[0] for term in terms if term.split("=")[0] not in defaults]
    if unknown:
        allowed = [
            k if isinstance(v, bool) else f"{k}=<{type(v).__name__}>" for k, v in defaults.items()
        ]
        raise ValueError(
            f"Unknown config variant(s) {sorted(unknown)}; allowed: {', '.join(allowed) or 'none'}"
        )
    for term in terms:
        key, has_value, raw = term.partition("=")
        if not has_value and not isinstance(defaults[key], bool):
            raise ValueError(
                f"config variant {key} needs a value: {key}=<{type(defaults[key]).__name__}>"
            )
        values[key] = (
            parse_value(raw, defaults[key], f"config variant {key}") if has_value else True
        )
    return values
