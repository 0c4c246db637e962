#!/usr/bin/env bash
# Measures what the H.264 decoder's worker threads cost per frame (docs/performance.md,
# "Decoder threads"; why `ingest.decoder_threads` defaults to one thread per camera).
#
#   scripts/decoder-threads.sh [FOOTAGE] [STREAMS...]
#
# For each number of streams (default: 1, 2 and 6) and each `max-threads` of avdec_h264 (0 =
# libav's default, 1, 2), decodes that many copies of FOOTAGE (default
# samples/bench-1080p25.mp4) side by side as fast as they go, with the parser and decoder the
# cameras use, and prints the CPU time (user + sys) per decoded frame and the frames per second.
# Run it on a quiet host: the figures are CPU time, but other processes still change them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FOOTAGE=${1:-samples/bench-1080p25.mp4}
shift || true
STREAMS=("$@")
[ ${#STREAMS[@]} -gt 0 ] || STREAMS=(1 2 6)
[ -f "$FOOTAGE" ] || { echo "no footage at $FOOTAGE (scripts/setup.sh makes it)" >&2; exit 2; }
FPS=$(gst-discoverer-1.0 -v "$FOOTAGE" 2>/dev/null | awk -F'[ /]' '/Frame rate/ {print $(NF-1)/$NF; exit}')
FRAMES=$(gst-discoverer-1.0 "$FOOTAGE" 2>/dev/null | awk -v fps="${FPS:-25}" '/Duration/ {split($2,t,":"); print int((t[1]*3600+t[2]*60+t[3])*fps+0.5)}')
echo "footage $FOOTAGE: $FRAMES frames at ${FPS:-?} fps; CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs"
for n in "${STREAMS[@]}"; do
  for threads in 0 1 2; do
    line=""
    for _ in $(seq 1 "$n"); do
      line="$line filesrc location=$FOOTAGE ! parsebin ! avdec_h264 max-threads=$threads ! fakesink sync=false"
    done
    # shellcheck disable=SC2086
    /usr/bin/time -f "%e %U %S" -o /tmp/decoder-threads.time gst-launch-1.0 -q $line >/dev/null
    read -r wall user sys </tmp/decoder-threads.time
    awk -v n="$n" -v t="$threads" -v w="$wall" -v u="$user" -v s="$sys" -v f="$FRAMES" \
      'BEGIN { printf "streams %2d  max-threads %d  CPU-ms/frame %5.2f  frames/s %6.1f\n", n, t, (u+s)*1000/(n*f), n*f/w }'
  done
done
