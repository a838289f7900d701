#!/usr/bin/env bash
# Paper scale on a GPU: ResNet18 on CIFAR-10 (JPEG q75 copy) through pretraining, one
# multi-budget SNL mask search (15K, 25K, 50K, 100K kept ReLUs of 491,520) and fine-tuning,
# with the data on the GPU, float16 mixed precision and large batches.
#
# The GPU machine has torch 2.11.0+cu130 under /opt/torch/.venv (numpy, Pillow), no Rust
# toolchain and no network, and at most 64 MiB travel per call; ignored files sent earlier
# stay there while the machine is warm. So the work is split in three:
#
#   scripts/paper-gpu.sh stage [DIR]    here: build snl-train, strip it into DIR/bin and
#                                       copy the 56 MB JPEG CIFAR-10 into DIR/data
#                                       (DIR defaults to .gpu, which git ignores)
#   scripts/paper-gpu.sh run [--tiny] [--stage DIR] [--out DIR] [--work DIR] [--device D]
#                                       there (repo root): rebuild the binary CIFAR-10 files
#                                       from the JPEGs, train, evaluate every model with
#                                       libtorch on the whole test split, and put into OUT
#                                       (default $OUT, else runs/paper-gpu) summary.json,
#                                       the logs and the models as a tar in 15 MiB pieces
#                                       (the first 3; the rest stay in WORK, see collect)
#   scripts/paper-gpu.sh collect K [--work DIR] [--out DIR]
#                                       there: copy pieces K, K+1, K+2, K+3 of the models'
#                                       tar into OUT (a later call while the machine is warm)
#   scripts/paper-gpu.sh --tiny         here, on the CPU: stage into a temporary directory,
#                                       then run with a tiny schedule (ResNet18 on 512
#                                       training and 256 test images, one epoch per phase,
#                                       budgets of 60% and 40%); the check that the script
#                                       works before spending GPU time
#
# Unpack the pieces here with `cat models.tar.* | tar -x -C runs/`. Every phase resumes
# when run again (snl-train's checkpoints), as long as WORK survives.
#
# The schedule (override with environment variables): pretrain PRE_EPOCHS=30 at
# BATCH=512, one-cycle peak LR=0.2; search lambda 1e-4 (x1.5 after an epoch that lowers
# the count by less than 10%), WARMUP=2 epochs, Adam SEARCH_LR=4e-3 (fewer steps per epoch
# at batch 512), at most SEARCH_EPOCHS=40; FT_EPOCHS=5 of fine-tuning per budget; ARCH
# (resnet18), BUDGETS, AMP (1: float16 autocast). QUAD lists quadratic series fine-tuned
# on copies of the same search, each SHARE=BUDGETS (`--replacement quadratic
# --square-channels SHARE`, e.g. "15%=5% 25%=5%,10%"; run directories q15, q25, packed
# and evaluated with the rest; a share ending in `i`, e.g. "15%i=5%", starts the
# coefficients at the identity, `--poly-init identity`, run directory q15i).
# PRESET=r20-front sets issue 15's front at SNL's CPU-scale settings
# (scripts/results-cifar-cpu.sh, docs/training.md): ResNet-20, pretrain 10
# epochs at batch 128 and peak lr 0.1, search lr 1e-3 with warm-up 5 through 10% and 5%,
# 5 fine-tune epochs, float32, QUAD="15%=5%,10% 15%i=5%,10% 25%=5%,10%" (each still
# overridable).
# Then, here, `scripts/quadratic-front.sh` and `scripts/ab-models.sh` measure the
# unpacked models (SERIES="identity=runs/paper-gpu/snl quadratic-15=runs/paper-gpu/q15
# quadratic-15i=runs/paper-gpu/q15i quadratic-25=runs/paper-gpu/q25"). docs/results.md
# says what a run measured.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[paper-gpu] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

stage() {
    local dir=${1:-.gpu}
    bash scripts/setup.sh
    mkdir -p "$dir/bin" "$dir/data"
    cp target/release/snl-train "$dir/bin/snl-train"
    strip "$dir/bin/snl-train"
    local src=../shared/data/cifar10-q75-jpeg
    [ -d "$src" ] || src=${CIFAR_JPEG:-}
    [ -n "$src" ] && [ -f "$src/train.jpgs" ] \
        || die "no JPEG CIFAR-10: expected ../shared/data/cifar10-q75-jpeg or CIFAR_JPEG=DIR"
    cp "$src"/{train,test}.{jpgs,index,labels} "$src/to_bin.py" "$dir/data/"
    log "staged $(du -sh "$dir/bin" | cut -f1) of binary and $(du -sh "$dir/data" | cut -f1) of data in $dir"
}

# The torch library directory on this machine: the project's .venv here, the GPU machine's
# /opt/torch/.venv there.
torch_lib() {
    local py
    for py in /opt/torch/.venv/bin/python3 .venv/bin/python3; do
        if [ -x "$py" ]; then
            local d
            d=$("$py" -c 'import os, sysconfig; print(os.path.join(sysconfig.get_paths()["purelib"], "torch", "lib"))' 2>/dev/null) || continue
            [ -f "$d/libtorch_cpu.so" ] && { echo "$d"; return; }
        fi
    done
    [ -f .venv/libtorch/lib/libtorch_cpu.so ] && { echo "$PWD/.venv/libtorch/lib"; return; }
    die "no libtorch found (/opt/torch/.venv or .venv)"
}

run() {
    local tiny=0 stagedir=.gpu out=${OUT:-runs/paper-gpu} work=/tmp/paper-gpu device=cuda
    while [ $# -gt 0 ]; do
        case $1 in
            --tiny) tiny=1; device=cpu ;;
            --stage) stagedir=$2; shift ;;
            --out) out=$2; shift ;;
            --work) work=$2; shift ;;
            --device) device=$2; shift ;;
            *) die "run: unknown argument $1" ;;
        esac
        shift
    done
    local bin=$stagedir/bin/snl-train
    [ -x "$bin" ] || die "$bin missing: run 'scripts/paper-gpu.sh stage' here first and carry $stagedir"
    export LD_LIBRARY_PATH
    LD_LIBRARY_PATH="$(torch_lib)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    mkdir -p "$work" "$out"
    local data=$work/cifar10
    if [ ! -f "$data/test_batch.bin" ]; then
        local py=python3
        [ -x /opt/torch/.venv/bin/python3 ] && py=/opt/torch/.venv/bin/python3
        if [ -n "${CIFAR_BIN:-}" ]; then
            data=$CIFAR_BIN
        else
            log "rebuilding the binary CIFAR-10 files from the JPEGs"
            "$py" "$stagedir/data/to_bin.py" "$data" >/dev/null
        fi
    fi
    local arch=${ARCH:-resnet18} pre=${PRE_EPOCHS:-30} batch=${BATCH:-512} lr=${LR:-0.2}
    local slr=${SEARCH_LR:-4e-3} warmup=${WARMUP:-2} sep=${SEARCH_EPOCHS:-40}
    local ft=${FT_EPOCHS:-5} budgets=${BUDGETS:-15000,25000,50000,100000} quad=${QUAD:-}
    local amp=${AMP:-1}
    case ${PRESET:-} in
        "") ;;
        r20-front)
            arch=${ARCH:-resnet20} pre=${PRE_EPOCHS:-10} batch=${BATCH:-128} lr=${LR:-0.1}
            slr=${SEARCH_LR:-1e-3} warmup=${WARMUP:-5} sep=${SEARCH_EPOCHS:-60}
            budgets=${BUDGETS:-10%,5%} quad=${QUAD-"15%=5%,10% 15%i=5%,10% 25%=5%,10%"} amp=${AMP:-0} ;;
        *) die "unknown PRESET ${PRESET} (r20-front)" ;;
    esac
    local limits=() flags=()
    [ "$amp" = 1 ] && flags=(--amp)
    if [ $tiny = 1 ]; then
        pre=1 batch=64 sep=${SEARCH_EPOCHS:-12} ft=1 slr=5e-2 warmup=2
        budgets=60%,40%
        [ -n "$quad" ] && quad="25%=40% 25%i=40%"
        limits=(--train-limit 512 --test-limit 256)
        flags=(--threads 2)
    fi
    local entry
    for entry in $quad; do
        [[ "$entry" =~ ^[0-9]+%i?=[0-9.%,]+$ ]] || die "bad QUAD entry $entry (SHARE%[i]=BUDGETS)"
    done
    local t0=$SECONDS
    log "pretrain: $arch, $pre epochs, batch $batch, one-cycle lr $lr, device $device"
    "$bin" pretrain --data "$data" --arch "$arch" --epochs "$pre" --batch "$batch" \
        --lr "$lr" --schedule one-cycle:0.15 --device "$device" "${flags[@]}" "${limits[@]}" \
        --out "$work/pre" --quiet 2>&1 | tee -a "$work/train.log" >&2
    # One search (the quadratic series fine-tune copies of it, so the same arguments).
    local lin=("$bin" linearize --model "$work/pre/model" --data "$data" --batch "$batch"
        --lambda 1e-4 --lambda-growth 1.5 --min-drop 0.1 --warmup "$warmup"
        --search-lr "$slr" --max-search-epochs "$sep" --finetune-epochs "$ft"
        --device "$device" "${flags[@]}" "${limits[@]}" --quiet)
    log "search through $budgets and fine-tuning ($ft epochs each)"
    "${lin[@]}" --budget "$budgets" --out "$work/snl" 2>&1 | tee -a "$work/train.log" >&2
    local dirs=(snl)
    for entry in $quad; do
        local share=${entry%%=*} qb=${entry#*=} init=fit
        [[ "$share" == *i ]] && init=identity share=${share%i}
        local q=q${share%\%}
        [ "$init" = identity ] && q+=i
        [ -d "$work/$q/search" ] || { mkdir -p "$work/$q"; cp -r "$work/snl/search" "$work/$q/search"; }
        log "quadratic fine-tuning, squares in $share of the linearized positions, at $qb, from the $init"
        "${lin[@]}" --budget "$qb" --replacement quadratic --square-channels "$share" \
            --poly-init "$init" --out "$work/$q" 2>&1 | tee -a "$work/train.log" >&2
        [[ " ${dirs[*]} " == *" $q "* ]] || dirs+=("$q")
    done
    local secs=$((SECONDS - t0))
    log "training took $secs s; evaluating"
    local rows=()
    local d
    for m in "$work/pre/model" $(for d in "${dirs[@]}"; do ls -d "$work/$d"/budget-* | sort -t- -k2 -nr; done); do
        local line
        line=$("$bin" eval --model "$m" --data "$data" --device "$device" "${limits[@]}" --quiet)
        rows+=("$m|$line")
    done
    python3 - "$out/summary.json" "$secs" "$tiny" "${rows[@]}" <<'PY'
import json, re, sys
out, secs, tiny, rows = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4:]
models = []
for r in rows:
    path, line = r.split("|", 1)
    m = re.search(r"test accuracy ([0-9.]+)% on (\S+) \((\d+) of (\d+) ReLUs kept\)", line)
    if not m:
        sys.exit(f"cannot read eval output: {line!r}")
    models.append({"model": path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1],
                   "test_accuracy": float(m.group(1)) / 100, "kept": int(m.group(3)),
                   "total": int(m.group(4))})
json.dump({"schema": 1, "tiny": tiny, "training_seconds": secs, "models": models},
          open(out, "w"), indent=1)
for m in models:
    print(f"{m['model']:<28} {m['kept']:>8} / {m['total']}  {100*m['test_accuracy']:.2f}%")
PY
    cp "$work/train.log" "$out/train.log"
    (cd "$work" && cat pre/log.jsonl $(printf '%s/log.jsonl ' "${dirs[@]}")) > "$out/log.jsonl"
    (cd "$work" && tar -cf - pre/model $(for d in "${dirs[@]}"; do ls -d "$d"/budget-*; done)) \
        | split -b 15M -d -a 2 - "$work/models.tar."
    local n
    n=$(ls "$work"/models.tar.* | wc -l)
    log "models: $n piece(s) of at most 15 MiB in $work"
    collect 0 --work "$work" --out "$out"
}

collect() {
    local k=$1 work=/tmp/paper-gpu out=${OUT:-runs/paper-gpu}
    shift
    while [ $# -gt 0 ]; do
        case $1 in
            --work) work=$2; shift ;;
            --out) out=$2; shift ;;
            *) die "collect: unknown argument $1" ;;
        esac
        shift
    done
    mkdir -p "$out"
    local i copied=0 total
    total=$(ls "$work"/models.tar.* 2>/dev/null | wc -l)
    [ "$total" -gt 0 ] || die "no model pieces in $work"
    # At most 8 files come back per call: summary, two logs and up to 3 pieces in the
    # first; 4 pieces in each later one.
    local max=4
    [ "$k" = 0 ] && max=3
    for i in $(seq "$k" $((k + max - 1))); do
        local p
        p=$(printf '%s/models.tar.%02d' "$work" "$i")
        [ -f "$p" ] || break
        cp "$p" "$out/"
        copied=$((copied + 1))
    done
    log "copied pieces $k..$((k + copied - 1)) of $total into $out"
}

case ${1:-} in
    stage) shift; stage "$@" ;;
    run) shift; run "$@" ;;
    collect) shift; collect "$@" ;;
    --tiny)
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        stage "$tmp/stage"
        # Without numpy and Pillow here, read the binary copy of the same data.
        if ! python3 -c 'import numpy, PIL' 2>/dev/null && [ -z "${CIFAR_BIN:-}" ]; then
            export CIFAR_BIN=../shared/data/cifar10-q75
        fi
        run --tiny --stage "$tmp/stage" --work "$tmp/work" --out "$tmp/out"
        # A preset with quadratic series (not emptied by QUAD="") must produce them.
        want_quad=0
        [ -n "${PRESET:-}" ] && [ -n "${QUAD-x}" ] && want_quad=1
        python3 - "$tmp/out/summary.json" "$want_quad" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
want_quad = sys.argv[2] == "1"
by = {m["model"]: m["kept"] for m in s["models"]}
kept = [m["kept"] for m in s["models"]]
snl = [m["kept"] for m in s["models"] if m["model"].startswith("snl/")]
assert len(snl) == 2, kept
assert kept[0] == s["models"][0]["total"] and kept[0] > snl[0] > snl[1] > 0, kept
# A quadratic series keeps exactly the identity's count at its budget (same snapshot).
quad = [m for m in s["models"] if m["model"].startswith("q")]
for m in quad:
    assert by["snl/" + m["model"].split("/", 1)[1]] == m["kept"], m
assert len(kept) == 3 + len(quad), kept
# The tiny run fine-tunes two quadratic series (fit and identity start), at 40%.
assert len(quad) == (2 if want_quad else 0), kept
print(f"tiny run ok: {len(kept)} models ({len(quad)} quadratic), kept {kept}, {s['training_seconds']} s")
PY
        ls "$tmp/out"
        ;;
    *) sed -n '2,36p' "$0"; exit 2 ;;
esac
