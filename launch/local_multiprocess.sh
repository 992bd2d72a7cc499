#!/usr/bin/env bash
# Runs N processes of one training run on this machine, joined the way the
# hosts of a TPU pod or a GPU cluster are (a coordinator on localhost, CPU
# collectives over gloo), so the multi-host code paths run here.
#
# Usage:
#   launch/local_multiprocess.sh N -- ARGS...
#   launch/local_multiprocess.sh 2 -- --config=configs/default.py --workdir=/tmp/two_hosts
#
# ARGS go to `python -m cnn_jax.main` in every process, which also gets
# --coordinator_address=localhost:PORT --num_processes=N --process_id=i.
#
# Environment:
#   DEVICES_PER_PROCESS  simulated CPU devices of each process (default 1);
#                        the global batch must divide by N x this.
#   PORT                 coordinator port (default: a free one).
#   LOG_DIR              where process_<i>.txt logs go (default: a new /tmp folder).
#                        Process 0's output is also shown here; it alone reports.
#   PYTHON               the interpreter (default: python).
#   WAIT_SECONDS         after a failure, how long the others get to end by
#                        themselves (each reports its own error) before they
#                        are sent SIGTERM (default 30).
#   GRACE_SECONDS        after SIGTERM, how long they get before SIGKILL (default 60).
#
# If one process fails, the others are stopped (they would wait for it in a
# collective forever) and its exit status is returned. Ctrl-C or SIGTERM is
# passed on as SIGTERM: every process saves a checkpoint, and re-running the
# same command resumes. Every process writes its log itself, unbuffered, so a
# log holds all a process printed even when it was killed.
set -euo pipefail

usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; }

if [[ $# -lt 2 || "${2:-}" != "--" || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
  usage >&2
  exit 2
fi
num_processes=$1
shift 2

python=${PYTHON:-python}
devices=${DEVICES_PER_PROCESS:-1}
port=${PORT:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')}
log_dir=${LOG_DIR:-$(mktemp -d)}
mkdir -p "$log_dir"

declare -A running=()  # pid -> process index
killer=""
stop_all() {
  # $1 seconds for the processes to end by themselves (after a failure, the
  # others usually fail on their own and say why), then SIGTERM (a process
  # saves a checkpoint), then SIGKILL after a grace period for one stuck in a
  # collective with a process that is gone.
  local pids="${!running[*]}"
  (sleep "$1"; kill -TERM $pids 2>/dev/null
   sleep "${GRACE_SECONDS:-60}"; kill -KILL $pids 2>/dev/null) >/dev/null 2>&1 &
  killer=$!
}
trap 'stop_all 0; wait "${!running[@]}"; exit 143' INT TERM

for ((i = 0; i < num_processes; i++)); do
  log="$log_dir/process_$i.txt"
  command=("$python" -m cnn_jax.main "$@" "--coordinator_address=localhost:$port"
           "--num_processes=$num_processes" "--process_id=$i")
  # CNN_JAX_PARENT_PID: the processes stop (save and exit) if this script is killed.
  CNN_JAX_PARENT_PID=$$ PYTHONUNBUFFERED=1 XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$devices" \
    "${command[@]}" > "$log" 2>&1 &
  running[$!]=$i
  if ((i == 0)); then
    # Shown here as it is written; tail ends once process 0 has and the log is read.
    tail -n +1 -F --pid=$! "$log" 2>/dev/null &
    shown=$!
  fi
done
echo "$num_processes processes on localhost:$port, logs in $log_dir" >&2

status=0
while ((${#running[@]} > 0)); do
  code=0
  wait -n -p finished "${!running[@]}" || code=$?
  index=${running[$finished]}
  unset "running[$finished]"
  if ((code != 0 && status == 0)); then
    status=$code
    echo "process $index exited with status $code; stopping the others (logs in $log_dir)" >&2
    stop_all "${WAIT_SECONDS:-30}"
  fi
done
if [[ -n "$killer" ]]; then kill "$killer" 2>/dev/null || true; fi
wait "$shown" 2>/dev/null || true
exit "$status"
