#!/usr/bin/env bash
# A run on every worker of a Cloud TPU pod slice (one process per worker
# host; JAX finds the pod's coordinator, process count and ids itself).
#
#   launch/tpu_pod.sh [--dry-run] --name NAME --zone ZONE [--project P] \
#       [--create --accelerator-type v4-32 --version tpu-ubuntu2204-base] \
#       -- --config=configs/grpo.py:amass --workdir=/mnt/shared/runs/grpo
#
# Steps (each a gcloud command, printed first):
#   1. with --create: `gcloud compute tpus tpu-vm create NAME ...`;
#   2. pack this checkout (without .git and runs/) and copy it to every
#      worker: `gcloud compute tpus tpu-vm scp ... --worker=all`;
#   3. on every worker at once (`gcloud compute tpus tpu-vm ssh --worker=all
#      --command ...`): unpack into ~/motiongrpo_jax, install JAX for TPU
#      and the package, then run
#      `MOTIONGRPO_DISTRIBUTED=auto python3 -m motiongrpo_jax.main <args>`.
# Everything after `--` goes to motiongrpo_jax.main unchanged. --workdir must
# be a directory every worker sees (e.g. a Filestore/NFS or gcsfuse mount),
# since all workers write their share of each checkpoint there.
#
# Options (and environment defaults):
#   --name NAME              the TPU VM (TPU_NAME)
#   --zone ZONE              its zone (TPU_ZONE)
#   --project PROJECT        the Google Cloud project (default: gcloud's)
#   --create                 create the TPU VM first
#   --accelerator-type TYPE  for --create (default v4-32)
#   --version VERSION        TPU VM image for --create (default
#                            tpu-ubuntu2204-base)
#   --jax SPEC               pip spec of JAX for TPU (JAX_SPEC, default
#                            "jax[tpu]")
#   --dry-run                print the commands and exit 0 (also DRY_RUN=1)
set -euo pipefail

# Joins words into one shell command line (bash's own quoting, %q).
shell_join() {
  local line
  printf -v line '%q ' "$@"
  printf '%s' "${line% }"
}

name=${TPU_NAME:-}
zone=${TPU_ZONE:-}
project=""
create=0
accelerator_type=v4-32
version=tpu-ubuntu2204-base
jax_spec=${JAX_SPEC:-jax[tpu]}
dry_run=${DRY_RUN:-0}
repo=$(cd "$(dirname "$0")/.." && pwd)
archive=/tmp/motiongrpo_jax_src.tgz

usage() { sed -n '2,/^set -e/{/^#/s/^# \{0,1\}//p}' "$0"; exit "${1:-2}"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1; shift ;;
    --name) name=$2; shift 2 ;;
    --zone) zone=$2; shift 2 ;;
    --project) project=$2; shift 2 ;;
    --create) create=1; shift ;;
    --accelerator-type) accelerator_type=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --jax) jax_spec=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) echo "tpu_pod.sh: unknown option $1 (main's arguments go after --)" >&2; usage ;;
  esac
done
if [[ -z $name || -z $zone ]]; then
  echo "tpu_pod.sh: --name and --zone are required" >&2
  exit 2
fi
if [[ $# -eq 0 ]]; then
  echo "tpu_pod.sh: give main's arguments after --, e.g." \
       "-- --config=configs/grpo.py:amass --workdir=/mnt/shared/runs/grpo" >&2
  exit 2
fi

common=(--zone "$zone")
if [[ -n $project ]]; then common+=(--project "$project"); fi

main_cmd=$(shell_join python3 -m motiongrpo_jax.main "$@")
remote="set -e; mkdir -p ~/motiongrpo_jax; tar xzf ~/$(basename "$archive") -C ~/motiongrpo_jax; cd ~/motiongrpo_jax; python3 -m pip install -q -U $(shell_join "$jax_spec"); python3 -m pip install -q -e .; MOTIONGRPO_DISTRIBUTED=auto $main_cmd"

commands=()
if [[ $create == 1 ]]; then
  commands+=("$(shell_join gcloud compute tpus tpu-vm create "$name" "${common[@]}" \
    --accelerator-type "$accelerator_type" --version "$version")")
fi
commands+=("$(shell_join tar czf "$archive" --exclude=.git --exclude=runs \
  --exclude=multiprocess_logs -C "$repo" .)")
commands+=("$(shell_join gcloud compute tpus tpu-vm scp "$archive" "$name:~/" \
  --worker=all "${common[@]}")")
commands+=("$(shell_join gcloud compute tpus tpu-vm ssh "$name" "${common[@]}" \
  --worker=all --command "$remote")")

for c in "${commands[@]}"; do
  echo "$c"
  if [[ $dry_run != 1 ]]; then
    eval "$c"
  fi
done
