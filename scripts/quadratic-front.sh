#!/usr/bin/env bash
# Issue 15's fronts: ResNet-20 / CIFAR-10 (JPEG copy) at 5% and 10% of its ReLUs, the same
# masks (one SNL search) fine-tuned with the identity (SNL) and with the quadratic
# replacement, compared at equal kept ReLUs in fixed point (all 10,000 test images) and
# by private inference (accuracy, online latency and bytes). Both series are measured by
# this build in one run, interleaved per budget, so the latencies compare.
#
#   bash scripts/quadratic-front.sh [IDENTITY_RUN] [QUADRATIC_RUN] [OUT_DIR]
#
# IDENTITY_RUN and QUADRATIC_RUN are `snl-train linearize` output directories holding
# budget-9420 and budget-18841 (default runs/r20-snl and runs/r20-quad; the quadratic one
# from `snl-train linearize ... --replacement quadratic` on a copy of the identity run's
# search/ directory). DATA (default ../shared/data/cifar10-q75), LIMIT (private
# inferences per model, default 200) and HE_LIMIT (inferences with HE preprocessing for
# the offline costs, default 10) may be set in the environment. SERIES (default
# "identity=IDENTITY_RUN quadratic=QUADRATIC_RUN") names each series and its run
# directory, so more series can be measured in the same run, e.g. with
# `--square-channels` models: SERIES="identity=runs/r20-snl quadratic=runs/r20-quad
# quadratic-25=runs/r20-quad25". A series without a budget's model skips that budget.
set -euo pipefail
cd "$(dirname "$0")/.."
ID=${1:-runs/r20-snl}
QD=${2:-runs/r20-quad}
OUT=${3:-runs/results/r20-quadratic}
SERIES=${SERIES:-"identity=$ID quadratic=$QD"}
DATA=${DATA:-../shared/data/cifar10-q75}
LIMIT=${LIMIT:-200}
HE_LIMIT=${HE_LIMIT:-10}
BUDGETS=${BUDGETS:-"9420 18841"}
cargo build --release --quiet -p models -p bench
B=target/release
mkdir -p "$OUT"
( while true; do echo "$(date +%T) $(cat /proc/loadavg)"; sleep 30; done ) >"$OUT/load.log" &
LP=$!
trap 'kill $LP' EXIT
date
for b in $BUDGETS; do
    for entry in $SERIES; do
        kind=${entry%%=*} src=${entry#*=}
        [ "$kind" != "$entry" ] && [ -n "$kind" ] || { echo "bad SERIES entry $entry (NAME=DIR)" >&2; exit 1; }
        m="$OUT/$kind-$b"
        if [ ! -f "$m/model.json" ] && [ ! -d "$src/budget-$b" ]; then
            echo "series $kind has no budget-$b in $src: skipped" >&2
            continue
        fi
        # Per-site windows from 1,000 training images (margin 2), then the fixed-point
        # accuracy on the whole test set and its window overflows.
        # --dropped-bits 14: the fused-truncation circuit for both series (models exported
        # before format 2 read as the exact circuit, k = 0).
        [ -f "$m/model.json" ] || $B/snl-model windows "$src/budget-$b" --data "$DATA" \
            --dropped-bits 14 --out "$m" --json >"$m.windows.json"
        $B/snl-model eval "$m" --data "$DATA" --executor fixed --json >"$m.eval.json"
        $B/snl-model eval "$m" --data "$DATA" --executor f32 --json >"$m.eval-f32.json"
        $B/snl-bench sweep --models "$m" --data "$DATA" --limit "$LIMIT" --insecure-dealer \
            --series "$kind" --out "$OUT/front.csv"
        $B/snl-bench sweep --models "$m" --data "$DATA" --limit "$HE_LIMIT" --full-limit 1 \
            --series "$kind" --out "$OUT/front-he.csv"
    done
done
$B/snl-bench plot "$OUT/front.csv" --out "$OUT/front.svg" || true
date
