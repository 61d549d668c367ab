#!/usr/bin/env bash
# Train on every host of a Cloud TPU pod slice at once (run from your workstation).
#   launch/tpu_pod.sh [--dry-run] TPU_NAME ZONE configs/demo.py gs://bucket/runs/demo --config.mesh.fsdp=16
# Every host runs the same command; jax.distributed.initialize() discovers the slice.
# The repository must already be cloned and installed in ~/rs-jax on every host
# (`python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e '.[tpu]'`: libtpu
# and gcsfs), and the workdir must be storage all hosts share (e.g. a GCS bucket: gs://
# paths go through etils.epath, whose gs:// backend is gcsfs).
# --dry-run prints the command instead of running it.
set -euo pipefail
run() { if ((dry_run)); then printf '%q ' "$@"; echo; else "$@"; fi; }
dry_run=0
if [[ ${1:-} == --dry-run ]]; then dry_run=1; shift; fi
tpu=${1:?tpu name}
zone=${2:?zone}
config=${3:?config}
workdir=${4:?workdir}
shift 4
printf -v train '%q ' .venv/bin/rs-jax train --config "$config" --workdir "$workdir" "$@"
run gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "cd ~/rs-jax && RS_JAX_DISTRIBUTED=1 $train"
