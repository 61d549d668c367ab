import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rs_jax.train.losses import compute_loss
from tests.models.conftest import KB_LEVELS, fit, make_model, random_batch, tiny_config


@pytest.mark.parametrize("baseline", [False, True])
def test_output_shapes(baseline, single_device_mesh):
    config = tiny_config("baseline" if baseline else None)
    model = make_model(config, single_device_mesh)
    batch = jax.tree.map(jnp.asarray, random_batch())
    hidden, visual = nnx.jit(lambda m, b: m(b))(model, batch)
    assert hidden.shape == (8, 4, 32)  # the answer positions only, before the vocabulary
    if baseline:
        # LLaVA-1.5: every patch of a 16 px image with 4 px patches, no KB, no experts.
        assert visual.tokens.shape == (8, 16, 32)
        assert visual.retrieved == () and visual.routing is None
    else:
        assert visual.tokens.shape == (8, 1 + 4 + 16, 32)  # scene 1x1, landcover 2x2, object 4x4
        assert [r.ids.shape for r in visual.retrieved] == [(8, 2)] * 3
        assert visual.routing.expert_counts.shape == (3, 2)
        # Every visual token is routed exactly top_k times, to its own level's experts.
        assert float(visual.routing.expert_counts.sum()) == 8 * 21 * config.model.experts.top_k


@pytest.mark.parametrize("augmentation, experts", [(False, False), (True, False), (False, True)])
def test_a_part_switched_off_is_gone_and_the_rest_trains(augmentation, experts, single_device_mesh):
    config = tiny_config()
    config.model.update(semantic_augmentation=augmentation, semantic_experts=experts)
    model = make_model(config, single_device_mesh)
    parts = set(nnx.state(model, nnx.Param).keys())
    assert {"kb", "augment"} <= parts if augmentation else not parts & {"kb", "augment"}
    assert ("experts" in parts) == experts
    _, visual = nnx.jit(lambda m, b: m(b))(model, jax.tree.map(jnp.asarray, random_batch()))
    assert visual.tokens.shape == (8, 1 + 4 + 16, 32)  # the levels stay
    assert len(visual.retrieved) == (3 if augmentation else 0)
    assert (visual.routing is not None) == experts
    losses = fit(config, single_device_mesh, [random_batch()], steps=25, learning_rate=3e-3)
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("baseline", [False, True])
def test_few_steps_on_fixed_batch_lower_the_loss(baseline, single_device_mesh):
    config = tiny_config("baseline" if baseline else None)
    losses = fit(config, single_device_mesh, [random_batch()], steps=25, learning_rate=3e-3)
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.5 * losses[0], losses


def test_sharded_forward_and_grads_equal_single_device(single_device_mesh, multi_device_mesh):
    config = tiny_config()
    batch = random_batch()

    def loss_and_grads(mesh):
        model = make_model(config, mesh)
        graphdef, params = nnx.split(model)
        with jax.set_mesh(mesh):
            sharded = {
                k: jax.device_put(v, jax.NamedSharding(mesh, jax.P(("data", "fsdp"))))
                for k, v in batch.items()
            }

            @jax.jit
            def f(params, batch):
                def loss_fn(p):
                    return compute_loss(nnx.merge(graphdef, p), batch)[0]

                # Traced as the train step is: activations pinned by the rules.
                with nnx.logical_axis_rules(config.sharding_rules):
                    return jax.value_and_grad(loss_fn)(params)

            loss, grads = f(params, sharded)
        return loss, grads, params

    loss1, grads1, _ = loss_and_grads(single_device_mesh)
    loss8, grads8, params8 = loss_and_grads(multi_device_mesh)
    # Parameters really are spread over the 8-device mesh.
    embedding = params8["llm"]["embedding"]["embedding"]
    assert len(embedding[...].sharding.device_set) == 8
    np.testing.assert_allclose(loss1, loss8, rtol=1e-5)
    for g1, g8 in zip(jax.tree.leaves(grads1), jax.tree.leaves(grads8), strict=True):
        np.testing.assert_allclose(g1, g8, rtol=1e-4, atol=1e-5)


def test_activations_stay_sharded_over_the_batch_under_fsdp():
    """Pinned activations: GSPMD gathers the fsdp-sharded weights, never the batch."""
    from configs.common import SHARDING_RULES
    from rs_jax.sharding import make_mesh

    mesh = make_mesh({"data": 2, "fsdp": 4})
    model = make_model(tiny_config("baseline"), mesh)
    graphdef, params = nnx.split(model)
    batch = {
        k: jax.device_put(v, jax.NamedSharding(mesh, jax.P(("data", "fsdp"))))
        for k, v in random_batch().items()
    }

    @jax.jit
    def hidden(params, batch):
        with nnx.logical_axis_rules(SHARDING_RULES):
            return nnx.merge(graphdef, params)(batch)[0]

    with jax.set_mesh(mesh):
        out = hidden(params, batch)
    assert {"data", "fsdp"} <= set(out.sharding.spec[0]), out.sharding.spec
    assert out.sharding.shard_shape(out.shape) == (1, 4, 32)  # 8 rows over 8 devices


@pytest.mark.parametrize(
    "kb_levels, message",
    [
        (
            KB_LEVELS[:7],
            "levels\\[2\\] \\('object'\\) retrieves from knowledge-base level 'object', "
            "which has no entries",
        ),
        (
            KB_LEVELS[:5] + KB_LEVELS[7:],
            "top_k=2 exceeds the 1 knowledge-base entries of level 'landcover'",
        ),
    ],
)
def test_knowledge_base_that_cannot_serve_the_levels_is_a_clear_error(
    kb_levels, message, single_device_mesh
):
    with pytest.raises(ValueError, match=message):
        make_model(tiny_config(), single_device_mesh, kb_levels)


def test_router_jitter_reaches_the_experts_only_with_a_key(single_device_mesh):
    config = tiny_config()
    config.model.experts.router_jitter = 0.5
    model = make_model(config, single_device_mesh)
    batch = jax.tree.map(jnp.asarray, random_batch())

    @nnx.jit
    def loss(model, key):
        return compute_loss(model, batch, jitter_key=key)[0]

    plain = loss(model, None)
    assert float(plain) != float(loss(model, jax.random.key(1)))
    assert float(plain) == float(loss(model, None))
