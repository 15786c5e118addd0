#!/usr/bin/env bash
# Fuzz the config loader and the plan renderer for a bounded time (default 5 minutes each),
# from a random seed; a crash prints its case and seed: add it to fuzz_regressions in
# tests/fuzz.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${DAFT_FUZZ_SECS:-300}
seed=${DAFT_FUZZ_SEED:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}
echo "fuzzing for ${secs}s per target, seed $seed"
DAFT_FUZZ_SECS=$secs DAFT_FUZZ_SEED=$seed cargo test --release --test fuzz -- --nocapture --test-threads 2
