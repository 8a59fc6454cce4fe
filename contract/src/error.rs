//! Errors of the data contract and the stage runner.
//!
//! Every variant names the file or directory it is about, so that the message
//! printed by `wit` tells the user which input to look at. [`Error::is_bad_input`]
//! separates problems with what the user gave (exit code 2) from failures of the
//! run itself (exit code 1).

use std::fmt;
use std::path::{Path, PathBuf};

/// Result alias used throughout the contract crate and the stage crates.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error of the data contract or the stage runner.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An input file or directory is missing, malformed or does not follow the contract.
    #[error("{}: {message}", path.display())]
    BadInput {
        /// The offending input.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The output directory holds parts made with other parameters.
    #[error("{}: {message}", path.display())]
    Conflict {
        /// The stage directory.
        path: PathBuf,
        /// What differs and what to do about it.
        message: String,
    },
    /// A value given by the user is out of range or inconsistent.
    #[error("{0}")]
    Usage(String),
    /// Writing a Parquet file failed.
    #[error("{}: writing Parquet: {message}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The writer's error.
        message: String,
    },
    /// Some parts of a stage failed; the others were committed.
    #[error("{}", PartsFailedDisplay(failures, *total))]
    PartsFailed {
        /// Each failed part with its error, in part order.
        failures: Vec<(u32, Error)>,
        /// How many parts this process was asked to run.
        total: u32,
    },
}

struct PartsFailedDisplay<'a>(&'a [(u32, Error)], u32);

impl fmt::Display for PartsFailedDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (failures, total) = (self.0, self.1);
        write!(f, "{} of {total} parts failed", failures.len())?;
        if let Some((part, err)) = failures.first() {
            write!(f, "; part {part}: {err}")?;
        }
        if failures.len() > 1 {
            write!(f, " (and {} more, see the log)", failures.len() - 1)?;
        }
        Ok(())
    }
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A malformed or missing input.
    pub fn bad_input(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::BadInput {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    /// True where the error is about what the user gave (a missing or malformed
    /// input, a conflicting output directory, a bad value) rather than a failure
    /// of the run. `wit` exits with code 2 for these and 1 for the others.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::BadInput { .. } | Error::Conflict { .. } | Error::Usage(_) => true,
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            Error::Write { .. } => false,
            Error::PartsFailed { failures, .. } => failures.iter().all(|(_, e)| e.is_bad_input()),
        }
    }
}

/// Adds the path to an I/O result.
pub trait IoContext<T> {
    /// Maps the I/O error to [`Error::Io`] naming `path`.
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
