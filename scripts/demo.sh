#!/usr/bin/env bash
# The main job on the built-in default data (Fashion-MNIST from Debian's
# dataset-fashion-mnist): set up, train LeNet-5, linearize it with SNL to three ReLU
# budgets in one mask search, and evaluate every model with the f32 executor and the
# fixed-point twin of the secure arithmetic, then run private inference on each model
# between pi-server and pi-client over TLS on loopback and report accuracy and latency,
# and end with snl-bench's latency-vs-ReLU table and Pareto plot (runs/demo/front.svg),
# whose accuracy is the fixed-point executor's on all 10,000 test images, beside the
# secure sample's size (PI_IMAGES) and its per-image agreement with the fixed point.
# A few minutes on 2 cores. The search
# uses a larger lambda and Adam step than SNL's reference (1e-5, 1e-3) so that it takes
# a few epochs instead of dozens; docs/training.md explains the trade-off.
#
# Usage: scripts/demo.sh [DATA_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

DATA=${1:-/usr/share/datasets/fashion-mnist}
OUT=${2:-runs/demo}
PI_IMAGES=${PI_IMAGES:-200}
MODEL=target/release/snl-model
TRAIN=target/release/snl-train
mkdir -p "$OUT"

echo "== 1. pretrain LeNet-5 (3 epochs, every ReLU kept)"
$TRAIN pretrain --data "$DATA" --arch lenet5 --epochs 3 --out "$OUT/pretrain" --quiet
echo
echo "== 2. SNL: one mask search through budgets 20%, 10% and 5% of 6,508 ReLUs, then fine-tuning"
$TRAIN linearize --model "$OUT/pretrain/model" --data "$DATA" --budget 20%,10%,5% \
    --lambda 2e-3 --search-lr 5e-3 --warmup 1 --finetune-epochs 2 --out "$OUT/snl" --quiet
echo
echo "== 3. inspect the smallest model (its public part is what a client would see)"
smallest=$(ls -d "$OUT"/snl/budget-* | sort -t- -k2 -n | head -1)
$MODEL inspect "$smallest"
echo
echo "== 4. evaluate on the 10,000 test images: f32 reference and fixed-point twin"
printf '%-28s %8s %10s %10s %12s\n' model kept f32 fixed overflows
for m in "$OUT/pretrain/model" $(ls -d "$OUT"/snl/budget-* | sort -t- -k2 -nr); do
    f=$($MODEL eval "$m" --data "$DATA" --executor f32 --json)
    x=$($MODEL eval "$m" --data "$DATA" --executor fixed --json)
    python3 - "$m" "$f" "$x" <<'PY'
import json, sys
m, f, x = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"{m.split('/', 1)[-1]:<28} {f['relus']['kept']:>8} {100*f['accuracy']:>9.2f}% {100*x['accuracy']:>9.2f}% {x['relu_overflows']:>12}")
PY
done
echo
echo "== 5. private inference over TLS on loopback: pi-server holds each model, pi-client classifies"
echo "   the first $PI_IMAGES test images (linear layers preprocessed with BFV homomorphic encryption)"
SERVER=target/release/pi-server
CLIENT=target/release/pi-client
rm -rf "$OUT/certs"
$SERVER gen-cert --out "$OUT/certs" --san localhost >/dev/null
printf '%-28s %8s %12s %12s %14s %16s %14s\n' model kept "fixed acc" "secure acc" "online median" "online KB/image" "offline median"
for m in "$OUT/pretrain/model" $(ls -d "$OUT"/snl/budget-* | sort -t- -k2 -nr); do
    $SERVER --model "$m" --listen 127.0.0.1:0 --tls-cert "$OUT/certs/cert.pem" \
        --tls-key "$OUT/certs/key.pem" > "$OUT/server.out" 2> "$OUT/server.log" &
    pid=$!
    for _ in $(seq 100); do grep -q listening "$OUT/server.out" 2>/dev/null && break; sleep 0.1; done
    port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$OUT/server.out")
    $CLIENT --connect "localhost:$port" --tls-ca "$OUT/certs/cert.pem" \
        --data "$DATA" --limit "$PI_IMAGES" --json --quiet 2>/dev/null > "$OUT/pi-$(basename "$m").json"
    kill $pid; wait $pid 2>/dev/null || true
    # The plaintext fixed-point accuracy on the same images, for comparison.
    x=$($MODEL eval "$m" --data "$DATA" --executor fixed --limit "$PI_IMAGES" --json)
    python3 - "$m" "$OUT/pi-$(basename "$m").json" "$x" <<'PY'
import json, sys
m, r, x = sys.argv[1], json.load(open(sys.argv[2])), json.loads(sys.argv[3])
i = r["inferences"]
kb = sum(v["online"]["bytes_sent"] + v["online"]["bytes_received"] for v in i) / len(i) / 1024
print(f"{m.split('/', 1)[-1]:<28} {r['relus_kept']:>8} {100*x['accuracy']:>11.1f}% {100*r['accuracy']:>11.1f}% {1e3*r['online_seconds']['median']:>11.1f} ms {kb:>16.1f} {1e3*r['offline_seconds']['median']:>11.1f} ms")
PY
done
echo
echo "== 6. latency vs kept ReLUs: snl-bench sweep (the same server and client code over loopback"
echo "   TCP, HE preprocessing, on the first $PI_IMAGES test images; the fixed-point executor on all"
echo "   10,000 for the accuracy), the table and the Pareto plot"
BENCH=target/release/snl-bench
rm -f "$OUT/results.csv"  # fresh measurements of the models just trained
$BENCH sweep --models "$OUT/pretrain/model" $(ls -d "$OUT"/snl/budget-* | sort -t- -k2 -nr) \
    --data "$DATA" --limit "$PI_IMAGES" --out "$OUT/results.csv" --quiet
$BENCH plot "$OUT/results.csv" --out "$OUT/front.svg" \
    --title "LeNet-5 on Fashion-MNIST: accuracy vs private-inference cost"
echo
echo "Logs: $OUT/pretrain/log.jsonl, $OUT/snl/log.jsonl; models in the models format under $OUT/;"
echo "private-inference reports: $OUT/pi-*.json (pi-client --json); latency-vs-ReLU results:"
echo "$OUT/results.csv (snl-bench table $OUT/results.csv), plot: $OUT/front.svg."
