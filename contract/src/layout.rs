//! Where every stage's files live inside a dataset directory, and how parts are named.
//!
//! A dataset is a directory. Each stage owns one subdirectory and writes its
//! output there as numbered parts, `part-00000.parquet`, `part-00001.parquet`, ...,
//! each with a sidecar `_part-00000.json` (the part's counts, written last, which
//! marks the part complete), and one `_manifest.json` once every part is complete.
//! Files being written carry a `.tmp-` prefix and are renamed when complete, so
//! a glob over `part-*.parquet` never sees a half-written file.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// The stages of the pipeline, in the order data flows through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// The query list (`wit queries`).
    Queries,
    /// Image-text candidates from crawling or web archives (`wit crawl`, `wit extract`).
    Candidates,
    /// Candidates whose text contains at least one query (`wit match`).
    Matched,
    /// Matched pairs kept by balancing (`wit balance`).
    Balanced,
    /// Downloaded images in WebDataset shards (`wit download`).
    Shards,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 5] = [
        Stage::Queries,
        Stage::Candidates,
        Stage::Matched,
        Stage::Balanced,
        Stage::Shards,
    ];

    /// The name of the stage's directory inside a dataset, also the stage's name in manifests.
    pub fn dir_name(self) -> &'static str {
        match self {
            Stage::Queries => "queries",
            Stage::Candidates => "candidates",
            Stage::Matched => "matched",
            Stage::Balanced => "balanced",
            Stage::Shards => "shards",
        }
    }

    /// The `wit` commands that write this stage, for error messages.
    pub fn commands(self) -> &'static str {
        match self {
            Stage::Queries => "`wit queries build` or `wit queries import`",
            Stage::Candidates => "`wit crawl` or `wit extract`",
            Stage::Matched => "`wit match`",
            Stage::Balanced => "`wit balance`",
            Stage::Shards => "`wit download`",
        }
    }
}

/// A dataset directory, local or on a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    root: PathBuf,
    url: Option<String>,
}

impl Dataset {
    /// A local dataset rooted at `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Dataset {
            root: root.into(),
            url: None,
        }
    }

    /// A dataset at a path or a URL (`s3://bucket/prefix`, `gs://`, `az://`,
    /// `file://`). On a store, the dataset gets a local mirror, a working
    /// directory that the contract keeps in step with the store
    /// ([`crate::store`]); [`Dataset::root`] is then the mirror.
    ///
    /// # Errors
    /// [`Error::BadInput`] naming the URL if it is malformed or its store
    /// cannot be configured; [`Error::Io`] if the mirror cannot be made.
    pub fn open(location: &str) -> Result<Self> {
        match crate::store::Location::parse(location)? {
            crate::store::Location::Local(root) => Ok(Dataset::new(root)),
            crate::store::Location::Remote(remote) => {
                let url = remote.url().to_string();
                let root = crate::store::mirror(remote)?;
                Ok(Dataset {
                    root,
                    url: Some(url),
                })
            }
        }
    }

    /// The dataset's root directory (for a dataset on a store, its local mirror).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The dataset's URL if it lies on a store.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// Where the dataset lies, for messages and manifests: its URL or its path.
    pub fn location(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| self.root.display().to_string())
    }

    /// For a dataset on a store: downloads everything under `rel` (a stage
    /// directory, or `runs/MODEL`) into the mirror. A no-op for a local dataset.
    ///
    /// # Errors
    /// The store's error, naming the URL.
    pub fn pull(&self, rel: &str) -> Result<()> {
        crate::store::pull_stage(&self.root.join(rel))
    }

    /// For a dataset on a store: downloads the metadata under `rel` (the
    /// manifest, part sidecars, `_` directories), not the data files. A no-op
    /// for a local dataset.
    ///
    /// # Errors
    /// The store's error, naming the URL.
    pub fn pull_meta(&self, rel: &str) -> Result<()> {
        crate::store::pull_stage_meta(&self.root.join(rel))
    }

    /// For a dataset on a store: uploads every file under `rel` in the mirror
    /// (outputs written outside the stage runner: the stats report, a
    /// training run). A no-op for a local dataset.
    ///
    /// # Errors
    /// The store's error, naming the URL; [`Error::Io`] for a local file.
    pub fn push(&self, rel: &str) -> Result<()> {
        crate::store::push_dir(&self.root.join(rel))
    }

    /// The files under `rel` whose names end with `suffix`, sorted, as
    /// locations to read in place: paths, or URLs for a dataset on a store.
    ///
    /// # Errors
    /// [`Error::BadInput`] if a local `rel` is not a directory; the store's error.
    pub fn files(&self, rel: &str, suffix: &str) -> Result<Vec<String>> {
        if let (Some(url), Some((mirror, _))) = (&self.url, crate::store::mirror_of(&self.root)) {
            return Ok(mirror
                .remote()
                .list(rel)?
                .into_keys()
                .filter(|n| n.ends_with(suffix) && !n.contains('/') && !n.starts_with('.'))
                .map(|n| format!("{url}/{rel}/{n}"))
                .collect());
        }
        let dir = self.root.join(rel);
        if !dir.is_dir() {
            return Err(Error::bad_input(&dir, "no such directory"));
        }
        let mut out: Vec<String> = Vec::new();
        for entry in std::fs::read_dir(&dir).at(&dir)? {
            let name = entry.at(&dir)?.file_name().to_string_lossy().into_owned();
            if name.ends_with(suffix) && !name.starts_with('.') {
                out.push(dir.join(&name).display().to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// The directory of one stage.
    pub fn stage_dir(&self, stage: Stage) -> PathBuf {
        self.root.join(stage.dir_name())
    }
}

/// The file name of part `part`'s Parquet output: `part-00042.parquet`.
pub fn part_file_name(part: u32) -> String {
    format!("part-{part:05}.parquet")
}

/// The file name of part `part`'s sidecar (counts and done marker): `_part-00042.json`.
pub fn part_stats_name(part: u32) -> String {
    format!("_part-{part:05}.json")
}

/// The prefix of every temporary file that part `part` writes.
pub fn part_tmp_prefix(part: u32) -> String {
    format!(".tmp-part-{part:05}-")
}

/// The name of a stage's manifest.
pub const MANIFEST_NAME: &str = "_manifest.json";

/// Parses `part-NNNNN.parquet` into its number; any other name gives `None`.
pub fn parse_part_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    if digits.len() < 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The Parquet parts present in `dir`, sorted by part number.
///
/// # Errors
/// [`Error::BadInput`] if `dir` does not exist; [`Error::Io`] if it cannot be read.
pub fn list_parts(dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    if !dir.is_dir() {
        return Err(Error::bad_input(dir, "no such directory"));
    }
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if let Some(part) = entry.file_name().to_str().and_then(parse_part_file_name) {
            parts.push((part, entry.path()));
        }
    }
    parts.sort();
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_round_trip() {
        for part in [0, 7, 42, 99_999, 100_000, 4_000_000] {
            assert_eq!(parse_part_file_name(&part_file_name(part)), Some(part));
        }
        assert_eq!(part_file_name(42), "part-00042.parquet");
        assert_eq!(parse_part_file_name("part-42.parquet"), None);
        assert_eq!(parse_part_file_name("part-00042.json"), None);
        assert_eq!(
            parse_part_file_name(".tmp-part-00042-part-00042.parquet"),
            None
        );
        assert_eq!(parse_part_file_name("part-0004a.parquet"), None);
    }

    #[test]
    fn tmp_prefix_of_one_part_is_not_a_prefix_of_another() {
        assert!(!format!("{}x", part_tmp_prefix(31)).starts_with(&part_tmp_prefix(3)));
        assert!(!part_tmp_prefix(100_000).starts_with(&part_tmp_prefix(10_000)));
    }

    #[test]
    fn list_parts_sorts_numerically_and_ignores_other_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "part-00010.parquet",
            "part-00002.parquet",
            "part-100000.parquet",
            "part-00002.json",
            ".tmp-part-00003-part-00003.parquet",
            "_manifest.json",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let got: Vec<u32> = list_parts(dir.path())
            .unwrap()
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(got, vec![2, 10, 100_000]);
        assert!(
            list_parts(&dir.path().join("missing"))
                .unwrap_err()
                .is_bad_input()
        );
    }
}
