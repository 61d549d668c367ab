"""Checkpoint layouts: inverse undoes forward, a block read through `source_index` is the
same block of the whole converted tensor, and blocks split inside a head are refused."""

import itertools

import numpy as np
import pytest

from rs_jax.convert import weights

WIDTH, HEADS, HEAD_DIM, PATCH = 6, 4, 2, 3
RNG = np.random.default_rng(0)
LAYOUTS = {
    "identity": (weights.IDENTITY, (5, 7)),
    "transposed": (weights.TRANSPOSED, (5, 7)),
    "split_heads": (weights.split_heads(WIDTH, HEADS, HEAD_DIM), (HEADS * HEAD_DIM, WIDTH)),
    "merge_heads": (weights.merge_heads(HEADS, HEAD_DIM, WIDTH), (WIDTH, HEADS * HEAD_DIM)),
    "bias_heads": (weights.bias_heads(HEADS, HEAD_DIM), (HEADS * HEAD_DIM,)),
    "conv_patches": (weights.conv_patches(PATCH, 3, WIDTH), (WIDTH, 3, PATCH, PATCH)),
}


@pytest.mark.parametrize("name", LAYOUTS)
def test_inverse_undoes_forward(name):
    layout, shape = LAYOUTS[name]
    tensor = RNG.normal(size=shape)
    np.testing.assert_array_equal(layout.inverse(layout.forward(tensor)), tensor)


def halves(n: int) -> list[slice]:
    return [slice(0, n), slice(0, n // 2), slice(n // 2, n)]


@pytest.mark.parametrize("name", [n for n in LAYOUTS if LAYOUTS[n][0].source_index])
def test_a_block_read_through_source_index_is_that_block_of_ours(name):
    """Every block of ours made of whole heads (halves of each axis, as a 2-way shard
    gives): the checkpoint slices `source_index` names, converted, are exactly that block."""
    layout, shape = LAYOUTS[name]
    tensor = RNG.normal(size=shape)
    ours = layout.forward(tensor)
    axes = [
        halves(n) if not (name.endswith("heads") and n == HEAD_DIM) else [slice(0, n)]
        for n in ours.shape
    ]
    for index in itertools.product(*axes):
        block = layout.forward(tensor[layout.source_index(index)])
        np.testing.assert_array_equal(block, ours[index], err_msg=str(index))


def test_a_block_inside_a_head_cannot_be_read():
    layout = LAYOUTS["split_heads"][0]
    with pytest.raises(ValueError, match="sharded along 'head_dim'"):
        layout.source_index((slice(0, WIDTH), slice(0, HEADS), slice(0, 1)))
