#!/usr/bin/env bash
# N cooperating processes on this machine (loopback coordinator, CPU collectives), each
# with its own simulated CPU devices: a multi-host run without a cluster, e.g. to check a
# config's data slicing and checkpointing before a pod job.
#   launch/multiprocess.sh [--dry-run] N CONFIG WORKDIR [--config.key=value ...]
# RS_JAX_CPU_DEVICES (default 1) devices per process; RS_JAX_PORT (default 12355).
# --dry-run prints the commands instead of running them.
set -euo pipefail
dry_run=0
if [[ ${1:-} == --dry-run ]]; then dry_run=1; shift; fi
usage="usage: launch/multiprocess.sh [--dry-run] N CONFIG WORKDIR [overrides]"
n=${1:?$usage}
config=${2:?$usage}
workdir=${3:?$usage}
shift 3
port=${RS_JAX_PORT:-12355}
devices=${RS_JAX_CPU_DEVICES:-1}
rs_jax=${RS_JAX:-rs-jax}
printf -v args '%q ' --config "$config" --workdir "$workdir" "$@"
commands=()
for ((i = 0; i < n; i++)); do
  commands+=("RS_JAX_DISTRIBUTED=1 JAX_COORDINATOR_ADDRESS=127.0.0.1:$port RS_JAX_NUM_PROCESSES=$n RS_JAX_PROCESS_ID=$i RS_JAX_CPU_DEVICES=$devices $rs_jax train $args")
done
if ((dry_run)); then
  printf '%s\n' "${commands[@]}"
  exit 0
fi
pids=()
for command in "${commands[@]}"; do
  bash -c "$command" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
exit "$status"
