//! HTTP content codings (RFC 9110 section 8.4): the `Content-Encoding` of a
//! body, undone. One decoder for every fetcher and reader of archives: the
//! crawler and downloader (for codings the HTTP client leaves, which only
//! undoes the `gzip` and `br` it asks for) and `wit extract` (WARC records
//! keep bodies as the server sent them).
//!
//! Codings are listed in the order they were applied and are undone in
//! reverse (`Content-Encoding: gzip, br` is brotli of gzip). Known:
//! `gzip`/`x-gzip` (multi-member), `deflate` (zlib-wrapped as RFC 9110 says,
//! or raw deflate as some servers send it), `br`, `zstd`, `identity`.
//! Output stops at a limit, so a decompression bomb is cut off.

use std::io::Read;

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undecodable {
    /// A coding this decoder does not know (`compress`, `sdch`, ...): the
    /// [`coding_key`] of it.
    Unknown(String),
    /// A known coding whose data is corrupt (the coding's name).
    Corrupt(&'static str),
}

impl Undecodable {
    /// The counter name: `unknown_<coding>` or `corrupt_<coding>`.
    pub fn key(&self) -> String {
        match self {
            Undecodable::Unknown(c) => format!("unknown_{c}"),
            Undecodable::Corrupt(c) => format!("corrupt_{c}"),
        }
    }
}

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Undecodable::Unknown(c) => write!(f, "unknown content coding `{c}`"),
            Undecodable::Corrupt(c) => write!(f, "corrupt `{c}` data"),
        }
    }
}

/// A coding's name as counters show it: lower case, letters, digits and
/// `-`, at most 16 characters; `other` for anything else.
pub fn coding_key(coding: &str) -> String {
    let c = coding.trim().to_ascii_lowercase();
    if !c.is_empty() && c.len() <= 16 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        c
    } else {
        "other".into()
    }
}

/// Whether `Content-Encoding: value` leaves the body as it is (absent,
/// empty or `identity` only).
pub fn is_identity(value: &str) -> bool {
    value
        .split(',')
        .map(str::trim)
        .all(|c| c.is_empty() || c.eq_ignore_ascii_case("identity"))
}

/// Undoes the codings of `Content-Encoding: value` on `body`, at most
/// `limit` bytes out (what decoded up to the limit, or up to a truncation
/// after some output, is returned).
///
/// # Errors
/// [`Undecodable`] for an unknown coding, or for data that does not decode
/// at all.
pub fn decode(value: &str, body: &[u8], limit: u64) -> Result<Vec<u8>, Undecodable> {
    let mut data = body.to_vec();
    for coding in value.split(',').rev().map(str::trim) {
        if coding.is_empty() || coding.eq_ignore_ascii_case("identity") {
            continue;
        }
        data = decode_one(coding, &data, limit)?;
    }
    Ok(data)
}

fn decode_one(coding: &str, data: &[u8], limit: u64) -> Result<Vec<u8>, Undecodable> {
    let c = coding.to_ascii_lowercase();
    let (name, out): (&'static str, Option<Vec<u8>>) = match c.as_str() {
        "gzip" | "x-gzip" => (
            "gzip",
            read_some(flate2::read::MultiGzDecoder::new(data), limit),
        ),
        "deflate" => {
            // RFC 9110: zlib-wrapped; some servers send raw deflate.
            let zlib = data.len() >= 2
                && data[0] & 0x0f == 8
                && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0;
            let out = if zlib {
                read_some(flate2::read::ZlibDecoder::new(data), limit)
            } else {
                None
            };
            (
                "deflate",
                out.or_else(|| read_some(flate2::read::DeflateDecoder::new(data), limit)),
            )
        }
        "br" => (
            "br",
            read_some(
                brotli_decompressor::Decompressor::new(data, 64 << 10),
                limit,
            ),
        ),
        "zstd" => (
            "zstd",
            zstd::stream::read::Decoder::new(data)
                .ok()
                .and_then(|d| read_some(d, limit)),
        ),
        _ => return Err(Undecodable::Unknown(coding_key(coding))),
    };
    match out {
        Some(out) => Ok(out),
        None if data.is_empty() => Ok(Vec::new()),
        None => Err(Undecodable::Corrupt(name)),
    }
}

/// Reads up to `limit` bytes. What came before the data ended early (a
/// truncated record) is kept; data that is wrong is not: a decoder that
/// produced bytes from garbage before noticing gave nothing usable. `None`
/// if nothing decoded, or the data is corrupt.
fn read_some(reader: impl Read, limit: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match reader.take(limit).read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(_) => return None,
    }
    (!out.is_empty()).then_some(out)
}

/// Whether a body whose coding did not decode was stored decoded after all
/// (archives sometimes keep the header of a body they saved decoded): it
/// starts, after white space and a byte-order mark, with `<`, or is text.
pub fn looks_decoded(body: &[u8]) -> bool {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let head = &body[..body.len().min(1024)];
    let trimmed = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&head[..0], |i| &head[i..]);
    if trimmed.first() == Some(&b'<') {
        return true;
    }
    // Text: no control bytes but white space, and valid UTF-8 up to a cut.
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    !trimmed.is_empty()
        && valid
        && head
            .iter()
            .all(|&b| b >= 0x20 || matches!(b, b'\t' | b'\n' | b'\r' | 0x0c))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const HTML: &[u8] = b"<html><body><img src=\"/cat.jpg\" alt=\"A cat on a sofa\"></body></html>";

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn every_coding_and_stacks_of_them_decode() {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(HTML).unwrap();
        let zlib = z.finish().unwrap();
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        d.write_all(HTML).unwrap();
        let raw = d.finish().unwrap();
        let zstd = zstd::stream::encode_all(HTML, 3).unwrap();
        for (coding, body) in [
            ("gzip", gzip(HTML)),
            ("X-GZIP", gzip(HTML)),
            ("deflate", zlib),
            ("deflate", raw),
            ("zstd", zstd.clone()),
            ("identity", HTML.to_vec()),
            ("", HTML.to_vec()),
            ("gzip, identity", gzip(HTML)),
        ] {
            assert_eq!(decode(coding, &body, 1 << 20).unwrap(), HTML, "{coding}");
        }
        // Applied in order, undone in reverse: zstd of gzip.
        let stacked = zstd::stream::encode_all(&gzip(HTML)[..], 3).unwrap();
        assert_eq!(decode("gzip, zstd", &stacked, 1 << 20).unwrap(), HTML);
        assert_eq!(
            decode("zstd, gzip", &stacked, 1 << 20),
            Err(Undecodable::Corrupt("gzip"))
        );
        assert_eq!(
            decode("compress", b"\x1f\x9d\x90", 1 << 20),
            Err(Undecodable::Unknown("compress".into()))
        );
        assert_eq!(
            Undecodable::Unknown(coding_key("a b")).key(),
            "unknown_other"
        );
        // A truncated body gives what came before the cut.
        let long: Vec<u8> = (0..3000u32)
            .flat_map(|i| format!("<p>{i} {}</p>", i.wrapping_mul(7919) % 10007).into_bytes())
            .collect();
        let cut = gzip(&long);
        let partial = decode("gzip", &cut[..cut.len() / 2], 1 << 20).unwrap();
        assert!(
            partial.len() > 100 && long.starts_with(&partial),
            "{}",
            partial.len()
        );
        // A bomb stops at the limit.
        let zeros = gzip(&vec![0u8; 1 << 20]);
        assert_eq!(decode("gzip", &zeros, 1000).unwrap().len(), 1000);
        assert!(looks_decoded(b"\xef\xbb\xbf  <!doctype html>"));
        assert!(!looks_decoded(&gzip(HTML)));
    }
}
