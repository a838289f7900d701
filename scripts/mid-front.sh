#!/usr/bin/env bash
# Issue 15's replacements at a mid schedule on 2 CPU cores (about 2 hours; after a kill,
# run it again: the training steps resume where they stopped, the measurements run again
# and append to their CSVs):
# ResNet-20 / CIFAR-10 (JPEG copy) pretrained 15 epochs, one fast SNL search to 5% and
# 10% (--lambda 1e-2 --warmup 1 --lambda-growth 2, both reached in about 3 epochs), the
# same snapshots fine-tuned FT epochs (default 4) with the identity, with the quadratic
# replacement squaring a quarter of the positions (--square-channels 25%) and, at 5% only,
# squaring every position; then `scripts/quadratic-front.sh` (windows, fixed point on
# 10,000 test images, secure accuracy, online latency and bytes, HE offline costs) and
# `scripts/ab-models.sh` (two processes, interleaved) at 5% and 10%.
#
#   bash scripts/mid-front.sh [RUN_DIR] [OUT_DIR]      (defaults runs/mid, runs/results/mid-front)
#
# DATA (default ../shared/data/cifar10-q75), FT, PRE_EPOCHS (default 15), TRAIN_ARGS (more
# snl-train arguments, e.g. "--train-limit 1000 --test-limit 500" for a quick check of the
# script), LIMIT (private inferences per model, default 200), HE_LIMIT (default 3),
# AB_LIMIT (images per interleaved run, default 30), AB_ROUNDS (default 3) and EVERY (0:
# skip the every-position series, about 20 minutes of training) may be set in the
# environment. The fast search leaves the identity far from SNL's optimum: this
# measures the replacements at a short schedule, not SNL's (docs/results.md says what
# that means).
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-runs/mid}
OUT=${2:-runs/results/mid-front}
DATA=${DATA:-../shared/data/cifar10-q75}
FT=${FT:-4}
PRE_EPOCHS=${PRE_EPOCHS:-15}
AB_LIMIT=${AB_LIMIT:-30}
AB_ROUNDS=${AB_ROUNDS:-3}
EVERY=${EVERY:-1}
read -r -a EXTRA <<<"${TRAIN_ARGS:-}"
cargo build --release --quiet -p trainer -p models -p pi-runtime -p bench
T=target/release/snl-train
S=(--lambda 1e-2 --warmup 1 --lambda-growth 2 --finetune-epochs "$FT" --threads 2 --data "$DATA" "${EXTRA[@]}")
mkdir -p "$R"
st() { echo "$(date +%T) $* (load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$R/chain.log" >&2; }
st start
$T pretrain --arch resnet20 --data "$DATA" --epochs "$PRE_EPOCHS" --threads 2 "${EXTRA[@]}" --out "$R/pre" >>"$R/pre.log" 2>&1
st pretrained
$T linearize --model "$R/pre/model" --budget 5%,10% "${S[@]}" --out "$R/id" >>"$R/id.log" 2>&1
st "identity fine-tuned"
for q in q25 q; do
    [ -d "$R/$q/search" ] || { mkdir -p "$R/$q"; cp -r "$R/id/search" "$R/$q/search"; }
done
$T linearize --model "$R/pre/model" --budget 5%,10% "${S[@]}" --replacement quadratic \
    --square-channels 25% --out "$R/q25" >>"$R/q25.log" 2>&1
st "quadratic 25% fine-tuned"
AB5=("$OUT/identity-9420" "$OUT/quadratic-25-9420")
SERIES="identity=$R/id quadratic-25=$R/q25"
if [ "$EVERY" = 1 ]; then
    $T linearize --model "$R/pre/model" --budget 5% "${S[@]}" --replacement quadratic \
        --out "$R/q" >>"$R/q.log" 2>&1
    st "quadratic (every position) fine-tuned"
    AB5+=("$OUT/quadratic-9420")
    SERIES+=" quadratic=$R/q"
fi
SERIES="$SERIES" LIMIT=${LIMIT:-200} \
    HE_LIMIT=${HE_LIMIT:-3} DATA="$DATA" bash scripts/quadratic-front.sh x x "$OUT" >>"$R/front.log" 2>&1
st "front measured"
bash scripts/ab-models.sh "$OUT/ab-5.csv" "$DATA" "$AB_LIMIT" "$AB_ROUNDS" "${AB5[@]}" \
    >>"$R/ab5.log" 2>&1
bash scripts/ab-models.sh "$OUT/ab-10.csv" "$DATA" "$AB_LIMIT" "$AB_ROUNDS" \
    "$OUT/identity-18841" "$OUT/quadratic-25-18841" >>"$R/ab10.log" 2>&1
st "interleaved latencies measured"
# The latency model (with its square term) fitted to the interleaved rows.
target/release/snl-bench model-cost "$OUT/ab-5.csv" "$OUT/ab-10.csv" >"$OUT/model-cost.txt" 2>&1
st "latency model fitted: $OUT/model-cost.txt"
