//! The figures of the report, computed with lazy scans.

use std::fmt::Write as _;
use std::path::Path;

use polars::prelude::*;
use serde_json::{Value, json};
use wit_contract::manifest::Manifest;
use wit_contract::{Error, IoContext, Result, Stage};

use crate::{Run, Tables, plots, polars_err};

/// Every figure of a dataset, plus what the plots draw.
#[derive(Debug, Clone)]
pub struct Report {
    /// Every figure, as written to `stats.json`.
    pub json: Value,
    /// Query counts, sorted down, before balancing.
    pub(crate) before: Vec<u64>,
    /// The same after balancing.
    pub(crate) after: Vec<u64>,
    /// (stage, rows) of the funnel.
    pub(crate) funnel: Vec<(String, u64)>,
    /// Caption lengths of the candidates in buckets of 10 characters: (start, count).
    pub(crate) caption_hist: Vec<(u64, u64)>,
}

fn scalar_u64(df: &DataFrame, name: &str) -> u64 {
    df.column(name)
        .ok()
        .and_then(|c| c.get(0).ok())
        .and_then(|v| v.extract::<u64>())
        .unwrap_or(0)
}

/// A table as one lazy scan per file (a stage's parts, a shard's Parquet):
/// aggregates are computed file by file and merged here, so that memory
/// depends on a file and on the number of distinct keys, not on the rows
/// of the whole table.
#[derive(Clone)]
struct Parts {
    /// The files, or (in tests) frames.
    source: Source,
    /// Applied to each file's frame, in order.
    steps: Vec<Step>,
}

#[derive(Clone)]
enum Source {
    /// Scanned one at a time, when used: a scan made ahead for each of
    /// thousands of files would keep each one's metadata.
    Files(std::sync::Arc<Vec<std::path::PathBuf>>),
    #[cfg(test)]
    Frames(Vec<LazyFrame>),
}

#[derive(Clone)]
enum Step {
    Filter(Expr),
    /// Select the list column and explode it.
    Explode(&'static str),
}

impl Parts {
    fn files(files: Vec<std::path::PathBuf>) -> Parts {
        Parts {
            source: Source::Files(std::sync::Arc::new(files)),
            steps: Vec::new(),
        }
    }

    #[cfg(test)]
    fn frames(frames: Vec<LazyFrame>) -> Parts {
        Parts {
            source: Source::Frames(frames),
            steps: Vec::new(),
        }
    }

    fn filter(mut self, predicate: Expr) -> Parts {
        self.steps.push(Step::Filter(predicate));
        self
    }

    fn explode(mut self, column: &'static str) -> Parts {
        self.steps.push(Step::Explode(column));
        self
    }

    /// Each file's frame, made when reached.
    fn each(&self) -> impl Iterator<Item = Result<LazyFrame>> + '_ {
        let frames: Box<dyn Iterator<Item = Result<LazyFrame>>> = match &self.source {
            Source::Files(files) => Box::new(files.iter().map(|f| {
                let path = f.display().to_string();
                LazyFrame::scan_parquet(PlRefPath::new(path.as_str()), ScanArgsParquet::default())
                    .map_err(|e| Error::bad_input(f, format!("cannot scan: {e}")))
            })),
            #[cfg(test)]
            Source::Frames(frames) => Box::new(frames.iter().cloned().map(Ok)),
        };
        frames.map(|lf| {
            let mut lf = lf?;
            for step in &self.steps {
                lf = match step {
                    Step::Filter(p) => lf.filter(p.clone()),
                    Step::Explode(c) => lf.select([col(*c)]).explode(
                        by_name([*c], true, false),
                        ExplodeOptions {
                            empty_as_null: false,
                            keep_nulls: false,
                        },
                    ),
                };
            }
            Ok(lf)
        })
    }

    /// (key, count) of `key` over every file, merged, in no order.
    fn grouped<K: std::hash::Hash + Eq>(
        &self,
        key: Expr,
        what: &str,
        read: impl Fn(&AnyValue<'_>) -> K,
    ) -> Result<std::collections::HashMap<K, u64>> {
        let mut merged = std::collections::HashMap::new();
        for lf in self.each() {
            let df = lf?
                .select([key.clone().alias("v")])
                .group_by([col("v")])
                .agg([len().alias("n")])
                .run()
                .map_err(polars_err(what))?;
            let (v, n) = (
                df.column("v").map_err(polars_err(what))?,
                df.column("n").map_err(polars_err(what))?,
            );
            for i in 0..df.height() {
                let k = read(&v.get(i).map_err(polars_err(what))?);
                let c = n
                    .get(i)
                    .map_err(polars_err(what))?
                    .extract::<u64>()
                    .unwrap_or(0);
                *merged.entry(k).or_insert(0) += c;
            }
        }
        Ok(merged)
    }
}

fn rows(parts: Parts, what: &str) -> Result<u64> {
    let mut total = 0;
    for lf in parts.each() {
        let df = lf?
            .select([len().alias("n")])
            .run()
            .map_err(polars_err(what))?;
        total += scalar_u64(&df, "n");
    }
    Ok(total)
}

/// (value, count) of column `column`, most frequent first (ties by value),
/// at most `top`; values as `T` (`String` or `u32`).
fn counts_by<T: FromAny>(
    parts: Parts,
    column: Expr,
    top: Option<u32>,
    what: &str,
) -> Result<Vec<(T, u64)>> {
    let merged = parts.grouped(column, what, T::from_any)?;
    let mut out: Vec<(Option<T>, u64)> = merged
        .into_iter()
        .filter(|(v, _)| v.is_some() || T::KEEP_NULL)
        .collect();
    // Most frequent first; ties by value, nulls last.
    out.sort_by(|a, b| {
        b.1.cmp(&a.1).then_with(|| match (&a.0, &b.0) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        })
    });
    if let Some(top) = top {
        out.truncate(top as usize);
    }
    Ok(out
        .into_iter()
        .map(|(v, n)| (v.unwrap_or_else(T::null), n))
        .collect())
}

/// A group key read back from Polars.
trait FromAny: Sized + Ord + std::hash::Hash {
    /// Whether a null key is kept (as [`FromAny::null`]).
    const KEEP_NULL: bool;
    fn from_any(v: &AnyValue<'_>) -> Option<Self>;
    fn null() -> Self;
}

impl FromAny for String {
    const KEEP_NULL: bool = true;
    fn from_any(v: &AnyValue<'_>) -> Option<Self> {
        match v {
            AnyValue::Null => None,
            AnyValue::String(s) => Some((*s).to_string()),
            AnyValue::StringOwned(s) => Some(s.to_string()),
            other => Some(other.to_string()),
        }
    }
    fn null() -> Self {
        "(none)".to_string()
    }
}

impl FromAny for u32 {
    const KEEP_NULL: bool = false;
    fn from_any(v: &AnyValue<'_>) -> Option<Self> {
        v.extract::<u32>()
    }
    fn null() -> Self {
        0
    }
}

/// (value, count) of column `column`, most frequent first, at most `top`.
fn top_counts(parts: Parts, column: Expr, top: u32, what: &str) -> Result<Vec<(String, u64)>> {
    counts_by(parts, column, Some(top), what)
}

/// mean, p10, p50, p90, max and n of `expr` over `lf`, from the histogram
/// of its distinct values (a streaming group-by: memory grows with the
/// distinct values, such as caption lengths or image sizes, not with the
/// rows). Quantiles interpolate linearly between the sorted values at
/// q·(n − 1), as Polars' and NumPy's `linear` method does.
fn summary(parts: Parts, expr: Expr, what: &str) -> Result<Value> {
    let merged = parts.grouped(expr.cast(DataType::Float64), what, |v| {
        v.extract::<f64>().map(f64::to_bits)
    })?;
    let mut hist: Vec<(f64, u64)> = merged
        .into_iter()
        .filter_map(|(x, n)| Some((f64::from_bits(x?), n)))
        .collect();
    hist.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n: u64 = hist.iter().map(|h| h.1).sum();
    if n == 0 {
        return Ok(json!({
            "n": 0, "mean": null, "p10": null, "p50": null, "p90": null, "max": null,
        }));
    }
    // The value at sorted position `k` (0-based).
    let at = |k: u64| -> f64 {
        let mut seen = 0;
        for &(x, c) in &hist {
            seen += c;
            if k < seen {
                return x;
            }
        }
        hist.last().map_or(f64::NAN, |h| h.0)
    };
    let quantile = |q: f64| -> f64 {
        let pos = q * (n - 1) as f64;
        let lo = pos.floor();
        let (a, b) = (at(lo as u64), at(pos.ceil() as u64));
        a + (b - a) * (pos - lo)
    };
    let sum: f64 = hist.iter().map(|&(x, c)| x * c as f64).sum();
    Ok(json!({
        "n": n,
        "mean": sum / n as f64,
        "p10": quantile(0.1),
        "p50": quantile(0.5),
        "p90": quantile(0.9),
        "max": hist.last().map(|h| h.0),
    }))
}

/// Rows and distinct values of string column `column` (hex digests such as
/// `sha256`), exactly, in passes over ranges of the values' first two hex
/// digits so that no pass holds more than about 16M distinct values (each
/// as its first 128 bits: 256 MiB).
fn distinct(parts: Parts, column: &str, rows: u64, what: &str) -> Result<(u64, u64)> {
    const PER_PASS: u64 = 16 << 20;
    let passes = rows.div_ceil(PER_PASS).next_power_of_two().min(256) as usize;
    distinct_in_passes(parts, column, passes, what)
}

/// The first 128 bits of a hex digest; other strings, two 64-bit FNV-1a
/// hashes.
fn digest_key(s: &str) -> u128 {
    if let Some(k) = s.get(..32).and_then(|h| u128::from_str_radix(h, 16).ok()) {
        return k;
    }
    let fnv = |offset: u64| {
        s.bytes().fold(offset, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    };
    (u128::from(fnv(0xcbf2_9ce4_8422_2325)) << 64) | u128::from(fnv(0x8422_2325_cbf2_9ce4))
}

/// [`distinct`] in `passes` passes (a power of two up to 256).
fn distinct_in_passes(parts: Parts, column: &str, passes: usize, what: &str) -> Result<(u64, u64)> {
    let mut total = (0, 0);
    for p in 0..passes {
        // Values whose first two hex digits, as a number, lie in [lo, hi) of
        // 0..256; the first and last passes are open-ended, so that any
        // value is counted once.
        let (lo, hi) = (p * 256 / passes, (p + 1) * 256 / passes);
        let mut f = col(column).is_not_null();
        if lo > 0 {
            f = f.and(col(column).gt_eq(lit(format!("{lo:02x}"))));
        }
        if hi < 256 {
            f = f.and(col(column).lt(lit(format!("{hi:02x}"))));
        }
        let mut seen: std::collections::HashSet<u128> = std::collections::HashSet::new();
        for lf in parts.each() {
            let df = lf?
                .filter(f.clone())
                .select([col(column)])
                .run()
                .map_err(polars_err(what))?;
            let values = df
                .column(column)
                .map_err(polars_err(what))?
                .str()
                .map_err(polars_err(what))?;
            total.0 += values.len() as u64;
            seen.extend(values.iter().flatten().map(digest_key));
        }
        total.1 += seen.len() as u64;
    }
    Ok(total)
}

/// Per-query pair counts of a table with `query_ids`: (query id, count), sorted down.
fn query_counts(parts: Parts, what: &str) -> Result<Vec<(u32, u64)>> {
    let exploded = parts.explode("query_ids");
    counts_by(exploded, col("query_ids"), None, what)
}

const HOST: &str = r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/]*@)?([^/:?#]+)";

fn manifest_counts(root: &Path, stage: Stage) -> Option<Manifest> {
    Manifest::read(root, stage).ok()
}

fn count_of(m: &Option<Manifest>, key: &str) -> u64 {
    m.as_ref()
        .and_then(|m| m.counts.get(key).copied())
        .unwrap_or(0)
}

/// Computes every figure of the dataset at `root`.
///
/// # Errors
/// [`Error::BadInput`] if the dataset holds no stage output; Polars' errors
/// as [`Error::Usage`] naming the figure.
pub fn report(root: &Path) -> Result<Report> {
    let tables = Tables::open(root)?;
    let scan = |name: &str| tables.part_files(name).map(|p| p.map(Parts::files));
    let matched_m = manifest_counts(root, Stage::Matched);
    let balanced_m = manifest_counts(root, Stage::Balanced);

    // The funnel.
    let mut funnel: Vec<(String, u64)> = Vec::new();
    let candidates = match scan("candidates")? {
        Some(lf) => Some(rows(lf, "candidates")?),
        None => None,
    };
    if let Some(n) = candidates {
        funnel.push(("candidates".into(), n));
        if matched_m.is_some() {
            let dropped: u64 = matched_m
                .as_ref()
                .map(|m| {
                    m.counts
                        .iter()
                        .filter(|(k, _)| k.starts_with("dropped_") || *k == "duplicates_in_part")
                        .map(|(_, v)| v)
                        .sum()
                })
                .unwrap_or(0);
            funnel.push(("after text filters".into(), n.saturating_sub(dropped)));
        }
    }
    for (name, label) in [("matched", "matched"), ("balanced", "kept by balancing")] {
        if let Some(lf) = scan(name)? {
            funnel.push((label.into(), rows(lf, name)?));
        }
    }
    let mut downloads = Value::Null;
    if let Some(lf) = scan("shards")? {
        let by_status = top_counts(lf.clone(), col("status"), 10, "download statuses")?;
        let reasons = top_counts(
            lf.clone().filter(col("status").neq(lit("success"))),
            col("error_reason"),
            50,
            "failure reasons",
        )?;
        // The failures under reasons that wrap another (robots_unreachable:
        // connect, dns, timeout, http_5xx...).
        let causes = top_counts(
            lf.clone()
                .filter(col("error_cause").is_not_null())
                .filter(col("error_reason").is_not_null()),
            col("error_reason") + lit(": ") + col("error_cause"),
            50,
            "failure causes",
        )?;
        let total: u64 = by_status.iter().map(|s| s.1).sum();
        let stored = by_status
            .iter()
            .find(|s| s.0 == "success")
            .map_or(0, |s| s.1);
        funnel.push(("downloaded".into(), total));
        funnel.push(("stored".into(), stored));
        downloads = json!({
            "samples": total,
            "by_status": by_status.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "failures_by_reason": reasons.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "failures_by_cause": causes.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        });
    }
    let first = funnel.first().map_or(0, |f| f.1);
    let funnel_json: Vec<Value> = funnel
        .iter()
        .enumerate()
        .map(|(i, (stage, n))| {
            let prev = if i == 0 { *n } else { funnel[i - 1].1 };
            json!({
                "stage": stage,
                "rows": n,
                "of_previous": if prev > 0 { *n as f64 / prev as f64 } else { 0.0 },
                "of_first": if first > 0 { *n as f64 / first as f64 } else { 0.0 },
            })
        })
        .collect();

    // Balance.
    let query_texts: Vec<String> = match tables.scan("queries")? {
        Some(lf) => {
            let df = lf
                .select([col("query")])
                .run()
                .map_err(polars_err("query texts"))?;
            df.column("query")
                .map_err(polars_err("query texts"))?
                .str()
                .map_err(polars_err("query texts"))?
                .iter()
                .map(|q| q.unwrap_or("").to_string())
                .collect()
        }
        None => Vec::new(),
    };
    let queries_total = tables
        .names()
        .contains(&"queries")
        .then_some(query_texts.len() as u64);
    let t = balanced_m
        .as_ref()
        .and_then(|m| m.params.get("t").and_then(Value::as_u64));
    let before = match scan("matched")? {
        Some(lf) => query_counts(lf, "query counts before balancing")?,
        None => Vec::new(),
    };
    let after = match scan("balanced")? {
        Some(lf) => query_counts(lf, "query counts after balancing")?,
        None => Vec::new(),
    };
    let side = |counts: &[(u32, u64)]| -> Value {
        let total: u64 = counts.iter().map(|c| c.1).sum();
        let head: u64 = t.map_or(0, |t| counts.iter().filter(|c| c.1 >= t).map(|c| c.1).sum());
        json!({
            "queries_matched": counts.len(),
            "queries_at_or_over_t": t.map(|t| counts.iter().filter(|c| c.1 >= t).count()),
            "matches": total,
            "head_share": if total > 0 && t.is_some() { Some(head as f64 / total as f64) } else { None },
            "tail_share": if total > 0 && t.is_some() { Some(1.0 - head as f64 / total as f64) } else { None },
            "coverage_of_query_list": queries_total.filter(|&n| n > 0).map(|n| counts.len() as f64 / n as f64),
        })
    };
    let after_of: std::collections::HashMap<u32, u64> = after.iter().copied().collect();
    let top: Vec<Value> = before
        .iter()
        .take(20)
        .map(|(q, n)| {
            json!({
                "query_id": q,
                "query": query_texts.get(*q as usize),
                "before": n,
                "after": after_of.get(q).copied().unwrap_or(0),
            })
        })
        .collect();
    let balance = json!({
        "t": t,
        "queries_in_list": queries_total,
        "before": side(&before),
        "after": side(&after),
        "top_queries": top,
    });

    // Content.
    let mut content = serde_json::Map::new();
    let mut caption_hist = Vec::new();
    if let Some(lf) = scan("candidates")? {
        content.insert(
            "caption_chars_candidates".into(),
            summary(lf.clone(), col("text").str().len_chars(), "caption lengths")?,
        );
        let mut hist: Vec<(u64, u64)> = lf
            .grouped(
                col("text").str().len_chars() / lit(10u32) * lit(10u32),
                "caption length histogram",
                |v| v.extract::<u64>(),
            )?
            .into_iter()
            .filter_map(|(b, n)| Some((b?, n)))
            .collect();
        hist.sort_unstable();
        caption_hist = hist;
        let pairs = |v: Vec<(String, u64)>| {
            v.into_iter()
                .map(|(k, n)| json!({"value": k, "count": n}))
                .collect::<Vec<_>>()
        };
        content.insert(
            "text_sources".into(),
            json!(pairs(top_counts(
                lf.clone(),
                col("text_source"),
                20,
                "text sources"
            )?)),
        );
        content.insert(
            "top_image_hosts".into(),
            json!(pairs(top_counts(
                lf.clone(),
                col("url").str().extract(lit(HOST), 1),
                10,
                "image hosts"
            )?)),
        );
        content.insert(
            "top_page_hosts".into(),
            json!(pairs(top_counts(
                lf,
                col("page_url").str().extract(lit(HOST), 1),
                10,
                "page hosts"
            )?)),
        );
    }
    if let Some(lf) = scan("shards")? {
        let ok = lf.filter(col("status").eq(lit("success")));
        content.insert(
            "caption_chars_stored".into(),
            summary(
                ok.clone(),
                col("text").str().len_chars(),
                "stored caption lengths",
            )?,
        );
        for (key, c) in [
            ("original_width", "original_width"),
            ("original_height", "original_height"),
            ("stored_width", "width"),
            ("stored_height", "height"),
        ] {
            content.insert(key.into(), summary(ok.clone(), col(c), key)?);
        }
        content.insert(
            "aspect_ratio_original".into(),
            summary(
                ok.clone(),
                col("original_width").cast(DataType::Float64)
                    / col("original_height").cast(DataType::Float64),
                "aspect ratios",
            )?,
        );
        let stored = rows(ok.clone(), "stored images")?;
        let (n, u) = distinct(ok, "sha256", stored, "identical images")?;
        content.insert(
            "identical_images".into(),
            json!({ "stored": n, "distinct_sha256": u, "rate": if n > 0 { (n - u) as f64 / n as f64 } else { 0.0 } }),
        );
    }
    let cands = count_of(&matched_m, "candidates");
    content.insert(
        "duplicate_pairs".into(),
        json!({
            "in_part": count_of(&matched_m, "duplicates_in_part"),
            "in_part_rate": if cands > 0 { count_of(&matched_m, "duplicates_in_part") as f64 / cands as f64 } else { 0.0 },
            "across_parts": count_of(&balanced_m, "duplicates"),
            "across_parts_rate": if count_of(&balanced_m, "pairs") > 0 { count_of(&balanced_m, "duplicates") as f64 / count_of(&balanced_m, "pairs") as f64 } else { 0.0 },
        }),
    );

    let json = json!({
        "dataset": root.display().to_string(),
        "tables": tables.names(),
        "funnel": funnel_json,
        "downloads": downloads,
        "balance": balance,
        "content": Value::Object(content),
    });
    Ok(Report {
        json,
        before: before.iter().map(|c| c.1).collect(),
        after: after.iter().map(|c| c.1).collect(),
        funnel,
        caption_hist,
    })
}

impl Report {
    /// The report as plain text tables for a terminal.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let j = &self.json;
        let _ = writeln!(s, "Funnel");
        let _ = writeln!(
            s,
            "  {:<22} {:>12} {:>9} {:>9}",
            "stage", "rows", "of prev", "of first"
        );
        for f in j["funnel"].as_array().into_iter().flatten() {
            let _ = writeln!(
                s,
                "  {:<22} {:>12} {:>8.1}% {:>8.1}%",
                f["stage"].as_str().unwrap_or(""),
                f["rows"],
                f["of_previous"].as_f64().unwrap_or(0.0) * 100.0,
                f["of_first"].as_f64().unwrap_or(0.0) * 100.0
            );
        }
        if let Some(r) = j["downloads"]["failures_by_reason"].as_object()
            && !r.is_empty()
        {
            let _ = writeln!(s, "\nDownload failures by reason");
            for (k, v) in r {
                let _ = writeln!(s, "  {k:<22} {v:>12}");
            }
        }
        if let Some(r) = j["downloads"]["failures_by_cause"].as_object()
            && !r.is_empty()
        {
            let _ = writeln!(s, "\nDownload failures by underlying cause");
            for (k, v) in r {
                let _ = writeln!(s, "  {k:<32} {v:>12}");
            }
        }
        let b = &j["balance"];
        let _ = writeln!(s, "\nBalance (t = {})", b["t"]);
        let _ = writeln!(s, "  {:<28} {:>12} {:>12}", "", "before", "after");
        for (label, key) in [
            ("queries matched", "queries_matched"),
            ("queries at or over t", "queries_at_or_over_t"),
            ("pairs x queries", "matches"),
            ("head share (>= t)", "head_share"),
            ("coverage of query list", "coverage_of_query_list"),
        ] {
            let fmt = |v: &Value| match v {
                Value::Number(n) if n.is_f64() => format!("{:.3}", n.as_f64().unwrap_or(0.0)),
                Value::Null => "-".into(),
                other => other.to_string(),
            };
            let _ = writeln!(
                s,
                "  {label:<28} {:>12} {:>12}",
                fmt(&b["before"][key]),
                fmt(&b["after"][key])
            );
        }
        let _ = writeln!(s, "\nTop queries");
        for q in b["top_queries"].as_array().into_iter().flatten().take(10) {
            let _ = writeln!(
                s,
                "  {:<28} {:>12} {:>12}",
                q["query"].as_str().unwrap_or("?"),
                q["before"],
                q["after"]
            );
        }
        let c = &j["content"];
        if let Some(x) = c.get("caption_chars_candidates") {
            let _ = writeln!(
                s,
                "\nCaptions (characters): mean {:.1}, median {}, p90 {}, max {}",
                x["mean"].as_f64().unwrap_or(0.0),
                x["p50"],
                x["p90"],
                x["max"]
            );
        }
        for key in ["text_sources", "top_image_hosts", "top_page_hosts"] {
            if let Some(list) = c.get(key).and_then(Value::as_array) {
                let _ = writeln!(s, "\n{}", key.replace('_', " "));
                for e in list.iter().take(10) {
                    let _ = writeln!(
                        s,
                        "  {:<40} {:>10}",
                        e["value"].as_str().unwrap_or(""),
                        e["count"]
                    );
                }
            }
        }
        s
    }
}

/// Writes `stats.json`, the PNG plots and `report.html` into `out`.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_report(report: &Report, out: &Path) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(out).at(out)?;
    let json_path = out.join("stats.json");
    let mut bytes = serde_json::to_vec_pretty(&report.json).expect("serialisable");
    bytes.push(b'\n');
    std::fs::write(&json_path, bytes).at(&json_path)?;
    let pngs = vec![
        (
            "rank_count.png",
            plots::rank_count(&report.before, &report.after),
        ),
        ("funnel.png", plots::funnel(&report.funnel)),
        (
            "caption_lengths.png",
            plots::histogram(&report.caption_hist),
        ),
    ];
    let mut written = vec![json_path];
    let mut html_imgs = String::new();
    for (name, png) in pngs {
        let png = png.map_err(|e| Error::Usage(format!("drawing {name}: {e}")))?;
        let path = out.join(name);
        std::fs::write(&path, &png).at(&path)?;
        let _ = writeln!(
            html_imgs,
            "<figure><img alt=\"{name}\" src=\"data:image/png;base64,{}\"><figcaption>{name}</figcaption></figure>",
            plots::base64(&png)
        );
        written.push(path);
    }
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>wit stats: {title}</title>\n<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}pre{{background:#f4f4f4;padding:1em;overflow:auto}}figure{{display:inline-block;margin:1em}}img{{border:1px solid #ccc}}</style></head>\n<body>\n<h1>wit stats</h1>\n<p>{title}</p>\n{html_imgs}<h2>Tables</h2>\n<pre>{tables}</pre>\n<h2>Every figure</h2>\n<pre>{json}</pre>\n</body></html>\n",
        title = html_escape(report.json["dataset"].as_str().unwrap_or("")),
        tables = html_escape(&report.text()),
        json = html_escape(&serde_json::to_string_pretty(&report.json).expect("serialisable")),
    );
    let html_path = out.join("report.html");
    std::fs::write(&html_path, html).at(&html_path)?;
    written.push(html_path);
    Ok(written)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_from_the_histogram_equals_polars_on_the_rows() {
        let xs: Vec<f64> = (0..1001u64).map(|i| ((i * 7919) % 97) as f64).collect();
        let lf = df!("x" => xs.clone()).unwrap().lazy();
        let parts = Parts::frames(vec![lf.clone().slice(0, 500), lf.clone().slice(500, 501)]);
        let got = summary(parts, col("x"), "test").unwrap();
        let want = lf
            .select([
                col("x").mean().alias("mean"),
                col("x")
                    .quantile(lit(0.1), QuantileMethod::Linear)
                    .alias("p10"),
                col("x")
                    .quantile(lit(0.5), QuantileMethod::Linear)
                    .alias("p50"),
                col("x")
                    .quantile(lit(0.9), QuantileMethod::Linear)
                    .alias("p90"),
                col("x").max().alias("max"),
            ])
            .collect()
            .unwrap();
        for k in ["mean", "p10", "p50", "p90", "max"] {
            let w = want
                .column(k)
                .unwrap()
                .get(0)
                .unwrap()
                .extract::<f64>()
                .unwrap();
            assert!(
                (got[k].as_f64().unwrap() - w).abs() < 1e-9,
                "{k}: {got} vs {w}"
            );
        }
        assert_eq!(got["n"], 1001);
    }

    #[test]
    fn distinct_counts_agree_in_any_number_of_passes() {
        let values: Vec<String> = (0..5000u64)
            .map(|i| format!("{:016x}", (i % 3001).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        let lf = df!("sha256" => values).unwrap().lazy();
        let parts = Parts::frames(vec![lf.clone().slice(0, 2000), lf.slice(2000, 3000)]);
        for passes in [1, 2, 16, 256] {
            let got = distinct_in_passes(parts.clone(), "sha256", passes, "test").unwrap();
            assert_eq!(got, (5000, 3001), "{passes} passes");
        }
    }
}
