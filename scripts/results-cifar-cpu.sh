#!/usr/bin/env bash
# Reproduces the CPU-scale results table of docs/training.md: ResNet-20 on CIFAR-10
# (JPEG q75 copy) pretrained, then linearized by one SNL mask search to 20%, 10% and 5% of
# its 188,416 ReLUs and fine-tuned; every model evaluated on the 10,000 test images with
# the f32 executor and the fixed-point twin of the secure arithmetic. Resumable: run it
# again after an interruption. About 70 minutes on 2 cores with the defaults.
#
# Schedule (docs/training.md, "Search dynamics"): lambda starts at 4e-4 and grows x1.1
# after every epoch without a new low (no warm-up); Adam at 2e-3 drives every alpha down
# at about the same rate, so the count stays at 100% for about 1.3 epochs and then falls
# through the budgets within an epoch or two, each snapshotted when first reached (the
# search checks every 10 steps). Fine-tuning: 2 epochs per budget, cosine from 1e-3.
#
# Usage: scripts/results-cifar-cpu.sh [CIFAR_DIR] [OUT_DIR] [PRETRAIN_EPOCHS] [FINETUNE_EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

DATA=${1:-../shared/data/cifar10-q75}
OUT=${2:-runs/r20}
EPOCHS=${3:-10}
FT=${4:-2}
TRAIN=target/release/snl-train
MODEL=target/release/snl-model
THREADS=${SNL_THREADS:-2}

$TRAIN pretrain --data "$DATA" --arch resnet20 --epochs "$EPOCHS" --out "$OUT" --quiet --threads "$THREADS"
$TRAIN linearize --model "$OUT/model" --data "$DATA" --budget 20%,10%,5% \
    --lambda 4e-4 --search-lr 2e-3 --warmup 0 --finetune-epochs "$FT" \
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
