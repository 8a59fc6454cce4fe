//! `wit extract`: web archives in, `candidates/` out, one part per archive file.
//!
//! WARC `response` records holding HTML are decoded and run through the
//! extractor ([`crate::html`]); WAT `metadata` records give their
//! `HTML-Metadata.Links` entries with path `IMG@/src` and their `alt` text.
//! Damaged members and records are counted and skipped.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use wit_contract::layout::part_file_name;
use wit_contract::records::{Candidate, candidates_to_batch};
use wit_contract::store;
use wit_contract::{
    Counts, Dataset, Error, Result, RunOptions, Stage, StageSpec, Summary, pq, run_stage, schema,
};

use crate::html::{clean_text, extract_images_from_body, resolve_url};
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
        // A record without a readable date keeps its candidates, with a
        // null fetch time, counted.
        let fetch_time = match record.header("WARC-Date") {
            None => {
                add("warc_date_missing", 1);
                None
            }
            Some(d) => {
                let ms = crate::warc::warc_date_ms(d);
                if ms.is_none() {
                    add("warc_date_unreadable", 1);
                }
                ms
            }
        };
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
    #[serde(rename = "Headers", default)]
    headers: std::collections::BTreeMap<String, serde_json::Value>,
    #[serde(rename = "HTML-Metadata", borrow)]
    html: Option<WatHtml<'a>>,
}

impl WatResponse<'_> {
    /// The page's encoding, as far as a WAT record tells it: the charset of
    /// the HTTP `Content-Type`, else of a `<meta>` (`charset`, or
    /// `http-equiv` `Content-Type`); UTF-8 where neither says (the WAT
    /// holds no bytes to sniff).
    fn encoding(&self) -> &'static encoding_rs::Encoding {
        let header = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .and_then(|(_, v)| v.as_str())
            .and_then(crate::html::content_type_encoding);
        let meta = || {
            self.html.as_ref()?.head.metas.iter().find_map(|m| {
                let get = |key: &str| {
                    m.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(key))
                        .and_then(|(_, v)| v.as_str())
                };
                if let Some(label) = get("charset") {
                    return encoding_rs::Encoding::for_label(label.trim().as_bytes());
                }
                get("http-equiv")
                    .filter(|h| h.trim().eq_ignore_ascii_case("content-type"))
                    .and(get("content"))
                    .and_then(crate::html::content_type_encoding)
            })
        };
        header.or_else(meta).unwrap_or(encoding_rs::UTF_8)
    }
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
    #[serde(rename = "Metas", default)]
    metas: Vec<std::collections::BTreeMap<String, serde_json::Value>>,
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
    let encoding = envelope.payload.response.encoding();
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
        .and_then(|b| resolve_url(&page, b, encoding))
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
        let Some(url) = link
            .url
            .as_deref()
            .and_then(|u| resolve_url(&base, u.trim(), encoding))
        else {
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
    use super::*;

    fn wat_record(headers: &str, metas: &str) -> Record {
        let json = format!(
            r#"{{"Envelope":{{"WARC-Header-Metadata":{{"WARC-Target-URI":"http://example.org/p/"}},
            "Payload-Metadata":{{"HTTP-Response-Metadata":{{"Headers":{{{headers}}},
            "HTML-Metadata":{{"Head":{{"Title":"t","Metas":[{metas}]}},
            "Links":[{{"path":"IMG@/src","url":"/i.jpg?q=caf\u00e9&k=\u65e5","alt":"A cup of coffee"}}]}}}}}}}}}}"#
        );
        Record {
            offset: 0,
            headers: vec![("WARC-Type".into(), "metadata".into())],
            block: json.into_bytes(),
        }
    }

    #[test]
    fn a_wat_links_query_is_encoded_in_the_pages_declared_encoding() {
        let mut counts = Counts::new();
        let mut add = |k: &str, n: u64| *counts.entry(k.to_string()).or_default() += n;
        let cases = [
            (
                r#""Content-Type":"text/html; charset=windows-1252""#,
                "",
                "caf%E9&k=%26%2326085%3B",
            ),
            (
                "",
                r#"{"http-equiv":"Content-Type","content":"text/html; charset=iso-8859-1"}"#,
                "caf%E9&k=%26%2326085%3B",
            ),
            ("", r#"{"charset":"shift_jis"}"#, "caf%26%23233%3B&k=%93%FA"),
            (r#""Content-Type":"text/html""#, "", "caf%C3%A9&k=%E6%97%A5"),
        ];
        for (headers, metas, query) in cases {
            let got = from_wat(&wat_record(headers, metas), &mut add);
            assert_eq!(got.len(), 1, "{headers} {metas}");
            assert_eq!(
                got[0].url,
                format!("http://example.org/i.jpg?q={query}"),
                "{headers} {metas}"
            );
        }
    }

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
