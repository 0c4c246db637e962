#!/usr/bin/env bash
# Sets up the machine (idempotent) and runs every check: formatting, clippy with warnings as
# errors, and all tests (unit, integration against real processes on loopback, browser).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
export ORT_DYLIB_PATH="$PWD/vendor-lib/onnxruntime/libonnxruntime.so"
export RUST_BACKTRACE=1
echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --all-targets --locked --no-fail-fast
echo "== all checks passed"
