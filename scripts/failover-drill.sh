#!/usr/bin/env bash
# Failover drill of the broker cluster and the desks (docs/deploy.md, "Failover figures"):
#
#  1. broker nodes: tests/cluster.rs with SIMPANG_CLUSTER_KILLS=N. Three NATS nodes
#     (scripts/nats-cluster.sh configs, simpang mqtt-credentials users), the incident service of
#     `simpang run` and a desk, incidents flowing; N times the node of the producer or of the
#     desk (in turn) is killed with SIGKILL and started again. Per kill: the producer's and the
#     desk's CONNACK and the first PUBACK / first new incident stored, from the kill, and each
#     phase from the clients' own log lines (lost, every attempt, CONNACK, SUBACK).
#  2. desks: tests/desk_cluster.rs with SIMPANG_DESK_KILLS=N. Two `simpang desk` processes on
#     one PostgreSQL, on the NATS cluster; N times one desk (in turn) is killed with SIGKILL
#     while incidents flow, the other must take every incident and serve logins; per kill the
#     time to the first incident made after the kill being stored. Also the CPU of the three
#     nats-server processes and of both desks while incidents flow (from /proc).
#
# Both tests assert that no incident is lost and none becomes two reports; the figures are
# printed, never asserted. Not part of scripts/test.sh (CI runs both tests with 2 and 1 kills):
# about 15 s per node kill and 10 s per desk kill. Timings depend on the machine's load: run it
# on a quiet machine and quote the load it prints.
#
#   scripts/failover-drill.sh [N]     N kills of each kind (default 10)
#
# Needs what the tests need: scripts/setup.sh (nats-server in .venv, mosquitto-clients,
# PostgreSQL). The full output, with each kill's phases, is kept in $LOG (printed at the end).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
N=${1:-10}
[[ $N =~ ^[0-9]+$ ]] && [ "$N" -ge 1 ] || { echo "failover-drill: N must be a positive number, got '$N'" >&2; exit 2; }
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$ROOT/vendor-lib/onnxruntime/libonnxruntime.so}
LOG=${LOG:-$(mktemp -t failover-drill.XXXXXX.log)}

cargo test --locked --test cluster --test desk_cluster --no-run >/dev/null 2>&1 || {
  echo "failover-drill: the tests do not build; run cargo test --test cluster --no-run to see why" >&2
  exit 1
}

echo "machine: $(lscpu | sed -nE 's/^Model name: +//p'), $(nproc) CPUs; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
run() {
  local what=$1; shift
  local out rc=0
  out=$(env "$@" 2>&1) || rc=$?
  printf '%s\n' "$out" >>"$LOG"
  if [ "$rc" -ne 0 ]; then
    printf '%s\n' "$out" | tail -40
    echo "failover-drill: $what failed (exit $rc); full output in $LOG" >&2
    exit 1
  fi
  printf '%s\n' "$out"
}

echo "== $N broker node kills"
run "the node kills" SIMPANG_CLUSTER_KILLS="$N" \
  cargo test --locked --test cluster a_killed_broker_node -- --nocapture \
  | grep -E '^(kill [0-9]+:|cluster test:|failover: )'
echo "== $N desk kills"
run "the desk kills" SIMPANG_DESK_KILLS="$N" \
  cargo test --locked --test desk_cluster two_desks_on_the_nats_cluster -- --nocapture \
  | grep -E '^(desk kill [0-9]+:|failover: |failover cpu: )'
echo "lost and duplicated: 0 and 0 (both tests passed: every incident is one report in its last state, each step applied once)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); full output with each kill's phases: $LOG"
