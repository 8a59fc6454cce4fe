//! `wit extract`: web archives in, `candidates/` out, one part per archive file.
//!
//! WARC `response` records holding HTML are decoded and run through the
//! extractor ([`crate::html`]); WAT `metadata` records give their
//! `HTML-Metadata.Links` entries with path `IMG@/src` and their `alt` text.
//! Damaged members and records are counted and skipped.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;
use std::time::UNIX_EPOCH;

use wit_contract::layout::part_file_name;
use wit_contract::records::{Candidate, candidates_to_batch};
use wit_contract::store;
use wit_contract::{
    Counts, Dataset, Error, Result, RunOptions, Stage, StageSpec, Summary, pq, run_stage, schema,
};

use crate::html::{clean_text, extract_images_from_body};
use crate::warc::{Record, parse_http, read_records_from};

/// Runs the extract stage over `archives` (part `i` reads `archives[i]`).
///
/// # Errors
/// [`Error::BadInput`] if an archive is missing; otherwise as [`run_stage`].
pub fn run_extract(
    dataset: &Dataset,
    archives: &[String],
    opts: &RunOptions<'_>,
) -> Result<Summary> {
    if archives.is_empty() {
        return Err(Error::Usage("give at least one archive file".into()));
    }
    // A local archive is identified by its path and size (a file replaced in
    // place is a new input); one at a URL by its URL alone, since asking a
    // store for the sizes of a 100,000-file listing from every task costs
    // more than it tells (Common Crawl's archives never change).
    let mut files = Vec::with_capacity(archives.len());
    for a in archives {
        let size = if store::is_url(a) {
            serde_json::Value::Null
        } else {
            store::input_size(a)?.into()
        };
        files.push(serde_json::json!([a, size]));
    }
    let spec = StageSpec {
        stage: Stage::Candidates,
        dir: dataset.stage_dir(Stage::Candidates),
        parts: archives.len() as u32,
        inputs: archives.to_vec(),
        params: serde_json::json!({ "source": "archives", "archives": files }),
    };
    run_stage(&spec, opts, |ctx| {
        let archive = &archives[ctx.part() as usize];
        let (rows, counts) = extract_archive_at(archive)?;
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
    extract_archive_at(&path.to_string_lossy())
}

/// [`extract_archive`] of a path or a URL (`s3://`, `https://`, ...): a
/// remote archive is streamed, never held whole in memory or on disk, and a
/// stream that breaks mid-file resumes with a ranged read.
///
/// # Errors
/// [`Error::BadInput`] if the archive is missing; [`Error::Io`] if it cannot be read.
pub fn extract_archive_at(archive: &str) -> Result<(Vec<Candidate>, Counts)> {
    let origin = archive
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(archive)
        .to_string();
    let mut rows = Vec::new();
    let mut counts = Counts::new();
    let mut add = |k: &str, n: u64| *counts.entry(k.to_string()).or_default() += n;
    let source = store::open_input(archive)?;
    let errors = read_records_from(source, Path::new(archive), |record| {
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

/// The archives a Common Crawl paths listing names (`warc.paths.gz`,
/// `wat.paths.gz`: one path a line, relative to `base_url`, gzipped or not),
/// as URLs. `listing` is a path or a URL.
///
/// # Errors
/// [`Error::BadInput`] naming the listing (and the line) if it cannot be
/// read, is not text, or a line is not a path.
pub fn read_paths_listing(listing: &str, base_url: &str) -> Result<Vec<String>> {
    let mut bytes = Vec::new();
    store::open_input(listing)?
        .read_to_end(&mut bytes)
        .map_err(|e| Error::bad_input(listing, format!("cannot read: {e}")))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::bad_input(listing, format!("not a readable gzip file: {e}")))?;
        bytes = out;
    }
    let lines = wit_contract::list_file::parse(&bytes)
        .map_err(|m| Error::bad_input(listing, format!("lists no archives: it {m}")))?;
    let base = format!("{}/", base_url.trim_end_matches('/'));
    let mut out = Vec::new();
    for (n, line) in lines {
        if line.chars().any(|c| c.is_whitespace() || c.is_control()) || line.contains("://") {
            return Err(Error::bad_input(
                listing,
                format!(
                    "line {n}: `{}` is not a path relative to --base-url",
                    line.chars().take(80).collect::<String>()
                ),
            ));
        }
        out.push(format!("{base}{}", line.trim_start_matches('/')));
    }
    Ok(out)
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
    if let Some(why) = &http.undecodable {
        add("undecodable_body", 1);
        add(&format!("undecodable_body_{}", why.key()), 1);
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
    if !may_hold_images(&http.body) {
        return Vec::new();
    }
    let page = extract_images_from_body(
        &page_url,
        &http.body,
        content_type.as_deref(),
        http.header("Content-Language"),
    );
    for (name, n) in page.image_counts() {
        add(name, n);
    }
    add("texts_boilerplate", page.boilerplate);
    add("pairs_repeated", page.repeats);
    page.candidates
}

/// Whether an HTML body may hold an `<img>`: false only when no `<im`
/// (any case; the parser reads `<image>` as `<img>`) occurs in its bytes,
/// so decoding and parsing it could find no image. Every encoding a page
/// can declare writes markup in ASCII bytes, except UTF-16, whose pages
/// (a byte-order mark) are always parsed.
fn may_hold_images(body: &[u8]) -> bool {
    if body.starts_with(&[0xff, 0xfe]) || body.starts_with(&[0xfe, 0xff]) {
        return true;
    }
    memchr::memchr_iter(b'<', body).any(|i| {
        body.get(i + 1..i + 3)
            .is_some_and(|t| t.eq_ignore_ascii_case(b"im"))
    })
}

/// The parts of a WAT `metadata` record (Common Crawl's layout) the
/// extractor reads; the rest of the JSON is skipped unparsed. Strings are
/// borrowed from the record where they hold no escapes.
#[derive(serde::Deserialize)]
struct Wat<'a> {
    #[serde(rename = "Envelope", borrow)]
    envelope: WatEnvelope<'a>,
}

#[derive(serde::Deserialize)]
struct WatEnvelope<'a> {
    #[serde(rename = "WARC-Header-Metadata", borrow, default)]
    header: WatHeader<'a>,
    #[serde(rename = "Payload-Metadata", borrow, default)]
    payload: WatPayload<'a>,
}

#[derive(serde::Deserialize, Default)]
struct WatHeader<'a> {
    #[serde(rename = "WARC-Target-URI", borrow)]
    target_uri: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize, Default)]
struct WatPayload<'a> {
    #[serde(rename = "HTTP-Response-Metadata", borrow, default)]
    response: WatResponse<'a>,
}

#[derive(serde::Deserialize, Default)]
struct WatResponse<'a> {
    #[serde(rename = "HTML-Metadata", borrow)]
    html: Option<WatHtml<'a>>,
}

#[derive(serde::Deserialize)]
struct WatHtml<'a> {
    #[serde(rename = "Head", borrow, default)]
    head: WatHead<'a>,
    #[serde(rename = "Links", borrow, default)]
    links: Vec<WatLink<'a>>,
}

#[derive(serde::Deserialize, Default)]
struct WatHead<'a> {
    #[serde(rename = "Base", borrow)]
    base: Option<Cow<'a, str>>,
    #[serde(rename = "Title", borrow)]
    title: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct WatLink<'a> {
    #[serde(borrow)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow)]
    url: Option<Cow<'a, str>>,
    #[serde(borrow)]
    alt: Option<Cow<'a, str>>,
    #[serde(borrow)]
    title: Option<Cow<'a, str>>,
}

fn from_wat(record: &Record, add: &mut impl FnMut(&str, u64)) -> Vec<Candidate> {
    let json = match serde_json::from_slice::<Wat<'_>>(&record.block) {
        Ok(json) => json,
        // A metadata record of JSON that is not a WAT record as Common
        // Crawl writes them; other metadata records are not JSON.
        Err(_) if record.block.trim_ascii_start().starts_with(b"{") => {
            add("wat_unreadable", 1);
            return Vec::new();
        }
        Err(_) => return Vec::new(),
    };
    let envelope = json.envelope;
    let Some(page_url) = envelope.header.target_uri.as_deref() else {
        return Vec::new();
    };
    let Some(html) = envelope.payload.response.html else {
        return Vec::new();
    };
    add("wat_pages", 1);
    let Ok(page) = url::Url::parse(page_url) else {
        return Vec::new();
    };
    let base = html
        .head
        .base
        .as_deref()
        .and_then(|b| page.join(b).ok())
        .unwrap_or_else(|| page.clone());
    let title = html
        .head
        .title
        .as_deref()
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|t| !t.is_empty());
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for link in &html.links {
        if link.path.as_deref() != Some("IMG@/src") {
            continue;
        }
        add("images", 1);
        let Some(url) = link.url.as_deref().and_then(|u| base.join(u.trim()).ok()) else {
            add("images_no_url", 1);
            continue;
        };
        if !matches!(url.scheme(), "http" | "https") {
            add("images_no_url", 1);
            continue;
        }
        for (source, raw) in [("alt", &link.alt), ("title", &link.title)] {
            let Some(raw) = raw.as_deref() else {
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
            c.page_title = title.clone();
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::may_hold_images;

    #[test]
    fn only_bodies_without_an_img_tag_are_passed_over() {
        assert!(may_hold_images(b"<p>x</p><IMG SRC=a.jpg>"));
        assert!(may_hold_images(b"<image src=a.jpg>"));
        assert!(!may_hold_images(
            b"<p>an image of <b>a cat</b></p> <i>m</i> <"
        ));
        // UTF-16 writes `<img` in other bytes: always parsed.
        assert!(may_hold_images(&[0xff, 0xfe, b'<', 0]));
    }
}
