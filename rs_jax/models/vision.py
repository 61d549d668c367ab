"""ViT image encoder that returns the hidden state of every block (levels tap into them)."""

import jax
import jax.numpy as jnp
from flax import nnx

from rs_jax.models.attention import Attention
from rs_jax.models.layers import Mlp, layer_norm, linear


class VisionBlock(nnx.Module):
    def __init__(self, width: int, num_heads: int, mlp_dim: int, *, rngs: nnx.Rngs):
        self.attn_norm = layer_norm(width, rngs=rngs)
        self.attn = Attention(width, num_heads, rngs=rngs)
        self.mlp_norm = layer_norm(width, rngs=rngs)
        self.mlp = Mlp(width, mlp_dim, width, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(self.attn_norm(x))[0]
        return x + self.mlp(self.mlp_norm(x))


class VisionEncoder(nnx.Module):
    """pixels [B, H, W, 3] in [-1, 1] -> hidden states [depth, B, N, D], N = (H / patch)^2."""

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        width: int,
        depth: int,
        num_heads: int,
        mlp_dim: int,
        *,
        rngs: nnx.Rngs,
    ):
        if image_size % patch_size:
            raise ValueError(
                f"config.model.vision.patch_size={patch_size} must divide "
                f"config.data.image_size={image_size}"
            )
        self.patch_size = patch_size
        self.grid = image_size // patch_size
        self.patch_embed = linear(patch_size * patch_size * 3, width, ("patch", "embed"), rngs=rngs)
        self.position_embed = nnx.Param(
            0.02 * jax.random.normal(rngs.params(), (self.grid * self.grid, width)),
            out_sharding=("position", "embed"),
        )
        self.blocks = nnx.List(
            [VisionBlock(width, num_heads, mlp_dim, rngs=rngs) for _ in range(depth)]
        )
        self.norm = layer_norm(width, rngs=rngs)

    def __call__(self, pixels: jax.Array) -> jax.Array:
        b, h, w, c = pixels.shape
        p = self.patch_size
        patches = pixels.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
        x = self.patch_embed(patches.reshape(b, (h // p) * (w // p), p * p * c))
        x = x + self.position_embed[...]
        hidden = []
        for block in self.blocks:
            x = block(x)
            hidden.append(x)
        hidden[-1] = self.norm(hidden[-1])
        return jnp.stack(hidden)


def pool_to_grid(tokens: jax.Array, grid: int) -> jax.Array:
    """Average-pool patch tokens [B, N, D] on their square layout to [B, grid * grid, D]."""
    b, n, d = tokens.shape
    side = int(round(n**0.5))
    if side * side != n or side % grid:
        raise ValueError(f"level grid {grid} must divide the {side}x{side} patch grid")
    x = tokens.reshape(b, grid, side // grid, grid, side // grid, d)
    return x.mean(axis=(2, 4)).reshape(b, grid * grid, d)
