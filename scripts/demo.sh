#!/usr/bin/env bash
# Sets up the machine (idempotent), builds simpang in release mode and runs the whole system on
# embedded defaults: six sample cameras, embedded MQTT broker, the pipeline, the desk and the
# wall. Prints the URLs; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
export ORT_DYLIB_PATH="$PWD/vendor-lib/onnxruntime/libonnxruntime.so"
cargo build --release --locked --bin simpang
exec target/release/simpang demo --config config/palembang.toml "$@"
