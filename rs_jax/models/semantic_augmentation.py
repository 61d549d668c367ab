"""Semantic Augmentation: a level's tokens attend over retrieved KB cues and the prompt."""

import jax
import jax.numpy as jnp
from flax import nnx

from rs_jax.models.attention import Attention
from rs_jax.models.config import KnowledgeConfig, Precision
from rs_jax.models.layers import LayerNorm, linear, masked_mean
from rs_jax.models.retrieval import KnowledgeBase, Retrieved


class SemanticAugmentation(nnx.Module):
    """One level: tokens [B, n, D] + prompt [B, Tp, Dl] -> augmented tokens [B, n, D].

    query = f(mean of level tokens, mean of prompt) -> top-k cues of that level (or the ids
    a host-side retriever chose), then tokens += CrossAttention(tokens, [cues; prompt]).
    """

    def __init__(
        self,
        width: int,
        prompt_width: int,
        kb: KnowledgeConfig,
        num_heads: int,
        precision: Precision,
        *,
        rngs: nnx.Rngs,
    ):
        def proj(d_in, d_out, axes):
            return linear(d_in, d_out, axes, precision=precision, rngs=rngs)

        self.prompt_proj = proj(prompt_width, width, ("embed", "mlp"))
        self.query_proj = proj(2 * width, kb.dim, ("embed", "kb_embed"))
        self.cue_proj = proj(kb.dim, width, ("kb_embed", "embed"))
        self.norm = LayerNorm(width, precision=precision, rngs=rngs)
        self.cross_attn = Attention(width, num_heads, precision=precision, rngs=rngs)

    def query(self, tokens: jax.Array, prompt_mean: jax.Array | None = None) -> jax.Array:
        """The retrieval query [B, Dk] of a level's tokens [B, n, D] and the prompt's mean
        [B, D] after prompt_proj (None: no prompt, as in alignment pretraining)."""
        image = tokens.astype(jnp.float32).mean(1)
        if prompt_mean is None:
            prompt_mean = jnp.zeros_like(image)
        return self.query_proj(jnp.concatenate([image, prompt_mean.astype(image.dtype)], -1))

    def __call__(
        self,
        tokens: jax.Array,
        prompt_embeds: jax.Array,
        prompt_mask: jax.Array,
        kb: KnowledgeBase,
        kb_level: str,
        ids: jax.Array | None = None,
    ) -> tuple[jax.Array, Retrieved]:
        """ids [B, k]: host-retrieved KB rows to use instead of this level's own top-k."""
        tokens = _replicate_features(tokens)
        prompt = _replicate_features(self.prompt_proj(prompt_embeds))
        query = self.query(tokens, masked_mean(prompt, prompt_mask))
        retrieved = kb.retrieve(query, kb_level, ids)
        # Weighting cues by their retrieval probability lets the answer loss reach the query.
        weights = retrieved.scores.shape[-1] * jax.nn.softmax(retrieved.scores, axis=-1)
        cues = self.cue_proj(kb.lookup(retrieved.ids))
        cues = cues * weights[..., None].astype(cues.dtype)
        context = jnp.concatenate([cues, prompt], axis=1)
        context_mask = jnp.concatenate(
            [jnp.ones(cues.shape[:2], bool), prompt_mask.astype(bool)], axis=1
        )
        mask = jnp.broadcast_to(
            context_mask[:, None, :], (tokens.shape[0], tokens.shape[1], context.shape[1])
        )
        attended, _ = self.cross_attn(self.norm(tokens), context=context, mask=mask)
        return _replicate_features(tokens + attended), retrieved


def _replicate_features(x: jax.Array) -> jax.Array:
    """Leaves the feature axis of x [..., D] unsharded (other axes to the compiler).

    Works around an XLA SPMD partitioner miscompile (jax/jaxlib 0.10.2; Shardy and GSPMD
    alike, so in the shared dot partitioning): with the batch on ('data', 'fsdp'), features
    D on 'tensor' (as propagation picks for the pooled tokens and for `prompt_proj`'s
    'mlp' output) and a contraction over the 'tensor'-sharded heads, e.g.
    `tokens + out_proj(heads)`, the partitioner collective-permutes batch shards between
    devices and never permutes them back, so the result and the query / prompt / KB
    gradients depended on the mesh. Hence the constraint on the level tokens in and out
    and on the projected prompt. Minimal repro: x + einsum('btnh,nhd->btd', o, w) with
    o (('data', 'fsdp'), None, 'tensor'), w ('tensor', None, 'fsdp'), x like o.
    """
    if jax.sharding.get_abstract_mesh().empty:  # eager / no mesh: nothing to constrain
        return x
    unconstrained = jax.sharding.PartitionSpec.UNCONSTRAINED
    spec = jax.sharding.PartitionSpec(*([unconstrained] * (x.ndim - 1)), None)
    return jax.lax.with_sharding_constraint(x, spec)
