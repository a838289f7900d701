//! Errors of the PyTorch importer: each names the file, the tensor or the pickle offset.

use std::path::PathBuf;

use crate::error::ModelError;

/// What went wrong reading a PyTorch checkpoint or mapping it onto an architecture.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Reading the file failed.
    #[error("I/O error on {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The file or one of its parts is larger than the importer reads.
    #[error("{path}: {what} is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Which part (the file, `data.pkl`, a storage).
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Neither a safetensors file nor a `torch.save` zip archive.
    #[error("{path}: not a PyTorch checkpoint: {reason}")]
    NotACheckpoint {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The zip archive is damaged or lacks a record `torch.save` writes.
    #[error("{path}: not a readable torch.save zip archive: {reason}")]
    Zip {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The pickle (`data.pkl`) is malformed, truncated or uses something unsupported.
    #[error("{path}: pickle error at byte {offset}: {reason}")]
    Pickle {
        /// The file (and record).
        path: PathBuf,
        /// Byte offset in the pickle.
        offset: usize,
        /// What was wrong.
        reason: String,
    },
    /// A safetensors file is malformed.
    #[error("{path}: invalid safetensors file: {reason}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A tensor's storage is missing, too short, or its view does not fit in it.
    #[error("{path}: tensor {name:?}: {reason}")]
    Storage {
        /// The file.
        path: PathBuf,
        /// The tensor's name in the checkpoint.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// No state dict found where one was looked for.
    #[error("{path}: no state_dict found: {reason}")]
    NoStateDict {
        /// The file.
        path: PathBuf,
        /// Where it looked and what it found.
        reason: String,
    },
    /// The architecture needs a tensor the checkpoint does not have.
    #[error(
        "missing key {key:?} (expected shape {expected:?}): the checkpoint has no such tensor{hint}"
    )]
    MissingKey {
        /// The PyTorch name looked for (the first accepted spelling).
        key: String,
        /// Our parameter or site name.
        ours: String,
        /// The expected shape.
        expected: Vec<usize>,
        /// Extra hint (our name where it differs, other accepted spellings).
        hint: String,
    },
    /// The checkpoint has a tensor the architecture does not.
    #[error("unexpected key {key:?}: {arch} has no such parameter or ReLU site{hint}")]
    UnexpectedKey {
        /// The PyTorch name.
        key: String,
        /// The architecture imported.
        arch: String,
        /// Extra hint.
        hint: String,
    },
    /// A tensor has another shape than the architecture needs.
    #[error("shape of {key:?} is {found:?}, expected {expected:?}{hint}")]
    ShapeMismatch {
        /// The PyTorch name.
        key: String,
        /// Shape in the checkpoint.
        found: Vec<usize>,
        /// Shape expected.
        expected: Vec<usize>,
        /// Extra hint (e.g. check --classes or --arch).
        hint: String,
    },
    /// A tensor's element type cannot be read as f32.
    #[error(
        "tensor {key:?} has unsupported dtype {dtype} (readable: float32, float64, float16, bfloat16)"
    )]
    UnsupportedDtype {
        /// The PyTorch name.
        key: String,
        /// The dtype found.
        dtype: String,
    },
    /// A value is not usable (not finite, negative variance, bad threshold).
    #[error("tensor {key:?}: {reason}")]
    BadValue {
        /// The PyTorch name.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// The caller's options are inconsistent (unknown architecture, bad threshold).
    #[error("{0}")]
    InvalidArgument(String),
    /// Building or writing the model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl ImportError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        ImportError::Io {
            path: path.into(),
            error,
        }
    }
}
