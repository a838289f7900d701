//! Typed errors of the `models` crate.
//!
//! Each variant says what was wrong and where, so a user can fix the file, the flag or the
//! data directory without reading code. Nothing here panics on bad input.

use std::path::PathBuf;

/// Errors from building, validating, reading and writing models.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file does not start with the expected magic: it is not a model file of this kind.
    #[error("{path}: wrong magic {found:?}, expected {expected:?} (not an SNL model file?)")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic found.
        found: String,
        /// The magic expected.
        expected: &'static str,
    },
    /// The file was written by a newer (or unknown) version of the format.
    #[error(
        "{path}: format version {found} is not supported (this build reads versions 1 to {supported}); upgrade the reader"
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A file is syntactically invalid or truncated.
    #[error("{path}: malformed: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A file's content does not match the hash recorded for it.
    #[error(
        "{path}: content hash mismatch (expected sha256 {expected}, found {found}); the file was modified or truncated"
    )]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// Recorded hash.
        expected: String,
        /// Actual hash.
        found: String,
    },
    /// A required tensor is missing.
    #[error("missing tensor {name:?} (expected shape {expected:?})")]
    MissingTensor {
        /// Parameter or mask name.
        name: String,
        /// Its expected shape.
        expected: Vec<usize>,
    },
    /// A tensor that the architecture does not have.
    #[error("unexpected tensor {name:?}: the architecture has no such parameter or ReLU site")]
    UnexpectedTensor {
        /// The name found.
        name: String,
    },
    /// A tensor has the wrong shape.
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Parameter or mask name.
        name: String,
        /// Shape found.
        found: Vec<usize>,
        /// Shape expected.
        expected: Vec<usize>,
    },
    /// A tensor has the wrong element type.
    #[error("tensor {name:?} has dtype {found}, expected {expected}")]
    DtypeMismatch {
        /// Parameter or mask name.
        name: String,
        /// Dtype found.
        found: String,
        /// Dtype expected.
        expected: &'static str,
    },
    /// A mask holds a value other than 0 or 1, or a weight is not finite.
    #[error("tensor {name:?}: {reason}")]
    BadValue {
        /// Parameter or mask name.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// The network description is inconsistent (shapes, references, names).
    #[error("invalid network description: {0}")]
    InvalidGraph(String),
    /// The caller asked for something that does not exist or is out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// The target already exists and overwriting was not requested.
    #[error(
        "{path} already exists; refusing to overwrite it (choose another path, or ask to replace it: --force)"
    )]
    AlreadyExists {
        /// The existing path.
        path: PathBuf,
    },
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        ModelError::Malformed {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Errors from the dataset readers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A dataset file is missing from the directory.
    #[error(
        "{dataset}: none of {candidates:?} found in {dir}; point --data at the directory holding the {dataset} files"
    )]
    NotFound {
        /// Dataset name.
        dataset: &'static str,
        /// The directory searched.
        dir: PathBuf,
        /// The file names tried.
        candidates: Vec<String>,
    },
    /// Reading a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file's layout is not the expected one.
    #[error("{path}: malformed: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// No known dataset's files are in the directory.
    #[error(
        "{dir}: no dataset found (looked for CIFAR-10 test_batch.bin, CIFAR-100 test.bin, Fashion-MNIST t10k-images-idx3-ubyte[.gz], also in the official archives' subdirectories); point --data at such a directory{hint}"
    )]
    Undetected {
        /// The directory searched.
        dir: PathBuf,
        /// Extra hint (e.g. that the directory does not exist).
        hint: String,
    },
    /// The dataset name is unknown.
    #[error("unknown dataset {0:?}; known: cifar10, cifar100, fashion-mnist")]
    UnknownDataset(String),
}
