//! The Arrow schemas of every Parquet file that stages exchange, defined once.
//!
//! ARCHITECTURE.md documents the same tables for readers outside Rust; a test
//! there-and-here keeps them in step (`architecture_lists_every_column`).
//! Column names follow the conventions that img2dataset and DataComp users
//! already know (`uid`, `url`, `text`), so that their tools read the files as they are.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Column names, shared by writers, readers and tests.
pub mod col {
    /// Query id: the query's position in the query list.
    pub const ID: &str = "id";
    /// The query string.
    pub const QUERY: &str = "query";
    /// Where a query came from (wordnet, unigram, bigram, title, import).
    pub const SOURCE: &str = "source";
    /// A source-specific score: count, PMI or views.
    pub const SCORE: &str = "score";
    /// Stable hash of (image URL, text): 32 lowercase hex digits.
    pub const UID: &str = "uid";
    /// Absolute image URL.
    pub const URL: &str = "url";
    /// The text paired with the image.
    pub const TEXT: &str = "text";
    /// Where in the page the text came from (alt, title, figcaption, ...).
    pub const TEXT_SOURCE: &str = "text_source";
    /// URL of the page holding the image.
    pub const PAGE_URL: &str = "page_url";
    /// The page's `<title>`.
    pub const PAGE_TITLE: &str = "page_title";
    /// The language the page declares (`<html lang>`, Content-Language).
    pub const PAGE_LANG: &str = "page_lang";
    /// Width declared in the HTML (`width` attribute).
    pub const WIDTH: &str = "width";
    /// Height declared in the HTML (`height` attribute).
    pub const HEIGHT: &str = "height";
    /// `crawl`, or the web archive file the candidate was read from.
    pub const ORIGIN: &str = "origin";
    /// Byte offset of the archive record holding the page (archives only).
    pub const ORIGIN_OFFSET: &str = "origin_offset";
    /// When the page was fetched (crawl) or archived (WARC-Date).
    pub const FETCH_TIME: &str = "fetch_time";
    /// The ids of every query the text contains, sorted, without repeats.
    pub const QUERY_IDS: &str = "query_ids";
    /// How many matched pairs a query has.
    pub const COUNT: &str = "count";
    /// A query's id, in the count tables.
    pub const QUERY_ID: &str = "query_id";
    /// Matched rows before cross-part deduplication.
    pub const MATCHED: &str = "matched";
    /// min(1, t / count): the chance a pair of only this query is kept.
    pub const KEEP_PROBABILITY: &str = "keep_probability";
    /// A part number.
    pub const PART: &str = "part";
    /// A row's index within its part.
    pub const ROW: &str = "row";
    /// A sample's key in its shard (`shard * 10^k + index`, zero-padded).
    pub const KEY: &str = "key";
    /// `success`, `failed_to_download` or `failed_to_resize`.
    pub const STATUS: &str = "status";
    /// Why a sample failed.
    pub const ERROR_MESSAGE: &str = "error_message";
    /// The failure's counter name (`http_4xx`, `timeout`, `opt_out`, ...).
    pub const ERROR_REASON: &str = "error_reason";
    /// The failure under the reason where the reason wraps one
    /// (`robots_unreachable`: `connect`, `dns`, `timeout`, `http_5xx`, ...).
    pub const ERROR_CAUSE: &str = "error_cause";
    /// The last URL of a redirect chain: where the image came from, or
    /// where it failed (null: no redirect).
    pub const FINAL_URL: &str = "final_url";
    /// The image's size as decoded, before resizing.
    pub const ORIGINAL_WIDTH: &str = "original_width";
    /// See [`ORIGINAL_WIDTH`].
    pub const ORIGINAL_HEIGHT: &str = "original_height";
    /// SHA-256 of the downloaded bytes, hex.
    pub const SHA256: &str = "sha256";
}

/// `queries/queries.parquet`: one row per query, in id order.
pub fn queries() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new(col::ID, DataType::UInt32, false),
            Field::new(col::QUERY, DataType::Utf8, false),
            Field::new(col::SOURCE, DataType::Utf8, false),
            Field::new(col::SCORE, DataType::Float64, true),
        ]))
    })
    .clone()
}

fn candidate_fields() -> Vec<Field> {
    vec![
        Field::new(col::UID, DataType::Utf8, false),
        Field::new(col::URL, DataType::Utf8, false),
        Field::new(col::TEXT, DataType::Utf8, false),
        Field::new(col::TEXT_SOURCE, DataType::Utf8, false),
        Field::new(col::PAGE_URL, DataType::Utf8, false),
        Field::new(col::PAGE_TITLE, DataType::Utf8, true),
        Field::new(col::PAGE_LANG, DataType::Utf8, true),
        Field::new(col::WIDTH, DataType::UInt32, true),
        Field::new(col::HEIGHT, DataType::UInt32, true),
        Field::new(col::ORIGIN, DataType::Utf8, false),
        Field::new(col::ORIGIN_OFFSET, DataType::UInt64, true),
        Field::new(
            col::FETCH_TIME,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
    ]
}

/// `candidates/part-NNNNN.parquet`: one row per (image, text) candidate.
pub fn candidates() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| Arc::new(Schema::new(candidate_fields())))
        .clone()
}

/// The type of the `query_ids` column: a list of non-null u32.
pub fn query_ids_type() -> DataType {
    DataType::List(query_ids_item())
}

/// The item field of `query_ids`, for list builders
/// (`ListBuilder::new(UInt32Builder::new()).with_field(query_ids_item())`),
/// so that a built list has the contract's type exactly.
pub fn query_ids_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::UInt32, false))
}

/// `matched/part-NNNNN.parquet` and `balanced/part-NNNNN.parquet`: the candidate
/// columns plus `query_ids`.
pub fn matched() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        let mut fields = candidate_fields();
        fields.push(Field::new(col::QUERY_IDS, query_ids_type(), false));
        Arc::new(Schema::new(fields))
    })
    .clone()
}

/// `balanced/part-NNNNN.parquet`: the rows of `matched` that balancing kept,
/// with the same columns.
pub fn balanced() -> SchemaRef {
    matched()
}

/// `matched/_query_counts/part-NNNNN.parquet`: how many rows of a matched part
/// contain each query (queries with none are left out).
pub fn query_counts() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new(col::QUERY_ID, DataType::UInt32, false),
            Field::new(col::COUNT, DataType::UInt64, false),
        ]))
    })
    .clone()
}

/// `balanced/_global/query_counts.parquet`: the global counts balancing used,
/// one row per query matched at least once.
pub fn global_counts() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new(col::QUERY_ID, DataType::UInt32, false),
            Field::new(col::QUERY, DataType::Utf8, true),
            Field::new(col::MATCHED, DataType::UInt64, false),
            Field::new(col::COUNT, DataType::UInt64, false),
            Field::new(col::KEEP_PROBABILITY, DataType::Float64, false),
        ]))
    })
    .clone()
}

/// `balanced/_global/duplicates/part-NNNNN.parquet`: the matched rows dropped as repeats
/// of an (image URL, text) pair seen in an earlier part or row.
pub fn duplicates() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new(col::PART, DataType::UInt32, false),
            Field::new(col::ROW, DataType::UInt64, false),
            Field::new(col::UID, DataType::Utf8, false),
        ]))
    })
    .clone()
}

/// `shards/_plan/NNNNN.parquet`: the samples assigned to a shard, in key order.
pub fn plan() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new(col::KEY, DataType::Utf8, false),
            Field::new(col::UID, DataType::Utf8, false),
            Field::new(col::URL, DataType::Utf8, false),
            Field::new(col::TEXT, DataType::Utf8, false),
            Field::new(col::QUERY_IDS, query_ids_type(), false),
        ]))
    })
    .clone()
}

/// `shards/NNNNN.parquet`: one row per sample of the shard, failures included
/// (img2dataset's columns, with `text` for its `caption`).
pub fn shard() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new(col::KEY, DataType::Utf8, false),
            Field::new(col::STATUS, DataType::Utf8, false),
            Field::new(col::ERROR_MESSAGE, DataType::Utf8, true),
            Field::new(col::ERROR_REASON, DataType::Utf8, true),
            Field::new(col::ERROR_CAUSE, DataType::Utf8, true),
            Field::new(col::WIDTH, DataType::UInt32, true),
            Field::new(col::HEIGHT, DataType::UInt32, true),
            Field::new(col::ORIGINAL_WIDTH, DataType::UInt32, true),
            Field::new(col::ORIGINAL_HEIGHT, DataType::UInt32, true),
            Field::new(col::SHA256, DataType::Utf8, true),
            Field::new(col::URL, DataType::Utf8, false),
            Field::new(col::FINAL_URL, DataType::Utf8, true),
            Field::new(col::TEXT, DataType::Utf8, false),
            Field::new(col::UID, DataType::Utf8, false),
            Field::new(col::QUERY_IDS, query_ids_type(), false),
        ]))
    })
    .clone()
}

/// Every schema with its name as ARCHITECTURE.md titles it.
pub fn all() -> Vec<(&'static str, SchemaRef)> {
    vec![
        ("queries", queries()),
        ("candidates", candidates()),
        ("matched", matched()),
        ("balanced", balanced()),
        ("query_counts", query_counts()),
        ("global_counts", global_counts()),
        ("duplicates", duplicates()),
        ("plan", plan()),
        ("shard", shard()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ARCHITECTURE.md must document every column of every schema, with its type.
    #[test]
    fn architecture_lists_every_column() {
        let doc = include_str!("../../ARCHITECTURE.md");
        for (name, schema) in all() {
            let heading = format!("`{name}` schema");
            let start = doc
                .find(&heading)
                .unwrap_or_else(|| panic!("ARCHITECTURE.md lacks a section titled {heading}"));
            let section = &doc[start..];
            let section = &section[..section[1..].find("\n#").map_or(section.len(), |i| i + 1)];
            // A section may inherit another table's columns by saying so.
            let inherited = if section.contains("every column of `matched`") {
                Some(matched())
            } else {
                section
                    .contains("every column of `candidates`")
                    .then(candidates)
            };
            for field in schema.fields() {
                if inherited
                    .as_ref()
                    .is_some_and(|c| c.field_with_name(field.name()).ok() == Some(field.as_ref()))
                {
                    continue;
                }
                let row = format!("| `{}` | {} |", field.name(), type_name(field.data_type()));
                assert!(
                    section.contains(&row),
                    "ARCHITECTURE.md, {heading}: missing or wrong row {row}"
                );
            }
        }
    }

    fn type_name(t: &DataType) -> String {
        match t {
            DataType::Utf8 => "string".into(),
            DataType::UInt32 => "uint32".into(),
            DataType::UInt64 => "uint64".into(),
            DataType::Float64 => "float64".into(),
            DataType::Timestamp(TimeUnit::Millisecond, Some(_)) => "timestamp[ms, UTC]".into(),
            DataType::List(f) => format!("list<{}>", type_name(f.data_type())),
            other => format!("{other:?}"),
        }
    }
}
