//! Running wit's stages on a cluster.
//!
//! A **pipeline** ([`Pipeline`], a TOML file) lists the stages to run over
//! one dataset, each with its flags, its number of tasks and its resources.
//! Every partitioned stage runs as N independent tasks, task I running
//! `wit STAGE --parts N --part I`, which wit's stage runner already makes
//! safe: each part commits atomically, a rerun skips complete parts, and the
//! last task to finish writes the stage's manifest.
//!
//! - [`slurm`]: one `sbatch --array=0-(N-1)%C` job per stage, chained with
//!   `--dependency=afterok:` and `--kill-on-invalid-dep=yes`; submitted and
//!   followed with `squeue` and `scontrol`, failed tasks reported by number.
//! - [`kube`]: one Kubernetes Indexed Job per stage (`completionMode: Indexed`,
//!   `JOB_COMPLETION_INDEX` as the part), generated only.
//!
//! The scheduler is the only place that knows about either; the stages know
//! nothing of it.
#![deny(missing_docs)]

pub mod kube;
pub mod pipeline;
pub mod slurm;

pub use pipeline::{Pipeline, Resources, StageJob};

/// An error of a pipeline description or of the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file is malformed or inconsistent (exit code 2).
    #[error("{path}: {message}")]
    Pipeline {
        /// The pipeline file (or `pipeline` for one given in memory).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A scheduler command failed or could not be run.
    #[error("{command}: {message}")]
    Scheduler {
        /// The command (`sbatch`, `squeue`, ...).
        command: String,
        /// Its error output, on one line.
        message: String,
    },
    /// Some tasks failed or were cancelled.
    #[error("{0}")]
    TasksFailed(String),
    /// Writing a script or manifest failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// True where the error is about what the user gave (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Error::Pipeline { .. })
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `s` quoted for a POSIX shell: as it is where that is safe, else in single quotes.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub(crate) fn write_file(path: &std::path::Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_a_shell() {
        for s in [
            "plain",
            "two words",
            "it's",
            "$HOME",
            "a\"b",
            "",
            "s3://b/p",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }
}
