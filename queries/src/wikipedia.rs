//! Reading Wikipedia pages-articles dumps (`.xml` or `.xml.bz2`) and plain-text
//! corpora, streamed, and handing them to the counting workers.
//!
//! A multistream `.bz2` dump is a concatenation of bzip2 streams of about 100
//! pages each. The reader cuts the compressed file at stream starts (the bytes
//! `BZh1`-`BZh9` followed by the block magic `1AY&SY`) into chunks of whole
//! streams, and the workers decompress the chunks in parallel: bzip2
//! decompression, the usual bottleneck, then runs on every core. A dump with
//! one stream (or plain XML) is decompressed by the reader thread, and the
//! workers parse and count.

use std::io::{BufRead, Read};
use std::path::Path;

use wit_contract::{Error, IoContext, Progress, Result};

use crate::ngrams::{Feed, Work};
use crate::text::{wikitext_to_text, xml_unescape};

/// Compressed bytes per chunk handed to a worker.
const CHUNK: usize = 8 << 20;
/// Without a second stream start within this many bytes, a `.bz2` file is
/// read as one stream.
const SINGLE_STREAM_AFTER: usize = 64 << 20;

/// Calls `f` for each page of `xml`: `Some(plain text)` for an article
/// (namespace 0, not a redirect), `None` for a skipped page. Text before the
/// first `<page>` and after the last `</page>` (headers, cut pages) is ignored.
pub fn for_each_article(xml: &str, mut f: impl FnMut(Option<String>)) {
    let mut rest = xml;
    while let Some(start) = rest.find("<page>") {
        let Some(len) = rest[start..].find("</page>") else {
            break;
        };
        let page = &rest[start..start + len];
        rest = &rest[start + len + 7..];
        let article = page.contains("<ns>0</ns>") && !page.contains("<redirect");
        match (article, text_of(page)) {
            // The XML escapes the wikitext, whose own HTML entities (`&nbsp;`,
            // stored as `&amp;nbsp;`) are decoded in the resulting text.
            (true, Some(raw)) => f(Some(
                xml_unescape(&wikitext_to_text(&xml_unescape(raw))).into_owned(),
            )),
            _ => f(None),
        }
    }
}

/// The raw content of the page's `<text ...>` element.
fn text_of(page: &str) -> Option<&str> {
    let open = page.find("<text")?;
    let tag_end = open + page[open..].find('>')?;
    if page[..tag_end].ends_with('/') {
        return Some("");
    }
    let close = page[tag_end..].find("</text>")?;
    Some(&page[tag_end + 1..tag_end + close])
}

/// Decompresses whole bzip2 streams.
///
/// # Errors
/// [`Error::BadInput`] if the bytes are not valid bzip2.
pub fn decompress_bz2(bytes: &[u8]) -> Result<String> {
    let mut out = Vec::with_capacity(bytes.len() * 5);
    bzip2::read::MultiBzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| Error::bad_input("<bzip2 chunk>", format!("corrupt bzip2 data: {e}")))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Positions of bzip2 stream starts in `buf` at or after `from`.
fn stream_starts(buf: &[u8], from: usize) -> impl Iterator<Item = usize> + '_ {
    memchr::memmem::find_iter(&buf[from.min(buf.len())..], b"1AY&SY")
        .map(move |i| i + from)
        .filter(|&i| i >= 4 && &buf[i - 4..i - 1] == b"BZh" && (b'1'..=b'9').contains(&buf[i - 1]))
        .map(|i| i - 4)
}

/// Sends the pages of a Wikipedia dump to the workers.
///
/// # Errors
/// [`Error::BadInput`] naming the dump if it cannot be read or decompressed.
pub fn feed_dump(path: &Path, feed: &Feed<'_>, progress: &dyn Progress) -> Result<()> {
    let size = std::fs::metadata(path).at(path)?.len();
    progress.start(&format!("reading {}", path.display()), size, 0);
    let mut file = std::fs::File::open(path).at(path)?;
    let is_bz2 = path.extension().is_some_and(|e| e == "bz2");
    if !is_bz2 {
        return feed_xml(file, path, feed, progress, true);
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut eof = false;
    loop {
        // Fill up to one chunk beyond what we hold.
        if !eof {
            let target = buf.len() + CHUNK;
            let mut block = vec![0u8; target - buf.len()];
            let mut got = 0;
            while got < block.len() {
                let n = file.read(&mut block[got..]).at(path)?;
                if n == 0 {
                    eof = true;
                    break;
                }
                got += n;
            }
            buf.extend_from_slice(&block[..got]);
            progress.advance(got as u64);
        }
        if buf.is_empty() {
            break;
        }
        if !buf.starts_with(b"BZh") {
            return Err(Error::bad_input(path, "not a bzip2 file"));
        }
        match stream_starts(&buf, 1).last() {
            Some(cut) if cut >= CHUNK / 2 || (eof && cut > 0) => {
                let rest = buf.split_off(cut);
                send(feed, Work::Bz2(std::mem::replace(&mut buf, rest)))?;
            }
            _ if eof => {
                send(feed, Work::Bz2(std::mem::take(&mut buf)))?;
                break;
            }
            None if buf.len() >= SINGLE_STREAM_AFTER => {
                // One big stream: decompress here, let the workers parse.
                tracing::info!(
                    "{}: not a multistream dump; decompressing on one core",
                    path.display()
                );
                let held = std::mem::take(&mut buf);
                let reader =
                    bzip2::read::MultiBzDecoder::new(std::io::Cursor::new(held).chain(file));
                // Progress was counted in compressed bytes: the decompressed ones would overshoot it.
                return feed_xml(reader, path, feed, progress, false);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Sends decompressed XML in blocks of whole pages.
fn feed_xml(
    mut reader: impl Read,
    path: &Path,
    feed: &Feed<'_>,
    progress: &dyn Progress,
    count_progress: bool,
) -> Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    let mut block = vec![0u8; 4 << 20];
    loop {
        let n = reader
            .read(&mut block)
            .map_err(|e| Error::bad_input(path, format!("cannot read the dump: {e}")))?;
        if count_progress {
            progress.advance(n as u64);
        }
        if n == 0 {
            if !buf.is_empty() {
                send(feed, Work::Xml(String::from_utf8_lossy(&buf).into_owned()))?;
            }
            return Ok(());
        }
        buf.extend_from_slice(&block[..n]);
        if buf.len() >= CHUNK
            && let Some(end) = memchr::memmem::rfind(&buf, b"</page>")
        {
            let rest = buf.split_off(end + 7);
            let whole = std::mem::replace(&mut buf, rest);
            send(
                feed,
                Work::Xml(String::from_utf8_lossy(&whole).into_owned()),
            )?;
        }
    }
}

/// Sends a plain-text corpus (a file, or stdin for `-`) in blocks of whole lines.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn feed_corpus(path: &Path, feed: &Feed<'_>, progress: &dyn Progress) -> Result<()> {
    let mut reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let size = std::fs::metadata(path).at(path)?.len();
        progress.start(&format!("reading {}", path.display()), size, 0);
        Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(path).at(path)?,
        ))
    };
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK / 2 + 4096);
    loop {
        let n = reader.read_until(b'\n', &mut buf).at(path)?;
        if n == 0 || buf.len() >= CHUNK / 2 {
            if !buf.is_empty() {
                progress.advance(buf.len() as u64);
                let text = String::from_utf8_lossy(&buf).into_owned();
                buf.clear();
                send(feed, Work::Text(text))?;
            }
            if n == 0 {
                return Ok(());
            }
        }
    }
}

/// Sends work; an error tells the reader to stop because counting failed (the
/// worker's own error is what gets reported).
fn send(feed: &Feed<'_>, work: Work) -> Result<()> {
    if feed.send(work) {
        Ok(())
    } else {
        Err(Error::Usage(
            "counting stopped after a worker failed".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn articles_only() {
        let xml = "<mediawiki><siteinfo>x</siteinfo>\
            <page><title>Dog</title><ns>0</ns><revision><text bytes=\"9\" xml:space=\"preserve\">A '''dog''' &amp; [[cat]].</text></revision></page>\
            <page><title>Talk:Dog</title><ns>1</ns><revision><text>talk</text></revision></page>\
            <page><title>Hound</title><ns>0</ns><redirect title=\"Dog\" /><revision><text>#REDIRECT [[Dog]]</text></revision></page>\
            <page><title>Empty</title><ns>0</ns><revision><text bytes=\"0\" /></revision></page>\
            <page><title>Cut</title><ns>0</ns><revision><text>half";
        let mut got = Vec::new();
        for_each_article(xml, |t| got.push(t));
        assert_eq!(
            got,
            vec![
                Some("A dog & cat.\n".to_string()),
                None,
                None,
                Some(String::new())
            ]
        );
    }

    #[test]
    fn finds_stream_starts() {
        let mut a = Vec::new();
        for text in ["first stream", "second stream"] {
            let mut enc = bzip2::read::BzEncoder::new(text.as_bytes(), bzip2::Compression::best());
            enc.read_to_end(&mut a).unwrap();
        }
        let starts: Vec<usize> = stream_starts(&a, 0).collect();
        assert_eq!(starts.len(), 2);
        assert_eq!(starts[0], 0);
        assert_eq!(decompress_bz2(&a[starts[1]..]).unwrap(), "second stream");
        assert_eq!(decompress_bz2(&a).unwrap(), "first streamsecond stream");
    }
}
