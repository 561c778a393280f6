#!/usr/bin/env bash
# The README's main command: build llamaflow and run the sample pipeline
# (samples/llamaflow.toml) on the bundled sample corpus. Output: samples/out/.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --locked
./target/release/llamaflow --pipeline samples/llamaflow.toml run "$@"
./target/release/llamaflow --pipeline samples/llamaflow.toml status
