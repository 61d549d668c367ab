"""ViT image encoder that returns the hidden states of the blocks the semantic levels tap.

One module serves a tower trained from scratch and pretrained CLIP and SigLIP towers
(`rs_jax.convert.hf_vision`); `VisionConfig` holds where they differ.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from rs_jax.models.attention import Attention
from rs_jax.models.config import Precision, StackConfig, VisionConfig
from rs_jax.models.layers import LayerNorm, Mlp, constrain, linear, param
from rs_jax.models.stack import LayerStack


class VisionBlock(nnx.Module):
    """Pre-LN transformer block: [B, N, D] -> [B, N, D]."""

    def __init__(self, cfg: VisionConfig, precision: Precision, kernel: str, *, rngs: nnx.Rngs):
        norm = lambda: LayerNorm(cfg.width, precision=precision, eps=cfg.norm_eps, rngs=rngs)
        self.attn_norm = norm()
        self.attn = Attention(
            cfg.width, cfg.num_heads, precision=precision, kernel=kernel, rngs=rngs
        )
        self.mlp_norm = norm()
        self.mlp = Mlp(
            cfg.width,
            cfg.mlp_dim,
            cfg.width,
            precision=precision,
            activation=cfg.activation,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        x = constrain(x, ("act_batch", "act_length", "act_embed"))
        x = constrain(x + self.attn(self.attn_norm(x))[0], ("act_batch", "act_length", "act_embed"))
        return x + self.mlp(self.mlp_norm(x))


class VisionEncoder(nnx.Module):
    """pixels [B, H, W, 3] in [-1, 1] -> {block: patch tokens [B, N, D]}, N = (H / patch)^2.

    Only the blocks up to the deepest tap run. The class token (CLIP) attends with the
    patches but is not returned, as LLaVA drops it; with `final_norm` the last block's
    tokens are layer-normed.
    """

    def __init__(self, cfg: VisionConfig, precision: Precision, stack: StackConfig, *, rngs):
        self.cfg, self.dtype = cfg, precision.dtype
        p = cfg.patch_size
        self.patch_embed = linear(
            p * p * 3,
            cfg.width,
            ("patch", "embed"),
            precision=precision,
            use_bias=cfg.patch_bias,
            rngs=rngs,
        )
        self.class_embed = (
            param(nnx.initializers.normal(0.02), (cfg.width,), ("embed",), precision, rngs)
            if cfg.class_token
            else None
        )
        self.position_embed = param(
            nnx.initializers.normal(0.02),
            (cfg.grid * cfg.grid + cfg.class_token, cfg.width),
            ("position", "embed"),
            precision,
            rngs,
        )
        norm = lambda: LayerNorm(cfg.width, precision=precision, eps=cfg.norm_eps, rngs=rngs)
        self.pre_norm = norm() if cfg.pre_norm else None
        self.blocks = LayerStack(
            lambda r: VisionBlock(cfg, precision, stack.attention, rngs=r),
            cfg.depth,
            stack,
            rngs=rngs,
        )
        self.norm = norm() if cfg.final_norm else None

    def embed(self, pixels: jax.Array) -> jax.Array:
        """pixels [B, H, W, 3] in [-1, 1] -> the first block's input [B, (1 +) N, D]."""
        b, h, w, c = pixels.shape
        p = self.cfg.patch_size
        unit = (pixels.astype(jnp.float32) + 1) / 2
        mean, std = jnp.asarray(self.cfg.pixel_mean), jnp.asarray(self.cfg.pixel_std)
        pixels = (unit - mean) / std
        patches = pixels.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
        x = self.patch_embed(patches.reshape(b, (h // p) * (w // p), p * p * c))
        if self.class_embed is not None:
            cls = jnp.broadcast_to(self.class_embed[...].astype(x.dtype), (b, 1, x.shape[-1]))
            x = jnp.concatenate([cls, x], axis=1)
        x = x + self.position_embed[...].astype(self.dtype)
        return x if self.pre_norm is None else self.pre_norm(x)

    def __call__(self, pixels: jax.Array, taps: Sequence[int]) -> dict[int, jax.Array]:
        x = self.embed(pixels)
        hidden, start = {}, 0
        for tap in sorted(set(taps)):
            # One scan per segment between taps: only the tapped states leave the loop.
            x, _ = self.blocks(lambda block, x, _: (block(x), None), x, start=start, stop=tap + 1)
            last = tap == self.cfg.depth - 1
            tokens = self.norm(x) if last and self.norm is not None else x
            hidden[tap] = tokens[:, int(self.cfg.class_token) :]
            start = tap + 1
        return hidden


def pool_to_grid(tokens: jax.Array, grid: int) -> jax.Array:
    """Average-pool patch tokens [B, N, D] on their square layout to [B, grid * grid, D]."""
    b, n, d = tokens.shape
    side = int(round(n**0.5))
    if side * side != n or side % grid:
        raise ValueError(f"level grid {grid} must divide the {side}x{side} patch grid")
    x = tokens.reshape(b, grid, side // grid, grid, side // grid, d)
    pooled = x.astype(jnp.float32).mean(axis=(2, 4))
    return pooled.astype(tokens.dtype).reshape(b, grid * grid, d)
