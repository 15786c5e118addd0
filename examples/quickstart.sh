#!/usr/bin/env bash
# The quickstart: build daft, bring up a Ray cluster on this machine (configs/local.toml),
# run the example Daft job on it, and take the cluster down again.
# Needs: cargo and python3. daft installs uv (from PyPI) and creates the cluster's environment.
set -euo pipefail
cd "$(dirname "$0")/.."
# DAFT_BIN: an already-built daft (CI passes the one its test build made, so it builds once).
if [ -n "${DAFT_BIN:-}" ]; then
    DAFT=$DAFT_BIN
else
    cargo build --quiet
    DAFT=target/debug/daft
fi
CONFIG=configs/local.toml
$DAFT up -c "$CONFIG" --yes
trap '$DAFT down -c "$CONFIG" --yes' EXIT
# (--allow-dirty: the example sits in daft's own repository, which you may be editing.)
$DAFT submit -c "$CONFIG" -w examples/daft-job --allow-dirty -- python main.py
