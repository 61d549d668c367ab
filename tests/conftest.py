"""Test-wide setup: 8 fake CPU devices, set before anything imports jax."""

import atexit
import os
import shutil
import tempfile

os.environ["JAX_PLATFORMS"] = "cpu"
from rs_jax.cli import simulate_cpu_devices  # noqa: E402  (does not import jax)

simulate_cpu_devices(8)
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
