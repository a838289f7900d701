#!/usr/bin/env bash
# The main job on the built-in default: set up, create a LeNet-5 for Fashion-MNIST (batch
# norms calibrated, every ReLU kept, and a copy with 10% of the ReLUs kept), inspect it,
# and evaluate it with the f32 and the fixed-point executors. Later stages (training,
# linearization, private inference, latency report) extend this same command.
#
# Usage: scripts/demo.sh [DATA_DIR]   (default: /usr/share/datasets/fashion-mnist)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

DATA=${1:-/usr/share/datasets/fashion-mnist}
OUT=runs/demo
BIN=target/release/snl-model
mkdir -p "$OUT"

echo "== 1. create models (random init, batch norms calibrated on 256 training images)"
$BIN new --arch lenet5 --out "$OUT/lenet5-full" --seed 1 --force --calibrate-data "$DATA"
$BIN new --arch lenet5 --out "$OUT/lenet5-10pct" --seed 1 --keep-fraction 0.1 --force --calibrate-data "$DATA"
echo
echo "== 2. inspect"
$BIN inspect "$OUT/lenet5-10pct"
$BIN public "$OUT/lenet5-10pct" --out "$OUT/lenet5-10pct-public" --force
echo
echo "== 3. evaluate on the test set (f32 reference and fixed-point twin of the secure arithmetic)"
for m in lenet5-full lenet5-10pct; do
    for e in f32 fixed; do
        $BIN eval "$OUT/$m" --data "$DATA" --executor "$e"
    done
done
echo
echo "The models are untrained (about 10% accuracy is chance); the trainer issue adds"
echo "training and SNL linearization to this command. Model directories are in $OUT/."
