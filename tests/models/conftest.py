import jax
import numpy as np
import pytest

from configs import demo
from rs_jax.train.partitioning import make_mesh

# 3 levels: scene (4 entries), landcover (3), object (5).
KB_LEVELS = np.array([0] * 4 + [1] * 3 + [2] * 5)
VOCAB = 64


def tiny_config(baseline: bool = False):
    config = demo.get_config("baseline" if baseline else None)
    config.data.image_size = 16
    config.model.vision.update(patch_size=4, width=32, depth=3, num_heads=2, mlp_dim=64)
    config.model.levels.scene.update(block=2, grid=1)
    config.model.levels.landcover.update(block=1, grid=2)
    config.model.levels.object.update(block=0, grid=4)
    config.model.kb.update(dim=16, top_k=2)
    config.model.augment.num_heads = 2
    config.model.experts.update(experts_per_level=2, shared_experts=1, mlp_dim=32)
    config.model.llm.update(width=32, depth=2, num_heads=4, num_kv_heads=2, mlp_dim=64)
    return config


def random_batch(batch_size: int = 8, image_size: int = 16, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    prompt_mask = np.ones((batch_size, 6), np.int32)
    prompt_mask[::2, :2] = 0  # some prompts left-padded
    answer_mask = np.ones((batch_size, 4), np.int32)
    answer_mask[1::2, 3:] = 0  # some answers right-padded
    return {
        "image": rng.integers(0, 256, (batch_size, image_size, image_size, 3), np.uint8),
        "prompt_ids": rng.integers(5, VOCAB, (batch_size, 6)).astype(np.int32) * prompt_mask,
        "prompt_mask": prompt_mask,
        "answer_ids": rng.integers(5, VOCAB, (batch_size, 4)).astype(np.int32) * answer_mask,
        "answer_mask": answer_mask,
        "valid": np.ones((batch_size,), np.int32),
        "kb_labels": np.stack(
            [
                np.stack([rng.integers(0, 4, batch_size), -np.ones(batch_size, int)], -1),
                np.stack([rng.integers(4, 7, batch_size), -np.ones(batch_size, int)], -1),
                rng.integers(7, 12, (batch_size, 2)),
            ],
            axis=1,
        ).astype(np.int32),
    }


@pytest.fixture
def single_device_mesh():
    return make_mesh({"data": 1, "fsdp": 1, "expert": 1, "tensor": 1}, jax.devices()[:1])


@pytest.fixture
def multi_device_mesh():
    return make_mesh({"data": 2, "fsdp": 2, "expert": 1, "tensor": 2})


@pytest.fixture
def model_context(single_device_mesh):
    """Mesh + logical rules in scope, as build_model provides, for building bare modules."""
    from configs.common import SHARDING_RULES
    from rs_jax.train.partitioning import sharding_context

    with sharding_context(single_device_mesh, SHARDING_RULES):
        yield
