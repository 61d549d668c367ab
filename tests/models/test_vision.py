"""The ViT's patch embedding, taps and level pooling against numpy references."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rs_jax.models.config import Precision, StackConfig, VisionConfig
from rs_jax.models.vision import VisionEncoder, pool_to_grid

CONFIG = VisionConfig(image_size=8, patch_size=2, width=8, depth=3, num_heads=2, mlp_dim=16)


def encoder(**changes) -> VisionEncoder:
    cfg = VisionConfig(**{**CONFIG.__dict__, **changes})
    return VisionEncoder(cfg, Precision(), StackConfig(), rngs=nnx.Rngs(0))


def test_pool_to_grid_averages_square_blocks_of_the_patch_layout():
    side, grid, d = 4, 2, 3
    tokens = np.random.default_rng(0).normal(size=(2, side * side, d)).astype(np.float32)
    image = tokens.reshape(2, side, side, d)  # patch i sits at row i // side, column i % side
    expected = [
        image[:, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2].mean(axis=(1, 2))
        for r in range(grid)
        for c in range(grid)
    ]
    pooled = np.asarray(pool_to_grid(jnp.asarray(tokens), grid))
    np.testing.assert_allclose(pooled, np.stack(expected, axis=1), rtol=1e-6)
    with pytest.raises(ValueError, match="level grid 3 must divide the 4x4 patch grid"):
        pool_to_grid(jnp.asarray(tokens), 3)


@pytest.mark.parametrize("class_token", [False, True])
def test_patch_embedding_equals_numpy(class_token, model_context):
    """Pixels in [-1, 1] -> per-channel normalisation -> row-major patches flattened as
    (row, column, channel) -> linear map, [class token], + position embeddings."""
    mean, std = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)
    vit = encoder(class_token=class_token, pixel_mean=mean, pixel_std=std)
    pixels = np.random.default_rng(1).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    normed = ((pixels + 1) / 2 - np.asarray(mean)) / np.asarray(std)
    kernel = np.asarray(vit.patch_embed.kernel[...])
    bias = np.asarray(vit.patch_embed.bias[...])
    patches = [
        normed[:, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2].reshape(2, -1)
        for r in range(4)
        for c in range(4)
    ]
    expected = np.stack(patches, axis=1) @ kernel + bias
    if class_token:
        cls = np.broadcast_to(np.asarray(vit.class_embed[...]), (2, 1, 8))
        expected = np.concatenate([cls, expected], axis=1)
    expected = expected + np.asarray(vit.position_embed[...])
    np.testing.assert_allclose(np.asarray(vit.embed(jnp.asarray(pixels))), expected, atol=1e-5)


def test_taps_are_the_blocks_outputs_and_drop_the_class_token(model_context):
    """Tapping several blocks in one call gives each block's own output (blocks applied in
    order, one at a time); the class token attends but is not returned; only the last
    block's tokens get the final norm."""
    vit = encoder(class_token=True)
    pixels = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (2, 8, 8, 3)), jnp.float32)
    taps = vit(pixels, (0, 1, 2))
    x = vit.embed(pixels)
    for block in range(3):
        x, _ = vit.blocks(lambda b, h, _: (b(h), None), x, start=block, stop=block + 1)
        expected = vit.norm(x) if block == 2 else x
        np.testing.assert_allclose(np.asarray(taps[block]), np.asarray(expected[:, 1:]), atol=1e-5)
        assert taps[block].shape == (2, 16, 8)
    alone = vit(pixels, (1,))
    np.testing.assert_allclose(np.asarray(alone[1]), np.asarray(taps[1]), atol=1e-5)
