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

# libtorch for the trainer (tch 0.24.0 is pinned to torch 2.11.0): the PyPI wheel in a
# project-local venv. Only libtorch_cpu/libc10 and, of the CUDA wheels, the runtime and
# CUPTI are linked, so a --no-deps install of those three is enough (about 1.3 GB).
# .venv/libtorch points at the wheel's torch/ directory (.cargo/config.toml reads it).
if [ ! -f .venv/libtorch/lib/libtorch_cpu.so ]; then
    log "installing torch 2.11.0 into .venv (libtorch for tch)"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check --no-deps \
        torch==2.11.0 "nvidia-cuda-runtime==13.0.96.*" "nvidia-cuda-cupti==13.0.85.*"
    site=$(.venv/bin/python -c "import os, sysconfig; print(os.path.relpath(sysconfig.get_paths()['purelib'], os.path.abspath('.venv')))")
    ln -sfn "$site/torch" .venv/libtorch
else
    log "libtorch present in .venv/libtorch"
fi

# Python's `import torch`: models/tests/import_torch.rs writes real PyTorch checkpoints
# with it (and `snl-train bench` runs its Python side with it). The wheel above came
# without its dependencies, and importing it, even with no GPU, needs them all: the
# pure-Python ones and the CUDA libraries libtorch_python.so links (about 3.3 GB more).
# safetensors and numpy let the test write safetensors files too.
if ! .venv/bin/python -c 'import torch, safetensors.torch, numpy' >/dev/null 2>&1; then
    log "installing what 'import torch' needs into .venv (about 3.3 GB)"
    .venv/bin/pip install -q --disable-pip-version-check torch==2.11.0 safetensors numpy \
        || log "warning: could not install them; the PyTorch import tests will skip (fail under CI)"
else
    log "Python can import torch from .venv"
fi

log "building the workspace (release)"
cargo build --release --workspace --quiet
log "done"
