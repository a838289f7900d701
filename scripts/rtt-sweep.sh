#!/usr/bin/env bash
# Online latency with added round-trip time, through two network namespaces:
#
#   bash scripts/rtt-sweep.sh RTT_MS RESULTS.csv DATA LIMIT MODEL...
#   e.g. bash scripts/rtt-sweep.sh 10 runs/results/r20.csv ../shared/data/cifar10-q75 50 runs/r20-snl/budget-*
#
# The server namespace runs `pi-server` on 198.18.0.1:7070 (a veth pair, 198.18.0.0/30,
# benchmarking addresses routed nowhere else); the client namespace runs `delay-relay`
# on 127.0.0.1:7071, which releases every chunk RTT_MS/2 after reading it in each
# direction (this kernel has no netem), and `snl-bench sweep --server 127.0.0.1:7071`,
# which appends one row per model (network label rtt-<RTT_MS>ms; RTT_MS=0 skips the relay
# and labels the rows veth). Resumable like any sweep: points already in RESULTS.csv are
# skipped. Needs root and iproute2; binaries from $BIN (default target/release, build
# them with cargo build --release -p pi-runtime -p bench). The insecure dealer is used
# unless PI_METHOD is set to the empty string (HE: same online phase, far slower offline).
#
# FULL_LIMIT=N classifies only the first N test images with the fixed-point executor for
# the accuracy column (default: the whole test split; ResNet18 takes minutes for that).
#
# RATE_MBIT=N caps the link at N Mbit/s in each direction with a token-bucket filter
# (`tc qdisc ... tbf` on both veth ends; burst of 2 ms at that rate, at least 128 KB so
# that a segmentation-offload super-packet passes) and adds -<N>mbit to the network label,
# e.g. RATE_MBIT=1000 scripts/rtt-sweep.sh 10 ... -> rows labelled rtt-10ms-1000mbit.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { printf '[rtt-sweep] %s\n' "$*" >&2; exit 1; }
[ $# -ge 5 ] || die "usage: $0 RTT_MS RESULTS.csv DATA LIMIT MODEL..."
rtt=$1 out=$2 data=$3 limit=$4
shift 4
BIN=${BIN:-target/release}
METHOD=${PI_METHOD---insecure-dealer}
[ "$(id -u)" = 0 ] || die "needs root (ip netns)"
command -v ip >/dev/null || die "needs iproute2 (ip)"
for b in pi-server delay-relay snl-bench; do
    [ -x "$BIN/$b" ] || die "$BIN/$b not found: cargo build --release -p pi-runtime -p bench"
done
awk -v r="$rtt" 'BEGIN { exit !(r >= 0) }' || die "RTT_MS must be a non-negative number"

srv=snlb-srv-$$ cli=snlb-cli-$$ vs=snlbs$$ vc=snlbc$$
pids=()
work=$(mktemp -d)
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    ip netns del "$srv" 2>/dev/null || true
    ip netns del "$cli" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$srv"
ip netns add "$cli"
ip link add "$vs" type veth peer name "$vc"
ip link set "$vs" netns "$srv"
ip link set "$vc" netns "$cli"
ip -n "$srv" addr add 198.18.0.1/30 dev "$vs"
ip -n "$cli" addr add 198.18.0.2/30 dev "$vc"
for ns in "$srv" "$cli"; do ip -n "$ns" link set lo up; done
ip -n "$srv" link set "$vs" up
ip -n "$cli" link set "$vc" up

suffix=
if [ -n "${RATE_MBIT:-}" ]; then
    awk -v r="$RATE_MBIT" 'BEGIN { exit !(r > 0) }' || die "RATE_MBIT must be a positive number"
    command -v tc >/dev/null || die "RATE_MBIT needs tc (iproute2)"
    burst=$(awk -v r="$RATE_MBIT" 'BEGIN { b = r * 1e6 / 8 * 0.002; if (b < 131072) b = 131072; printf "%d", b }')
    ip netns exec "$srv" tc qdisc add dev "$vs" root tbf rate "${RATE_MBIT}mbit" burst "$burst" latency 100ms
    ip netns exec "$cli" tc qdisc add dev "$vc" root tbf rate "${RATE_MBIT}mbit" burst "$burst" latency 100ms
    suffix=-${RATE_MBIT}mbit
fi

if awk -v r="$rtt" 'BEGIN { exit !(r > 0) }'; then
    half=$(awk -v r="$rtt" 'BEGIN { print r / 2 }')
    ip netns exec "$cli" "$BIN/delay-relay" --listen 127.0.0.1:7071 --upstream 198.18.0.1:7070 \
        --delay-ms "$half" > "$work/relay.out" 2>&1 &
    pids+=($!)
    target=127.0.0.1:7071 network=rtt-${rtt}ms$suffix
else
    target=198.18.0.1:7070 network=veth$suffix
fi

for m in "$@"; do
    ip netns exec "$srv" "$BIN/pi-server" --model "$m" --listen 198.18.0.1:7070 \
        --insecure-plaintext $METHOD > "$work/server.out" 2> "$work/server.log" &
    spid=$!
    pids+=("$spid")
    for _ in $(seq 300); do grep -q listening "$work/server.out" 2>/dev/null && break; sleep 0.1; done
    grep -q listening "$work/server.out" || { cat "$work/server.log" >&2; die "pi-server did not start for $m"; }
    ip netns exec "$cli" "$BIN/snl-bench" sweep --models "$m" --server "$target" --data "$data" \
        --limit "$limit" ${FULL_LIMIT:+--full-limit "$FULL_LIMIT"} $METHOD --rtt-ms "$rtt" \
        --network "$network" --out "$out"
    kill "$spid"; wait "$spid" 2>/dev/null || true
    : > "$work/server.out"
done
