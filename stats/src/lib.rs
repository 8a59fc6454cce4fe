//! `wit stats`: corpus statistics over every stage of a dataset, with Polars.
//!
//! Every table is a Polars lazy scan over a glob of the stage's Parquet files
//! (`candidates/part-*.parquet`, `shards/[0-9]*.parquet`, ...), with only the
//! columns a figure needs read, and every figure a small aggregate: the
//! report works on 40,000 shards without loading them. Counts that only the
//! manifests hold (rows dropped by the text filters) come from the manifests.
//!
//! # Brief overview
//! - [`Tables`]: the stage tables present in a dataset, as lazy frames.
//! - [`report`]: every figure, as JSON ([`Report::json`]) and terminal text
//!   ([`Report::text`]).
//! - [`write_report`]: `stats.json`, PNG plots and one self-contained
//!   `report.html` into a directory.
//! - [`sql`]: Polars SQL over the stage tables, registered under their names.
#![deny(missing_docs)]

mod plots;
mod report;

use std::path::{Path, PathBuf};

use polars::prelude::*;
use wit_contract::{Error, Result};

pub use report::{Report, report, write_report};

/// A stage table: its name for SQL, and the glob of its files.
const TABLES: &[(&str, &str)] = &[
    ("queries", "queries/queries.parquet"),
    ("candidates", "candidates/part-*.parquet"),
    ("matched", "matched/part-*.parquet"),
    ("balanced", "balanced/part-*.parquet"),
    ("query_counts", "balanced/_global/query_counts.parquet"),
    ("shards", "shards/[0-9]*.parquet"),
];

/// The stage tables present in a dataset, as lazy scans.
pub struct Tables {
    root: PathBuf,
    present: Vec<(&'static str, PathBuf)>,
}

impl Tables {
    /// Finds the tables of the dataset at `root`: a table is present when
    /// its glob matches at least one file.
    ///
    /// # Errors
    /// [`Error::BadInput`] if `root` is not a directory or holds no table.
    pub fn open(root: &Path) -> Result<Tables> {
        if !root.is_dir() {
            return Err(Error::bad_input(root, "not a dataset directory"));
        }
        let mut present = Vec::new();
        for (name, glob) in TABLES {
            if glob_has_files(root, glob) {
                present.push((*name, root.join(glob)));
            }
        }
        if present.is_empty() {
            return Err(Error::bad_input(
                root,
                "holds no stage output yet (run wit queries, crawl or extract first)",
            ));
        }
        Ok(Tables {
            root: root.to_path_buf(),
            present,
        })
    }

    /// The files of table `name`, sorted by name, or `None` if the dataset
    /// does not hold it: aggregates computed file by file need memory for
    /// one file, not for the table.
    ///
    /// # Errors
    /// [`Error::Io`] if the directory cannot be listed.
    pub fn part_files(&self, name: &str) -> Result<Option<Vec<PathBuf>>> {
        let Some((_, glob)) = self.present.iter().find(|p| p.0 == name) else {
            return Ok(None);
        };
        let (Some(dir), Some(pattern)) = (glob.parent(), glob.file_name()) else {
            return Ok(None);
        };
        let pattern = pattern.to_string_lossy();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .flatten()
            .filter(|e| glob_match(&pattern, &e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect();
        files.sort();
        Ok(Some(files))
    }

    /// The dataset directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The names of the tables present.
    pub fn names(&self) -> Vec<&'static str> {
        self.present.iter().map(|p| p.0).collect()
    }

    /// A lazy scan of table `name`, if present.
    ///
    /// # Errors
    /// [`Error::BadInput`] naming the files if Polars cannot scan them.
    pub fn scan(&self, name: &str) -> Result<Option<LazyFrame>> {
        let Some((_, glob)) = self.present.iter().find(|p| p.0 == name) else {
            return Ok(None);
        };
        let path = glob.display().to_string();
        LazyFrame::scan_parquet(PlRefPath::new(path.as_str()), ScanArgsParquet::default())
            .map(Some)
            .map_err(|e| Error::bad_input(glob, format!("cannot scan: {e}")))
    }
}

/// Whether the glob `pattern` (a directory, then a file pattern with `*` and
/// one `[0-9]` class at most) matches a file under `root`.
fn glob_has_files(root: &Path, pattern: &str) -> bool {
    let path = root.join(pattern);
    let (Some(dir), Some(file)) = (path.parent(), path.file_name()) else {
        return false;
    };
    let file = file.to_string_lossy();
    if !file.contains(['*', '[']) {
        return path.is_file();
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries
        .flatten()
        .any(|e| glob_match(&file, &e.file_name().to_string_lossy()))
}

/// `*` and `[0-9]` globbing, enough for the table patterns.
fn glob_match(pattern: &str, name: &str) -> bool {
    if let Some(rest) = pattern.strip_prefix("[0-9]") {
        return name.chars().next().is_some_and(|c| c.is_ascii_digit())
            && glob_match(rest, &name[1..]);
    }
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (head.len()..=name.len())
                    .any(|i| name.is_char_boundary(i) && glob_match(tail, &name[i..]))
        }
    }
}

/// Runs a Polars SQL query over the stage tables (registered as
/// `queries`, `candidates`, `matched`, `balanced`, `query_counts`, `shards`).
///
/// # Errors
/// [`Error::Usage`] with Polars' message if the query does not run.
pub fn sql(root: &Path, query: &str) -> Result<DataFrame> {
    let tables = Tables::open(root)?;
    let mut ctx = polars::sql::SQLContext::new();
    for name in tables.names() {
        if let Some(lf) = tables.scan(name)? {
            ctx.register(name, lf);
        }
    }
    ctx.execute(query).and_then(Run::run).map_err(|e| {
        Error::Usage(format!(
            "the query failed: {e} (tables: {})",
            tables.names().join(", ")
        ))
    })
}

/// A result as an aligned text table (every row; columns as Polars prints them).
pub fn table_text(df: &DataFrame) -> String {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let mut cells: Vec<Vec<String>> = vec![names.clone()];
    for i in 0..df.height() {
        cells.push(
            df.columns()
                .iter()
                .map(|c| match c.get(i) {
                    Ok(AnyValue::String(s)) => s.to_string(),
                    Ok(AnyValue::Null) => String::new(),
                    Ok(v) => v.to_string(),
                    Err(_) => String::new(),
                })
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..names.len())
        .map(|j| {
            cells
                .iter()
                .map(|r| r[j].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for (i, row) in cells.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        s.push_str(line.join("  ").trim_end());
        s.push('\n');
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            s.push_str(&rule.join("  "));
            s.push('\n');
        }
    }
    s
}

/// A result as CSV.
///
/// # Errors
/// [`Error::Usage`] if a column cannot be written as CSV (lists).
pub fn csv(df: &DataFrame) -> Result<String> {
    let mut buf = Vec::new();
    let mut df = df.clone();
    CsvWriter::new(&mut buf)
        .finish(&mut df)
        .map_err(polars_err("CSV"))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// A result as JSON lines.
///
/// # Errors
/// [`Error::Usage`] if a value cannot be written.
pub fn json_lines(df: &DataFrame) -> Result<String> {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let mut s = String::new();
    for i in 0..df.height() {
        let mut obj = serde_json::Map::new();
        for (name, c) in names.iter().zip(df.columns()) {
            let v = c.get(i).map_err(polars_err("JSON"))?;
            obj.insert(name.clone(), any_to_json(&v));
        }
        s.push_str(&serde_json::Value::Object(obj).to_string());
        s.push('\n');
    }
    Ok(s)
}

fn any_to_json(v: &AnyValue<'_>) -> serde_json::Value {
    use serde_json::json;
    match v {
        AnyValue::Null => serde_json::Value::Null,
        AnyValue::Boolean(b) => json!(b),
        AnyValue::String(s) => json!(s),
        AnyValue::StringOwned(s) => json!(s.as_str()),
        AnyValue::UInt8(x) => json!(x),
        AnyValue::UInt16(x) => json!(x),
        AnyValue::UInt32(x) => json!(x),
        AnyValue::UInt64(x) => json!(x),
        AnyValue::Int8(x) => json!(x),
        AnyValue::Int16(x) => json!(x),
        AnyValue::Int32(x) => json!(x),
        AnyValue::Int64(x) => json!(x),
        AnyValue::Float32(x) => json!(x),
        AnyValue::Float64(x) => json!(x),
        AnyValue::List(series) => serde_json::Value::Array(
            (0..series.len())
                .map(|i| {
                    series
                        .get(i)
                        .map_or(serde_json::Value::Null, |v| any_to_json(&v))
                })
                .collect(),
        ),
        other => json!(other.to_string()),
    }
}

/// Runs a query on Polars' streaming engine: scans are read in batches and
/// aggregated as they come, so memory follows the aggregates, not the data.
pub(crate) trait Run {
    fn run(self) -> PolarsResult<DataFrame>;
}

impl Run for LazyFrame {
    fn run(self) -> PolarsResult<DataFrame> {
        // One output, so the result is a single frame.
        self.collect_with_engine(Engine::Streaming)
            .map(|r| r.unwrap_single())
    }
}

/// Polars' error as ours, naming what was being computed.
pub(crate) fn polars_err(what: &str) -> impl Fn(PolarsError) -> Error + '_ {
    move |e| Error::Usage(format!("computing {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("part-*.parquet", "part-00001.parquet"));
        assert!(!glob_match("part-*.parquet", "_part-00001.json"));
        assert!(glob_match("[0-9]*.parquet", "00012.parquet"));
        assert!(!glob_match("[0-9]*.parquet", "_plan.parquet"));
        assert!(!glob_match("[0-9]*.parquet", "00012.tar"));
    }
}
