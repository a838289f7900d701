#!/usr/bin/env bash
# Sets up (idempotent, cached) and runs the whole test suite. With CI=true the tests that
# read real data (CIFAR-10 in ../shared/data, Fashion-MNIST from Debian) must find it
# instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${CI:-}" = true ] || [ "${SNL_REQUIRE_DATA:-}" = 1 ]; then export SNL_REQUIRE_DATA=1; fi
start=$(date +%s)
cargo test --release --workspace
echo "[test] whole suite took $(( $(date +%s) - start )) s"
