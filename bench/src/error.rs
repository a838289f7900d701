//! The crate's error type.

use std::path::{Path, PathBuf};

/// What went wrong, and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file's contents are not what they should be.
    #[error("{}: {msg}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column where known.
        msg: String,
    },
    /// The caller asked for something impossible (bad option, missing input).
    #[error("{0}")]
    Config(String),
    /// Private inference failed.
    #[error("{context}: {source}")]
    Runtime {
        /// What was being done.
        context: String,
        /// The runtime's error.
        source: pi_runtime::RuntimeError,
    },
    /// A model could not be loaded or evaluated.
    #[error("{context}: {source}")]
    Model {
        /// What was being done.
        context: String,
        /// The models crate's error.
        source: models::ModelError,
    },
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
