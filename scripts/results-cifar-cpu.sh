#!/usr/bin/env bash
# Reproduces the CPU-scale results of docs/training.md: ResNet-20 on CIFAR-10 (JPEG q75
# copy) with SNL's CIFAR settings, side by side with a PyTorch reference run. Pretrain 10
# epochs (SGD momentum 0.9, weight decay 5e-4, one-cycle schedule, peak lr 0.1, 15%
# warm-up, batch 128, crop + flip); one mask search through 20%, 10% and 5% of the
# 188,416 ReLUs (Adam 1e-3 on weights and alphas, lambda 1e-4, threshold 1e-2, KD from the
# pretrained network at T = 4, warm-up 5 epochs; lambda x1.5 after every later epoch that
# does not lower the count by 10%: SNL's own rule, x1.1 only without a new low, crawls
# below 20%); each budget's snapshot keeps exactly its count (the top alphas) and is
# fine-tuned 5 epochs (SGD, cosine from 1e-3, CE + KD, best epoch). Every model is then
# evaluated on the 10,000 test images with the f32 executor and the fixed-point twin of
# the secure arithmetic. Resumable: run it again after an interruption. About 70 minutes
# on 2 idle cores.
#
# Usage: scripts/results-cifar-cpu.sh [CIFAR_DIR] [OUT_DIR] [PRETRAIN_EPOCHS] [FINETUNE_EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

DATA=${1:-../shared/data/cifar10-q75}
OUT=${2:-runs/r20}
EPOCHS=${3:-10}
FT=${4:-5}
TRAIN=target/release/snl-train
MODEL=target/release/snl-model
THREADS=${SNL_THREADS:-2}
# Other jobs on the machine make spinning OpenMP threads waste most of their time
# (docs/training.md, CPU-scale setting).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

$TRAIN pretrain --data "$DATA" --arch resnet20 --epochs "$EPOCHS" --schedule one-cycle:0.15 \
    --lr 0.1 --batch 128 --out "$OUT" --quiet --threads "$THREADS"
$TRAIN linearize --model "$OUT/model" --data "$DATA" --budget 20%,10%,5% \
    --lambda 1e-4 --lambda-growth 1.5 --min-drop 0.1 --warmup 5 --threshold 1e-2 \
    --search-lr 1e-3 --max-search-epochs 60 --finetune-epochs "$FT" --finetune-lr 1e-3 \
    --out "$OUT-snl" --quiet --threads "$THREADS"

echo
echo "| model | kept ReLUs | share | test acc f32 | test acc fixed point | max pre-activation at kept ReLUs | overflows |"
echo "|-------|-----------:|------:|-------------:|---------------------:|---------------------------------:|----------:|"
for m in "$OUT/model" $(ls -d "$OUT-snl"/budget-* | sort -t- -k3 -nr); do
    f=$($MODEL eval "$m" --data "$DATA" --executor f32 --json)
    x=$($MODEL eval "$m" --data "$DATA" --executor fixed --json)
    python3 - "$m" "$f" "$x" <<'PY'
import json, sys
m, f, x = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
k, t = f["relus"]["kept"], f["relus"]["total"]
print(f"| {m} | {k:,} | {100*k/t:.1f}% | {100*f['accuracy']:.2f}% | {100*x['accuracy']:.2f}% | {x['max_abs_preactivation_kept']:.1f} | {x['relu_overflows']} |")
PY
done
