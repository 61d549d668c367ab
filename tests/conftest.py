"""Test-wide setup: 8 fake CPU devices, set before anything imports jax."""

import atexit
import os
import shutil
import tempfile

os.environ["JAX_PLATFORMS"] = "cpu"
from rs_jax.cli import simulate_cpu_devices  # noqa: E402  (does not import jax)

simulate_cpu_devices(8)
# The tiny models' programs run for milliseconds but compile for seconds. Without LLVM's
# backend optimisations and XLA:CPU's fusion emitters the tiny train step compiles in less
# than half the time (11.6 s -> 6.4 s), with the same losses.
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")
os.environ["XLA_FLAGS"] += " " + " ".join(FAST_COMPILE_FLAGS)
# One compilation cache for the session, shared with the processes tests start: the tiny
# models' programs compile once, not in every test and every `rs-jax train` subprocess.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="rs_jax_test_xla_cache_")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import pytest  # noqa: E402  (after the environment above is set)


@pytest.fixture
def single_device_mesh():
    import jax

    from rs_jax.sharding import make_mesh

    return make_mesh({"data": 1, "fsdp": 1, "expert": 1, "tensor": 1}, jax.devices()[:1])


@pytest.fixture
def multi_device_mesh():
    from rs_jax.sharding import make_mesh

    return make_mesh({"data": 2, "fsdp": 2, "expert": 1, "tensor": 2})


@pytest.fixture
def model_context(single_device_mesh):
    """Mesh + logical rules in scope, as build_model provides, for building bare modules."""
    from configs.common import SHARDING_RULES
    from rs_jax.sharding import sharding_context

    with sharding_context(single_device_mesh, SHARDING_RULES):
        yield


# The end-to-end files (tens of seconds to minutes per test), longest first. xdist hands
# tests out in collection order, where these would come last and leave one worker
# running alone at the end; started first, the short tests fill the gaps.
LONGEST_FIRST = (
    "tests/train/test_trainer.py",
    "tests/test_launch.py",
    "tests/plan/test_aot.py",
    "tests/train/test_precision.py",
    "tests/models/test_rsvlm.py",
    "tests/convert/test_pretrained.py",
    "tests/train/test_grad_accum.py",
    "tests/test_notebooks.py",
    "tests/kb/test_host_retrieval.py",
    "tests/models/test_stack.py",
    "tests/train/test_experiment.py",
    "tests/models/test_semantic_experts.py",
    "tests/eval/test_evaluate.py",
    "tests/eval/test_zero_shot.py",
    "tests/eval/test_generation.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
