#!/usr/bin/env bash
# Runs N local processes of one multi-process training run on CPU devices.
#
#   launch/local_multiprocess.sh [--dry-run] [-n N] [-d DEVICES] [-p PORT] \
#       [-l LOG_DIR] -- --config=configs/pretrain.py:demo --workdir=runs/mp
#
# Everything after `--` goes to `python -m motiongrpo_jax.main` unchanged (a
# multi-process run needs --workdir). Process i gets
#   MOTIONGRPO_COORDINATOR=localhost:PORT MOTIONGRPO_NUM_PROCESSES=N
#   MOTIONGRPO_PROCESS_ID=i JAX_PLATFORMS=cpu
#   XLA_FLAGS=--xla_force_host_platform_device_count=DEVICES
# (collectives between the processes go through gloo). Process 0 logs to the
# terminal, process i > 0 to LOG_DIR/process_<i>.log. If one process fails,
# or on Ctrl-C / SIGTERM, all are stopped; the exit status is the first
# failure's.
#
# Options (and environment defaults):
#   -n N        processes (NUM_PROCESSES, default 2)
#   -d DEVICES  CPU devices per process (DEVICES_PER_PROCESS, default 1)
#   -p PORT     coordinator port on localhost (PORT, default 29500)
#   -l LOG_DIR  logs of processes 1..N-1 (LOG_DIR, default ./multiprocess_logs)
#   --dry-run   print the commands and exit 0 (also DRY_RUN=1)
#   PYTHON      the interpreter (default python)
set -euo pipefail

# Joins words into one shell command line (bash's own quoting, %q).
shell_join() {
  local line
  printf -v line '%q ' "$@"
  printf '%s' "${line% }"
}

num_processes=${NUM_PROCESSES:-2}
devices=${DEVICES_PER_PROCESS:-1}
port=${PORT:-29500}
log_dir=${LOG_DIR:-./multiprocess_logs}
dry_run=${DRY_RUN:-0}
python=${PYTHON:-python}

usage() { sed -n '2,/^set -e/{/^#/s/^# \{0,1\}//p}' "$0"; exit "${1:-2}"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1; shift ;;
    -n) num_processes=$2; shift 2 ;;
    -d) devices=$2; shift 2 ;;
    -p) port=$2; shift 2 ;;
    -l) log_dir=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) echo "local_multiprocess.sh: unknown option $1 (main's arguments go after --)" >&2; usage ;;
  esac
done
main_args=("$@")
if ! [[ $num_processes =~ ^[1-9][0-9]*$ && $devices =~ ^[1-9][0-9]*$ && $port =~ ^[0-9]+$ ]]; then
  echo "local_multiprocess.sh: -n, -d and -p must be positive integers" >&2
  exit 2
fi
if [[ ${#main_args[@]} -eq 0 ]]; then
  echo "local_multiprocess.sh: give main's arguments after --, e.g." \
       "-- --config=configs/pretrain.py:demo --workdir=runs/mp" >&2
  exit 2
fi

command_of() {  # The command of process $1, as an array in `cmd`.
  cmd=(env JAX_PLATFORMS=cpu
       "XLA_FLAGS=--xla_force_host_platform_device_count=$devices"
       "MOTIONGRPO_COORDINATOR=localhost:$port"
       "MOTIONGRPO_NUM_PROCESSES=$num_processes"
       "MOTIONGRPO_PROCESS_ID=$1"
       "$python" -m motiongrpo_jax.main "${main_args[@]}")
}

if [[ $dry_run == 1 ]]; then
  for ((i = 0; i < num_processes; i++)); do
    command_of "$i"
    shell_join "${cmd[@]}"
    if ((i > 0)); then printf ' > %s 2>&1' "$(shell_join "$log_dir/process_$i.log")"; fi
    printf '\n'
  done
  exit 0
fi

mkdir -p "$log_dir"
# Own process group per process, so that stopping one stops its children too
# (setsid is Linux's; elsewhere only the process itself is signalled).
group=()
if command -v setsid > /dev/null; then group=(setsid); fi
pids=()
stop_all() {  # Each process leads its own process group (setsid below).
  for pid in "${pids[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
}
trap 'echo "local_multiprocess.sh: interrupted, stopping all processes" >&2; stop_all; wait; exit 130' INT TERM

for ((i = 0; i < num_processes; i++)); do
  command_of "$i"
  if ((i == 0)); then
    "${group[@]}" "${cmd[@]}" &
  else
    "${group[@]}" "${cmd[@]}" > "$log_dir/process_$i.log" 2>&1 &
  fi
  pids+=($!)
done

status=0
for ((done_count = 0; done_count < num_processes; done_count++)); do
  if wait -n; then
    :
  else
    status=$?
    echo "local_multiprocess.sh: a process failed (status $status); stopping" \
         "the others (logs: $log_dir)" >&2
    stop_all
    wait || true
    break
  fi
done
exit "$status"
