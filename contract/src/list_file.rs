//! Files of one entry a line that users write by hand, read one way by every
//! command: seed URLs (`wit crawl --seeds`), class names and prompt
//! templates (`wit eval --classes`, `--templates`), query lists (`wit
//! queries import`) and archive listings (`wit extract --listing`).
//!
//! Editors save such files with a byte order mark (Windows Notepad's
//! "UTF-8 with BOM", or "Unicode": UTF-16 with its BOM), CRLF line ends,
//! trailing spaces and blank lines; none of that is part of an entry. Text
//! in any other encoding than UTF-8 or BOM-marked UTF-16 is refused naming
//! the line of the first byte that is not UTF-8, never read as mojibake.

use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// The text of a hand-written file: UTF-8 (its BOM, if any, removed), or
/// UTF-16 in either byte order when a BOM says so (as the Encoding
/// Standard's BOM sniffing does).
///
/// # Errors
/// A message naming the line and byte of the first sequence that is not
/// UTF-8 (or an unpaired UTF-16 surrogate).
pub fn decode(bytes: &[u8]) -> std::result::Result<String, String> {
    let utf16 = |rest: &[u8], be: bool| -> std::result::Result<String, String> {
        if !rest.len().is_multiple_of(2) {
            return Err("UTF-16 (by its byte order mark) with an odd number of bytes".into());
        }
        let units = rest.chunks_exact(2).map(|c| {
            if be {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_le_bytes([c[0], c[1]])
            }
        });
        char::decode_utf16(units)
            .collect::<std::result::Result<String, _>>()
            .map_err(|e| {
                format!(
                    "UTF-16 with an unpaired surrogate {:04X}",
                    e.unpaired_surrogate()
                )
            })
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => utf8(rest),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, false),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, true),
        _ => utf8(bytes),
    }
}

fn utf8(bytes: &[u8]) -> std::result::Result<String, String> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(e) => {
            let at = e.valid_up_to();
            let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
            Err(format!(
                "not UTF-8: line {line}, byte {at} (0x{:02X}); save the file as UTF-8",
                bytes[at]
            ))
        }
    }
}

/// The entries of `text` with their line numbers (from 1): each line
/// trimmed of surrounding whitespace (a CRLF's `\r` included), blank lines
/// skipped.
pub fn entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
}

/// The entries of the file at `path` with their line numbers; see
/// [`decode`] and [`entries`].
///
/// # Errors
/// [`Error::Io`] if it cannot be read; [`Error::BadInput`] naming the file
/// if it is not text as [`decode`] reads it, or holds no entry.
pub fn read_numbered(path: &Path) -> Result<Vec<(usize, String)>> {
    let bytes = std::fs::read(path).at(path)?;
    parse(&bytes).map_err(|m| Error::bad_input(path, m))
}

/// The entries of a file's bytes with their line numbers; see [`decode`]
/// and [`entries`].
///
/// # Errors
/// A message (without the file's name) if the bytes are not text as
/// [`decode`] reads it, or hold no entry.
pub fn parse(bytes: &[u8]) -> std::result::Result<Vec<(usize, String)>, String> {
    let text = decode(bytes)?;
    let out: Vec<(usize, String)> = entries(&text).map(|(n, l)| (n, l.to_string())).collect();
    if out.is_empty() {
        return Err("holds no entries (only blank lines)".into());
    }
    Ok(out)
}

/// The entries of the file at `path`, without their line numbers.
///
/// # Errors
/// As [`read_numbered`].
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    Ok(read_numbered(path)?.into_iter().map(|(_, l)| l).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boms_crlf_and_blank_lines_are_not_entries() {
        let want = vec![(1, "http://a/"), (3, "http://b/ x")];
        let plain = "http://a/\r\n\r\n  http://b/ x \r\n";
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice(plain.as_bytes());
        let mut le = vec![0xFF, 0xFE];
        let mut be = vec![0xFE, 0xFF];
        for u in plain.encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
            be.extend_from_slice(&u.to_be_bytes());
        }
        for bytes in [plain.as_bytes(), &bom, &le, &be] {
            let text = decode(bytes).unwrap();
            assert_eq!(entries(&text).collect::<Vec<_>>(), want, "{bytes:?}");
        }
    }

    #[test]
    fn latin1_is_refused_naming_the_line() {
        let err = decode(b"ok\ncaf\xe9\n").unwrap_err();
        assert!(err.contains("line 2, byte 6 (0xE9)"), "{err}");
    }
}
