#!/usr/bin/env bash
# Runs every criterion benchmark of the workspace with one command:
#   bash scripts/bench.sh           # full criterion defaults (3 s warm-up, 5 s measurement)
#   bash scripts/bench.sh --quick   # short runs: 1 s warm-up, 2 s measurement per benchmark
# Extra arguments go to criterion, e.g. a filter: bash scripts/bench.sh --quick tcp_relu
# Only the crates that have benchmarks are built (-p protocols -p bench); the trainer
# crate (libtorch) is not needed here. Reports land in $CARGO_TARGET_DIR/criterion
# (default target/criterion). Speeds are measured, never asserted: compare them with
# docs/protocols.md §8, and note whether anything else was running on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[bench] %s\n' "$*" >&2; }
command -v cargo >/dev/null || { log "cargo not found: install a Rust toolchain (rustup) first"; exit 1; }

crit_args=()
if [ "${1:-}" = "--quick" ]; then
    shift
    crit_args=(--warm-up-time 1 --measurement-time 2)
fi
crit_args+=("$@")

if command -v nproc >/dev/null; then
    log "$(nproc) cores; load average: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
fi
start=$(date +%s)
# --benches builds and runs only the [[bench]] targets of the two crates.
cargo bench -p protocols -p bench --benches -- "${crit_args[@]}"
log "all benchmarks took $(( $(date +%s) - start )) s"
