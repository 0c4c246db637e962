#!/usr/bin/env bash
# Transcodes the two source clips into the H.264 MP4 files that the sample cameras, the tests and
# the bench replay. Every output has no B-frames and a keyframe each second, so an RTSP client can
# join at any moment and the sample server can time-stamp buffers on arrival.
# Usage: scripts/make-footage.sh SAMPLES_DIR   (expects SAMPLES_DIR/src/{vtest.avi,sample.mp4})
set -euo pipefail
S=${1:?usage: make-footage.sh SAMPLES_DIR}
RECIPE=4   # bump when an output below changes, so old files are rebuilt
STAMP="$S/.footage-$RECIPE"
[ -f "$STAMP" ] && exit 0
say() { printf 'setup: %s\n' "$*" >&2; }
mkdir -p "$S/sites"

# enc FPS BITRATE_KBPS: the H.264 encoder + MP4 muxer tail shared by every output.
enc() { echo "x264enc speed-preset=veryfast bframes=0 key-int-max=$1 bitrate=$2 ! video/x-h264,profile=high ! h264parse ! mp4mux"; }
# make OUT PIPELINE-HEAD: runs HEAD ! TAIL ! filesink into a temporary file, then renames it.
make() {
  local out=$1; shift
  [ -f "$out" ] && return 0
  say "making ${out#"$S"/}"
  # shellcheck disable=SC2086
  gst-launch-1.0 -q -e $* location="$out.tmp" >/dev/null
  mv "$out.tmp" "$out"
}
src_v="filesrc location=$S/src/vtest.avi ! avidemux ! avdec_msmpeg4 ! videoconvert"
src_s="filesrc location=$S/src/sample.mp4 ! qtdemux ! h264parse ! avdec_h264 ! videoconvert"

make "$S/vtest.mp4" "$src_v ! video/x-raw,format=I420 ! $(enc 10 1500) ! filesink"
make "$S/sample.mp4" "$src_s ! video/x-raw,format=I420 ! $(enc 30 1200) ! filesink"
# The bench footage: the street clip as a 1920x1080 25 fps camera at a CCTV-like bit rate.
make "$S/bench-1080p25.mp4" "$src_s ! videorate ! videoscale method=bilinear ! \
  video/x-raw,format=I420,width=1920,height=1080,framerate=25/1,pixel-aspect-ratio=1/1 ! $(enc 25 4000) ! filesink"

# Six distinct site feeds from the two clips (mirrored / cropped so the wall shows six views).
cp -n "$S/vtest.mp4" "$S/sites/bkb.mp4"
cp -n "$S/sample.mp4" "$S/sites/ampera.mp4"
make "$S/sites/masjid-agung.mp4" "$src_v ! videoflip method=horizontal-flip ! video/x-raw,format=I420 ! $(enc 10 1500) ! filesink"
make "$S/sites/charitas.mp4" "$src_s ! videoflip method=horizontal-flip ! video/x-raw,format=I420 ! $(enc 30 1200) ! filesink"
make "$S/sites/simpang-lima.mp4" "$src_s ! videocrop left=140 right=140 top=60 bottom=20 ! videoscale ! \
  video/x-raw,format=I420,width=640,height=360,pixel-aspect-ratio=1/1 ! $(enc 30 1200) ! filesink"
make "$S/sites/kapten-rivai.mp4" "$src_s ! videocrop left=80 right=200 top=40 bottom=40 ! videoflip method=horizontal-flip ! \
  videoscale ! video/x-raw,format=I420,width=640,height=360,pixel-aspect-ratio=1/1 ! $(enc 30 1200) ! filesink"
# Each camera's second stream for detection (a site's `detect_stream`; `simpang samples` serves
# X.sub.mp4 as rtsp://.../<site>/sub, the bench's --substreams plays bench-1080p25.sub.mp4): the
# same footage 360 lines high (640x360 for 16:9), 5 fps, a keyframe each second, as a camera's
# substream is.
for f in "$S"/vtest.mp4 "$S"/sample.mp4 "$S"/bench-1080p25.mp4 "$S"/sites/*.mp4; do
  case $f in *.sub.mp4) continue ;; esac
  make "${f%.mp4}.sub.mp4" "filesrc location=$f ! qtdemux ! h264parse ! avdec_h264 ! videorate ! videoscale method=bilinear ! \
    video/x-raw,format=I420,height=360,framerate=5/1,pixel-aspect-ratio=1/1 ! $(enc 5 400) ! filesink"
done
rm -f "$S"/.footage-*
touch "$STAMP"
