#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine with a Rust toolchain, then
# builds the workspace in release mode. Idempotent: each step is skipped when already done,
# and cargo's target/ directory caches the build.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

command -v cargo >/dev/null || { log "cargo not found: install a Rust toolchain (rustup) first"; exit 1; }

# Fashion-MNIST, the built-in default data of the main job (Debian package).
FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/t10k-images-idx3-ubyte.gz" ]; then
    log "installing dataset-fashion-mnist"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
else
    log "Fashion-MNIST present in $FMNIST"
fi

log "building the workspace (release)"
cargo build --release --workspace --quiet
log "done"
