#!/usr/bin/env bash
# The quickstart: build daft, bring up a Ray cluster on this machine (configs/local.toml),
# run the example Daft job on it, and take the cluster down again.
# Needs: cargo and python3. daft installs uv (from PyPI) and creates the cluster's environment.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
DAFT=target/debug/daft
CONFIG=configs/local.toml
$DAFT up -c "$CONFIG" --yes
trap '$DAFT down -c "$CONFIG" --yes' EXIT
$DAFT submit -c "$CONFIG" -w examples/daft-job -- python main.py
