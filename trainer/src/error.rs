//! The trainer's error type.

/// Errors of the trainer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A model file or description problem.
    #[error(transparent)]
    Model(#[from] models::ModelError),
    /// A dataset problem.
    #[error(transparent)]
    Data(#[from] models::DataError),
    /// libtorch reported an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// Reading or writing a run file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The run stopped on request after this many epochs (see `Common::stop_after`); run
    /// the same command again to resume.
    #[error("stopped after {0} epochs as requested; run again to resume")]
    Stopped(usize),
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Invalid(String),
    /// The Python PyTorch side of a benchmark ([`crate::bench::compare`]) failed.
    #[error("{0}")]
    PyTorch(String),
}

impl TrainError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
