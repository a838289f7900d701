//! Dataset readers (CIFAR-10 and CIFAR-100 binary layouts, Fashion-MNIST IDX) and the input
//! normalization used in training.
//!
//! One implementation serves the trainer, the runtime's client and the benchmarks. A loader
//! takes a directory:
//!
//! - CIFAR-10: `data_batch_1.bin` .. `data_batch_5.bin` and `test_batch.bin` (the official
//!   "binary version"), directly in the directory or in its `cifar-10-batches-bin/`. On the
//!   project's machines: `../shared/data/cifar10-q75` (a JPEG-q75 rebuild of CIFAR-10, same
//!   layout; report results from it as "CIFAR-10 (JPEG q75 copy)").
//! - CIFAR-100: `train.bin` and `test.bin` (official binary version, fine labels used), in
//!   the directory or in its `cifar-100-binary/`.
//! - Fashion-MNIST: `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
//!   `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz` (gzip or not). Debian's
//!   `dataset-fashion-mnist` package puts them in `/usr/share/datasets/fashion-mnist`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, ModelError};
use crate::graph::Shape;

/// Per-channel input normalization: `(pixel / 255 - mean[c]) / std[c]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    /// Per-channel mean of pixel / 255.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of pixel / 255.
    pub std: Vec<f32>,
}

impl Normalization {
    /// CIFAR-10 statistics as SNL's reference code uses them.
    pub fn cifar10() -> Self {
        Normalization {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2023, 0.1994, 0.2010],
        }
    }

    /// CIFAR-100 statistics as SNL's reference code uses them.
    pub fn cifar100() -> Self {
        Normalization {
            mean: vec![0.5071, 0.4867, 0.4408],
            std: vec![0.2675, 0.2565, 0.2761],
        }
    }

    /// Fashion-MNIST statistics as SNL's reference code uses them.
    pub fn fashion_mnist() -> Self {
        Normalization {
            mean: vec![0.28604],
            std: vec![0.35302],
        }
    }

    /// Pixel / 255 unchanged, for `channels` channels.
    pub fn identity(channels: usize) -> Self {
        Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// The training normalization of a dataset.
    pub fn for_dataset(kind: DatasetKind) -> Self {
        match kind {
            DatasetKind::Cifar10 => Self::cifar10(),
            DatasetKind::Cifar100 => Self::cifar100(),
            DatasetKind::FashionMnist => Self::fashion_mnist(),
        }
    }

    /// Checks the channel count and that every std is positive and finite.
    pub fn validate(&self, channels: usize) -> Result<(), ModelError> {
        if self.mean.len() != channels || self.std.len() != channels {
            return Err(ModelError::InvalidArgument(format!(
                "normalization has {} means and {} stds for a {channels}-channel input",
                self.mean.len(),
                self.std.len()
            )));
        }
        if self.mean.iter().any(|m| !m.is_finite())
            || self.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(ModelError::InvalidArgument(
                "normalization means must be finite and stds positive".into(),
            ));
        }
        Ok(())
    }

    /// Normalizes one C x H x W image of bytes.
    pub fn apply(&self, pixels: &[u8]) -> Vec<f32> {
        let c = self.mean.len().max(1);
        let plane = pixels.len() / c;
        pixels
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let ch = (i / plane.max(1)).min(c - 1);
                (f32::from(p) / 255.0 - self.mean[ch]) / self.std[ch]
            })
            .collect()
    }
}

/// The datasets this project reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// CIFAR-10, binary version.
    Cifar10,
    /// CIFAR-100, binary version (fine labels).
    Cifar100,
    /// Fashion-MNIST, IDX files.
    FashionMnist,
}

impl DatasetKind {
    /// Canonical name.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
            DatasetKind::FashionMnist => "fashion-mnist",
        }
    }

    /// Image shape (C, H, W).
    pub fn shape(self) -> Shape {
        match self {
            DatasetKind::FashionMnist => [1, 28, 28],
            _ => [3, 32, 32],
        }
    }

    /// Number of classes.
    pub fn classes(self) -> usize {
        match self {
            DatasetKind::Cifar100 => 100,
            _ => 10,
        }
    }

    /// Guesses the dataset from what a directory holds.
    pub fn detect(dir: &Path) -> Result<Self, DataError> {
        for kind in [
            DatasetKind::Cifar10,
            DatasetKind::Cifar100,
            DatasetKind::FashionMnist,
        ] {
            if find(kind, dir, test_file(kind)).is_ok() {
                return Ok(kind);
            }
        }
        Err(DataError::Undetected {
            dir: dir.to_path_buf(),
            hint: if dir.is_dir() {
                String::new()
            } else {
                " (the directory does not exist)".into()
            },
        })
    }
}

impl FromStr for DatasetKind {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "cifar10" | "cifar-10" => Ok(DatasetKind::Cifar10),
            "cifar100" | "cifar-100" => Ok(DatasetKind::Cifar100),
            "fashion-mnist" | "fashionmnist" | "fmnist" => Ok(DatasetKind::FashionMnist),
            _ => Err(DataError::UnknownDataset(s.into())),
        }
    }
}

/// Training or test split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The training images.
    Train,
    /// The test images.
    Test,
}

/// Images as bytes (N x C x H x W) with their labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Which dataset.
    pub kind: DatasetKind,
    /// Image shape (C, H, W).
    pub shape: Shape,
    pixels: Vec<u8>,
    labels: Vec<u16>,
}

fn test_file(kind: DatasetKind) -> &'static str {
    match kind {
        DatasetKind::Cifar10 => "test_batch.bin",
        DatasetKind::Cifar100 => "test.bin",
        DatasetKind::FashionMnist => "t10k-images-idx3-ubyte",
    }
}

/// Finds `file` (or `file.gz` for IDX) in `dir` or the official archive's subdirectory.
fn find(kind: DatasetKind, dir: &Path, file: &str) -> Result<PathBuf, DataError> {
    let sub = match kind {
        DatasetKind::Cifar10 => "cifar-10-batches-bin",
        DatasetKind::Cifar100 => "cifar-100-binary",
        DatasetKind::FashionMnist => "fashion-mnist",
    };
    let mut candidates = Vec::new();
    for base in [dir.to_path_buf(), dir.join(sub)] {
        let names: Vec<String> = if kind == DatasetKind::FashionMnist {
            vec![format!("{file}.gz"), file.to_string()]
        } else {
            vec![file.to_string()]
        };
        for n in names {
            let p = base.join(&n);
            if p.is_file() {
                return Ok(p);
            }
            candidates.push(p.display().to_string());
        }
    }
    Err(DataError::NotFound {
        dataset: kind.name(),
        dir: dir.to_path_buf(),
        candidates,
    })
}

/// Upper bound on a dataset file read into memory.
const MAX_FILE: u64 = 1 << 30;

fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut buf = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(f)
            .take(MAX_FILE)
            .read_to_end(&mut buf)
            .map_err(io)?;
    } else {
        f.take(MAX_FILE).read_to_end(&mut buf).map_err(io)?;
    }
    Ok(buf)
}

fn malformed(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Malformed {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl Dataset {
    /// Reads a split from `dir`, at most `limit` images (from the start) if given.
    pub fn load(
        kind: DatasetKind,
        dir: &Path,
        split: Split,
        limit: Option<usize>,
    ) -> Result<Self, DataError> {
        let limit = limit.unwrap_or(usize::MAX);
        let mut ds = Dataset {
            kind,
            shape: kind.shape(),
            pixels: Vec::new(),
            labels: Vec::new(),
        };
        match kind {
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => {
                let files: Vec<String> = match (kind, split) {
                    (DatasetKind::Cifar10, Split::Train) => {
                        (1..=5).map(|i| format!("data_batch_{i}.bin")).collect()
                    }
                    (DatasetKind::Cifar10, Split::Test) => vec!["test_batch.bin".into()],
                    (_, Split::Train) => vec!["train.bin".into()],
                    (_, Split::Test) => vec!["test.bin".into()],
                };
                let label_bytes = if kind == DatasetKind::Cifar10 { 1 } else { 2 };
                let record = label_bytes + 3072;
                for f in files {
                    if ds.len() >= limit {
                        break;
                    }
                    let path = find(kind, dir, &f)?;
                    let bytes = read_file(&path)?;
                    if bytes.is_empty() || bytes.len() % record != 0 {
                        return Err(malformed(
                            &path,
                            format!(
                                "length {} is not a positive multiple of the {record}-byte record (truncated or not {} binary?)",
                                bytes.len(),
                                kind.name()
                            ),
                        ));
                    }
                    for (i, r) in bytes.chunks_exact(record).enumerate() {
                        if ds.len() >= limit {
                            break;
                        }
                        let label = r[label_bytes - 1] as usize;
                        if label >= kind.classes() {
                            return Err(malformed(
                                &path,
                                format!(
                                    "record {i}: label {label} out of range 0..{}",
                                    kind.classes()
                                ),
                            ));
                        }
                        ds.labels.push(label as u16);
                        ds.pixels.extend_from_slice(&r[label_bytes..]);
                    }
                }
            }
            DatasetKind::FashionMnist => {
                let prefix = if split == Split::Train {
                    "train"
                } else {
                    "t10k"
                };
                let ipath = find(kind, dir, &format!("{prefix}-images-idx3-ubyte"))?;
                let lpath = find(kind, dir, &format!("{prefix}-labels-idx1-ubyte"))?;
                let (idims, images) = read_idx(&ipath, 3)?;
                let (ldims, labels) = read_idx(&lpath, 1)?;
                if idims[0] != ldims[0] {
                    return Err(malformed(
                        &lpath,
                        format!(
                            "{} labels for {} images in {}",
                            ldims[0],
                            idims[0],
                            ipath.display()
                        ),
                    ));
                }
                if idims[1] != 28 || idims[2] != 28 {
                    return Err(malformed(
                        &ipath,
                        format!("images are {}x{}, expected 28x28", idims[1], idims[2]),
                    ));
                }
                let n = idims[0].min(limit);
                if let Some(i) = labels[..n].iter().position(|&l| l >= 10) {
                    return Err(malformed(
                        &lpath,
                        format!("label {} of image {i} out of range 0..10", labels[i]),
                    ));
                }
                ds.labels = labels[..n].iter().map(|&l| u16::from(l)).collect();
                ds.pixels = images[..n * 784].to_vec();
            }
        }
        Ok(ds)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True if there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The bytes of image `i` (C x H x W). Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.shape.iter().product::<usize>();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The label of image `i`. Panics if `i >= len()`.
    pub fn label(&self, i: usize) -> usize {
        self.labels[i] as usize
    }

    /// All labels.
    pub fn labels(&self) -> impl Iterator<Item = usize> + '_ {
        self.labels.iter().map(|&l| l as usize)
    }
}

/// Reads an IDX file of unsigned bytes with `ndims` dimensions.
fn read_idx(path: &Path, ndims: usize) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let bytes = read_file(path)?;
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(malformed(
            path,
            format!("{} bytes, shorter than the IDX header", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] as usize != ndims {
        return Err(malformed(
            path,
            format!(
                "IDX magic {:02x}{:02x}{:02x}{:02x}, expected 000008{ndims:02x} (unsigned bytes, {ndims} dims)",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match n {
        Some(n) if bytes.len() - header == n => Ok((dims, bytes[header..].to_vec())),
        _ => Err(malformed(
            path,
            format!(
                "dimensions {dims:?} do not match the {} data bytes (truncated?)",
                bytes.len() - header
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cifar_layout_is_read_and_truncation_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = vec![3u8];
        rec.extend((0..3072).map(|i| (i % 251) as u8));
        let mut file = rec.clone();
        file.extend(&rec);
        std::fs::write(dir.path().join("test_batch.bin"), &file).unwrap();
        let ds = Dataset::load(DatasetKind::Cifar10, dir.path(), Split::Test, None).unwrap();
        assert_eq!(ds.len(), 2);
        assert_eq!(ds.label(1), 3);
        assert_eq!(ds.image(0)[1024], (1024 % 251) as u8);
        assert_eq!(
            DatasetKind::detect(dir.path()).unwrap(),
            DatasetKind::Cifar10
        );
        std::fs::write(dir.path().join("test_batch.bin"), &file[..5000]).unwrap();
        let e = Dataset::load(DatasetKind::Cifar10, dir.path(), Split::Test, None).unwrap_err();
        assert!(e.to_string().contains("not a positive multiple"), "{e}");
        let e = Dataset::load(DatasetKind::Cifar10, dir.path(), Split::Train, None).unwrap_err();
        assert!(e.to_string().contains("data_batch_1.bin"), "{e}");
    }

    #[test]
    fn cifar100_uses_fine_labels_and_checks_their_range() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("cifar-100-binary");
        std::fs::create_dir(&sub).unwrap();
        let rec = |coarse: u8, fine: u8| {
            let mut r = vec![coarse, fine];
            r.extend(std::iter::repeat_n(9u8, 3072));
            r
        };
        let mut file = rec(3, 57);
        file.extend(rec(19, 99));
        std::fs::write(sub.join("test.bin"), &file).unwrap();
        let ds = Dataset::load(DatasetKind::Cifar100, dir.path(), Split::Test, None).unwrap();
        assert_eq!((ds.len(), ds.label(0), ds.label(1)), (2, 57, 99));
        assert_eq!(
            DatasetKind::detect(dir.path()).unwrap(),
            DatasetKind::Cifar100
        );
        let mut bad = rec(3, 100);
        bad.extend(rec(3, 1));
        std::fs::write(sub.join("test.bin"), &bad).unwrap();
        let e = Dataset::load(DatasetKind::Cifar100, dir.path(), Split::Test, None).unwrap_err();
        assert!(
            e.to_string().contains("label 100 out of range 0..100"),
            "{e}"
        );
        let ds = Dataset::load(DatasetKind::Cifar100, dir.path(), Split::Test, Some(0)).unwrap();
        assert!(ds.is_empty());
    }

    #[test]
    fn idx_gzip_is_read_and_bad_magic_named() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let gz = |name: &str, bytes: &[u8]| {
            let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(bytes).unwrap();
            std::fs::write(dir.path().join(name), e.finish().unwrap()).unwrap();
        };
        let mut img = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28];
        img.extend(vec![7u8; 2 * 784]);
        gz("t10k-images-idx3-ubyte.gz", &img);
        gz("t10k-labels-idx1-ubyte.gz", &[0, 0, 8, 1, 0, 0, 0, 2, 4, 9]);
        let ds = Dataset::load(DatasetKind::FashionMnist, dir.path(), Split::Test, None).unwrap();
        assert_eq!(
            (ds.len(), ds.label(0), ds.label(1), ds.image(1)[5]),
            (2, 4, 9, 7)
        );
        gz("t10k-labels-idx1-ubyte.gz", &[0, 0, 8, 3, 0, 0, 0, 2, 4, 9]);
        let e =
            Dataset::load(DatasetKind::FashionMnist, dir.path(), Split::Test, None).unwrap_err();
        assert!(e.to_string().contains("IDX magic"), "{e}");
    }

    #[test]
    fn normalization_is_per_channel() {
        let n = Normalization::cifar10();
        let px: Vec<u8> = vec![255, 255, 0, 0, 51, 51];
        let x = n.apply(&px);
        assert!((x[0] - (1.0 - 0.4914) / 0.2023).abs() < 1e-6);
        assert!((x[2] - (0.0 - 0.4822) / 0.1994).abs() < 1e-6);
        assert!((x[5] - (0.2 - 0.4465) / 0.2010).abs() < 1e-5);
        assert!(n.validate(1).is_err());
        assert_eq!(
            "Fashion_MNIST".parse::<DatasetKind>().unwrap(),
            DatasetKind::FashionMnist
        );
    }
}
