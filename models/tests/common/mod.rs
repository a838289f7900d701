//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use models::data::Normalization;
use models::fixed::FixedPointParams;
use models::{Mask, Model, PublicModel, arch};
use rand::SeedableRng;

/// A random model of a built-in architecture; `keep` = fraction of ReLUs kept (1.0 = all).
pub fn model(name: &str, keep: f64, seed: u64) -> Model {
    let info = arch::info(name).unwrap();
    let g = arch::build(name, 10, info.default_input).unwrap();
    let norm = if info.default_input[0] == 1 {
        Normalization::fashion_mnist()
    } else {
        Normalization::cifar10()
    };
    let mut p = PublicModel::all_kept(name, g, norm, FixedPointParams::default()).unwrap();
    if keep < 1.0 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed + 1);
        for m in p.masks.values_mut() {
            *m = Mask::random(m.shape, keep, &mut rng);
        }
    }
    Model::random(p, seed).unwrap()
}

/// The CIFAR-10 copy on the project's machines, if present. With SNL_REQUIRE_DATA=1 (CI)
/// its absence is a failure, otherwise the caller skips with a message.
pub fn cifar10_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/cifar10-q75");
    if dir.join("test_batch.bin").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var("SNL_REQUIRE_DATA").as_deref() != Ok("1"),
        "SNL_REQUIRE_DATA=1 but {} is missing",
        dir.display()
    );
    eprintln!("skipping: CIFAR-10 not found at {}", dir.display());
    None
}

/// Fashion-MNIST from Debian's dataset-fashion-mnist package, if installed.
pub fn fashion_mnist_dir() -> Option<PathBuf> {
    let dir = PathBuf::from("/usr/share/datasets/fashion-mnist");
    if dir.join("t10k-images-idx3-ubyte.gz").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var("SNL_REQUIRE_DATA").as_deref() != Ok("1"),
        "SNL_REQUIRE_DATA=1 but {} is missing (apt-get install dataset-fashion-mnist)",
        dir.display()
    );
    eprintln!("skipping: Fashion-MNIST not found at {}", dir.display());
    None
}
