#!/usr/bin/env bash
# Issue 15's latency-budget check on a small net: LeNet-5 / Fashion-MNIST, on loopback.
#
#   bash scripts/latency-budget.sh [OUT_DIR]
#
# 1. Pretrains LeNet-5 (base) and linearizes it to a few ReLU budgets (the calibration
#    models).
# 2. Measures the base and calibration models' online latency by private inference on
#    loopback (snl-bench sweep, dealer preprocessing: the online phase is the same as with
#    HE) and fits the latency model to them (snl-bench model-cost --save cost.json).
# 3. Linearizes the base model to latency budgets with that model (snl-train linearize
#    --latency-budget, loopback: no added RTT, no rate limit).
# 4. Measures the calibration and the latency-budget models again, twice (passes 1 and
#    2), each pass alternating a calibration model and a latency-budget one, so that both
#    kinds see the same load. Per pass, fits the latency model to that pass's calibration
#    rows and prints its prediction against the measured latency of the latency-budget
#    models (which it did not see); fails when one is off by more than MAX_ERROR percent
#    (default 20). It also prints the prediction made at training time (the snapshot's,
#    within one ReLU's price of its budget) against each pass: the difference there is
#    also the machine's drift between the runs (calibration pass 0 against passes 1 and 2).
#
# DATA (default /usr/share/datasets/fashion-mnist), LIMIT (private inferences per model
# and repeat, default 200), REPEATS (default 3), BUDGETS (ms, default "6ms,4ms,3ms") and
# THREADS (training threads, default 2) may be set in the environment. Every step resumes
# where a killed run stopped. The load average is logged to OUT_DIR/load.log (others' jobs
# share the cores; latencies measured under load are slower than the fit's).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/latency-budget}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
LIMIT=${LIMIT:-200}
REPEATS=${REPEATS:-3}
BUDGETS=${BUDGETS:-6ms,4ms,3ms}
THREADS=${THREADS:-2}
MAX_ERROR=${MAX_ERROR:-20}
cargo build --release --quiet -p trainer -p bench
B=target/release
mkdir -p "$OUT"
( while true; do echo "$(date +%T) $(cat /proc/loadavg)"; sleep 30; done ) >"$OUT/load.log" &
LP=$!
trap 'kill $LP' EXIT
date
T=(--data "$DATA" --threads "$THREADS" --quiet)
S=(--data "$DATA" --limit "$LIMIT" --repeats "$REPEATS" --full-limit 2000 --insecure-dealer --quiet)
[ -f "$OUT/base/model/model.json" ] || $B/snl-train pretrain --arch lenet5 --epochs 3 \
    "${T[@]}" --out "$OUT/base"
$B/snl-train linearize --model "$OUT/base/model" "${T[@]}" --budget 50%,20%,8%,3%,1% \
    --lambda 1e-3 --search-lr 5e-3 --finetune-epochs 1 --out "$OUT/calib"
$B/snl-bench sweep --models "$OUT/base/model" "$OUT"/calib/budget-[0-9]* "${S[@]}" \
    --series calibration --out "$OUT/calib.csv"
$B/snl-bench model-cost "$OUT/calib.csv" --save "$OUT/cost.json"
$B/snl-train linearize --model "$OUT/base/model" "${T[@]}" --latency-budget "$BUDGETS" \
    --cost-model "$OUT/cost.json" --lambda 1e-3 --search-lr 5e-3 --finetune-epochs 1 \
    --out "$OUT/latency"
CAL=("$OUT/base/model" "$OUT"/calib/budget-[0-9]*)
LAT=("$OUT"/latency/budget-*ms)
for pass in 1 2; do
    n=$(( ${#CAL[@]} > ${#LAT[@]} ? ${#CAL[@]} : ${#LAT[@]} ))
    for ((i = 0; i < n; i++)); do
        if [ $i -lt ${#CAL[@]} ]; then
            $B/snl-bench sweep --models "${CAL[$i]}" "${S[@]}" --series calibration \
                --out "$OUT/pass$pass-calib.csv"
        fi
        if [ $i -lt ${#LAT[@]} ]; then
            $B/snl-bench sweep --models "${LAT[$i]}" "${S[@]}" --series latency-budget \
                --out "$OUT/pass$pass-latency.csv"
        fi
    done
done
{
    echo "# pass 0 (the cost model the latency budgets were trained with) against passes 1, 2"
    $B/snl-bench table "$OUT/calib.csv" "$OUT/pass1-calib.csv" "$OUT/pass2-calib.csv"
    for m in "${LAT[@]}"; do
        python3 -c 'import json,sys; p=json.load(open(sys.argv[1]+"/model.json"))["provenance"]; print(sys.argv[1], "budget", p["latency_budget_ms"], "ms, predicted at training", round(p["latency"]["predicted_online_ms"], 3), "ms")' "$m"
    done
    $B/snl-bench table "$OUT/pass1-latency.csv" "$OUT/pass2-latency.csv"
} | tee "$OUT/check.txt"
fail=0
for pass in 1 2; do
    echo "# pass $pass: fitted to its calibration rows, predicting its latency-budget rows" | tee -a "$OUT/check.txt"
    $B/snl-bench model-cost "$OUT/pass$pass-calib.csv" --held-out "$OUT/pass$pass-latency.csv" \
        --max-error "$MAX_ERROR" 2>&1 | tee -a "$OUT/check.txt" || fail=1
done
date
exit $fail
