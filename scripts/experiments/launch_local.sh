#!/usr/bin/env bash
# Starts N ranks of `metalm train` on this machine, talking over loopback
# through the same TCPStore + Gloo rendezvous as ranks on several machines.
#   scripts/experiments/launch_local.sh N CONFIG [metalm train options...]
#     e.g. scripts/experiments/launch_local.sh 2 configs/brown-byte-small.json --set train.steps=100
# Environment: METALM_BIN (default build/apps/metalm), MASTER_PORT (default: a
# free port), THREADS (intra-op threads per rank, default cores / N).
# Rank 0 logs progress; if any rank fails, the others are stopped and the
# script exits with the first failing rank's code.
set -uo pipefail

if (($# < 2)) || [[ $1 == -h || $1 == --help ]]; then
  sed -n '2,10p' "$0"; exit 2
fi
n=$1; config=$2; shift 2
if ! [[ $n =~ ^[1-9][0-9]*$ ]]; then
  echo "launch_local: N must be a positive integer, got '$n'" >&2; exit 2
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${METALM_BIN:-$root/build/apps/metalm}
if [[ ! -x $bin ]]; then
  echo "launch_local: $bin not found (build first, or set METALM_BIN)" >&2; exit 2
fi
port=${MASTER_PORT:-$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
cores=$(nproc)
threads=${THREADS:-$(( cores / n > 0 ? cores / n : 1 ))}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; }
trap 'cleanup; exit 130' INT TERM
for ((r = 0; r < n; r++)); do
  RANK=$r LOCAL_RANK=$r WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} \
    "$bin" --threads "$threads" train --config "$config" "$@" &
  pids+=($!)
done

# The first rank to fail decides the exit code; the others get a moment to
# notice on their own (dist.timeout_s) and are then stopped.
status=0
remaining=$n
while ((remaining > 0)); do
  unset done_pid
  wait -n -p done_pid "${pids[@]}" 2>/dev/null
  code=$?
  [[ -z ${done_pid:-} ]] && break
  remaining=$((remaining - 1))
  if ((code != 0 && status == 0)); then
    status=$code
    echo "launch_local: a rank (pid $done_pid) exited with code $code; stopping the others" >&2
    sleep 2
    cleanup
  fi
done
wait 2>/dev/null
exit $status
