#!/usr/bin/env bash
# Measures the CPU cost of the wall outputs of `simpang run` with six sample cameras:
# process CPU% (user+sys of the simpang process only, from /proc) with no viewer, with 1, 4 and 8
# passthrough browser walls (six /live/{site} WebSockets each, read by scripts/live-viewer.py
# the way a page's MSE players read them), with 1, 4 and 8 walls on the burned-in MJPEG path
# (one /tiles.mjpg connection each, what the page used before passthrough), and with RTSP clients.
#
#   scripts/wall-cpu.sh [BIN] [SECONDS] [REPEATS]
#   FOOTAGE=samples/bench-1080p25.mp4 scripts/wall-cpu.sh ...   # one clip for all six cameras
#
# BIN defaults to target/release/simpang (build it with `cargo build --release --bin simpang`).
# Viewers are python / curl / gst-launch processes; their own CPU is not counted. Prints one line
# per scenario: the median of REPEATS windows of SECONDS each, every window, and what the viewers
# were sent over the windows (live fragments or JPEG parts per second, from the wall's metrics),
# so a scenario whose viewers got nothing shows it.
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
XPORT=$(free_port)
printf '\n[metrics]\nlisten = "127.0.0.1:%s"\n' "$XPORT" >>"$TMP/cfg.toml"
# The wall lets nobody watch without an account: the viewers sign in as a device of their own.
TOKEN=$("$BIN" wall device add wall-cpu --config "$TMP/cfg.toml")
export SIMPANG_WALL_AUTH="wall-cpu:$TOKEN"
"$BIN" run --config "$TMP/cfg.toml" >"$TMP/run.out" 2>"$TMP/run.err" &
RUN=$!
PIDS+=($RUN)
BASE="http://127.0.0.1:$HPORT"
METRICS="http://127.0.0.1:$XPORT/metrics"
for _ in $(seq 100); do
  n=$(curl -s "$METRICS" | grep -c '^simpang_camera_online{.*} 1' || true)
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
# Sum of a counter over all its series, from the wall's metrics.
total() { curl -s "$METRICS" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {printf "%.0f", s}'; }
measure() {
  local name=$1 vals=() v l0 j0 t0 t1
  sleep 3 # let the outputs start
  l0=$(total simpang_wall_live_fragments_total); j0=$(total simpang_wall_mjpeg_frames_sent_total)
  t0=$(date +%s.%N)
  for _ in $(seq "$REPEATS"); do v=$(window); vals+=("$v"); done
  t1=$(date +%s.%N)
  python3 - "$name" "$(total simpang_wall_live_fragments_total)" "$l0" \
    "$(total simpang_wall_mjpeg_frames_sent_total)" "$j0" "$(total simpang_wall_live_viewers)" \
    "$t0" "$t1" "$(cut -d' ' -f1 /proc/loadavg)" "${vals[@]}" <<'PY'
import statistics, sys
name, l1, l0, j1, j0, sockets, t0, t1, load, *vals = sys.argv[1:]
dt = float(t1) - float(t0)
vals = [float(v) for v in vals]
print(f"{name:<46} median {statistics.median(vals):6.1f} %CPU   windows {vals}   "
      f"sent: {(float(l1) - float(l0)) / dt:6.0f} live fragments/s to {sockets} sockets, "
      f"{(float(j1) - float(j0)) / dt:5.0f} MJPEG parts/s; load {load}")
PY
}
# Start a client in the background; its pid is left in LAST and remembered for cleanup.
viewer() { curl -s -u "$SIMPANG_WALL_AUTH" -o /dev/null "$@" >/dev/null 2>&1 & LAST=$!; PIDS+=($LAST); }
# One passthrough browser wall: a /live WebSocket per site. Pids of all walls in WALLS.
SITES=$(sed -n '/^\[\[sites\]\]/,/^id/s/^id = "\(.*\)"/\1/p' config/palembang.toml)
WALLS=()
live_wall() {
  # shellcheck disable=SC2086
  python3 scripts/live-viewer.py "127.0.0.1:$HPORT" $SITES >>"$TMP/live.out" 2>>"$TMP/live.err" &
  WALLS+=($!); PIDS+=($!)
}
mjpeg_wall() { viewer "$BASE/tiles.mjpg"; WALLS+=($LAST); }
walls_to() { while [ "${#WALLS[@]}" -lt "$2" ]; do "$1"; done; }
rtsp_client() {
  gst-launch-1.0 -q rtspsrc location="rtsp://127.0.0.1:$RPORT/annotated/$1" user-id=wall-cpu user-pw="$TOKEN" protocols=tcp latency=200 \
    ! fakesink sync=false >/dev/null 2>&1 &
  LAST=$!; PIDS+=($LAST)
}
stop() { for p in "$@"; do kill "$p" 2>/dev/null || true; done; sleep 2; }

echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $BIN; ${SECS}s windows x $REPEATS; footage ${FOOTAGE:-samples/sites/<site>.mp4}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
measure "0 viewers (cameras decoding, wall idle)"
for n in 1 4 8; do
  walls_to live_wall "$n"
  measure "$n passthrough wall(s) ($((n * 6)) x /live/{site})"
done
stop "${WALLS[@]}"; WALLS=()
[ -s "$TMP/live.err" ] && { echo "# live viewers' errors:"; sed 's/^/#   /' "$TMP/live.err"; }
measure "0 viewers again (passthrough walls left)"
for n in 1 4 8; do
  walls_to mjpeg_wall "$n"
  measure "$n MJPEG wall(s) ($n x /tiles.mjpg)"
done
stop "${WALLS[@]}"; WALLS=()
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
curl -s "$METRICS" | grep -E '^simpang_wall_(render|jpeg_encode|rtsp_encode|mosaic_compose)_seconds_(sum|count)' >"$TMP/m.txt" || true
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
