//! The query list file format: `queries.json`, a JSON array of strings in id
//! order (the format MetaCLIP publishes its `metadata.json` in), or, for
//! imports, plain text with one query per line.

use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// Reads a query list: a JSON array of strings if the file's first non-blank
/// character is `[`, else one query per line (blank lines skipped, a trailing
/// `\r` removed). A query's id is its position in the returned list.
///
/// # Errors
/// [`Error::BadInput`] naming the file (and the entry) if it is malformed, not
/// UTF-8, holds a non-string or empty entry, or has no queries at all.
pub fn read_query_list(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).at(path)?;
    parse_query_list(&bytes).map_err(|m| Error::bad_input(path, m))
}

/// Parses the bytes of a query list; see [`read_query_list`]. Errors are messages
/// without the file name.
pub fn parse_query_list(bytes: &[u8]) -> std::result::Result<Vec<String>, String> {
    let text = crate::list_file::decode(bytes)?;
    let text = text.as_str();
    let queries = if text.trim_start().starts_with('[') {
        let values: Vec<serde_json::Value> =
            serde_json::from_str(text).map_err(|e| format!("not a JSON array of strings: {e}"))?;
        let mut queries = Vec::with_capacity(values.len());
        for (i, v) in values.into_iter().enumerate() {
            match v {
                serde_json::Value::String(s) if !s.trim().is_empty() => queries.push(s),
                serde_json::Value::String(_) => {
                    return Err(format!("entry {i} is empty or only whitespace"));
                }
                other => return Err(format!("entry {i} is not a string: {other}")),
            }
        }
        queries
    } else {
        text.lines()
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    };
    if queries.is_empty() {
        return Err("holds no queries".into());
    }
    if queries.len() > u32::MAX as usize {
        return Err("holds more queries than u32 ids can number".into());
    }
    Ok(queries)
}

/// A fingerprint of a query list (16 hex digits of SHA-256 over the queries),
/// recorded in the parameters of stages that depend on the list, so that a
/// rerun with another list is refused instead of mixing ids.
pub fn fingerprint(queries: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for q in queries {
        h.update((q.len() as u64).to_le_bytes());
        h.update(q.as_bytes());
    }
    crate::records::hex(&h.finalize()[..8])
}

/// Serialises queries as a JSON array of strings (the `queries.json` format),
/// one entry per line so that diffs stay readable.
pub fn query_list_json(queries: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(queries.iter().map(|q| q.len() + 4).sum::<usize>() + 4);
    out.push(b'[');
    for (i, q) in queries.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
        serde_json::to_writer(&mut out, q).expect("strings serialise");
    }
    out.extend_from_slice(b"\n]\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_lines_both_parse() {
        assert_eq!(
            parse_query_list(br#" ["a", "b c", "\u00e9t\u00e9"]"#).unwrap(),
            vec!["a", "b c", "été"]
        );
        assert_eq!(
            parse_query_list(b"a\r\n\nb c\n  \n").unwrap(),
            vec!["a", "b c"]
        );
    }

    #[test]
    fn malformed_lists_say_what_is_wrong() {
        assert!(
            parse_query_list(b"[1]")
                .unwrap_err()
                .contains("entry 0 is not a string")
        );
        assert!(
            parse_query_list(br#"["a", ""]"#)
                .unwrap_err()
                .contains("entry 1")
        );
        assert!(
            parse_query_list(b"[\"a\"")
                .unwrap_err()
                .contains("not a JSON array")
        );
        assert!(
            parse_query_list(b"\n\n")
                .unwrap_err()
                .contains("no queries")
        );
        assert!(parse_query_list(b"\xff").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn json_round_trips() {
        let q: Vec<String> = vec!["a".into(), "quote \" and \\".into(), "日本".into()];
        assert_eq!(parse_query_list(&query_list_json(&q)).unwrap(), q);
    }
}
