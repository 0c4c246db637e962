#!/usr/bin/env bash
# Takeover drill for analytics nodes (docs/deploy.md, "Analytics nodes"): runs the kill -9 test
# of tests/cluster_nodes.rs N times (default 10; each a fresh 3-node NATS cluster, six sample
# cameras, two `simpang run --node` nodes) and prints each takeover time, then p50 and max.
# Not part of scripts/test.sh: about 45 s per kill.
#
#   scripts/cluster-soak.sh [N]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
N=${1:-10}
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$ROOT/vendor-lib/onnxruntime/libonnxruntime.so}
cargo test --test cluster_nodes --no-run >/dev/null 2>&1
times=()
for ((i = 1; i <= N; i++)); do
  out=$(cargo test --test cluster_nodes killed_node -- --nocapture 2>&1) || { echo "$out" | tail -40; echo "run $i failed"; exit 1; }
  t=$(echo "$out" | sed -nE 's/^takeover after kill -9: ([0-9.]+) s$/\1/p')
  echo "kill $i: takeover ${t} s"
  times+=("$t")
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {p=int((NR+1)/2); printf "kills %d, takeover p50 %.1f s, max %.1f s\n", NR, a[p], a[NR]}'
