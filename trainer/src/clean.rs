//! open_clip's text cleaning (its default, "lower"), as open_clip runs it:
//! ftfy 6.3.1's `fix_text` with its default configuration, then Python's
//! `html.unescape` twice, white space runs collapsed to one space and
//! stripped, lower case.
//!
//! `fix_text` works line by line (each segment ends after a `\n`); within a
//! segment it repeats, until nothing changes: HTML entities with their `;`
//! decoded (only while no segment so far held a `<`), mojibake undone
//! (text that ftfy's badness heuristic flags, re-encoded in the first of its
//! single-byte encodings that can hold it and decoded as UTF-8, with its
//! repairs of lost bytes; else runs of UTF-8-looking characters fixed alone;
//! else Latin-1 read as Windows-1252; else C1 controls as Windows-1252),
//! C1 controls, Latin ligatures, full-width forms, curly quotes, line breaks,
//! ANSI terminal escapes, control characters, NFC.
//!
//! The tables (encodings, the heuristic's character classes, entity names)
//! come from ftfy and Python as data: `assets/ftfy-6.3.1.json`, made by
//! `scripts/ftfy-data.py`, with ftfy's licence beside it. The algorithm is
//! ftfy's (`ftfy/__init__.py`, `fixes.py`, `chardata.py`, `badness.py`,
//! `bad_codecs/`), written again here; `tests/tokenize.rs` holds it to
//! open_clip's own output on 2,249 generated lines of every class it treats
//! specially, and on real captions.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

const DATA: &str = include_str!("../assets/ftfy-6.3.1.json");

/// A single-byte encoding: the character of each byte, and back.
struct Charmap {
    name: String,
    decode: Vec<Option<char>>,
    encode: HashMap<char, u8>,
}

impl Charmap {
    /// The bytes of `text`, if every character is one of this encoding's
    /// (ftfy's `possible_encoding`: ASCII but byte 0x1A, and the
    /// characters of bytes 0x80..0xFF and 0x1A).
    fn encode(&self, text: &str) -> Option<Vec<u8>> {
        text.chars()
            .map(|c| match c as u32 {
                n @ (0..=0x19 | 0x1b..=0x7f) => Some(n as u8),
                _ => self
                    .encode
                    .get(&c)
                    .copied()
                    .filter(|&b| b >= 0x80 || b == 0x1a),
            })
            .collect()
    }
}

struct Tables {
    charmaps: Vec<Charmap>,
    cp1252: Vec<Option<char>>,
    badness: Regex,
    detector: Regex,
    continuation_strict: Regex,
    altered_utf8: regex::bytes::Regex,
    lossy_utf8: regex::bytes::Regex,
    ftfy_entity: Regex,
    charref: Regex,
    ansi: Regex,
    entities: HashMap<String, String>,
    html5: HashMap<String, String>,
    invalid_charrefs: HashMap<u32, String>,
    invalid_codepoints: HashSet<u32>,
    ligatures: HashMap<char, String>,
    width: HashMap<char, String>,
    controls: HashSet<u32>,
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let v: serde_json::Value = serde_json::from_str(DATA).expect("the vendored tables parse");
        let s = |k: &str| v[k].as_str().expect("a string table").to_string();
        let map = |k: &str| -> HashMap<String, String> {
            v[k].as_object()
                .expect("a map table")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("string").to_string()))
                .collect()
        };
        let char_map = |k: &str| -> HashMap<char, String> {
            map(k)
                .into_iter()
                .map(|(k, v)| (k.chars().next().expect("one character"), v))
                .collect()
        };
        let decode_table = |list: &serde_json::Value| -> Vec<Option<char>> {
            list.as_array()
                .expect("256 characters")
                .iter()
                .map(|c| c.as_str().and_then(|c| c.chars().next()))
                .collect()
        };
        let charmaps = v["charmap_encodings"]
            .as_array()
            .expect("the encodings")
            .iter()
            .map(|name| {
                let name = name.as_str().expect("a name").to_string();
                let decode = decode_table(&v["charmaps"][&name]);
                let mut encode = HashMap::new();
                for (b, c) in decode.iter().enumerate() {
                    if let Some(c) = c {
                        encode.entry(*c).or_insert(b as u8);
                    }
                }
                Charmap {
                    name,
                    decode,
                    encode,
                }
            })
            .collect();
        let regex = |p: &str| Regex::new(p).expect("the vendored patterns compile");
        let numbers = |k: &str| -> Vec<u32> {
            v[k].as_array()
                .expect("numbers")
                .iter()
                .map(|n| n.as_u64().expect("a number") as u32)
                .collect()
        };
        Tables {
            charmaps,
            cp1252: decode_table(&v["charmaps"]["windows-1252"]),
            badness: regex(&s("badness")),
            detector: regex(&s("utf8_detector")),
            continuation_strict: regex(&s("utf8_continuation_strict")),
            altered_utf8: regex::bytes::Regex::new(&s("altered_utf8")).expect("compiles"),
            lossy_utf8: regex::bytes::Regex::new(&s("lossy_utf8")).expect("compiles"),
            ftfy_entity: regex("&#?[0-9A-Za-z]{1,24};"),
            charref: regex(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\x0C <&#;]{1,32};?)"),
            ansi: regex(r"\x1b\[((?:\d|;)*)([a-zA-Z])"),
            entities: map("entities"),
            html5: map("html5"),
            invalid_charrefs: map("invalid_charrefs")
                .into_iter()
                .map(|(k, v)| (k.parse().expect("a number"), v))
                .collect(),
            invalid_codepoints: numbers("invalid_codepoints").into_iter().collect(),
            ligatures: char_map("ligatures"),
            width: char_map("width_map"),
            controls: numbers("control_chars").into_iter().collect(),
        }
    })
}

/// open_clip's "lower" cleaning: ftfy's `fix_text`, `html.unescape`
/// twice, white space collapsed and stripped, lower case.
pub fn clean(text: &str) -> String {
    let fixed = fix_text(text);
    let unescaped = html_unescape(&html_unescape(&fixed));
    let words: Vec<&str> = unescaped
        .split(is_python_space)
        .filter(|s| !s.is_empty())
        .collect();
    words.join(" ").to_lowercase()
}

/// Python's `str.isspace()`, which its regular expressions' `\s` and
/// `str.split()` use: Unicode White_Space plus U+001C..U+001F.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// ftfy's `fix_text` with its defaults.
pub fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut unescape = true;
    for segment in text.split_inclusive('\n') {
        if unescape && segment.contains('<') {
            unescape = false;
        }
        out.push_str(&fix_segment(segment, unescape));
    }
    out
}

/// ftfy's `fix_and_explain`: every fix, repeated until none changes anything.
fn fix_segment(text: &str, unescape: bool) -> String {
    let t = tables();
    let mut text = text.to_string();
    loop {
        let orig = text.clone();
        if unescape {
            text = ftfy_unescape(&text);
        }
        text = fix_encoding(&text);
        text = fix_c1_controls(&text);
        text = translate(&text, &t.ligatures);
        text = translate(&text, &t.width);
        text = text
            .chars()
            .map(|c| match c {
                '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
                '\u{201c}'..='\u{201f}' => '"',
                c => c,
            })
            .collect();
        text = text
            .replace("\r\n", "\n")
            .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n");
        text = t.ansi.replace_all(&text, "").into_owned();
        text.retain(|c| !t.controls.contains(&(c as u32)));
        text = text.nfc().collect();
        if text == orig {
            return text;
        }
    }
}

fn translate(text: &str, map: &HashMap<char, String>) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match map.get(&c) {
            Some(s) => out.push_str(s),
            None => out.push(c),
        }
    }
    out
}

/// ftfy's `unescape_html`: `&name;` from its table, numeric references
/// with their `;` as Python reads them.
fn ftfy_unescape(text: &str) -> String {
    let t = tables();
    if !text.contains('&') {
        return text.to_string();
    }
    t.ftfy_entity
        .replace_all(text, |m: &regex::Captures<'_>| {
            let e = &m[0];
            if let Some(v) = t.entities.get(e) {
                v.clone()
            } else if e.starts_with("&#") {
                let u = html_unescape(e);
                if u.contains(';') { e.to_string() } else { u }
            } else {
                e.to_string()
            }
        })
        .into_owned()
}

/// Python's `html.unescape`: numeric references (128..159 as Windows-1252,
/// surrogates and values past U+10FFFF as U+FFFD, some code points
/// dropped), and HTML5 named references, the longest known name when the
/// text goes on past it (`&copy2020` is `©2020`), with or without `;`.
pub fn html_unescape(text: &str) -> String {
    let t = tables();
    if !text.contains('&') {
        return text.to_string();
    }
    t.charref
        .replace_all(text, |m: &regex::Captures<'_>| {
            let s = &m[1];
            if let Some(num) = s.strip_prefix('#') {
                let (digits, radix) = match num.strip_prefix(['x', 'X']) {
                    Some(h) => (h, 16),
                    None => (num, 10),
                };
                let digits = digits.trim_end_matches(';').trim_start_matches('0');
                let n = if digits.len() > 8 {
                    u32::MAX
                } else {
                    u32::from_str_radix(if digits.is_empty() { "0" } else { digits }, radix)
                        .unwrap_or(u32::MAX)
                };
                if let Some(r) = t.invalid_charrefs.get(&n) {
                    return r.clone();
                }
                if (0xd800..=0xdfff).contains(&n) || n > 0x10ffff {
                    return "\u{fffd}".to_string();
                }
                if t.invalid_codepoints.contains(&n) {
                    return String::new();
                }
                char::from_u32(n).map_or_else(|| "\u{fffd}".to_string(), String::from)
            } else {
                if let Some(v) = t.html5.get(s) {
                    return v.clone();
                }
                let chars: Vec<(usize, char)> = s.char_indices().collect();
                for x in (2..chars.len()).rev() {
                    let (cut, _) = chars[x];
                    if let Some(v) = t.html5.get(&s[..cut]) {
                        return format!("{v}{}", &s[cut..]);
                    }
                }
                format!("&{s}")
            }
        })
        .into_owned()
}

/// ftfy's `fix_encoding`: one step at a time until nothing changes.
fn fix_encoding(text: &str) -> String {
    let mut text = text.to_string();
    loop {
        let next = fix_encoding_step(&text);
        if next == text {
            return text;
        }
        text = next;
    }
}

fn fix_encoding_step(text: &str) -> String {
    let t = tables();
    if text.is_empty() || text.is_ascii() || !t.badness.is_match(text) {
        return text.to_string();
    }
    let mut latin1_possible = false;
    for enc in &t.charmaps {
        let Some(mut bytes) = enc.encode(text) else {
            continue;
        };
        latin1_possible |= enc.name == "latin-1";
        if enc.name != "macroman" && t.altered_utf8.is_match(&bytes) {
            bytes = restore_byte_a0(&bytes);
        }
        if enc.name.starts_with("sloppy") {
            bytes = t
                .lossy_utf8
                .replace_all(&bytes, "\u{fffd}".as_bytes())
                .into_owned();
        }
        let variants = bytes.contains(&0xed) || bytes.contains(&0xc0);
        if let Some(fixed) = decode_utf8(&bytes, variants) {
            return fixed;
        }
    }
    if t.detector.is_match(text) {
        let fixed = decode_inconsistent_utf8(text);
        if fixed != text {
            return fixed;
        }
    }
    if latin1_possible {
        // Latin-1 read back as (strict) Windows-1252.
        let fixed: Option<String> = text
            .chars()
            .map(|c| t.cp1252.get(c as usize).copied().flatten())
            .collect();
        if let Some(fixed) = fixed
            && fixed != text
        {
            return fixed;
        }
    }
    if text.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)) {
        return fix_c1_controls(text);
    }
    text.to_string()
}

/// C1 controls as the Windows-1252 characters of their bytes.
fn fix_c1_controls(text: &str) -> String {
    let t = tables();
    let sloppy = t
        .charmaps
        .iter()
        .find(|c| c.name == "sloppy-windows-1252")
        .expect("ftfy's encodings include it");
    text.chars()
        .map(|c| {
            if ('\u{80}'..='\u{9f}').contains(&c) {
                sloppy.decode[c as usize].unwrap_or(c)
            } else {
                c
            }
        })
        .collect()
}

/// ftfy's `restore_byte_a0`: UTF-8 whose 0xA0 byte became a space.
fn restore_byte_a0(bytes: &[u8]) -> Vec<u8> {
    // "à " as a word (b"\xc3 " not followed by " ", "quele", "quela",
    // "quilo" or "s ").
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0xc3 && bytes.get(i + 1) == Some(&b' ') {
            let rest = &bytes[i + 2..];
            let kept = [&b" "[..], b"quele", b"quela", b"quilo", b"s "]
                .iter()
                .any(|p| rest.starts_with(p));
            if !kept {
                out.extend_from_slice(b"\xc3\xa0 ");
                i += 2;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    tables()
        .altered_utf8
        .replace_all(&out, |m: &regex::bytes::Captures<'_>| {
            m[0].iter()
                .map(|&b| if b == b' ' { 0xa0 } else { b })
                .collect::<Vec<u8>>()
        })
        .into_owned()
}

/// Strict UTF-8, or with `variants` ftfy's "utf-8-variants": also
/// `C0 80` as U+0000 and CESU-8 surrogate pairs as one character.
fn decode_utf8(bytes: &[u8], variants: bool) -> Option<String> {
    if !variants {
        return String::from_utf8(bytes.to_vec()).ok();
    }
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == 0xc0 && bytes.get(i + 1) == Some(&0x80) {
            out.push('\0');
            i += 2;
            continue;
        }
        if b == 0xed
            && let Some(s) = bytes.get(i..i + 6)
            && (0xa0..=0xaf).contains(&s[1])
            && (0x80..=0xbf).contains(&s[2])
            && s[3] == 0xed
            && (0xb0..=0xbf).contains(&s[4])
            && (0x80..=0xbf).contains(&s[5])
        {
            let cp = ((u32::from(s[1]) & 0x0f) << 16)
                + ((u32::from(s[2]) & 0x3f) << 10)
                + ((u32::from(s[4]) & 0x0f) << 6)
                + (u32::from(s[5]) & 0x3f)
                + 0x10000;
            out.push(char::from_u32(cp)?);
            i += 6;
            continue;
        }
        let len = match b {
            0x00..=0x7f => 1,
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return None,
        };
        let c = std::str::from_utf8(bytes.get(i..i + len)?).ok()?;
        out.push_str(c);
        i += len;
    }
    Some(out)
}

/// ftfy's `decode_inconsistent_utf8`: runs of UTF-8-looking characters
/// (not right after a continuation-like one) fixed on their own, where
/// they are bad and shorter than the text.
fn decode_inconsistent_utf8(text: &str) -> String {
    let t = tables();
    let total = text.chars().count();
    let mut out = String::with_capacity(text.len());
    let (mut kept_to, mut from) = (0, 0);
    while let Some(m) = t.detector.find_at(text, from) {
        let start = m.start();
        if let Some(prev) = text[..start].chars().next_back()
            && t.continuation_strict
                .is_match(prev.encode_utf8(&mut [0; 4]))
        {
            from = start + text[start..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        out.push_str(&text[kept_to..start]);
        let sub = m.as_str();
        if sub.chars().count() < total && t.badness.is_match(sub) {
            out.push_str(&fix_encoding(sub));
        } else {
            out.push_str(sub);
        }
        kept_to = m.end();
        from = m.end().max(start + 1);
    }
    out.push_str(&text[kept_to..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ftfy_and_html_cases() {
        assert_eq!(fix_text("âœ” No problems"), "✔ No problems");
        assert_eq!(
            fix_text("The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows."),
            "The Mona Lisa doesn't have eyebrows."
        );
        assert_eq!(fix_text("l’humanitÃ©"), "l'humanité");
        assert_eq!(fix_text("Ã\u{a0} perturber"), "à perturber");
        assert_eq!(
            html_unescape("&copy2020 &notit; &#150; &#x110000;"),
            "©2020 ¬it; – \u{fffd}"
        );
        assert_eq!(fix_text("\u{1b}[31mred\u{1b}[0m"), "red");
        assert_eq!(fix_text("zero\u{200b}width"), "zero\u{200b}width");
        assert_eq!(
            clean("  A  “Big”\tDOG &amp;amp; ﬁsh\r\n"),
            "a \"big\" dog & fish"
        );
    }
}
