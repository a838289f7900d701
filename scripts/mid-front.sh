#!/usr/bin/env bash
# Issue 15's replacements on 2 CPU cores (after a kill, run it again: the training steps
# resume where they stopped, the measurements run again and append to their CSVs):
# ResNet-20 / CIFAR-10 (JPEG copy) pretrained PRE_EPOCHS epochs, one SNL search to 5% and
# 10%, the same snapshots fine-tuned FT epochs with the identity, with the quadratic
# replacement squaring some of the positions (--square-channels, QUAD) and, at 5% only,
# squaring every position (EVERY); then `scripts/quadratic-front.sh` (windows, fixed
# point on 10,000 test images, secure accuracy, online latency and bytes, HE offline
# costs) and `scripts/ab-models.sh` (two processes, interleaved) at 5% and 10%.
#
#   bash scripts/mid-front.sh [RUN_DIR] [OUT_DIR]      (defaults runs/mid, runs/results/mid-front)
#
# SEARCH picks the schedule:
# - `fast` (default; about 2 hours): pretrain 15 epochs, a fast search (--lambda 1e-2
#   --warmup 1 --lambda-growth 2, 5% and 10% reached in about 3 epochs), FT 4. The fast
#   search leaves the identity far from SNL's optimum: this measures the replacements at
#   a short schedule, not SNL's (docs/results.md says what that means).
# - `snl`: the CPU-scale SNL settings of `scripts/results-cifar-cpu.sh` (docs/training.md):
#   pretrain 10 epochs, lambda 1e-4, warm-up 5, x1.5 after an epoch that lowers the count
#   by less than 10%, FT 5. About 4.5 hours with QUAD="15%=5% 25%=5%" on 2 idle cores
#   (2026-12-03: pretrain 1-2 minutes an epoch, the search about 4.5 minutes an epoch for
#   about 25 epochs, a quadratic fine-tune epoch 3-4 minutes); on a GPU machine,
#   `PRESET=r20-front scripts/paper-gpu.sh` trains the same models.
# QUAD (default "25%=5%,10%") lists the --square-channels series, each SHARE=BUDGETS
# (e.g. "15%=5% 25%=5% 25%=10%": trained in that order, run directories RUN_DIR/q15,
# q25, series quadratic-15, quadratic-25; a share ending in `i`, e.g. "15%i=5%", starts
# the coefficients at the identity, `--poly-init identity`: run directory q15i, series
# quadratic-15i). DATA (default ../shared/data/cifar10-q75), FT,
# PRE_EPOCHS, TRAIN_ARGS (more snl-train arguments, e.g. "--train-limit 1000 --test-limit
# 500" for a quick check of the script), LIMIT (private inferences per model, default
# 200), HE_LIMIT (default 3), AB_LIMIT (images per interleaved run, default 30),
# AB_ROUNDS (default 3) and EVERY (0: skip the every-position series, about 20 minutes of
# training at FT 4) may be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-runs/mid}
OUT=${2:-runs/results/mid-front}
DATA=${DATA:-../shared/data/cifar10-q75}
SEARCH=${SEARCH:-fast}
QUAD=${QUAD:-"25%=5%,10%"}
case "$SEARCH" in
    fast) FT=${FT:-4} PRE_EPOCHS=${PRE_EPOCHS:-15}
        SEARCH_ARGS=(--lambda 1e-2 --warmup 1 --lambda-growth 2) ;;
    snl) FT=${FT:-5} PRE_EPOCHS=${PRE_EPOCHS:-10}
        SEARCH_ARGS=(--lambda 1e-4 --lambda-growth 1.5 --min-drop 0.1 --warmup 5 --threshold 1e-2
            --search-lr 1e-3 --max-search-epochs 60 --finetune-lr 1e-3) ;;
    *) echo "SEARCH must be fast or snl, not $SEARCH" >&2; exit 1 ;;
esac
AB_LIMIT=${AB_LIMIT:-30}
AB_ROUNDS=${AB_ROUNDS:-3}
EVERY=${EVERY:-1}
read -r -a EXTRA <<<"${TRAIN_ARGS:-}"
cargo build --release --quiet -p trainer -p models -p pi-runtime -p bench
T=target/release/snl-train
S=("${SEARCH_ARGS[@]}" --finetune-epochs "$FT" --threads 2 --data "$DATA" "${EXTRA[@]}")
mkdir -p "$R"
st() { echo "$(date +%T) $* (load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$R/chain.log" >&2; }
st start
$T pretrain --arch resnet20 --data "$DATA" --epochs "$PRE_EPOCHS" --threads 2 "${EXTRA[@]}" --out "$R/pre" >>"$R/pre.log" 2>&1
st pretrained
$T linearize --model "$R/pre/model" --budget 5%,10% "${S[@]}" --out "$R/id" >>"$R/id.log" 2>&1
st "identity fine-tuned"
copy_search() {
    [ -d "$R/$1/search" ] || { mkdir -p "$R/$1"; cp -r "$R/id/search" "$R/$1/search"; }
}
SERIES="identity=$R/id"
AB5=("$OUT/identity-9420")
AB10=("$OUT/identity-18841")
for entry in $QUAD; do
    share=${entry%%=*} budgets=${entry#*=} init=fit
    [[ "$entry" == *=* && "$share" =~ ^[0-9]+%i?$ && -n "$budgets" ]] ||
        { echo "bad QUAD entry $entry (SHARE%[i]=BUDGETS)" >&2; exit 1; }
    if [[ "$share" == *i ]]; then init=identity share=${share%i}; fi
    name=${share%\%}
    if [ "$init" = identity ]; then name+=i; fi
    q=q$name
    copy_search "$q"
    $T linearize --model "$R/pre/model" --budget "$budgets" "${S[@]}" --replacement quadratic \
        --square-channels "$share" --poly-init "$init" --out "$R/$q" >>"$R/$q.log" 2>&1
    st "quadratic $share (from the $init) fine-tuned at $budgets"
    [[ " $SERIES " == *" quadratic-$name=$R/$q "* ]] || SERIES+=" quadratic-$name=$R/$q"
    if [[ ",$budgets," == *,5%,* ]]; then AB5+=("$OUT/quadratic-$name-9420"); fi
    if [[ ",$budgets," == *,10%,* ]]; then AB10+=("$OUT/quadratic-$name-18841"); fi
done
if [ "$EVERY" = 1 ]; then
    copy_search q
    $T linearize --model "$R/pre/model" --budget 5% "${S[@]}" --replacement quadratic \
        --out "$R/q" >>"$R/q.log" 2>&1
    st "quadratic (every position) fine-tuned"
    AB5+=("$OUT/quadratic-9420")
    SERIES+=" quadratic=$R/q"
fi
SERIES="$SERIES" LIMIT=${LIMIT:-200} \
    HE_LIMIT=${HE_LIMIT:-3} DATA="$DATA" bash scripts/quadratic-front.sh x x "$OUT" >>"$R/front.log" 2>&1
st "front measured"
ab() {
    local b=$1
    shift
    if [ $# -ge 2 ]; then
        bash scripts/ab-models.sh "$OUT/ab-$b.csv" "$DATA" "$AB_LIMIT" "$AB_ROUNDS" "$@" >>"$R/ab$b.log" 2>&1
    fi
}
ab 5 "${AB5[@]}"
ab 10 "${AB10[@]}"
st "interleaved latencies measured"
# The latency model (with its square term) fitted to the interleaved rows.
target/release/snl-bench model-cost "$OUT"/ab-*.csv >"$OUT/model-cost.txt" 2>&1
st "latency model fitted: $OUT/model-cost.txt"
