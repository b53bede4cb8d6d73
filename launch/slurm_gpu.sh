#!/usr/bin/env bash
#SBATCH --job-name=motiongrpo
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=16
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%j.out
#
# A multi-node GPU run under SLURM: one process per node, each using all the
# GPUs of its node; process 0 (on the first node of the allocation) is the
# coordinator.
#
#   sbatch launch/slurm_gpu.sh --config=configs/grpo.py:amass \
#       --workdir=/shared/runs/grpo_amass
#   sbatch --nodes=4 launch/slurm_gpu.sh --config=...  (more nodes)
#
# The arguments go to `python -m motiongrpo_jax.main` unchanged; --workdir
# must be on a file system every node sees. `srun` starts one task per node
# with
#   MOTIONGRPO_COORDINATOR=<first node of $SLURM_JOB_NODELIST>:PORT
#   MOTIONGRPO_NUM_PROCESSES=$SLURM_NTASKS  MOTIONGRPO_PROCESS_ID=$SLURM_PROCID
# and stops every task when one fails (--kill-on-bad-exit).
#
# Environment:
#   MOTIONGRPO_PORT   coordinator port (default 29500)
#   PYTHON            the interpreter (default python; activate the venv first)
#   DRY_RUN=1 or --dry-run as the first argument: print the srun command and
#     the command each task runs, and exit 0 (outside SLURM, set
#     SLURM_JOB_NODELIST and SLURM_NTASKS to see what a job would do).
set -euo pipefail

# Joins words into one shell command line (bash's own quoting, %q).
shell_join() {
  local line
  printf -v line '%q ' "$@"
  printf '%s' "${line% }"
}

dry_run=${DRY_RUN:-0}
if [[ ${1:-} == --dry-run ]]; then dry_run=1; shift; fi
port=${MOTIONGRPO_PORT:-29500}
python=${PYTHON:-python}
if [[ $# -eq 0 ]]; then
  echo "slurm_gpu.sh: give main's arguments, e.g." \
       "--config=configs/grpo.py:amass --workdir=/shared/runs/grpo" >&2
  exit 2
fi
if [[ -z ${SLURM_JOB_NODELIST:-} || -z ${SLURM_NTASKS:-} ]]; then
  echo "slurm_gpu.sh: SLURM_JOB_NODELIST / SLURM_NTASKS are not set: submit" \
       "with sbatch (or set them for --dry-run)" >&2
  exit 2
fi
mapfile -t hosts < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
if [[ ${#hosts[@]} -eq 0 ]]; then
  echo "slurm_gpu.sh: scontrol listed no hosts for $SLURM_JOB_NODELIST" >&2
  exit 2
fi
coordinator="${hosts[0]}:$port"

# What each task runs; SLURM_PROCID is expanded inside the task.
main_cmd=$(shell_join "$python" -m motiongrpo_jax.main "$@")
task_cmd="export MOTIONGRPO_COORDINATOR=$coordinator MOTIONGRPO_NUM_PROCESSES=$SLURM_NTASKS MOTIONGRPO_PROCESS_ID=\$SLURM_PROCID; exec $main_cmd"
srun_cmd=(srun --kill-on-bad-exit=1 --ntasks="$SLURM_NTASKS" bash -c "$task_cmd")

if [[ $dry_run == 1 ]]; then
  shell_join "${srun_cmd[@]}"
  printf '\n'
  tasks_per_node=$(( (SLURM_NTASKS + ${#hosts[@]} - 1) / ${#hosts[@]} ))
  for ((i = 0; i < SLURM_NTASKS; i++)); do
    printf '# task %d on %s: %s\n' "$i" "${hosts[i / tasks_per_node]}" \
      "${task_cmd//\$SLURM_PROCID/$i}"
  done
  exit 0
fi
exec "${srun_cmd[@]}"
