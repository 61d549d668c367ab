#!/usr/bin/env bash
# Train and evaluate on this machine. Simulate N CPU devices with RS_JAX_CPU_DEVICES=N
# (e.g. to try a mesh: RS_JAX_CPU_DEVICES=8 launch/local.sh configs/tiny.py runs/tiny --config.mesh.data=2 --config.mesh.tensor=4).
#   launch/local.sh [--dry-run] CONFIG WORKDIR [--config.key=value ...]
# --dry-run prints the commands instead of running them.
set -euo pipefail
run() { if ((dry_run)); then printf '%q ' "$@"; echo; else "$@"; fi; }
dry_run=0
if [[ ${1:-} == --dry-run ]]; then dry_run=1; shift; fi
config=${1:?usage: launch/local.sh [--dry-run] CONFIG WORKDIR [overrides]}
workdir=${2:?usage: launch/local.sh [--dry-run] CONFIG WORKDIR [overrides]}
shift 2
run rs-jax train --config "$config" --workdir "$workdir" "$@"
run rs-jax eval --config "$config" --workdir "$workdir" "$@"
