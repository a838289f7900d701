#!/usr/bin/env bash
# Issue 14's headline, before and after in one run: one model pair between two network
# namespaces with HE preprocessing, on an unlimited veth link, at 1 Gbit/s and at
# 100 Mbit/s, builds A and B interleaved on each link (A B A B per link):
#
#   bash scripts/headline-ab.sh BIN_A MODEL_A BIN_B MODEL_B OUT_PREFIX DATA [LIMIT] [ROUNDS]
#   e.g. bash scripts/headline-ab.sh /root/bin-v4 runs/r18-v1 target/release runs/r18-v2 \
#            runs/results/headline ../shared/data/cifar10-q75 4 2
#
# BIN_A and BIN_B are directories holding pi-server, snl-bench and delay-relay of each
# build; MODEL_A and MODEL_B the model each build serves (the same weights and masks,
# e.g. a format-1 model for an older build and its `snl-model windows` copy for a newer
# one). Each run is `scripts/rtt-sweep.sh 0 ...` with RATE_MBIT set (no added RTT),
# classifying the first LIMIT test images (default 4) privately and with the fixed-point
# executor; rows go to OUT_PREFIX-a.csv and OUT_PREFIX-b.csv with network labels
# veth, veth-1000mbit, veth-100mbit plus -rN for round N. The load average is printed
# before each run. LINKS (default "unlimited 1000 100") picks the links, e.g.
# LINKS=1000 for the 1 Gbit/s rows only. Needs root (network namespaces) like rtt-sweep.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { printf '[headline-ab] %s\n' "$*" >&2; exit 1; }
[ $# -ge 6 ] || die "usage: $0 BIN_A MODEL_A BIN_B MODEL_B OUT_PREFIX DATA [LIMIT] [ROUNDS]"
bin_a=$1 model_a=$2 bin_b=$3 model_b=$4 out=$5 data=$6 limit=${7:-4} rounds=${8:-2}
[[ "$limit" =~ ^[1-9][0-9]*$ ]] || die "LIMIT must be a positive integer"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
for d in "$bin_a" "$bin_b"; do
    for b in pi-server snl-bench delay-relay; do [ -x "$d/$b" ] || die "$d/$b not found"; done
done
for m in "$model_a" "$model_b"; do [ -d "$m" ] || die "model directory $m not found"; done
links=${LINKS:-unlimited 1000 100}
for link in $links; do
    case $link in
        unlimited) rate= ;;
        *[!0-9]* | "") die "LINKS: '$link' is neither 'unlimited' nor a rate in Mbit/s" ;;
        *) rate=$link ;;
    esac
    for i in $(seq "$rounds"); do
        for side in a b; do
            bin=$bin_a model=$model_a
            [ "$side" = b ] && bin=$bin_b model=$model_b
            echo "[headline-ab] link ${rate:-unlimited}${rate:+ Mbit/s}, round $i, build $side, load $(cut -d' ' -f1-3 /proc/loadavg)"
            tmp=$(mktemp)
            BIN=$bin RATE_MBIT=$rate PI_METHOD= FULL_LIMIT=$limit \
                bash scripts/rtt-sweep.sh 0 "$tmp.csv" "$data" "$limit" "$model"
            # Label the round, then append to this build's file (header once).
            if [ -f "$out-$side.csv" ]; then
                tail -n +2 "$tmp.csv" | sed "s/,veth\([-0-9a-z]*\),/,veth\1-r$i,/" >> "$out-$side.csv"
            else
                sed "s/,veth\([-0-9a-z]*\),/,veth\1-r$i,/" "$tmp.csv" > "$out-$side.csv"
            fi
            rm -f "$tmp" "$tmp.csv"
        done
    done
done
echo "[headline-ab] done: $out-a.csv $out-b.csv"
