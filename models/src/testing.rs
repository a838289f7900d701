//! Helpers for the tests of this crate and of the crates built on it: random models of the
//! built-in networks, and where the project's data lives on its machines.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rand::SeedableRng;

use crate::arch;
use crate::data::Normalization;
use crate::error::ModelError;
use crate::model::{Mask, Model, PublicModel, Replacement, poly_param};
use crate::tensor::Tensor;

/// A model of built-in architecture `name` (10 classes, default input) with random
/// weights (`seed`) and a random fraction `keep` of its ReLUs kept (1.0 keeps all).
pub fn random_model(name: &str, keep: f64, seed: u64) -> Result<Model, ModelError> {
    let info = arch::info(name)?;
    let g = arch::build(name, 10, info.default_input)?;
    let norm = if info.default_input[0] == 1 {
        Normalization::fashion_mnist()
    } else {
        Normalization::cifar10()
    };
    let mut p = PublicModel::all_kept(name, g, norm, Default::default())?;
    if keep < 1.0 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed + 1);
        for m in p.masks.values_mut() {
            *m = Mask::random(m.shape, keep, &mut rng);
        }
    }
    Model::random(p, seed)
}

/// Makes every ReLU site of `m` quadratic, with per-channel coefficients drawn near a fit
/// of the ReLU on a wide range (`a` in [0.02, 0.1], `b` in [0.35, 0.65], `c` in [-0.1, 0.2];
/// larger `a` make the squares of a random residual network explode with depth),
/// deterministic in `seed`.
pub fn make_quadratic(m: &mut Model, seed: u64) -> Result<(), ModelError> {
    use rand::Rng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let sites: Vec<(String, usize)> = m
        .public
        .masks
        .iter()
        .map(|(k, v)| (k.clone(), v.shape[0]))
        .collect();
    for (site, ch) in sites {
        m.public.set_replacement(&site, Replacement::Quadratic)?;
        let mut data = Vec::with_capacity(3 * ch);
        data.extend((0..ch).map(|_| rng.gen_range(0.02f32..0.1)));
        data.extend((0..ch).map(|_| rng.gen_range(0.35f32..0.65)));
        data.extend((0..ch).map(|_| rng.gen_range(-0.1f32..0.2)));
        m.weights.insert(
            poly_param(&site),
            Tensor {
                shape: vec![3, ch],
                data,
            },
        );
    }
    m.validate()
}

/// Makes every third channel of each quadratic site of `m` affine (from channel
/// `offset % 3`): `a = 0` in its coefficients and the channel listed in
/// [`crate::model::PublicModel::affine_channels`], so those channels' linearized
/// positions compute `b x + c` without a square.
pub fn make_affine_channels(m: &mut Model, offset: usize) -> Result<(), ModelError> {
    let sites: Vec<(String, usize)> = m
        .public
        .masks
        .iter()
        .filter(|(k, _)| m.public.replacement(k) == Replacement::Quadratic)
        .map(|(k, v)| (k.clone(), v.shape[0]))
        .collect();
    for (site, ch) in sites {
        let chans: Vec<usize> = (0..ch).filter(|c| (c + offset).is_multiple_of(3)).collect();
        if chans.is_empty() {
            continue;
        }
        let w = m
            .weights
            .get_mut(&poly_param(&site))
            .ok_or_else(|| ModelError::MissingTensor {
                name: poly_param(&site),
                expected: vec![3, ch],
            })?;
        chans.iter().for_each(|&c| w.data[c] = 0.0);
        m.public.affine_channels.insert(site, chans);
    }
    m.validate()
}

/// `dir` if it holds `probe`. Otherwise, with `SNL_REQUIRE_DATA=1` (CI) this panics —
/// the data must be there — and without it it prints why the caller skips and returns
/// `None`. For tests only.
pub fn data_dir(dir: PathBuf, probe: &str, hint: &str) -> Option<PathBuf> {
    if dir.join(probe).is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var("SNL_REQUIRE_DATA").as_deref() != Ok("1"),
        "SNL_REQUIRE_DATA=1 but {} is missing{hint}",
        dir.display()
    );
    eprintln!("skipping: {} not found", dir.join(probe).display());
    None
}

/// The CIFAR-10 copy beside the checkout (`../shared/data/cifar10-q75`), seen from a
/// crate directory of the workspace (`env!("CARGO_MANIFEST_DIR")`).
pub fn shared_cifar10(crate_dir: &Path) -> Option<PathBuf> {
    data_dir(
        crate_dir.join("../../shared/data/cifar10-q75"),
        "test_batch.bin",
        "",
    )
}

/// Fashion-MNIST from Debian's `dataset-fashion-mnist` package.
pub fn fashion_mnist() -> Option<PathBuf> {
    data_dir(
        PathBuf::from("/usr/share/datasets/fashion-mnist"),
        "t10k-images-idx3-ubyte.gz",
        " (apt-get install dataset-fashion-mnist)",
    )
}

/// A Python interpreter that can `import torch`: `$SNL_TORCH_PYTHON`, else the checkout's
/// `.venv/bin/python` (which `scripts/setup.sh` makes able to), else `python3`. Without one,
/// with `SNL_REQUIRE_DATA=1` (CI) this panics, and otherwise it prints why the caller skips
/// and returns `None`. `repo` is the checkout's root. For tests only.
pub fn torch_python(repo: &Path) -> Option<PathBuf> {
    let mut tried = Vec::new();
    if let Some(p) = std::env::var_os("SNL_TORCH_PYTHON") {
        tried.push(PathBuf::from(p));
    }
    tried.push(repo.join(".venv/bin/python"));
    tried.push(PathBuf::from("python3"));
    for py in &tried {
        let ok = Command::new(py)
            .args(["-c", "import torch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(py.clone());
        }
    }
    assert!(
        std::env::var("SNL_REQUIRE_DATA").as_deref() != Ok("1"),
        "SNL_REQUIRE_DATA=1 but none of {tried:?} can import torch (scripts/setup.sh installs what it needs into .venv)"
    );
    eprintln!("skipping: none of {tried:?} can import torch (run scripts/setup.sh)");
    None
}
