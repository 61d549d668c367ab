"""Mesh construction and logical-axis sharding on 8 simulated CPU devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType, PartitionSpec

from configs.common import SHARDING_RULES
from rs_jax import sharding as part

MESH_2x2x1x2 = dict(data=2, fsdp=2, expert=1, tensor=2)


@pytest.fixture(scope="module")
def mesh():
    assert jax.device_count() == 8, "tests/conftest.py must simulate 8 CPU devices"
    return part.make_mesh(MESH_2x2x1x2)


def test_make_mesh_shape_and_auto_axes(mesh):
    assert mesh.axis_names == part.MESH_AXES
    assert dict(mesh.shape) == MESH_2x2x1x2
    assert all(t == AxisType.Auto for t in mesh.axis_types)


def test_fill_axis():
    assert dict(part.make_mesh(dict(data=-1, fsdp=1, expert=1, tensor=1)).shape)["data"] == 8
    assert dict(part.make_mesh(dict(data=2, fsdp=-1, expert=1, tensor=2)).shape)["fsdp"] == 2
    # Axes left out default to 1; a single device is just a mesh of ones.
    assert dict(part.make_mesh(dict(data=-1), devices=jax.devices()[:1]).shape) == dict(
        data=1, fsdp=1, expert=1, tensor=1
    )


@pytest.mark.parametrize(
    "sizes, message",
    [
        (dict(data=3), "mesh {data: 3, fsdp: 1, expert: 1, tensor: 1} needs 3 devices but 8"),
        (dict(data=-1, fsdp=-1), "only one axis may be -1"),
        (dict(data=-1, tensor=3), "cannot fill 'data', 8 devices are not divisible by"),
        (dict(data=0, fsdp=8), "axis 'data' must be a positive size"),
        (dict(data=-2), "axis 'data' must be a positive size"),
        (dict(data=8, model=1), "Unknown mesh axis 'model'"),
    ],
)
def test_bad_mesh_errors(sizes, message):
    with pytest.raises(ValueError) as info:
        part.make_mesh(sizes)
    assert message in str(info.value)


def test_logical_to_mesh_first_match_and_reuse():
    assert part.logical_to_mesh(SHARDING_RULES, ("embed", "mlp")) == PartitionSpec("fsdp", "tensor")
    assert part.logical_to_mesh(SHARDING_RULES, ("kb", None)) == PartitionSpec(None, None)
    # Activations have names of their own: the batch on every data-parallel axis, the
    # features whole.
    batch_axes = ("data", "fsdp", "expert")
    act = ("act_batch", "act_length", "act_embed")
    assert part.logical_to_mesh(SHARDING_RULES, act) == PartitionSpec(batch_axes, None, None)
    # A mesh axis shards one dimension at most: the batch already uses fsdp, so a weight
    # name on an activation is left replicated rather than an invalid spec.
    mixed = ("act_batch", "act_length", "embed")
    assert part.logical_to_mesh(SHARDING_RULES, mixed) == PartitionSpec(batch_axes, None, None)
    rules = (("embed", "tensor"), ("embed", "fsdp"))
    assert part.logical_to_mesh(rules, ("embed",)) == PartitionSpec("tensor")
    with pytest.raises(ValueError, match="Logical axis 'embd'.*no entry in sharding_rules"):
        part.logical_to_mesh(SHARDING_RULES, ("embd",))


def test_batch_sharding_and_shard_batch(mesh):
    sharding = part.batch_sharding(mesh, SHARDING_RULES, 3)
    assert sharding.spec == PartitionSpec(("data", "fsdp", "expert"), None, None)
    assert part.batch_divisor(mesh, SHARDING_RULES) == 4
    batch = {
        "pixels": np.arange(8 * 2 * 3, dtype=np.float32).reshape(8, 2, 3),
        "ids": np.arange(8, dtype=np.int32),
        "answer_text": np.array(["a"] * 8),
        "meta": np.array([{}] * 8, dtype=object),
    }
    out = part.shard_batch(batch, mesh, SHARDING_RULES)
    assert set(out) == {"pixels", "ids"}
    np.testing.assert_array_equal(np.asarray(out["pixels"]), batch["pixels"])
    assert out["pixels"].sharding.spec[0] == ("data", "fsdp", "expert")
    # 4 batch shards, each replicated over the 2 tensor devices.
    assert {s.data.shape for s in out["pixels"].addressable_shards} == {(2, 2, 3)}
    with pytest.raises(ValueError, match="batch\\['ids'\\] with shape \\(6,\\)"):
        part.shard_batch({"ids": np.arange(6)}, mesh, SHARDING_RULES)


class Tiny(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.w = nnx.Param(jax.random.normal(rngs.params(), (8, 16)), out_sharding=("embed", "mlp"))
        self.b = nnx.Param(jnp.zeros((16,)), out_sharding=("mlp",))
        init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("exp", "embed", "mlp"))
        self.experts = nnx.Param(init(rngs.params(), (2, 8, 16)))
        self.plain = nnx.Linear(16, 4, rngs=rngs)  # no metadata: replicated


def test_state_shardings_shard_params_4_ways(mesh):
    with part.sharding_context(mesh, SHARDING_RULES):
        abstract = nnx.state(nnx.eval_shape(lambda: Tiny(nnx.Rngs(0))))
    shardings = part.state_shardings(abstract, mesh, SHARDING_RULES)
    assert shardings["w"].get_value().spec == PartitionSpec("fsdp", "tensor")
    assert shardings["b"].get_value().spec == PartitionSpec("tensor")
    assert shardings["experts"].get_value().spec == PartitionSpec("expert", "fsdp", "tensor")
    assert shardings["plain"]["kernel"].get_value().spec == PartitionSpec()

    # Materialise with jit out_shardings: each device holds a quarter of w.
    @jax.jit
    def init():
        return nnx.state(Tiny(nnx.Rngs(0)))

    with part.sharding_context(mesh, SHARDING_RULES):
        state = jax.jit(init.__wrapped__, out_shardings=shardings)()
    w = state["w"].get_value()
    assert w.sharding.spec == PartitionSpec("fsdp", "tensor")
    assert {s.data.shape for s in w.addressable_shards} == {(4, 8)}
    assert len({str(s.index) for s in w.addressable_shards}) == 4

    # Creating the module eagerly inside the context places it the same way.
    with part.sharding_context(mesh, SHARDING_RULES):
        model = Tiny(nnx.Rngs(0))
    assert {s.data.shape for s in model.w.get_value().addressable_shards} == {(4, 8)}

    restored_target = part.abstract_with_shardings(abstract, shardings)
    assert restored_target["w"].get_value().sharding.spec == PartitionSpec("fsdp", "tensor")


def test_state_shardings_errors(mesh):
    def abstract_param(names, rules):
        # Built under lenient rules; the strict ones are what state_shardings checks.
        with part.sharding_context(mesh, rules):
            return nnx.state(
                nnx.eval_shape(lambda: Holder(nnx.Param(jnp.zeros((4, 4)), out_sharding=names)))
            )

    bad_name = abstract_param(("embd", None), SHARDING_RULES + (("embd", None),))
    with pytest.raises(ValueError, match=r"Logical axis 'embd' of parameter \['p'\]"):
        part.state_shardings(bad_name, mesh, SHARDING_RULES)
    twice = abstract_param(("mlp", "heads"), (("heads", None),) + SHARDING_RULES)
    with pytest.raises(ValueError, match=r"Parameter \['p'\] maps two dimensions to the same mesh"):
        part.state_shardings(twice, mesh, SHARDING_RULES)


class Holder(nnx.Module):
    def __init__(self, p: nnx.Param):
        self.p = p


def test_mirror_shardings_follow_the_parameters(mesh):
    sharded = jax.NamedSharding(mesh, PartitionSpec("fsdp", "tensor"))
    replicated = jax.NamedSharding(mesh, PartitionSpec())
    params = {"w": jax.ShapeDtypeStruct((4, 6), jnp.float32, sharding=sharded)}
    opt_state = ({"count": jnp.zeros(()), "mu": {"w": jnp.zeros((4, 6))}}, {"w": jnp.zeros(3)})
    shardings = part.mirror_shardings(opt_state, params, replicated)
    assert shardings[0]["mu"]["w"] == sharded  # same path suffix and shape
    assert shardings[0]["count"] == replicated
    assert shardings[1]["w"] == replicated  # same path, another shape: not a moment of w


def test_optimizer_state_is_sharded_like_the_parameters(tmp_path):
    """fsdp shards the AdamW moments too, and the planned (abstract) experiment has exactly
    the shardings of the built one."""
    from rs_jax.config_files import load_config
    from rs_jax.data.scenes import kb_entries
    from rs_jax.train import experiment as experiment_lib
    from rs_jax.train import report
    from tests.train.test_trainer import REPO

    overrides = [f"data.data_dir={tmp_path}", "mesh.data=4", "mesh.fsdp=2"]
    config = load_config(str(REPO / "configs/tiny.py"), overrides)
    built = experiment_lib.setup(config, str(tmp_path))
    memory = report.state_report(built.state, built.mesh)
    assert memory["sharded_param_fraction"] > 0.9
    # mu and nu: twice the parameters' bytes on each device, not twice the whole model.
    params_bytes = memory["param_bytes_per_device"]
    assert memory["opt_state_bytes_per_device"] < 2.1 * params_bytes
    with config.unlocked():
        config.model.llm.vocab_size = built.model_config.llm.vocab_size
    planned = experiment_lib.plan(config, kb_entries())
    for a, b in zip(jax.tree.leaves(planned.state), jax.tree.leaves(built.state), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert a.sharding.is_equivalent_to(b.sharding, a.ndim), (a.sharding, b.sharding)


# The one table of logical names that weights and activations shared before activations got
# names of their own: activations stayed off 'embed' only because the resolver skips a mesh
# axis already in use. The rules now must place everything as this table did.
SHARED_NAMES_RULES = (
    ("batch", ("data", "fsdp", "expert")),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("vocab", "tensor"),
    ("exp", "expert"),
    ("kb", None),
    ("kb_embed", None),
    ("kb_embed_out", None),
    ("levels", None),
    ("patch", None),
    ("position", None),
    ("length", None),
    ("layers", None),
)
# Each activation pin as it was written with the shared names -> as it is written now.
ACTIVATION_PINS = {
    # block inputs and outputs (ViT, decoder, text encoder)
    ("batch", "length", "embed"): ("act_batch", "act_length", "act_embed"),
    # MLP / SwiGLU hidden units
    ("batch", "length", "mlp"): ("act_batch", "act_length", "act_mlp"),
    # queries, keys and values
    ("batch", "length", "heads", "head_dim"): (
        "act_batch",
        "act_length",
        "act_heads",
        "act_head_dim",
    ),
    ("batch", "length", "kv_heads", "head_dim"): (
        "act_batch",
        "act_length",
        "act_kv_heads",
        "act_head_dim",
    ),
    # the splash kernel's shard_map
    ("batch", None, "heads", None): ("act_batch", None, "act_heads", None),
    ("batch", None, "kv_heads", None): ("act_batch", None, "act_kv_heads", None),
    # batches (shard_batch) and the dropless dispatch's tokens
    ("batch", None, None): ("act_batch", None, None),
    # expert-major rows of the einsum dispatch
    ("exp",): ("act_exp",),
}
CONFIG_FILES = ("tiny.py", "demo.py", "moe_ep.py", "llava7b_like.py", "qwen2_siglip.py")


@pytest.mark.parametrize("config_file", CONFIG_FILES)
def test_activation_names_place_activations_as_the_shared_names_did(config_file):
    from rs_jax.config_files import load_config
    from tests.train.test_trainer import REPO

    config = load_config(str(REPO / "configs" / config_file))
    rules = tuple(config.sharding_rules)
    mesh = part.make_mesh(dict(config.mesh))
    for before, now in ACTIVATION_PINS.items():
        expected = part.named_sharding(mesh, SHARED_NAMES_RULES, before)
        assert part.named_sharding(mesh, rules, now) == expected, (before, now)
    assert part.batch_sharding(mesh, rules, 3) == part.named_sharding(
        mesh, SHARED_NAMES_RULES, ("batch", None, None)
    )


@pytest.mark.parametrize("arg", [None, "baseline"])
@pytest.mark.parametrize("mesh_sizes", [MESH_2x2x1x2, dict(data=2, fsdp=4), dict(expert=2, fsdp=4)])
def test_parameters_are_placed_as_with_the_shared_names(arg, mesh_sizes):
    from rs_jax.models import build_model
    from tests.models.conftest import KB_LEVELS, model_config, tiny_config

    config = tiny_config(arg)
    mesh = part.make_mesh(mesh_sizes)
    model = build_model(model_config(config), KB_LEVELS, mesh, SHARDING_RULES, abstract=True)
    state = nnx.state(model)
    now = part.state_shardings(state, mesh, SHARDING_RULES)
    before = part.state_shardings(state, mesh, SHARED_NAMES_RULES)
    assert jax.tree.leaves(now) == jax.tree.leaves(before)
    assert any(s.spec != PartitionSpec() for s in jax.tree.leaves(now))


def test_a_table_with_shared_names_gets_activation_rules_that_place_as_it_did():
    """Runs trained before activations had names of their own store such a table."""
    upgraded = part.with_activation_rules(SHARED_NAMES_RULES)
    mesh = part.make_mesh(MESH_2x2x1x2)
    for before, now in ACTIVATION_PINS.items():
        expected = part.named_sharding(mesh, SHARED_NAMES_RULES, before)
        assert part.named_sharding(mesh, upgraded, now) == expected, (before, now)
    part.check_rules(upgraded)
    assert part.with_activation_rules(SHARDING_RULES) == SHARDING_RULES


def test_a_run_stored_with_shared_names_loads_with_activation_rules(tmp_path, monkeypatch):
    import json

    from rs_jax.config_files import load_config
    from rs_jax.train import run_config
    from tests.train.test_trainer import REPO

    stored = json.loads(load_config(str(REPO / "configs/tiny.py")).to_json())
    stored["sharding_rules"] = json.loads(json.dumps(SHARED_NAMES_RULES))
    monkeypatch.setattr(run_config, "stored_config", lambda workdir: (stored, tmp_path))
    rules = tuple(run_config.load(tmp_path, []).sharding_rules)
    part.check_rules(rules)
    assert rules == part.with_activation_rules(SHARED_NAMES_RULES)
