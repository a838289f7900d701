#!/usr/bin/env bash
# Interleaved A/B latency measurement of two builds of snl-bench (A B A B ...), loopback:
#
#   bash scripts/ab-sweep.sh BIN_A BIN_B OUT_PREFIX DATA LIMIT MODEL [ROUNDS]
#   e.g. bash scripts/ab-sweep.sh /tmp/old/snl-bench target/release/snl-bench runs/results/ab \
#            ../shared/data/cifar10-q75 50 runs/r20-snl/budget-9420 3
#
# Each round runs build A, then build B, on the same model and the first LIMIT test images
# (insecure dealer; fixed-point accuracy on the same LIMIT images only, to keep a round
# short), writing OUT_PREFIX-a.csv and OUT_PREFIX-b.csv with the network label
# loopback-abN for round N, and prints the load average before each run. Compare the
# rows of the same round; measure when the machine is otherwise quiet.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { printf '[ab-sweep] %s\n' "$*" >&2; exit 1; }
[ $# -ge 6 ] || die "usage: $0 BIN_A BIN_B OUT_PREFIX DATA LIMIT MODEL [ROUNDS]"
a=$1 b=$2 out=$3 data=$4 limit=$5 model=$6 rounds=${7:-3}
for bin in "$a" "$b"; do [ -x "$bin" ] || die "$bin is not an executable snl-bench"; done
[[ "$limit" =~ ^[1-9][0-9]*$ ]] || die "LIMIT must be a positive integer"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
for i in $(seq "$rounds"); do
    for side in a b; do
        bin=$a; [ "$side" = b ] && bin=$b
        echo "[ab-sweep] round $i, build $side ($bin), load $(cut -d' ' -f1-3 /proc/loadavg)"
        "$bin" sweep --models "$model" --data "$data" --limit "$limit" --full-limit "$limit" \
            --insecure-dealer --network "loopback-ab$i" --out "$out-$side.csv" --quiet
    done
done
