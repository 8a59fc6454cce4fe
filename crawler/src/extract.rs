//! `wit extract`: web archives in, `candidates/` out, one part per archive file.
//!
//! WARC `response` records holding HTML are decoded and run through the
//! extractor ([`crate::html`]); WAT `metadata` records give their
//! `HTML-Metadata.Links` entries with path `IMG@/src` and their `alt` text.
//! Damaged members and records are counted and skipped.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use wit_contract::layout::part_file_name;
use wit_contract::records::{Candidate, candidates_to_batch};
use wit_contract::{
    Counts, Dataset, Error, Result, RunOptions, Stage, StageSpec, Summary, pq, run_stage, schema,
};

use crate::html::{clean_text, decode_html, extract};
use crate::warc::{Record, parse_http, read_records};

/// Runs the extract stage over `archives` (part `i` reads `archives[i]`).
///
/// # Errors
/// [`Error::BadInput`] if an archive is missing; otherwise as [`run_stage`].
pub fn run_extract(
    dataset: &Dataset,
    archives: &[PathBuf],
    opts: &RunOptions<'_>,
) -> Result<Summary> {
    let mut files = Vec::with_capacity(archives.len());
    for a in archives {
        let meta =
            std::fs::metadata(a).map_err(|e| Error::bad_input(a, format!("cannot read: {e}")))?;
        files.push(serde_json::json!([a.display().to_string(), meta.len()]));
    }
    if archives.is_empty() {
        return Err(Error::Usage("give at least one archive file".into()));
    }
    let spec = StageSpec {
        stage: Stage::Candidates,
        dir: dataset.stage_dir(Stage::Candidates),
        parts: archives.len() as u32,
        inputs: archives.iter().map(|a| a.display().to_string()).collect(),
        params: serde_json::json!({ "source": "archives", "archives": files }),
    };
    run_stage(&spec, opts, |ctx| {
        let archive = &archives[ctx.part() as usize];
        let (rows, counts) = extract_archive(archive)?;
        let batch = candidates_to_batch(&rows)?;
        pq::write_file(
            &ctx.output(&part_file_name(ctx.part())),
            schema::candidates(),
            &[batch],
        )?;
        Ok(counts)
    })
}

/// Reads one archive into candidates, with its counters.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read at all.
pub fn extract_archive(path: &Path) -> Result<(Vec<Candidate>, Counts)> {
    let origin = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut rows = Vec::new();
    let mut counts = Counts::new();
    let mut add = |k: &str, n: u64| *counts.entry(k.to_string()).or_default() += n;
    let errors = read_records(path, |record| {
        add("records", 1);
        let kind = record
            .header("WARC-Type")
            .unwrap_or("")
            .to_ascii_lowercase();
        let found = match kind.as_str() {
            "response" => from_response(&record, &mut add),
            "metadata" => from_wat(&record, &mut add),
            _ => Vec::new(),
        };
        let fetch_time = record
            .header("WARC-Date")
            .and_then(|d| humantime::parse_rfc3339_weak(d).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64);
        for mut c in found {
            add(&format!("candidates_{}", c.text_source), 1);
            c.origin = origin.clone();
            c.origin_offset = Some(record.offset);
            c.fetch_time_ms = fetch_time;
            rows.push(c);
        }
    })?;
    add("bad_gzip_members", errors.bad_members);
    add("bad_records", errors.bad_records);
    add("candidates", rows.len() as u64);
    counts.retain(|_, v| *v > 0);
    counts.entry("candidates".into()).or_insert(0);
    Ok((rows, counts))
}

fn target_uri(record: &Record) -> Option<String> {
    let uri = record
        .header("WARC-Target-URI")?
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    (!uri.is_empty()).then(|| uri.to_string())
}

fn from_response(record: &Record, add: &mut impl FnMut(&str, u64)) -> Vec<Candidate> {
    add("responses", 1);
    let Some(page_url) = target_uri(record) else {
        add("no_target_uri", 1);
        return Vec::new();
    };
    let Some(http) = parse_http(&record.block) else {
        add("not_http", 1);
        return Vec::new();
    };
    if !(200..300).contains(&http.status) {
        add("http_not_ok", 1);
        return Vec::new();
    }
    let content_type = http.header("Content-Type").map(str::to_string);
    let is_html = match &content_type {
        Some(ct) => {
            let ct = ct.to_ascii_lowercase();
            ct.contains("text/html") || ct.contains("application/xhtml")
        }
        None => {
            let head = String::from_utf8_lossy(&http.body[..http.body.len().min(512)])
                .to_ascii_lowercase();
            head.contains("<html") || head.contains("<!doctype html")
        }
    };
    if !is_html {
        add("not_html", 1);
        return Vec::new();
    }
    add("html_pages", 1);
    let (text, _, _) = decode_html(&http.body, content_type.as_deref());
    let page = extract(&page_url, &text, http.header("Content-Language"));
    add("images", page.images);
    add("images_tiny", page.tiny);
    add("images_no_url", page.no_url);
    add("texts_boilerplate", page.boilerplate);
    add("pairs_repeated", page.repeats);
    page.candidates
}

fn from_wat(record: &Record, add: &mut impl FnMut(&str, u64)) -> Vec<Candidate> {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&record.block) else {
        return Vec::new();
    };
    let envelope = &json["Envelope"];
    let Some(page_url) = envelope["WARC-Header-Metadata"]["WARC-Target-URI"].as_str() else {
        return Vec::new();
    };
    let html = &envelope["Payload-Metadata"]["HTTP-Response-Metadata"]["HTML-Metadata"];
    if html.is_null() {
        return Vec::new();
    }
    add("wat_pages", 1);
    let Ok(page) = url::Url::parse(page_url) else {
        return Vec::new();
    };
    let base = html["Head"]["Base"]
        .as_str()
        .and_then(|b| page.join(b).ok())
        .unwrap_or_else(|| page.clone());
    let title = html["Head"]["Title"]
        .as_str()
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "));
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for link in html["Links"].as_array().into_iter().flatten() {
        if link["path"].as_str() != Some("IMG@/src") {
            continue;
        }
        add("images", 1);
        let Some(url) = link["url"].as_str().and_then(|u| base.join(u.trim()).ok()) else {
            add("images_no_url", 1);
            continue;
        };
        if !matches!(url.scheme(), "http" | "https") {
            add("images_no_url", 1);
            continue;
        }
        for source in ["alt", "title"] {
            let Some(raw) = link[source].as_str() else {
                continue;
            };
            let Some(text) = clean_text(raw) else {
                add("texts_boilerplate", 1);
                continue;
            };
            if !seen.insert((url.to_string(), text.clone())) {
                add("pairs_repeated", 1);
                continue;
            }
            let mut c = Candidate::new(url.to_string(), text, source, page_url);
            c.page_title = title.clone().filter(|t| !t.is_empty());
            out.push(c);
        }
    }
    out
}
