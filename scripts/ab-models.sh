#!/usr/bin/env bash
# Interleaved online latency of two or more models, client and server in separate processes
# on loopback (as deployed: each party its own process), A B A B ... (or A B C A B C ...):
#
#   bash scripts/ab-models.sh OUT.csv DATA LIMIT ROUNDS MODEL_A MODEL_B [MODEL_C ...]
#   e.g. bash scripts/ab-models.sh runs/results/quad-ab.csv ../shared/data/cifar10-q75 50 3 \
#            runs/results/r20-quadratic/identity-9420 runs/results/r20-quadratic/quadratic-9420
#
# Starts one `pi-server --insecure-plaintext --insecure-dealer` per model on
# 127.0.0.1:7301, :7302, ..., then per round runs `snl-bench sweep --server` against each
# model in turn, on the first LIMIT test images (fixed-point accuracy on the same images
# only), appending rows labelled loopback-2proc-abN (-b appended for model B when BIN_B
# differs from BIN) to OUT.csv and printing the load average before each run; each server
# appends its sessions' per-layer timings to OUT.csv.metrics-a.jsonl, -b, ... (one record
# per sweep, `pi-server --metrics-json`).
# `snl-bench sweep` without --server runs both parties in one process, where they share
# its allocator and thread pool; this script does not. Binaries from $BIN (default
# target/release: cargo build --release -p pi-runtime -p bench); model B's server and
# client from $BIN_B if set (two builds on one model: MODEL_A = MODEL_B; two models only).
set -euo pipefail
cd "$(dirname "$0")/.."
die() { printf '[ab-models] %s\n' "$*" >&2; exit 1; }
[ $# -ge 6 ] || die "usage: $0 OUT.csv DATA LIMIT ROUNDS MODEL_A MODEL_B [MODEL_C ...]"
out=$1 data=$2 limit=$3 rounds=$4
shift 4
models=("$@")
BIN=${BIN:-target/release}
BIN_B=${BIN_B:-$BIN}
[[ "$limit" =~ ^[1-9][0-9]*$ ]] || die "LIMIT must be a positive integer"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[ "$BIN_B" = "$BIN" ] || [ ${#models[@]} -eq 2 ] || die "BIN_B applies to two models only"
for d in "$BIN" "$BIN_B"; do
    for b in pi-server snl-bench; do
        [ -x "$d/$b" ] || die "$d/$b not found: cargo build --release -p pi-runtime -p bench"
    done
done
letters=(a b c d e f g h)
[ ${#models[@]} -le ${#letters[@]} ] || die "at most ${#letters[@]} models"
# The binaries of model k: BIN, or BIN_B for the second of two.
bin_of() { if [ "$1" -eq 1 ]; then echo "$BIN_B"; else echo "$BIN"; fi; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for k in "${!models[@]}"; do
    "$(bin_of "$k")/pi-server" --model "${models[$k]}" --listen "127.0.0.1:$((7301 + k))" \
        --insecure-plaintext --insecure-dealer --metrics-json "$out.metrics-${letters[$k]}.jsonl" \
        >"$out.server-${letters[$k]}.log" 2>&1 &
    pids+=($!)
done
for k in "${!models[@]}"; do
    port=$((7301 + k))
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
done
for i in $(seq "$rounds"); do
    for k in "${!models[@]}"; do
        m=${models[$k]} port=$((7301 + k)) bin=$(bin_of "$k") tag=
        # One model under two builds: B's rows need their own label (a sweep skips the
        # points its CSV already holds).
        [ "$k" -eq 1 ] && [ "$BIN_B" != "$BIN" ] && tag=-b
        echo "[ab-models] round $i, model ${letters[$k]} ($m), load $(cut -d' ' -f1-3 /proc/loadavg)"
        "$bin/snl-bench" sweep --models "$m" --server "127.0.0.1:$port" --data "$data" \
            --limit "$limit" --full-limit "$limit" --insecure-dealer \
            --network "loopback-2proc-ab$i$tag" --out "$out" --quiet
    done
done
"$BIN/snl-bench" table "$out"
