"""Model FLOPs from the config: each part counted once, where the config puts it."""

import dataclasses

import pytest

from rs_jax.config_files import load_config
from rs_jax.models import flops
from rs_jax.models.config import ModelConfig

TINY = "configs/tiny.py"


def _model(overrides=()):
    config = load_config(TINY, ["model.llm.vocab_size=256", *overrides])
    return ModelConfig.from_config(config.model, config.data.image_size)


def test_flops_grow_with_depth_as_the_config_says():
    config = load_config(TINY, ["model.llm.vocab_size=256"])
    counts = [
        flops.forward_flops(model, 20, 4) for model in (_model(), _model(["model.llm.depth=4"]))
    ]
    one_block = (counts[1] - counts[0]) / 2
    llm = config.model.llm
    tokens = 20 + _model().visual_tokens
    head_dim = llm.width // llm.num_heads
    projections = 2 * tokens * llm.width * (2 * llm.num_heads + 2 * llm.num_kv_heads) * head_dim
    attention = 4 * tokens * tokens * llm.num_heads * head_dim
    assert one_block == projections + attention + 6 * tokens * llm.width * llm.mlp_dim


def test_each_part_of_the_method_costs_what_it_adds_and_nothing_when_off():
    full = _model()
    cost = {
        (aug, exp): flops.forward_flops(
            dataclasses.replace(full, semantic_augmentation=aug, semantic_experts=exp), 20, 4
        )
        for aug in (True, False)
        for exp in (True, False)
    }
    experts, vision = full.experts, full.vision
    active = experts.top_k + experts.shared_experts
    expert_flops = 2 * 3 * full.visual_tokens * vision.width * experts.mlp_dim * active
    assert cost[True, True] - cost[True, False] == expert_flops
    assert cost[False, True] - cost[False, False] == expert_flops
    augmentation = cost[True, False] - cost[False, False]
    assert augmentation == cost[True, True] - cost[False, True] > 0
    baseline = flops.forward_flops(dataclasses.replace(full, baseline=True), 20, 4)
    assert baseline != pytest.approx(cost[False, False])  # all patches, not the pooled levels
