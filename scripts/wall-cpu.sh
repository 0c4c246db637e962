#!/usr/bin/env bash
# Measures the CPU cost of the wall outputs of `simpang run` with six sample cameras:
# process CPU% (user+sys of the simpang process only, from /proc) with no viewer, MJPEG viewers
# (a browser's wall = one /tiles.mjpg connection carrying all six tiles) and RTSP clients.
#
#   scripts/wall-cpu.sh [BIN] [SECONDS] [REPEATS]
#   FOOTAGE=samples/bench-1080p25.mp4 scripts/wall-cpu.sh ...   # one clip for all six cameras
#
# BIN defaults to target/release/simpang (build it with `cargo build --release --bin simpang`).
# Viewers are curl / gst-launch processes; their own CPU is not counted. Prints one line per
# scenario: the median of REPEATS windows of SECONDS each, and every window.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${1:-target/release/simpang}
SECS=${2:-20}
REPEATS=${3:-3}
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

FOOTAGE_ARGS=()
[ -n "${FOOTAGE:-}" ] && FOOTAGE_ARGS=(--footage "$FOOTAGE")
"$BIN" samples --config config/palembang.toml --port 0 "${FOOTAGE_ARGS[@]}" >"$TMP/samples.out" 2>"$TMP/samples.err" &
PIDS+=($!)
for _ in $(seq 50); do grep -q "samples: rtsp" "$TMP/samples.out" 2>/dev/null && break; sleep 0.2; done
SPORT=$(grep -o '127.0.0.1:[0-9]*' "$TMP/samples.out" | head -1 | cut -d: -f2)
HPORT=$(free_port); RPORT=$(free_port); MPORT=$(free_port)
sed -e "s#rtsp://127.0.0.1:8554/#rtsp://127.0.0.1:$SPORT/#" \
    -e "s#^listen = .*#listen = \"127.0.0.1:$HPORT\"#" \
    -e "s#^rtsp_port = .*#rtsp_port = $RPORT#" \
    -e "s#^embedded_listen = .*#embedded_listen = \"127.0.0.1:$MPORT\"#" \
    -e "s#^data_dir = .*#data_dir = \"$TMP/data\"#" \
    -e "s#\"\.\./#\"$PWD/#" \
    config/palembang.toml >"$TMP/cfg.toml"
"$BIN" run --config "$TMP/cfg.toml" >"$TMP/run.out" 2>"$TMP/run.err" &
RUN=$!
PIDS+=($RUN)
BASE="http://127.0.0.1:$HPORT"
for _ in $(seq 100); do
  n=$(curl -s "$BASE/metrics" | grep -c '^simpang_camera_online{.*} 1' || true)
  [ "$n" = 6 ] && break
  sleep 0.3
done
sleep 5
TCK=$(getconf CLK_TCK)

ticks() { awk '{print $14+$15}' "/proc/$RUN/stat"; }
window() {
  local a b t0 t1
  a=$(ticks); t0=$(date +%s.%N)
  sleep "$SECS"
  b=$(ticks); t1=$(date +%s.%N)
  python3 -c "print(round(($b-$a)/$TCK/($t1-$t0)*100, 1))"
}
measure() {
  local name=$1 vals=() v
  sleep 3 # let the outputs start
  for _ in $(seq "$REPEATS"); do v=$(window); vals+=("$v"); done
  python3 - "$name" "${vals[@]}" <<'PY'
import statistics, sys
name, vals = sys.argv[1], [float(v) for v in sys.argv[2:]]
print(f"{name:<44} median {statistics.median(vals):6.1f} %CPU   windows {vals}")
PY
}
# Start a client in the background; its pid is left in LAST and remembered for cleanup.
viewer() { curl -s -o /dev/null "$@" >/dev/null 2>&1 & LAST=$!; PIDS+=($LAST); }
rtsp_client() {
  gst-launch-1.0 -q rtspsrc location="rtsp://127.0.0.1:$RPORT/annotated/$1" protocols=tcp latency=200 \
    ! fakesink sync=false >/dev/null 2>&1 &
  LAST=$!; PIDS+=($LAST)
}
stop() { for p in "$@"; do kill "$p" 2>/dev/null || true; done; sleep 2; }

echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $BIN; ${SECS}s windows x $REPEATS; footage ${FOOTAGE:-samples/sites/<site>.mp4}"
measure "0 viewers (cameras decoding, wall idle)"
viewer "$BASE/tiles.mjpg"; v1=$LAST
measure "1 wall viewer (/tiles.mjpg, 6 tiles)"
viewer "$BASE/tiles.mjpg"; v2=$LAST; viewer "$BASE/tiles.mjpg"; v3=$LAST
measure "3 wall viewers (3x /tiles.mjpg)"
stop "$v1" "$v2" "$v3"
viewer "$BASE/stream/charitas.mjpg"; s1=$LAST
measure "1 single-tile MJPEG viewer (charitas)"
stop "$s1"
rtsp_client charitas; r1=$LAST
measure "1 RTSP client /annotated/charitas"
stop "$r1"
rtsp_client wall; r2=$LAST
measure "1 RTSP client /annotated/wall (mosaic)"
stop "$r2"
measure "0 viewers again (after all left)"
curl -s "$BASE/metrics" | grep -E '^simpang_wall_(render|jpeg_encode|rtsp_encode|mosaic_compose)_seconds_(sum|count)' >"$TMP/m.txt" || true
python3 - "$TMP/m.txt" <<'PY'
import collections, re, sys
acc = collections.defaultdict(lambda: [0.0, 0.0])
for line in open(sys.argv[1]):
    m = re.match(r'(simpang_wall_\w+)_seconds_(sum|count)(\{[^}]*\})? (\S+)', line)
    if m:
        acc[m.group(1)][0 if m.group(2) == "sum" else 1] += float(m.group(4))
for k, (s, c) in sorted(acc.items()):
    if c:
        print(f"# {k}: mean {s / c * 1000:.2f} ms over {int(c)} frames")
PY
