#!/usr/bin/env bash
# Small ResNet-20 / CIFAR-10 stand-ins for online-latency A/B checks (about 8 minutes on 2
# cores): a 2-epoch pretrain on 5,000 images, one SNL search to 5% of the ReLUs, that mask
# fine-tuned (1 epoch) with the identity, with the quadratic replacement and with squares in
# at most 25% of the dropped positions (--square-channels 25%), and per-site
# windows for each (--dropped-bits 14, as in scripts/quadratic-front.sh). Their accuracy
# means nothing; their structure (kept ReLUs per site, quadratic sites) is that of the
# real fronts, so their online cost is.
#
#   bash scripts/standin-models.sh [DATA] [OUT_DIR]
#
# DATA defaults to ../shared/data/cifar10-q75, OUT_DIR to runs/standin; writes
# OUT_DIR/w-id, OUT_DIR/w-q and OUT_DIR/w-q25 (pi-server models), e.g. for
#   bash scripts/ab-models.sh runs/ab.csv DATA 50 3 runs/standin/w-id runs/standin/w-q
# Steps already done are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/cifar10-q75}
OUT=${2:-runs/standin}
B=target/release
cargo build --release --quiet -p trainer -p models
mkdir -p "$OUT"
common=(--data "$DATA" --train-limit 5000 --test-limit 500 --threads 2 --quiet)
# A quick search: the penalty starts high and doubles each epoch.
search=(--budget 5% --lambda 2e-3 --warmup 1 --lambda-growth 2 --finetune-epochs 1)
[ -d "$OUT/pre/model" ] || $B/snl-train pretrain "${common[@]}" --arch resnet20 \
    --epochs 2 --out "$OUT/pre"
[ -d "$OUT/id" ] && ls -d "$OUT"/id/budget-* >/dev/null 2>&1 ||
    $B/snl-train linearize "${common[@]}" --model "$OUT/pre/model" "${search[@]}" \
        --out "$OUT/id"
if ! ls -d "$OUT"/q/budget-* >/dev/null 2>&1; then
    # The same search (copied), fine-tuned with the quadratic replacement.
    rm -rf "$OUT/q"
    cp -a "$OUT/id" "$OUT/q"
    rm -rf "$OUT"/q/budget-* "$OUT"/q/finetune-*
    $B/snl-train linearize "${common[@]}" --model "$OUT/pre/model" "${search[@]}" \
        --replacement quadratic --out "$OUT/q"
fi
if ! ls -d "$OUT"/q25/budget-* >/dev/null 2>&1; then
    # The same again with a square in at most 25% of each site's dropped positions.
    rm -rf "$OUT/q25"
    cp -a "$OUT/id" "$OUT/q25"
    rm -rf "$OUT"/q25/budget-* "$OUT"/q25/finetune-*
    $B/snl-train linearize "${common[@]}" --model "$OUT/pre/model" "${search[@]}" \
        --replacement quadratic --square-channels 25% --out "$OUT/q25"
fi
for kind in id q q25; do
    src=$(ls -d "$OUT/$kind"/budget-* | head -1)
    [ -f "$OUT/w-$kind/model.json" ] || $B/snl-model windows "$src" --data "$DATA" \
        --dropped-bits 14 --out "$OUT/w-$kind" >/dev/null
done
echo "stand-ins: $OUT/w-id $OUT/w-q $OUT/w-q25"
