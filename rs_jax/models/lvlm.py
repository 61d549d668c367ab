"""The RS vision-language model. Reads top to bottom like its data flow:

pixels -> ViT (every block) -> levels, coarse to fine (block + pooling grid)
       -> per level: retrieve top-k KB cues with the prompt, cross-attend [cues; prompt]
       -> semantic experts (level-grouped MoE; level l's routing conditioned on level l-1)
       -> projector + level embeddings
[visual; prompt; answer] -> decoder LLM (optionally a level-grouped MoE for the visual tokens
       in every Nth block) -> next-token logits.

`baseline=True` is plain LLaVA-1.5: last-block patch tokens, MLP projector, no KB, no experts
(config.model.llm.moe_every is ignored: its routing needs the levels).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from rs_jax.models.augmentation import SemanticAugmentation
from rs_jax.models.experts import RoutingStats, SemanticExperts
from rs_jax.models.layers import Mlp
from rs_jax.models.llm import Decoder, DecoderMoE
from rs_jax.models.retrieval import KnowledgeBase, Retrieved
from rs_jax.models.vision import VisionEncoder, pool_to_grid


class VisualOutput(NamedTuple):
    tokens: jax.Array  # [B, V, D_llm] visual tokens for the decoder
    retrieved: tuple[Retrieved, ...]  # one per level, coarse to fine (empty for the baseline)
    routing: RoutingStats | None
    # The LLM's visual-token MoE blocks, filled by RSVLM.__call__ (encode leaves it empty).
    llm_routing: tuple[RoutingStats, ...] = ()


class RSVLM(nnx.Module):
    def __init__(
        self,
        config: ml_collections.ConfigDict,
        image_size: int,
        vocab_size: int,
        kb_entry_levels: np.ndarray,
        kb_table: np.ndarray | None = None,
        *,
        rngs: nnx.Rngs,
    ):
        """kb_entry_levels [N]: model level of each KB entry (-1: unused); kb_table [N, Dk]:
        embeddings of a built KB (None: learn the table from scratch)."""
        vision, llm, model = config.vision, config.llm, config
        self.baseline = bool(model.baseline)
        _check_levels(model, vision.depth, kb_entry_levels)
        self.level_names = tuple(model.level_names)
        self.levels = tuple((model.levels[n].block, model.levels[n].grid) for n in self.level_names)
        self.kb_config = (model.kb.top_k, model.kb.approx, model.kb.recall_target)
        experts = model.experts
        llm_moe = None
        if not self.baseline and llm.moe_every > 0:
            llm_moe = DecoderMoE(
                llm.moe_every,
                len(self.levels),
                experts.experts_per_level,
                experts.shared_experts,
                experts.top_k,
                experts.capacity_factor,
                experts.dispatch,
            )

        self.vision = VisionEncoder(
            image_size,
            vision.patch_size,
            vision.width,
            vision.depth,
            vision.num_heads,
            vision.mlp_dim,
            rngs=rngs,
        )
        self.llm = Decoder(
            vocab_size,
            llm.width,
            llm.depth,
            llm.num_heads,
            llm.num_kv_heads,
            llm.mlp_dim,
            llm.rope_theta,
            llm.qkv_bias,
            llm.tie_embeddings,
            llm_moe,
            rngs=rngs,
        )
        self.projector = Mlp(vision.width, llm.width, llm.width, rngs=rngs)
        if self.baseline:
            return
        self.kb = KnowledgeBase(
            kb_entry_levels,
            model.kb.dim,
            table=kb_table,
            trainable=kb_table is None or model.kb.trainable,
            adapter=kb_table is not None and model.kb.adapter,
            rngs=rngs,
        )
        self.augment = nnx.List(
            [
                SemanticAugmentation(
                    vision.width, llm.width, model.kb.dim, model.augment.num_heads, rngs=rngs
                )
                for _ in self.levels
            ]
        )
        num_levels = len(self.levels)
        self.vision_level_embed = nnx.Param(
            0.02 * jax.random.normal(rngs.params(), (num_levels, vision.width)),
            out_sharding=("levels", "embed"),
        )
        self.experts = SemanticExperts(
            vision.width,
            num_levels,
            experts.experts_per_level,
            experts.shared_experts,
            experts.top_k,
            experts.capacity_factor,
            experts.mlp_dim,
            coarse_to_fine=experts.coarse_to_fine,
            dispatch=experts.dispatch,
            router_jitter=experts.router_jitter,
            rngs=rngs,
        )
        self.llm_level_embed = nnx.Param(
            0.02 * jax.random.normal(rngs.params(), (num_levels, llm.width)),
            out_sharding=("levels", "embed"),
        )

    def token_levels(self) -> np.ndarray:
        """Level id [V] of each visual token, coarse to fine."""
        return np.concatenate([np.full(grid * grid, i) for i, (_, grid) in enumerate(self.levels)])

    def visual_levels(self) -> np.ndarray | None:
        """Level id [V] of each visual token for the LLM's MoE blocks (None: baseline)."""
        return None if self.baseline else self.token_levels()

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
        pixels = image.astype(jnp.float32) / 127.5 - 1.0
        hidden = self.vision(pixels)  # [depth, B, N, D]
        if self.baseline:
            return VisualOutput(self.projector(hidden[-1]), (), None)

        prompt_embeds = self.llm.embed(prompt_ids)
        top_k, approx, recall_target = self.kb_config
        if kb_ids is not None and kb_ids.shape[1:] != (len(self.levels), top_k):
            raise ValueError(
                f"kb_ids has shape {kb_ids.shape}, expected [B, {len(self.levels)}, {top_k}] "
                "(levels, config.model.kb.top_k)"
            )
        level_tokens, retrieved = [], []
        for level, ((block, grid), augment) in enumerate(
            zip(self.levels, self.augment, strict=True)
        ):
            tokens = pool_to_grid(hidden[block], grid)
            ids = None if kb_ids is None else kb_ids[:, level]
            tokens, found = augment(
                tokens,
                prompt_embeds,
                prompt_mask,
                self.kb,
                level,
                top_k,
                approx,
                recall_target,
                ids,
            )
            level_tokens.append(tokens)
            retrieved.append(found)

        token_levels = self.token_levels()
        tokens = jnp.concatenate(level_tokens, axis=1) + self.vision_level_embed[token_levels]
        tokens, routing = self.experts(tokens, token_levels, jitter_key=jitter_key)
        visual = self.projector(tokens) + self.llm_level_embed[token_levels]
        return VisualOutput(visual, tuple(retrieved), routing)

    def __call__(
        self, batch: dict[str, jax.Array], jitter_key: jax.Array | None = None
    ) -> tuple[jax.Array, VisualOutput]:
        """Teacher-forced answer logits [B, Ta, vocab] for [visual; prompt; answer].

        jitter_key: randomness for router jitter (training only; None = no jitter).
        """
        visual = self.encode(
            batch["image"],
            batch["prompt_ids"],
            batch["prompt_mask"],
            batch.get("kb_ids"),
            jitter_key,
        )
        b, v, _ = visual.tokens.shape
        text_ids = jnp.concatenate([batch["prompt_ids"], batch["answer_ids"]], axis=1)
        embeds = jnp.concatenate([visual.tokens, self.llm.embed(text_ids)], axis=1)
        token_mask = jnp.concatenate(
            [jnp.ones((b, v), bool), batch["prompt_mask"] > 0, batch["answer_mask"] > 0], axis=1
        )
        logits, _, llm_routing = self.llm.forward(
            embeds, token_mask, visual_levels=self.visual_levels()
        )
        visual = visual._replace(llm_routing=llm_routing)
        # The token before each answer token predicts it.
        prefix = v + batch["prompt_ids"].shape[1]
        answer_len = batch["answer_ids"].shape[1]
        return logits[:, prefix - 1 : prefix - 1 + answer_len], visual


def _check_levels(model: ml_collections.ConfigDict, depth: int, kb_entry_levels) -> None:
    if model.baseline:
        return
    for i, name in enumerate(model.level_names):
        if name not in model.levels:
            raise ValueError(
                f"config.model.level_names lists '{name}' but config.model.levels.{name} "
                f"(block, grid) is missing"
            )
        level = model.levels[name]
        if not -depth <= level.block < depth:
            raise ValueError(
                f"config.model.levels.{name}.block={level.block} is outside the ViT's "
                f"{depth} blocks"
            )
        entries = int((np.asarray(kb_entry_levels) == i).sum())
        if entries == 0:
            raise ValueError(
                f"the knowledge base has no entries for level '{name}' "
                f"(config.model.levels lists it)"
            )
        if model.kb.top_k > entries:
            raise ValueError(
                f"config.model.kb.top_k={model.kb.top_k} exceeds the {entries} knowledge-base "
                f"entries of level '{name}'"
            )
        if level.grid < 1:
            raise ValueError(f"config.model.levels.{name}.grid must be >= 1, got {level.grid}")
    if model.kb.top_k < 1:
        raise ValueError(f"config.model.kb.top_k must be >= 1, got {model.kb.top_k}")
