"""Test-wide setup: 8 fake CPU devices, set before anything imports jax."""

import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ["JAX_PLATFORMS"] = "cpu"
