//! Typed rows of the contract's tables and their conversion to and from Arrow.
//!
//! Stages that transform whole batches (matching, balancing) work on Arrow
//! arrays directly; these structs are for stages that create rows one by one
//! (crawling, extraction, query building) and for tests.

use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, StringBuilder, TimestampMillisecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::schema;

/// The stable id of an (image URL, text) pair: the first 16 bytes of
/// SHA-256(`url` + `"\n"` + `text`), as 32 lowercase hex digits (DataComp's
/// `uid` width). The same pair gets the same uid on every machine and run.
pub fn uid(url: &str, text: &str) -> String {
    let mut h = Sha256::new();
    h.update(url.as_bytes());
    h.update(b"\n");
    h.update(text.as_bytes());
    hex(&h.finalize()[..16])
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// One query of the query list.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Position in the list.
    pub id: u32,
    /// The query string, matched as a whole word or phrase.
    pub query: String,
    /// Where it came from: `wordnet`, `unigram`, `bigram`, `title` or `import`.
    pub source: String,
    /// Count, PMI or views, by source; none for WordNet and imports.
    pub score: Option<f64>,
}

/// Converts queries to a batch of [`schema::queries`].
///
/// # Errors
/// Never for valid rows; an Arrow error is reported as [`Error::Usage`].
pub fn queries_to_batch(rows: &[Query]) -> Result<RecordBatch> {
    let mut id = UInt32Builder::with_capacity(rows.len());
    let mut query = StringBuilder::new();
    let mut source = StringBuilder::new();
    let mut score = Float64Builder::with_capacity(rows.len());
    for r in rows {
        id.append_value(r.id);
        query.append_value(&r.query);
        source.append_value(&r.source);
        score.append_option(r.score);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(query.finish()),
        Arc::new(source.finish()),
        Arc::new(score.finish()),
    ];
    RecordBatch::try_new(schema::queries(), columns).map_err(|e| Error::Usage(e.to_string()))
}

/// One image-text candidate, as the crawler and the archive reader produce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// [`uid`] of `url` and `text`.
    pub uid: String,
    /// Absolute image URL.
    pub url: String,
    /// The text paired with the image.
    pub text: String,
    /// Where the text came from: `alt`, `title`, `figcaption`, ...
    pub text_source: String,
    /// The page holding the image.
    pub page_url: String,
    /// The page's title.
    pub page_title: Option<String>,
    /// The page's declared language.
    pub page_lang: Option<String>,
    /// Declared image width.
    pub width: Option<u32>,
    /// Declared image height.
    pub height: Option<u32>,
    /// `crawl`, or the archive file name.
    pub origin: String,
    /// Record offset in the archive.
    pub origin_offset: Option<u64>,
    /// Fetch time, milliseconds since the Unix epoch, UTC.
    pub fetch_time_ms: Option<i64>,
}

impl Candidate {
    /// A candidate with the required fields; the uid is computed, the rest left empty.
    pub fn new(
        url: impl Into<String>,
        text: impl Into<String>,
        text_source: impl Into<String>,
        page_url: impl Into<String>,
    ) -> Self {
        let (url, text) = (url.into(), text.into());
        Candidate {
            uid: uid(&url, &text),
            url,
            text,
            text_source: text_source.into(),
            page_url: page_url.into(),
            page_title: None,
            page_lang: None,
            width: None,
            height: None,
            origin: "crawl".into(),
            origin_offset: None,
            fetch_time_ms: None,
        }
    }
}

/// Converts candidates to a batch of [`schema::candidates`].
///
/// # Errors
/// Never for valid rows; an Arrow error is reported as [`Error::Usage`].
pub fn candidates_to_batch(rows: &[Candidate]) -> Result<RecordBatch> {
    let mut uid = StringBuilder::new();
    let mut url = StringBuilder::new();
    let mut text = StringBuilder::new();
    let mut text_source = StringBuilder::new();
    let mut page_url = StringBuilder::new();
    let mut page_title = StringBuilder::new();
    let mut page_lang = StringBuilder::new();
    let mut width = UInt32Builder::new();
    let mut height = UInt32Builder::new();
    let mut origin = StringBuilder::new();
    let mut origin_offset = UInt64Builder::new();
    let mut fetch_time = TimestampMillisecondBuilder::new().with_timezone("UTC");
    for r in rows {
        uid.append_value(&r.uid);
        url.append_value(&r.url);
        text.append_value(&r.text);
        text_source.append_value(&r.text_source);
        page_url.append_value(&r.page_url);
        page_title.append_option(r.page_title.as_deref());
        page_lang.append_option(r.page_lang.as_deref());
        width.append_option(r.width);
        height.append_option(r.height);
        origin.append_value(&r.origin);
        origin_offset.append_option(r.origin_offset);
        fetch_time.append_option(r.fetch_time_ms);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(uid.finish()),
        Arc::new(url.finish()),
        Arc::new(text.finish()),
        Arc::new(text_source.finish()),
        Arc::new(page_url.finish()),
        Arc::new(page_title.finish()),
        Arc::new(page_lang.finish()),
        Arc::new(width.finish()),
        Arc::new(height.finish()),
        Arc::new(origin.finish()),
        Arc::new(origin_offset.finish()),
        Arc::new(fetch_time.finish()),
    ];
    RecordBatch::try_new(schema::candidates(), columns).map_err(|e| Error::Usage(e.to_string()))
}

/// The string column `name` of a batch read through [`crate::pq::read_file`].
///
/// # Panics
/// If the batch lacks the column or it is not a string column; batches checked
/// against the contract schema have it.
pub fn string_column<'a>(batch: &'a RecordBatch, name: &str) -> &'a StringArray {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .unwrap_or_else(|| panic!("batch checked against the contract lacks string column {name}"))
}

/// The u32 column `name` of a checked batch.
///
/// # Panics
/// As [`string_column`].
pub fn u32_column<'a>(batch: &'a RecordBatch, name: &str) -> &'a UInt32Array {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
        .unwrap_or_else(|| panic!("batch checked against the contract lacks u32 column {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_is_stable_and_separates_url_from_text() {
        // Fixed values, computed outside this code: changing the uid
        // function would orphan every existing dataset.
        //   printf 'http://a/b.jpg\na dog' | sha256sum | cut -c1-32
        assert_eq!(
            uid("http://a/b.jpg", "a dog"),
            "4d26577f348bf6ca5a85d47b2f84f7ba"
        );
        //   printf 'http://a/b.jpg\n' | sha256sum | cut -c1-32
        assert_eq!(
            uid("http://a/b.jpg", ""),
            "8a0f9d006c58e0bc7cb0ff5ac23ad3ca"
        );
        //   printf '\n' | sha256sum | cut -c1-32
        assert_eq!(uid("", ""), "01ba4719c80b6fe911b091a7c05124b6");
        assert_ne!(uid("ab", "c"), uid("a", "bc"));
    }

    #[test]
    fn hex_encodes() {
        assert_eq!(hex(&[0, 1, 0xab, 0xff]), "0001abff");
    }
}
