//! The crate's error: what goes wrong in training or evaluation.

use std::path::{Path, PathBuf};

/// What goes wrong in a run or an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file written through the data contract failed.
    #[error("{0}")]
    Contract(#[from] wit_contract::Error),
    /// A tensor operation failed.
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    /// The settings, the data or a directory do not allow the work.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Whether the error is in what the user gave (settings, data, a run
    /// directory) rather than a failure of the run: the CLI exits 2 for it.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Invalid(_) => true,
            Error::Contract(e) => e.is_bad_input(),
            Error::Io { .. } | Error::Candle(_) => false,
        }
    }
}

/// This crate's results.
pub type Result<T> = std::result::Result<T, Error>;

/// Maps an I/O error on `path` to [`Error::Io`].
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
