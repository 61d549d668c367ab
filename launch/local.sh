#!/usr/bin/env bash
# Train and evaluate on this machine. Simulate N CPU devices with RS_JAX_CPU_DEVICES=N
# (e.g. to try a mesh: RS_JAX_CPU_DEVICES=8 launch/local.sh configs/tiny.py runs/tiny --config.mesh.data=2 --config.mesh.tensor=4).
#   launch/local.sh CONFIG WORKDIR [--config.key=value ...]
set -euo pipefail
config=${1:?usage: launch/local.sh CONFIG WORKDIR [overrides]}
workdir=${2:?usage: launch/local.sh CONFIG WORKDIR [overrides]}
shift 2
rs-jax train --config "$config" --workdir "$workdir" "$@"
rs-jax eval --config "$config" --workdir "$workdir" "$@"
