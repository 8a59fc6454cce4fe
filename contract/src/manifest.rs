//! `_manifest.json` (one per stage) and `_part-NNNNN.json` (one per part).
//!
//! A part's sidecar is written after its data files and marks the part
//! complete; it records the hash of the parameters that made it, so a rerun
//! with other parameters is refused instead of mixing outputs. The manifest
//! is written when every part is complete: a downstream stage reads its input
//! only once the manifest is there.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::layout::{MANIFEST_NAME, Stage};
use crate::records::hex;

/// Named counters of a part or a stage (`rows_in`, `rows_out`, `no_match`, ...).
pub type Counts = BTreeMap<String, u64>;

/// Adds `from` into `into`, counter by counter.
pub fn add_counts(into: &mut Counts, from: &Counts) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// The sidecar of one complete part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartStats {
    /// The part's number.
    pub part: u32,
    /// [`params_hash`] of the parameters that made it.
    pub params_hash: String,
    /// The parameters that made it, as a JSON object (null in sidecars
    /// written before wit recorded them), so that a rerun with other
    /// parameters can name the ones that differ.
    #[serde(default)]
    pub params: serde_json::Value,
    /// The data files of the part, relative to the stage directory.
    pub files: Vec<String>,
    /// The part's counters.
    pub counts: Counts,
    /// When work on the part began (RFC 3339).
    pub started: String,
    /// When the part was committed (RFC 3339).
    pub finished: String,
    /// Seconds spent on the part.
    pub seconds: f64,
}

/// The manifest of a complete stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The stage's name (its directory name).
    pub stage: String,
    /// The tool and version that wrote it, `wit 0.1.0`.
    pub tool: String,
    /// The inputs the stage read (paths, as given).
    pub inputs: Vec<String>,
    /// The parameters, as a JSON object.
    pub params: serde_json::Value,
    /// [`params_hash`] of `params` and the part count.
    pub params_hash: String,
    /// How many parts the stage has.
    pub parts: u32,
    /// Counters summed over all parts.
    pub counts: Counts,
    /// Earliest start of any part (RFC 3339).
    pub started: String,
    /// Latest commit of any part (RFC 3339).
    pub finished: String,
    /// Seconds of work summed over parts (CPU-side wall time, not elapsed time).
    pub part_seconds: f64,
}

impl Manifest {
    /// Reads the manifest of `stage` under `dataset_dir`.
    ///
    /// # Errors
    /// [`Error::BadInput`] if it is missing (the stage has not finished) or malformed.
    pub fn read(dataset_dir: &Path, stage: Stage) -> Result<Manifest> {
        // A dataset on a store: the stage's metadata comes down; its data
        // files follow one by one as they are read (`pq::read_file`).
        crate::store::pull_stage_meta(&dataset_dir.join(stage.dir_name()))?;
        Manifest::read_local(dataset_dir, stage)
    }

    /// [`Manifest::read`] without downloading anything: what the local
    /// directory (or a mirror, after [`crate::Dataset::pull_meta`]) holds.
    ///
    /// # Errors
    /// As [`Manifest::read`].
    pub fn read_local(dataset_dir: &Path, stage: Stage) -> Result<Manifest> {
        let path = dataset_dir.join(stage.dir_name()).join(MANIFEST_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = dataset_dir.join(stage.dir_name());
                let why = if dir.is_dir() {
                    "the stage has not finished (no _manifest.json): run or finish".to_string()
                } else {
                    "no such stage output: run".to_string()
                };
                return Err(Error::bad_input(
                    &dir,
                    format!("{why} {} first", stage.commands()),
                ));
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::bad_input(&path, format!("malformed manifest: {e}")))
    }
}

/// The hash that identifies a stage's parameters: SHA-256 of the canonical JSON
/// of `params` (object keys sorted) and the part count, 16 hex digits.
pub fn params_hash(params: &serde_json::Value, parts: u32) -> String {
    let canonical = serde_json::to_string(params).expect("JSON values serialise");
    let mut h = Sha256::new();
    h.update(canonical.as_bytes());
    h.update(parts.to_le_bytes());
    hex(&h.finalize()[..8])
}

/// `time` as RFC 3339 with seconds, UTC.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The tool string written into manifests.
pub fn tool() -> String {
    format!("wit {}", env!("CARGO_PKG_VERSION"))
}

/// Reads a part's sidecar; `None` if it is absent or unreadable (the part is
/// then treated as incomplete and redone).
pub fn read_part_stats(path: &Path) -> Option<PartStats> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "{}: unreadable part sidecar ({e}); the part will be redone",
                path.display()
            );
            None
        }
    }
}

/// Serialises `value` as pretty JSON with a trailing newline.
pub(crate) fn to_json_bytes<T: Serialize>(value: &T, path: &Path) -> Result<Vec<u8>> {
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes `bytes` to `path` atomically: to a temporary name in the same
/// directory, flushed to disk, then renamed over `path`; in a dataset on a
/// store, then uploaded ([`crate::store`]).
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_local_atomic(path, bytes)?;
    crate::store::push(path)
}

/// [`write_atomic`] on the local file system only.
pub(crate) fn write_local_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".tmp-{}-{name}", crate::runner::nonce()));
    let mut f = std::fs::File::create(&tmp).at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    drop(f);
    std::fs::rename(&tmp, path).at(path)?;
    sync_dir(dir);
    Ok(())
}

/// Flushes a directory entry change (a rename) to disk. Best effort: some file
/// systems do not support syncing directories.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_hash_ignores_key_order_but_not_values_or_parts() {
        let a = serde_json::json!({"lowercase": false, "t": 20000});
        let b: serde_json::Value =
            serde_json::from_str(r#"{"t": 20000, "lowercase": false}"#).unwrap();
        assert_eq!(params_hash(&a, 4), params_hash(&b, 4));
        assert_ne!(params_hash(&a, 4), params_hash(&a, 5));
        assert_ne!(
            params_hash(&a, 4),
            params_hash(&serde_json::json!({"lowercase": true, "t": 20000}), 4)
        );
    }

    #[test]
    fn missing_manifest_says_which_command_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let err = Manifest::read(dir.path(), Stage::Candidates).unwrap_err();
        assert!(err.is_bad_input());
        let msg = err.to_string();
        assert!(
            msg.contains("candidates") && msg.contains("wit crawl"),
            "{msg}"
        );
    }
}
