"""The start-up report: parameters per tower, bytes per device, what fsdp leaves replicated."""

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rs_jax.sharding import make_mesh
from rs_jax.train import report


def abstract(shape, mesh, spec, dtype=jnp.float32):
    return jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, spec))


def test_state_report_from_shapes_and_shardings():
    mesh = make_mesh({"data": 4, "fsdp": 2})
    params = {
        "llm": {"kernel": abstract((64, 32), mesh, P("fsdp", None))},  # 8 KiB, halved
        "vision": {
            "table": abstract((1024,), mesh, P()),  # 4 KiB, replicated: named
            "scale": abstract((8,), mesh, P(), jnp.bfloat16),  # 16 B: too small to name
        },
    }
    opt_state = jax.tree.map(lambda x: x, (params, params))  # two moments
    memory = report.state_report({"params": params, "opt_state": opt_state}, mesh)
    assert memory["parameters"] == 64 * 32 + 1024 + 8
    assert memory["parameters_per_tower"] == {"llm": 2048, "vision": 1032}
    per_device = 64 * 32 * 4 // 2 + 1024 * 4 + 8 * 2
    assert memory["param_bytes_per_device"] == per_device
    assert memory["opt_state_bytes_per_device"] == 2 * per_device
    assert memory["sharded_param_fraction"] == 8192 / (8192 + 4096 + 16)
    assert memory["large_replicated_params"] == [{"name": "vision.table", "bytes": 4096}]
    text = report.format_report(memory, None)
    assert "fsdp=2: 66.6% of parameter bytes sharded; replicated: vision.table (4.0 KiB)" in text


def test_compiled_report_reads_the_buffer_assignment():
    mesh = make_mesh({"data": 8})
    x = jax.device_put(jnp.ones((8, 1024)), NamedSharding(mesh, P("data")))
    compiled = jax.jit(lambda x: (x @ x.T).sum(0)).lower(x).compile()
    step = report.compiled_report(compiled)
    assert step["argument_bytes"] == 1024 * 4  # one device's row
    assert report.peak_bytes(step) >= step["argument_bytes"] + step["output_bytes"]


def test_planned_step_compiles_without_data_or_allocation(tmp_path):
    """The memory planner's path: abstract state, abstract batch, compiled step, report."""
    from pathlib import Path

    from rs_jax.config_files import load_config
    from rs_jax.data.scenes import kb_entries
    from rs_jax.train import experiment as experiment_lib
    from rs_jax.train.trainer import make_train_step

    repo = Path(__file__).resolve().parents[2]
    config = load_config(
        str(repo / "configs/tiny.py"), ["model.llm.vocab_size=100", "mesh.data=4", "mesh.fsdp=2"]
    )
    exp = experiment_lib.plan(config, kb_entries())
    assert exp.data is None
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(exp.state))
    batch = exp.abstract_batch()
    assert batch["kb_labels"].shape == (8, 3, 24)
    with jax.set_mesh(exp.mesh):
        step = report.compiled_report(make_train_step(exp).lower(exp.state, batch).compile())
    memory = report.state_report(exp.state, exp.mesh)
    state_bytes = memory["param_bytes_per_device"] + memory["opt_state_bytes_per_device"]
    # The step's arguments are the state (plus the step counter) and one device's batch rows.
    assert state_bytes < step["argument_bytes"] < state_bytes + 16 * 1024
    assert step["alias_bytes"] > 0.9 * state_bytes  # the state is donated
