"""The RS vision-language model. Reads top to bottom like its data flow:

pixels -> ViT (the tapped blocks) -> levels, coarse to fine (block + pooling grid)
       -> per level: retrieve top-k KB cues with the prompt, cross-attend [cues; prompt]
       -> semantic experts (level-grouped MoE; level l's routing conditioned on level l-1)
       -> projector + level embeddings
[visual; prompt; answer] -> decoder LLM (optionally a level-grouped MoE for the visual tokens
       in every Nth block) -> hidden states at the answer positions (the loss projects them
       onto the vocabulary; generation asks `llm.logits` for the last position).

`baseline=True` is plain LLaVA-1.5: last-block patch tokens, MLP projector, no KB, no experts
(config.model.llm.moe_every is ignored: its routing needs the levels).
`semantic_augmentation=False` / `semantic_experts=False` drop one part of the method and
keep the rest (the ablation grid).
"""

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rs_jax.models.config import ModelConfig
from rs_jax.models.decoder import Decoder
from rs_jax.models.experts import RoutingStats, SemanticExperts
from rs_jax.models.layers import Mlp, param
from rs_jax.models.retrieval import KnowledgeBase, Retrieved
from rs_jax.models.semantic_augmentation import SemanticAugmentation
from rs_jax.models.vision import VisionEncoder, pool_to_grid


class VisualOutput(NamedTuple):
    tokens: jax.Array  # [B, V, D_llm] visual tokens for the decoder
    # One per level, coarse to fine (empty without semantic augmentation).
    retrieved: tuple[Retrieved, ...]
    routing: RoutingStats | None  # the semantic experts' (None without them)
    # The decoder's visual-token MoE blocks, stacked on a leading block axis; filled by
    # RSVLM.__call__ (encode leaves it None).
    llm_routing: RoutingStats | None = None


class RSVLM(nnx.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        kb_entry_levels: Sequence[str],
        kb_table: np.ndarray | None = None,
        *,
        rngs: nnx.Rngs,
    ):
        """cfg with its vocabulary resolved (ModelConfig.with_vocab); kb_entry_levels [N]: the
        KB level of each entry; kb_table [N, Dk]: embeddings of a built KB (None: learn the
        table from scratch)."""
        self.cfg = cfg
        precision, stack = cfg.precision, cfg.stack
        vision_width, llm_width = cfg.vision.width, cfg.llm.width
        _check_levels(cfg, kb_entry_levels)

        self.vision = VisionEncoder(cfg.vision, precision, stack, rngs=rngs)
        self.llm = Decoder(
            cfg.llm, precision, stack, None if cfg.baseline else cfg.experts, rngs=rngs
        )
        self.projector = Mlp(vision_width, llm_width, llm_width, precision=precision, rngs=rngs)
        if cfg.baseline:
            return
        if cfg.semantic_augmentation:
            self.kb = KnowledgeBase(kb_entry_levels, cfg.kb, precision, table=kb_table, rngs=rngs)
            self.augment = nnx.List(
                [
                    SemanticAugmentation(
                        vision_width, llm_width, cfg.kb, cfg.augment.num_heads, precision, rngs=rngs
                    )
                    for _ in cfg.levels
                ]
            )

        def level_embed(width):
            return param(
                nnx.initializers.normal(0.02),
                (len(cfg.levels), width),
                ("levels", "embed"),
                precision,
                rngs,
            )

        self.vision_level_embed = level_embed(vision_width)
        if cfg.semantic_experts:
            self.experts = SemanticExperts(vision_width, cfg.experts, precision, rngs=rngs)
        self.llm_level_embed = level_embed(llm_width)

    def token_levels(self) -> np.ndarray:
        """Level id [V] of each visual token, coarse to fine."""
        return np.concatenate(
            [np.full(level.grid**2, i) for i, level in enumerate(self.cfg.levels)]
        )

    def visual_levels(self) -> np.ndarray | None:
        """Level id [V] of each visual token for the LLM's MoE blocks (None: baseline)."""
        return None if self.cfg.baseline else self.token_levels()

    def encode(
        self,
        image: jax.Array,
        prompt_ids: jax.Array,
        prompt_mask: jax.Array,
        kb_ids: jax.Array | None = None,
        jitter_key: jax.Array | None = None,
    ) -> VisualOutput:
        """image uint8 [B, H, W, 3], prompt [B, Tp] -> visual tokens [B, V, D_llm].

        kb_ids int32 [B, L, k]: KB rows per level from a host-side retriever (None: each level
        takes its own top-k on device).
        """
        cfg = self.cfg
        pixels = _pixels(image)
        if cfg.baseline:
            last = cfg.vision.depth - 1
            return VisualOutput(self.projector(self.vision(pixels, (last,))[last]), (), None)

        hidden = self.vision(pixels, [level.block for level in cfg.levels])
        level_tokens = [pool_to_grid(hidden[level.block], level.grid) for level in cfg.levels]
        retrieved = []
        if cfg.semantic_augmentation:
            level_tokens, retrieved = self._augment(level_tokens, prompt_ids, prompt_mask, kb_ids)

        token_levels = self.token_levels()
        level_embed = self.vision_level_embed[...][token_levels].astype(cfg.precision.dtype)
        tokens = jnp.concatenate(level_tokens, axis=1) + level_embed
        routing = None
        if cfg.semantic_experts:
            tokens, routing = self.experts(tokens, token_levels, jitter_key=jitter_key)
        level_embed = self.llm_level_embed[...][token_levels].astype(cfg.precision.dtype)
        return VisualOutput(self.projector(tokens) + level_embed, tuple(retrieved), routing)

    def image_queries(self, image: jax.Array) -> list[jax.Array]:
        """image uint8 [B, H, W, 3] -> each level's retrieval query [B, Dk] without a prompt,
        coarse to fine: what alignment pretraining matches to the KB (train/losses.py)."""
        cfg = self.cfg
        if not cfg.retrieves:
            raise ValueError(
                f"the {cfg.variant} model has no retrieval queries to align: alignment "
                "needs config.model.semantic_augmentation=True and baseline=False"
            )
        pixels = _pixels(image)
        hidden = self.vision(pixels, [level.block for level in cfg.levels])
        return [
            augment.query(pool_to_grid(hidden[level.block], level.grid))
            for level, augment in zip(cfg.levels, self.augment, strict=True)
        ]

    def _augment(
        self,
        level_tokens: list[jax.Array],
        prompt_ids: jax.Array,
        prompt_mask: jax.Array,
        kb_ids: jax.Array | None,
    ) -> tuple[list[jax.Array], list[Retrieved]]:
        """Each level's tokens [B, g*g, D_vis] cross-attend to [its top-k KB cues; prompt]."""
        cfg = self.cfg
        if kb_ids is not None and kb_ids.shape[1:] != (len(cfg.levels), cfg.kb.top_k):
            raise ValueError(
                f"kb_ids has shape {kb_ids.shape}, expected [B, {len(cfg.levels)}, "
                f"{cfg.kb.top_k}] (levels, config.model.kb.top_k)"
            )
        prompt_embeds = self.llm.embed(prompt_ids)
        augmented, retrieved = [], []
        for i, (level, tokens) in enumerate(zip(cfg.levels, level_tokens, strict=True)):
            ids = None if kb_ids is None else kb_ids[:, i]
            tokens, found = self.augment[i](
                tokens, prompt_embeds, prompt_mask, self.kb, level.kb_level, ids
            )
            augmented.append(tokens)
            retrieved.append(found)
        return augmented, retrieved

    def text_before_image(self, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        """Embedded template text before the image [B, P, D_llm] and its mask [B, P] (P = 0
        without batch["prefix_ids"])."""
        ids = batch.get("prefix_ids")
        if ids is None:
            ids = jnp.zeros((batch["prompt_ids"].shape[0], 0), jnp.int32)
        return self.llm.embed(ids), jnp.ones(ids.shape, bool)

    def __call__(
        self, batch: dict[str, jax.Array], jitter_key: jax.Array | None = None
    ) -> tuple[jax.Array, VisualOutput]:
        """Teacher-forced hidden states [N, Ta, D_llm] of the positions that predict the
        answer tokens of each example's [text before the image; visual; prompt; answer].

        A batch holds N = B examples, or, packed (rs_jax/data/packing.py), B rows of K
        example slots each (N = B * K): every per-example field then has a slot axis
        [B, K, ...], and token_index / token_segment / token_position [B, T] lay the slots'
        real tokens one sequence after another in each row (`example_rows` gives the
        per-example fields as N rows, as the loss reads them).
        jitter_key: randomness for router jitter (training only; None = no jitter).
        """
        vision_key, llm_key = (None, None) if jitter_key is None else jax.random.split(jitter_key)
        examples = example_rows(batch)
        visual = self.encode(
            examples["image"],
            examples["prompt_ids"],
            examples["prompt_mask"],
            examples.get("kb_ids"),
            vision_key,
        )
        before, before_mask = self.text_before_image(examples)
        after_ids = jnp.concatenate([examples["prompt_ids"], examples["answer_ids"]], axis=1)
        after_mask = jnp.concatenate([examples["prompt_mask"], examples["answer_mask"]], 1) > 0
        visual_mask = jnp.ones(visual.tokens.shape[:2], bool)
        embeds = jnp.concatenate([before, visual.tokens, self.llm.embed(after_ids)], axis=1)
        token_mask = jnp.concatenate([before_mask, visual_mask, after_mask], axis=1)
        answer_len = examples["answer_ids"].shape[1]
        if "token_index" in batch:
            answer_hidden, llm_routing = self._decode_packed(batch, embeds, answer_len, llm_key)
        else:
            # The token before each answer token predicts it.
            prefix = before.shape[1] + visual.tokens.shape[1] + examples["prompt_ids"].shape[1]
            answer_hidden, llm_routing = self._decode_unpacked(
                embeds, token_mask, before.shape[1], prefix - 1, answer_len, llm_key
            )
        return answer_hidden, visual._replace(llm_routing=llm_routing)

    def _decode_unpacked(
        self,
        embeds: jax.Array,
        token_mask: jax.Array,
        visual_start: int,
        first_predicting: int,
        answer_len: int,
        jitter_key: jax.Array | None,
    ) -> tuple[jax.Array, RoutingStats | None]:
        """One example a row: embeds [N, T, D_llm], token_mask [N, T] -> the hidden states of
        the `answer_len` slots from `first_predicting` on [N, Ta, D_llm], and the decoder's
        routing statistics. The visual tokens start at slot `visual_start`, where the
        decoder's MoE blocks find them."""
        hidden, _, routing = self.llm(
            embeds,
            token_mask,
            visual_levels=self.visual_levels(),
            visual_start=visual_start,
            jitter_key=jitter_key,
        )
        return hidden[:, first_predicting : first_predicting + answer_len], routing

    def _decode_packed(
        self,
        batch: dict[str, jax.Array],
        embeds: jax.Array,
        answer_len: int,
        jitter_key: jax.Array | None,
    ) -> tuple[jax.Array, RoutingStats | None]:
        """Several examples a row: embeds [B * K, T, D_llm] of every slot -> their real tokens
        laid one sequence after another by token_index [B, L] -> the hidden states at each
        example's answer_position [B * K, Ta, D_llm], and the decoder's routing statistics."""
        if self.visual_levels() is not None and self.cfg.llm.moe_every:
            raise ValueError(
                "packed batches (config.data.packing.slots > 0) need "
                "config.model.llm.moe_every=0: its MoE blocks find the visual tokens by slot"
            )
        rows = batch["token_index"].shape[0]
        width = embeds.shape[-1]
        # Each row's slots side by side, then only their real tokens, in packed order.
        embeds = embeds.reshape(rows, -1, width)
        embeds = jnp.take_along_axis(embeds, batch["token_index"][..., None], axis=1)
        segments = (batch["token_segment"], batch["token_position"])
        hidden, _, routing = self.llm(
            embeds, batch["token_segment"] > 0, segments=segments, jitter_key=jitter_key
        )
        predicting = batch["answer_position"].reshape(rows, -1, 1)  # [B, K * Ta, 1]
        answer_hidden = jnp.take_along_axis(hidden, predicting, axis=1)
        return answer_hidden.reshape(-1, answer_len, width), routing


def _pixels(image: jax.Array) -> jax.Array:
    """uint8 [B, H, W, 3] -> float32 in [-1, 1]."""
    return image.astype(jnp.float32) / 127.5 - 1.0


def example_rows(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """A packed batch's per-example fields, those with the slot axis of `valid` [B, K], as
    rows [B * K, ...] (an unpacked batch as is)."""
    if "token_index" not in batch:
        return batch
    rows, slots = batch["valid"].shape
    return {
        key: value.reshape(rows * slots, *value.shape[2:])
        if value.shape[:2] == (rows, slots)
        else value
        for key, value in batch.items()
    }


def _check_levels(cfg: ModelConfig, kb_entry_levels: Sequence[str]) -> None:
    if not cfg.retrieves:
        return
    entry_levels = np.asarray([str(level) for level in kb_entry_levels])
    for i, level in enumerate(cfg.levels):
        entries = int((entry_levels == level.kb_level).sum())
        if entries == 0:
            raise ValueError(
                f"config.model.levels[{i}] ('{level.name}') retrieves from knowledge-base "
                f"level '{level.kb_level}', which has no entries "
                f"(it has {sorted(set(entry_levels.tolist()))})"
            )
        if cfg.kb.top_k > entries:
            raise ValueError(
                f"config.model.kb.top_k={cfg.kb.top_k} exceeds the {entries} knowledge-base "
                f"entries of level '{level.kb_level}' (config.model.levels[{i}])"
            )
