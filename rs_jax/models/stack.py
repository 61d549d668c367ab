"""A stack of identical blocks: parameters stacked on a leading 'layers' axis, applied in order.

`StackConfig.scan` runs the blocks as one `jax.lax.scan` (program size and compile time
independent of depth); unrolled, the same stacked parameters are sliced block by block, so
a checkpoint does not depend on the choice. Each block runs under the `StackConfig.remat_policy`
(`jax.checkpoint`): the backward pass keeps what the policy saves and recomputes the rest.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rs_jax.models.config import StackConfig

# fn(block, carry, per-block input) -> (carry, per-block output)
BlockFn = Callable[[nnx.Module, Any, Any], tuple[Any, Any]]


class LayerStack(nnx.Module):
    """`depth` blocks made by `make_block(rngs)`, parameters [depth, ...] on axis 'layers'."""

    def __init__(
        self,
        make_block: Callable[[nnx.Rngs], nnx.Module],
        depth: int,
        stack: StackConfig,
        *,
        rngs: nnx.Rngs,
    ):
        self.depth, self.stack = depth, stack

        @nnx.split_rngs(splits=depth)
        @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def create(rngs: nnx.Rngs) -> nnx.Module:
            return make_block(rngs)

        self.blocks = create(rngs)

    def __call__(
        self, fn: BlockFn, carry: Any, xs: Any = None, *, start: int = 0, stop: int | None = None
    ) -> tuple[Any, Any]:
        """Blocks [start, stop) in order; xs / the returned outputs have a leading block axis."""
        stop = self.depth if stop is None else stop
        graphdef, params = nnx.split(self.blocks)
        if (start, stop) != (0, self.depth):
            params = jax.tree.map(lambda p: p[start:stop], params)

        def step(carry, inputs):
            block_params, x = inputs
            return fn(nnx.merge(graphdef, block_params), carry, x)

        policy = self.stack.checkpoint_policy()
        if policy is not None:
            # Inside a scan the loop already keeps XLA from merging the recomputation with
            # the forward pass; unrolled, prevent_cse has to.
            step = jax.checkpoint(step, policy=policy, prevent_cse=not self.stack.scan)
        if self.stack.scan and stop - start > 1:  # a scan over one block is only overhead
            return jax.lax.scan(step, carry, (params, xs))
        outputs = []
        for i in range(stop - start):
            carry, y = step(carry, jax.tree.map(lambda a, i=i: a[i], (params, xs)))
            outputs.append(y)
        return carry, jax.tree.map(lambda *ys: jnp.stack(ys), *outputs)
