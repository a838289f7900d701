//! Helpers shared by the integration tests (see `models::testing`).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use models::Model;

/// A random model of a built-in architecture; `keep` = fraction of ReLUs kept (1.0 = all).
pub fn model(name: &str, keep: f64, seed: u64) -> Model {
    models::testing::random_model(name, keep, seed).unwrap()
}

/// The CIFAR-10 copy on the project's machines, if present (required under CI).
pub fn cifar10_dir() -> Option<PathBuf> {
    models::testing::shared_cifar10(Path::new(env!("CARGO_MANIFEST_DIR")))
}

/// Fashion-MNIST from Debian's dataset-fashion-mnist package, if installed.
pub fn fashion_mnist_dir() -> Option<PathBuf> {
    models::testing::fashion_mnist()
}
