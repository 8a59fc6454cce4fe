//! Reading WARC files (and the WAT metadata files Common Crawl derives from
//! them): gzipped member by member or plain, with each record's byte
//! offset. Gzipped files (all of Common Crawl's, about 1 GB each) are
//! streamed: one member (one record) is in memory at a time. Plain files are
//! read whole. A damaged gzip member or a malformed record is counted and
//! skipped: the reader resynchronises at the next gzip member (or `WARC/`
//! line) and goes on.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::bufread::GzDecoder;
use wit_contract::{IoContext, Result};
use wit_net::coding;

/// One WARC record.
#[derive(Debug, Clone)]
pub struct Record {
    /// Byte offset in the file of the gzip member (or, uncompressed, the record) holding it.
    pub offset: u64,
    /// Header fields, names as written.
    pub headers: Vec<(String, String)>,
    /// The record block.
    pub block: Vec<u8>,
}

impl Record {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// A `WARC-Date` as milliseconds since the Unix epoch, UTC.
///
/// WARC/1.1 (ISO 28500:2017, §5.4) allows every W3C-DTF form
/// (<https://www.w3.org/TR/NOTE-datetime>): `YYYY`, `YYYY-MM`, `YYYY-MM-DD`,
/// `YYYY-MM-DDThh:mmTZD`, `YYYY-MM-DDThh:mm:ssTZD` and
/// `YYYY-MM-DDThh:mm:ss.sTZD`, where TZD is `Z` or `+hh:mm`/`-hh:mm`; WARC/1.0
/// writes `YYYY-MM-DDThh:mm:ssZ`. A reduced form is read as the first
/// instant of its year, month or day, UTC. `None` for anything else (an
/// invalid day, a missing TZD after a time, other separators).
pub fn warc_date_ms(value: &str) -> Option<i64> {
    let v = value.trim();
    let (date, time) = match v.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (v, None),
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let fields: Vec<&str> = date.split('-').collect();
    let ok = match fields.as_slice() {
        [y] => digits(y, 4),
        [y, m] => digits(y, 4) && digits(m, 2),
        [y, m, d] => digits(y, 4) && digits(m, 2) && digits(d, 2),
        _ => false,
    };
    if !ok || (time.is_some() && fields.len() != 3) {
        return None;
    }
    let month = fields.get(1).copied().unwrap_or("01");
    let day = fields.get(2).copied().unwrap_or("01");
    let (clock, offset_min) = match time {
        None => ("00:00:00".to_string(), 0),
        Some(t) => {
            let (clock, offset) = match t.strip_suffix(['Z', 'z']) {
                Some(c) => (c, 0),
                None => {
                    let at = t.rfind(['+', '-'])?;
                    let (h, m) = t[at + 1..].split_once(':')?;
                    if !digits(h, 2) || !digits(m, 2) {
                        return None;
                    }
                    let minutes = h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?;
                    let sign = if t.as_bytes()[at] == b'-' { -1 } else { 1 };
                    (&t[..at], sign * minutes)
                }
            };
            let parts: Vec<&str> = clock.split(':').collect();
            let clock = match parts.as_slice() {
                [h, m] if digits(h, 2) && digits(m, 2) => format!("{h}:{m}:00"),
                [h, m, s] if digits(h, 2) && digits(m, 2) => {
                    let (whole, frac) = s.split_once('.').unwrap_or((s, "0"));
                    if !digits(whole, 2)
                        || frac.is_empty()
                        || !frac.bytes().all(|b| b.is_ascii_digit())
                    {
                        return None;
                    }
                    // humantime reads at most nine fractional digits.
                    format!("{h}:{m}:{whole}.{}", &frac[..frac.len().min(9)])
                }
                _ => return None,
            };
            (clock, offset)
        }
    };
    let utc =
        humantime::parse_rfc3339_weak(&format!("{}-{month}-{day}T{clock}Z", fields[0])).ok()?;
    let ms = match utc.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).ok()?,
        Err(before) => -i64::try_from(before.duration().as_millis()).ok()?,
    };
    Some(ms - offset_min * 60_000)
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `Name: value` lines (WARC and HTTP heads alike); lines without a colon are skipped.
fn parse_header_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// What went wrong with the parts of a file that were skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadErrors {
    /// Gzip members that could not be decompressed (corrupt or truncated).
    pub bad_members: u64,
    /// Records whose header or length did not parse, or whose block was cut short.
    pub bad_records: u64,
}

/// Calls `f` with every readable record of the WARC file at `path`.
///
/// # Errors
/// [`wit_contract::Error::Io`] if the file cannot be opened or read at all;
/// damage inside it is counted in the returned [`ReadErrors`].
pub fn read_records(path: &Path, f: impl FnMut(Record)) -> Result<ReadErrors> {
    read_records_from(File::open(path).at(path)?, path, f)
}

/// [`read_records`] over any seekable source (a file, or an object on a
/// store streamed with ranged reads); `path` names it in errors.
///
/// # Errors
/// As [`read_records`].
pub fn read_records_from(
    source: impl Read + Seek,
    path: &Path,
    mut f: impl FnMut(Record),
) -> Result<ReadErrors> {
    let mut reader = BufReader::with_capacity(1 << 20, source);
    let mut errors = ReadErrors::default();
    if reader.fill_buf().at(path)?.starts_with(&[0x1f, 0x8b]) {
        read_gzip_members(&mut reader, &mut errors, &mut f).at(path)?;
    } else {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).at(path)?;
        parse_records(&bytes, 0, true, &mut errors, &mut f);
    }
    Ok(errors)
}

/// A gzip member decodes to at most this many bytes (WARC files hold one
/// record per member; a larger one is a bomb or damage).
const MAX_MEMBER: u64 = 1 << 30;

fn read_gzip_members<R: Read + Seek>(
    reader: &mut BufReader<R>,
    errors: &mut ReadErrors,
    f: &mut impl FnMut(Record),
) -> std::io::Result<()> {
    let mut member = Vec::new();
    loop {
        let pos = reader.stream_position()?;
        if reader.fill_buf()?.is_empty() {
            return Ok(());
        }
        // The bufread decoder stops at the member's end and leaves the reader
        // at the next member's first byte.
        member.clear();
        let result = GzDecoder::new(&mut *reader)
            .take(MAX_MEMBER)
            .read_to_end(&mut member);
        let end = reader.stream_position()?;
        match result {
            Ok(_) if end > pos => parse_records(&member, pos, false, errors, f),
            _ => {
                errors.bad_members += 1;
                // Resynchronise at the next gzip member header.
                if !skip_to_gzip_header(reader, pos + 1)? {
                    return Ok(());
                }
            }
        }
    }
}

/// Moves `reader` to the first gzip member header (`1f 8b 08`) at or after
/// byte `from`; `false` if there is none.
fn skip_to_gzip_header<R: Read + Seek>(
    reader: &mut BufReader<R>,
    from: u64,
) -> std::io::Result<bool> {
    const MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];
    let mut window = vec![0u8; 1 << 16];
    let mut pos = from;
    loop {
        reader.seek(SeekFrom::Start(pos))?;
        let mut n = 0;
        while n < window.len() {
            match reader.read(&mut window[n..])? {
                0 => break,
                k => n += k,
            }
        }
        if let Some(i) = memchr::memmem::find(&window[..n], &MAGIC) {
            reader.seek(SeekFrom::Start(pos + i as u64))?;
            return Ok(true);
        }
        if n < window.len() {
            return Ok(false);
        }
        // Windows overlap by two bytes: a header may straddle them.
        pos += (n - (MAGIC.len() - 1)) as u64;
    }
}

/// Parses the records in `data` (a gzip member's content, or a whole plain
/// file when `plain`, where offsets are positions in `data`).
fn parse_records(
    data: &[u8],
    base: u64,
    plain: bool,
    errors: &mut ReadErrors,
    f: &mut impl FnMut(Record),
) {
    let mut pos = 0usize;
    while pos < data.len() {
        // Skip the blank lines between records.
        while pos < data.len() && (data[pos] == b'\r' || data[pos] == b'\n') {
            pos += 1;
        }
        if pos >= data.len() {
            break;
        }
        let start = pos;
        let Some(head_end) = memchr::memmem::find(&data[pos..], b"\r\n\r\n").map(|i| pos + i)
        else {
            errors.bad_records += 1;
            break;
        };
        let head = String::from_utf8_lossy(&data[pos..head_end]);
        let mut lines = head.split("\r\n");
        let version = lines.next().unwrap_or("");
        let headers = parse_header_lines(lines);
        let length = find_header(&headers, "Content-Length").and_then(|v| v.parse::<usize>().ok());
        let body_start = head_end + 4;
        let end = length
            .and_then(|n| body_start.checked_add(n))
            .filter(|&e| e <= data.len());
        match end {
            Some(end) if version.starts_with("WARC/") => {
                f(Record {
                    offset: if plain { start as u64 } else { base },
                    headers,
                    block: data[body_start..end].to_vec(),
                });
                pos = end;
            }
            _ => {
                errors.bad_records += 1;
                // Resynchronise at the next line that starts a record header.
                match memchr::memmem::find(&data[start + 1..], b"\nWARC/") {
                    Some(i) => pos = start + 1 + i + 1,
                    None => break,
                }
            }
        }
    }
}

/// An HTTP response carried in a WARC `response` record.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header fields.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked and decompressed.
    pub body: Vec<u8>,
    /// Why the body's `Content-Encoding` could not be undone (the body is
    /// then as stored, and of no use); `None` if it was, or had none.
    pub undecodable: Option<coding::Undecodable>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// Parses an HTTP response block; `None` if it is not one.
pub fn parse_http(block: &[u8]) -> Option<HttpResponse> {
    // The head ends at the first blank line, CRLF or bare LF (old crawlers
    // wrote bare LFs; a CRLF pair further on is then inside the body).
    let crlf = memchr::memmem::find(block, b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = memchr::memmem::find(block, b"\n\n").map(|i| (i, i + 2));
    let split = match (crlf, lf) {
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
        (a, b) => a.or(b)?,
    };
    let head = String::from_utf8_lossy(&block[..split.0]);
    let mut lines = head.lines();
    let status_line = lines.next()?;
    if !status_line.starts_with("HTTP/") {
        return None;
    }
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let headers = parse_header_lines(lines);
    let mut resp = HttpResponse {
        status,
        headers,
        body: block[split.1..].to_vec(),
        undecodable: None,
    };
    if resp
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        && let Some(body) = dechunk(&resp.body)
    {
        resp.body = body;
    }
    if let Some(codings) = resp.header("Content-Encoding").map(str::to_string)
        && !coding::is_identity(&codings)
    {
        match coding::decode(&codings, &resp.body, MAX_BODY) {
            Ok(body) => resp.body = body,
            // Archives sometimes keep the header of a body they stored
            // decoded: such a body is kept as it is.
            Err(_) if coding::looks_decoded(&resp.body) => {}
            Err(why) => resp.undecodable = Some(why),
        }
    }
    Some(resp)
}

/// Bodies decode to at most this many bytes (a decompression bomb stops there).
pub const MAX_BODY: u64 = 64 << 20;

/// Decodes a chunked body; `None` if it is not validly chunked (some archives
/// keep the header but store the body de-chunked).
fn dechunk(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut pos = 0;
    loop {
        let line_end = pos + memchr::memmem::find(&body[pos..], b"\r\n")?;
        let size_text = std::str::from_utf8(&body[pos..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        pos = line_end + 2;
        if size == 0 {
            return Some(out);
        }
        let end = pos.checked_add(size)?;
        match body.get(pos..end) {
            Some(chunk) => out.extend_from_slice(chunk),
            // A truncated record: keep what arrived.
            None if pos < body.len() => {
                out.extend_from_slice(&body[pos..]);
                return Some(out);
            }
            None => return (!out.is_empty()).then_some(out),
        }
        pos = end + 2;
        if pos > body.len() {
            return Some(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode() {
        assert_eq!(
            dechunk(b"4\r\nWiki\r\n5;x=1\r\npedia\r\n0\r\n\r\n").unwrap(),
            b"Wikipedia"
        );
        assert!(dechunk(b"<html>not chunked").is_none());
        assert_eq!(dechunk(b"ffffffffffffffff\r\nx"), None);
        assert_eq!(dechunk(b"4\r\nWiki\r\n9\r\nped").unwrap(), b"Wikiped");
    }

    #[test]
    fn plain_records_parse_with_offsets_and_skip_garbage() {
        let rec = |body: &str| {
            format!(
                "WARC/1.0\r\nWARC-Type: response\r\nContent-Length: {}\r\n\r\n{body}\r\n\r\n",
                body.len()
            )
        };
        let data = format!(
            "{}{}WARC/1.0\r\nContent-Length: 18446744073709551615\r\n\r\nshort\r\n{}",
            rec("one"),
            rec("two"),
            rec("three")
        );
        let mut got = Vec::new();
        let mut errors = ReadErrors::default();
        parse_records(data.as_bytes(), 0, true, &mut errors, &mut |r| {
            got.push((r.offset, String::from_utf8(r.block).unwrap()))
        });
        assert_eq!(
            got.iter().map(|g| g.1.as_str()).collect::<Vec<_>>(),
            vec!["one", "two", "three"]
        );
        assert_eq!(got[1].0 as usize, rec("one").len());
        assert_eq!(errors.bad_records, 1);
    }

    #[test]
    fn gzip_members_stream_and_damage_is_skipped() {
        use std::io::Write;
        let member = |body: &str| {
            let rec = format!(
                "WARC/1.0\r\nWARC-Type: response\r\nContent-Length: {}\r\n\r\n{body}\r\n\r\n",
                body.len()
            );
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(rec.as_bytes()).unwrap();
            gz.finish().unwrap()
        };
        let one = member("one");
        let mut broken = member("two");
        broken.truncate(broken.len() / 2);
        // A big member, so that the scan for the next header crosses windows.
        let big_body = "x".repeat(300_000);
        let big = member(&big_body);
        let mut corrupt_big = big.clone();
        corrupt_big[20] ^= 0xff;
        corrupt_big[21] ^= 0xff;
        let three = member("three");
        let mut file = Vec::new();
        let mut offsets = Vec::new();
        for m in [&one, &broken, &big, &corrupt_big, &three] {
            offsets.push(file.len() as u64);
            file.extend_from_slice(m);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.warc.gz");
        std::fs::write(&path, &file).unwrap();
        let mut got = Vec::new();
        let errors = read_records(&path, |r| got.push((r.offset, r.block.len()))).unwrap();
        assert_eq!(
            got,
            vec![(offsets[0], 3), (offsets[2], 300_000), (offsets[4], 5)]
        );
        assert_eq!(errors.bad_members, 2);
    }
}
