#!/usr/bin/env bash
# Train on every host of a Cloud TPU pod slice at once (run from your workstation).
#   launch/tpu_pod.sh TPU_NAME ZONE configs/demo.py gs://bucket/runs/demo --config.mesh.fsdp=16
# Every host runs the same command; jax.distributed.initialize() discovers the slice.
# The repository must already be cloned and installed (`make install`) in ~/rs-jax on
# every host, and the workdir must be storage all hosts share (e.g. a GCS bucket).
set -euo pipefail
tpu=${1:?tpu name}
zone=${2:?zone}
config=${3:?config}
workdir=${4:?workdir}
shift 4
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "cd ~/rs-jax && RS_JAX_DISTRIBUTED=1 .venv/bin/rs-jax train --config $config --workdir $workdir $*"
