//! From an HTML page to image-text candidates: one extractor for crawled pages
//! and archived ones.
//!
//! Each `<img>` gives its URL as a browser running the page's lazy-loading
//! script would show it (a lazy attribute such as `data-src`, else `src`
//! unless it is a placeholder, else the first `srcset` entry, else a
//! `<noscript>` fallback right after it; resolved against `<base href>` and
//! the page URL; http and https only) paired with each of its texts: `alt`, `title`, and the
//! `<figcaption>` of the `<figure>` it sits in. Images declared smaller than
//! 10 pixels on a side (tracking pixels) are skipped; texts are cleaned
//! (whitespace collapsed, trailing pilcrows removed) and boilerplate is
//! dropped: empty texts, file names and URLs, and single words such as
//! "image", "logo" or "next" that describe nothing. Pairs repeated on a page
//! are kept once.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;

use encoding_rs::Encoding;
use url::Url;
use wit_contract::records::Candidate;

/// Decodes an HTML body: the byte-order mark, else the charset of the HTTP
/// `Content-Type`, else a `<meta>` charset in the first 1024 bytes, else a
/// statistical guess (chardetng). Returns the text and the encoding (which
/// [`extract_in`] needs to resolve the page's URLs).
/// Also says whether the body held bytes invalid in that encoding (replaced
/// by U+FFFD).
pub fn decode_html(body: &[u8], content_type: Option<&str>) -> (String, &'static Encoding, bool) {
    let encoding = known_encoding(body, content_type).unwrap_or_else(|| guess_encoding(body));
    let (text, _, had_errors) = encoding.decode(body);
    (text.into_owned(), encoding, had_errors)
}

/// The encoding of an HTML body where no statistics are needed: its
/// byte-order mark, else the charset of the HTTP `Content-Type`, else a
/// `<meta>` charset in the first 1024 bytes, else UTF-8 if the body is
/// valid UTF-8 (chardetng answers UTF-8 for any valid UTF-8 input: its
/// UTF-8 candidate survives, and ISO-2022-JP detection is off). `None`
/// when only [`guess_encoding`] can tell.
fn known_encoding(body: &[u8], content_type: Option<&str>) -> Option<&'static Encoding> {
    let declared = Encoding::for_bom(body)
        .map(|(e, _)| e)
        .or_else(|| {
            content_type
                .and_then(charset_param)
                .and_then(|l| Encoding::for_label(l.as_bytes()))
        })
        .or_else(|| meta_charset(body).and_then(|l| Encoding::for_label(l.as_bytes())))
        .or_else(|| {
            std::str::from_utf8(body)
                .is_ok()
                .then_some(encoding_rs::UTF_8)
        })?;
    // A page that declares UTF-16 in a meta tag is in fact ASCII-compatible (HTML spec).
    if (declared == encoding_rs::UTF_16LE || declared == encoding_rs::UTF_16BE)
        && Encoding::for_bom(body).is_none()
    {
        return Some(encoding_rs::UTF_8);
    }
    Some(declared)
}

/// chardetng's guess for a body that declares no encoding and is not UTF-8.
fn guess_encoding(body: &[u8]) -> &'static Encoding {
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(body, true);
    detector.guess(None, chardetng::Utf8Detection::Allow)
}

/// [`extract`] of an undecoded HTML body, for readers of archives: the
/// links and frames are not read (left empty; `<a>`, `<area>` and frames
/// cost a fifth of the time on real pages), and the body is decoded as
/// [`decode_html`] would, with the same candidates, but without chardetng's
/// statistics where they cannot matter.
///
/// A body that declares no encoding and is not UTF-8 is first read as
/// windows-1252. If nothing the extractor read there (image attributes,
/// the title, captions, `<base>`, `lang`, robots directives) holds a byte
/// above 0x7F, the answer is the same in every encoding chardetng can
/// guess: each is ASCII-compatible, and their decoders never take an ASCII
/// byte into another character except as the trail of a lead byte above
/// 0x7F (WHATWG Encoding standard), which would have shown. Otherwise the
/// body is decoded with chardetng's guess and read again.
pub fn extract_images_from_body(
    page_url: &str,
    body: &[u8],
    content_type: Option<&str>,
    content_language: Option<&str>,
) -> PageCandidates {
    if let Some(encoding) = known_encoding(body, content_type) {
        let (text, _, _) = encoding.decode(body);
        return extract_page(page_url, &text, content_language, false, encoding).0;
    }
    let cp1252 = encoding_rs::WINDOWS_1252;
    let (text, _, _) = cp1252.decode(body);
    let (page, non_ascii) = extract_page(page_url, &text, content_language, false, cp1252);
    if !non_ascii {
        return page;
    }
    let encoding = guess_encoding(body);
    let (text, _, _) = encoding.decode(body);
    extract_page(page_url, &text, content_language, false, encoding).0
}

/// The encoding a `Content-Type` value's `charset` names (a WHATWG
/// Encoding label), if any.
pub fn content_type_encoding(content_type: &str) -> Option<&'static Encoding> {
    charset_param(content_type).and_then(|l| Encoding::for_label(l.as_bytes()))
}

fn charset_param(content_type: &str) -> Option<String> {
    content_type.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches(['"', '\'']).to_string())
    })
}

fn meta_charset(body: &[u8]) -> Option<String> {
    let head = &body[..body.len().min(1024)];
    let lower: Vec<u8> = head.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&lower[from..], b"<meta") {
        let start = from + i;
        let end = lower[start..]
            .iter()
            .position(|&b| b == b'>')
            .map_or(lower.len(), |e| start + e);
        let tag = &lower[start..end];
        if let Some(c) = memchr::memmem::find(tag, b"charset=") {
            let v = &tag[c + 8..];
            let v: Vec<u8> = v
                .iter()
                .copied()
                .skip_while(|&b| b == b'"' || b == b'\'' || b == b' ')
                .take_while(|&b| !matches!(b, b'"' | b'\'' | b' ' | b';' | b'/' | b'>'))
                .collect();
            if !v.is_empty() {
                return Some(String::from_utf8_lossy(&v).into_owned());
            }
        }
        from = end;
    }
    None
}

/// What a page gave.
#[derive(Debug, Clone, Default)]
pub struct PageCandidates {
    /// The candidates, in document order.
    pub candidates: Vec<Candidate>,
    /// `<img>` elements seen.
    pub images: u64,
    /// Images skipped: no usable URL.
    pub no_url: u64,
    /// Images skipped: declared tiny.
    pub tiny: u64,
    /// Images skipped: their only URL is a placeholder (a `data:` URI, a
    /// spacer such as `blank.gif`, or one `src` shared by several images
    /// with different texts, one of them marked as lazy-loaded) and no
    /// lazy-loading attribute or `<noscript>`
    /// fallback names the real one.
    pub placeholder: u64,
    /// Candidates whose URL came from a lazy-loading attribute or a
    /// `<noscript>` fallback instead of `src`.
    pub lazy: u64,
    /// Texts dropped as boilerplate or empty.
    pub boilerplate: u64,
    /// Pairs dropped as repeats on the page.
    pub repeats: u64,
    /// Links to follow (`<a href>`, `<area href>`), absolute http(s) URLs
    /// without fragment, in document order, each once; empty if the page says
    /// `nofollow`. Links marked `rel="nofollow"` are left out.
    pub links: Vec<String>,
    /// Documents the page embeds (`<iframe src>`, `<frame src>`): fetched
    /// after pages, as assets.
    pub frames: Vec<String>,
    /// The page's `<meta name="robots">` (or `witbot`) says `nofollow`.
    pub nofollow: bool,
    /// The page's `<meta name="robots">` says `noindex` (or `none`): its
    /// images are not used.
    pub noindex: bool,
    /// Where the page's `<meta http-equiv="refresh">` sends a browser: the
    /// absolute http(s) URL of its `url=` part, unless it is the page
    /// itself (a timed reload). Not subject to `nofollow`: a browser goes
    /// there without a click.
    pub refresh: Option<String>,
}

/// The URL of a declarative refresh (`<meta http-equiv="refresh">`'s
/// content, or the HTTP `Refresh` header): `5; url=next.html`,
/// `0;URL='next.html'`, `0, next.html`, as the HTML standard's "shared
/// declarative refresh steps" parse it; `None` where it names no URL (a
/// reload of the page itself) or its delay is not a number.
pub fn refresh_target(content: &str) -> Option<&str> {
    let s = content.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let digits = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    if digits == 0 || !s[..digits].starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let s = s[digits..].trim_start_matches(|c: char| c.is_ascii_whitespace());
    let s = s
        .strip_prefix([';', ','])
        .unwrap_or(s)
        .trim_start_matches(|c: char| c.is_ascii_whitespace());
    let s = match s.get(..3) {
        Some(u) if u.eq_ignore_ascii_case("url") => {
            let rest = s[3..].trim_start_matches(|c: char| c.is_ascii_whitespace());
            match rest.strip_prefix('=') {
                Some(r) => r.trim_start_matches(|c: char| c.is_ascii_whitespace()),
                None => s,
            }
        }
        _ => s,
    };
    let url = match s.chars().next() {
        Some(q @ ('\'' | '"')) => s[1..].split(q).next().unwrap_or(""),
        _ => s,
    };
    let url = url.trim_end_matches(|c: char| c.is_ascii_whitespace());
    (!url.is_empty()).then_some(url)
}

/// Single words that describe no image.
const BOILERPLATE: &[&str] = &[
    "image",
    "img",
    "photo",
    "picture",
    "pic",
    "icon",
    "logo",
    "spacer",
    "banner",
    "blank",
    "thumbnail",
    "thumb",
    "placeholder",
    "loading",
    "avatar",
    "home",
    "next",
    "previous",
    "prev",
    "back",
    "menu",
    "search",
    "close",
    "more",
    "share",
    "print",
    "top",
    "up",
    "down",
    "left",
    "right",
    "arrow",
    "button",
    "click",
    "here",
    "link",
    "rss",
    "feed",
    "facebook",
    "twitter",
    "email",
    "untitled",
    "null",
    "undefined",
    "none",
    "alt",
];

/// Cleans a text; `None` if it is boilerplate.
pub fn clean_text(raw: &str) -> Option<String> {
    let text: String = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = text
        .trim_end_matches(|c: char| c == '¶' || c.is_whitespace())
        .to_string();
    if text.is_empty() {
        return None;
    }
    let lower = text.to_lowercase();
    if BOILERPLATE.contains(&lower.trim_matches(|c: char| !c.is_alphanumeric())) {
        return None;
    }
    if wit_contract::text::is_file_name_or_url(&text) || lower.chars().all(|c| !c.is_alphabetic()) {
        return None;
    }
    Some(text)
}

fn parse_dimension(v: Option<&str>) -> Option<u32> {
    let v = v?.trim().trim_end_matches("px").trim();
    v.parse::<f64>()
        .ok()
        .filter(|d| d.is_finite() && *d >= 0.0)
        .map(|d| d.min(u32::MAX as f64) as u32)
}

impl PageCandidates {
    /// The image counters of the page, as the crawl and extract stages
    /// name them: `images`, `images_tiny`, `images_no_url`,
    /// `images_placeholder`, `candidates_lazy`.
    pub fn image_counts(&self) -> [(&'static str, u64); 5] {
        [
            ("images", self.images),
            ("images_tiny", self.tiny),
            ("images_no_url", self.no_url),
            ("images_placeholder", self.placeholder),
            ("candidates_lazy", self.lazy),
        ]
    }
}

/// An `<img>` as the scan found it.
#[derive(Debug, Default)]
struct Img {
    /// Its attributes, names in lower case, values with character
    /// references decoded, in source order (a repeated name: the first wins).
    attrs: Vec<(String, String)>,
    /// The nearest `<figure>` it sits in (an index into `Scan::captions`).
    figure: Option<usize>,
    /// The `src` of the first `<img>` inside a `<noscript>` that is its next
    /// sibling element, if there is such a `<noscript>`.
    fallback: Option<Option<String>>,
}

impl Img {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What one streaming pass over a page collects: the elements the extractor
/// reads, in document order, with just enough state to answer the questions
/// a tree would (the `<figure>` an image sits in and its first
/// `<figcaption>`, the `<noscript>` right after an image).
#[derive(Debug, Default)]
struct Scan {
    /// The first `<base href>`'s `href`.
    base: Option<String>,
    /// The first `<title>`'s text, raw (as the tokenizer gives it).
    title: Option<String>,
    /// The first `<title>` is open: its text is being collected.
    title_open: bool,
    /// `lang` and `xml:lang` of the `<html>` element; a later `<html>` tag
    /// adds the attributes the first lacks (HTML standard, "in body").
    lang: Option<String>,
    xml_lang: Option<String>,
    /// `<meta name content>` says `nofollow`, `noindex`.
    nofollow: bool,
    noindex: bool,
    /// The first `<meta http-equiv="refresh">`'s content.
    refresh: Option<String>,
    /// `<a href>` and `<area href>`: the `href`, and whether `rel` says
    /// `nofollow`.
    links: Vec<(String, bool)>,
    /// `<iframe src>` and `<frame src>`.
    frames: Vec<String>,
    imgs: Vec<Img>,
    /// The open `<figure>` elements, outermost first.
    figures: Vec<usize>,
    /// Each `<figure>`'s first `<figcaption>` text, once one has begun.
    captions: Vec<Option<String>>,
    /// The figures whose caption is being collected.
    capturing: Vec<usize>,
    /// The image whose sibling `<noscript>` is being read, until the first
    /// `<img>` in it is seen.
    fallback_for: Option<usize>,
    /// Whether links and frames are read.
    read_links: bool,
    /// Some text the extractor reads (an attribute of an image, the title,
    /// a caption, `<base>`, `lang`, robots directives) held a non-ASCII
    /// character before character references were decoded.
    non_ascii: bool,
}

/// How deep `<noscript>` elements nest before their content is no longer
/// read (a page of a million nested ones must not exhaust the stack).
const MAX_NOSCRIPT_DEPTH: u32 = 4;

/// Decodes the character references of an attribute value (HTML standard
/// 13.2.5.72, with its rule for attributes: `&copy=` stays as it is).
fn attr_value(raw: String) -> String {
    if raw.contains('&') {
        htmlize::unescape_attribute(&raw).into_owned()
    } else {
        raw
    }
}

/// Appends a text node's chunk to `into`, decoding character references
/// where the text allows them (data and RCDATA; not script or style).
fn push_text(into: &mut String, chunk: &lol_html::html_content::TextChunk<'_>) {
    let text = chunk.as_str();
    if chunk.text_type().allows_html_entities() && text.contains('&') {
        into.push_str(&htmlize::unescape(text));
    } else {
        into.push_str(text);
    }
}

/// Whether the markup between the end of an `<img>` tag and a `<noscript>`
/// start tag holds only text and comments, so that the `<noscript>` is the
/// image's next sibling element. Any tag in between (an element, or the end
/// of one such as the image's parent) says no; a stray end tag the tree
/// builder would ignore is read as an end too.
fn only_text_between(between: &str) -> bool {
    let b = between.as_bytes();
    let mut i = 0;
    while let Some(at) = memchr::memchr(b'<', &b[i..]) {
        let at = i + at;
        let rest = &b[at + 1..];
        if rest.starts_with(b"!--") {
            match memchr::memmem::find(&rest[3..], b"-->") {
                Some(e) => i = at + 1 + 3 + e + 3,
                None => return true,
            }
            continue;
        }
        let tag = rest.strip_prefix(b"/").unwrap_or(rest);
        if tag.first().is_some_and(u8::is_ascii_alphabetic) {
            return false;
        }
        i = at + 1;
    }
    true
}

/// Runs one streaming pass (lol_html) over `input`, adding what it finds to
/// `scan`; the content of each `<noscript>` is read by a nested pass, as a
/// browser with scripting off parses it (elements, not text).
fn scan_pass(input: &str, scan: &Rc<RefCell<Scan>>, depth: u32) {
    use lol_html::{Settings, doc_text, element, end_tag, text};
    // The end of the last `<img>` tag of this pass, and its index.
    let last_img: Cell<Option<(usize, usize)>> = Cell::new(None);
    // The raw content of the `<noscript>` being read, if one is open.
    let noscript: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
    let mut text_node = String::new();
    let mut handlers = vec![
        element!("base[href]", |el| {
            let mut s = scan.borrow_mut();
            if s.base.is_none() {
                let href = el.get_attribute("href");
                s.non_ascii |= href.as_ref().is_some_and(|h| !h.is_ascii());
                s.base = href.map(attr_value);
            }
            Ok(())
        }),
        element!("title", |el| {
            let mut s = scan.borrow_mut();
            if s.title.is_none() {
                s.title = Some(String::new());
                s.title_open = true;
                let scan = Rc::clone(scan);
                let _ = el.on_end_tag(end_tag!(move |_| {
                    scan.borrow_mut().title_open = false;
                    Ok(())
                }));
            }
            Ok(())
        }),
        text!("title", |t| {
            let mut s = scan.borrow_mut();
            if s.title_open
                && let Some(title) = &mut s.title
            {
                push_text(title, t);
                s.non_ascii |= !t.as_str().is_ascii();
            }
            Ok(())
        }),
        element!("html", |el| {
            let mut s = scan.borrow_mut();
            let s = &mut *s;
            for (name, slot) in [("lang", &mut s.lang), ("xml:lang", &mut s.xml_lang)] {
                if slot.is_none() {
                    *slot = el.get_attribute(name);
                }
            }
            s.non_ascii |= [&s.lang, &s.xml_lang]
                .iter()
                .any(|v| v.as_ref().is_some_and(|v| !v.is_ascii()));
            Ok(())
        }),
        element!("meta[http-equiv][content]", |el| {
            let equiv = el.get_attribute("http-equiv").unwrap_or_default();
            let mut s = scan.borrow_mut();
            if equiv.trim().eq_ignore_ascii_case("refresh") && s.refresh.is_none() {
                let content = el.get_attribute("content").unwrap_or_default();
                s.non_ascii |= !content.is_ascii();
                s.refresh = Some(attr_value(content));
            }
            Ok(())
        }),
        element!("meta[name][content]", |el| {
            let name = el.get_attribute("name").map(attr_value).unwrap_or_default();
            let name = name.trim();
            if name.eq_ignore_ascii_case("robots") || name.eq_ignore_ascii_case(ROBOTS_TOKEN) {
                let mut s = scan.borrow_mut();
                let content = el.get_attribute("content").unwrap_or_default();
                s.non_ascii |= !content.is_ascii();
                let content = attr_value(content);
                for d in content.split(',') {
                    match d.trim().to_ascii_lowercase().as_str() {
                        "nofollow" => s.nofollow = true,
                        "noindex" => s.noindex = true,
                        "none" => (s.nofollow, s.noindex) = (true, true),
                        _ => {}
                    }
                }
            }
            Ok(())
        }),
        element!("figure", |el| {
            let mut s = scan.borrow_mut();
            let id = s.captions.len();
            s.captions.push(None);
            s.figures.push(id);
            let scan = Rc::clone(scan);
            let _ = el.on_end_tag(end_tag!(move |_| {
                let mut s = scan.borrow_mut();
                if let Some(at) = s.figures.iter().rposition(|&f| f == id) {
                    s.figures.truncate(at);
                }
                s.capturing.retain(|&f| f != id);
                Ok(())
            }));
            Ok(())
        }),
        element!("figcaption", |el| {
            let mut s = scan.borrow_mut();
            let Scan {
                figures,
                captions,
                capturing,
                ..
            } = &mut *s;
            let mine: Vec<usize> = figures
                .iter()
                .copied()
                .filter(|&f| captions[f].is_none())
                .collect();
            for &f in &mine {
                captions[f] = Some(String::new());
                capturing.push(f);
            }
            if !mine.is_empty() {
                let scan = Rc::clone(scan);
                let _ = el.on_end_tag(end_tag!(move |_| {
                    scan.borrow_mut().capturing.retain(|f| !mine.contains(f));
                    Ok(())
                }));
            }
            Ok(())
        }),
        element!("img, image", |el| {
            // `<image>` is read as `<img>` in HTML content, not in SVG.
            if el.tag_name() == "image" && el.namespace_uri() != "http://www.w3.org/1999/xhtml" {
                return Ok(());
            }
            let mut non_ascii = false;
            let mut img = Img {
                attrs: el
                    .attributes()
                    .iter()
                    .map(|a| {
                        let v = a.value();
                        non_ascii |= !v.is_ascii();
                        (a.name(), attr_value(v))
                    })
                    .collect(),
                ..Img::default()
            };
            let mut s = scan.borrow_mut();
            s.non_ascii |= non_ascii;
            img.figure = s.figures.last().copied();
            if let Some(of) = s.fallback_for.take() {
                s.imgs[of].fallback = Some(img.attr("src").map(str::to_string));
            }
            last_img.set(Some((s.imgs.len(), el.source_location().bytes().end)));
            s.imgs.push(img);
            Ok(())
        }),
    ];
    if scan.borrow().read_links {
        handlers.push(element!("a[href], area[href]", |el| {
            let href = el.get_attribute("href").map(attr_value).unwrap_or_default();
            let nofollow = el.get_attribute("rel").is_some_and(|r| {
                attr_value(r)
                    .split_whitespace()
                    .any(|t| t.eq_ignore_ascii_case("nofollow"))
            });
            scan.borrow_mut().links.push((href, nofollow));
            Ok(())
        }));
        handlers.push(element!("iframe[src], frame[src]", |el| {
            let src = el.get_attribute("src").map(attr_value).unwrap_or_default();
            scan.borrow_mut().frames.push(src);
            Ok(())
        }));
    }
    if depth < MAX_NOSCRIPT_DEPTH {
        handlers.push(element!("noscript", |el| {
            let start = el.source_location().bytes().start;
            let mut s = scan.borrow_mut();
            if let Some((img, end)) = last_img.get()
                && end <= start
                && only_text_between(&input[end..start])
                && s.imgs[img].fallback.is_none()
            {
                s.fallback_for = Some(img);
                s.imgs[img].fallback = Some(None);
            }
            *noscript.borrow_mut() = Some(String::new());
            let (scan, noscript) = (Rc::clone(scan), Rc::clone(&noscript));
            let _ = el.on_end_tag(end_tag!(move |_| {
                if let Some(content) = noscript.borrow_mut().take() {
                    scan_pass(&content, &scan, depth + 1);
                }
                scan.borrow_mut().fallback_for = None;
                Ok(())
            }));
            Ok(())
        }));
        handlers.push(text!("noscript", |t| {
            if let Some(content) = &mut *noscript.borrow_mut() {
                content.push_str(t.as_str());
            }
            Ok(())
        }));
    }
    // The text of a figure's caption: its text nodes, and (in a nested pass)
    // the text of a `<noscript>` inside it.
    let mut on_caption_text =
        |t: &mut lol_html::html_content::TextChunk<'_>| -> lol_html::HandlerResult {
            if noscript.borrow().is_some() {
                return Ok(());
            }
            push_text(&mut text_node, t);
            if !t.as_str().is_ascii() {
                scan.borrow_mut().non_ascii = true;
            }
            if t.last_in_text_node() {
                let mut s = scan.borrow_mut();
                let Scan {
                    captions,
                    capturing,
                    ..
                } = &mut *s;
                for &f in capturing.iter() {
                    if let Some(c) = &mut captions[f] {
                        c.push_str(&text_node);
                    }
                }
                text_node.clear();
            }
            Ok(())
        };
    let mut document = Vec::new();
    if depth == 0 {
        handlers.push(text!("figcaption", &mut on_caption_text));
    } else {
        document.push(doc_text!(&mut on_caption_text));
    }
    let settings = Settings {
        element_content_handlers: handlers,
        document_content_handlers: document,
        // Markup whose reading depends on the tree builder is read as the
        // tokenizer sees it rather than refused.
        strict: false,
        ..Settings::new()
    };
    let mut rewriter = lol_html::HtmlRewriter::new(settings, |_: &[u8]| {});
    // Neither can fail: the handlers return no errors and memory is not
    // capped.
    let _ = rewriter.write(input.as_bytes());
    let _ = rewriter.end();
    // A `<noscript>` open at the end of the document holds the rest of it.
    let open = noscript.borrow_mut().take();
    if let Some(content) = open {
        scan_pass(&content, scan, depth + 1);
        scan.borrow_mut().fallback_for = None;
    }
}

/// Extracts the candidates of one page. `page_url` must be absolute.
///
/// The page is read in one streaming pass (lol_html's tokenizer), not built
/// into a tree; the answers are those of the HTML standard's tree builder
/// with scripting off (`<noscript>` content read as elements), except that
/// an SVG `<title>` is not taken for the page's title and a stray end tag
/// between an image and its `<noscript>` fallback ends their adjacency
/// (ARCHITECTURE.md, the extract stage).
///
/// The page is taken as decoded from UTF-8; [`extract_in`] for another encoding.
pub fn extract(page_url: &str, html: &str, content_language: Option<&str>) -> PageCandidates {
    extract_in(page_url, html, content_language, encoding_rs::UTF_8)
}

/// [`extract`] of a page decoded from `encoding`: the query of each URL it
/// holds is encoded in that encoding, as a browser encodes it (WHATWG URL
/// standard, the URL parser's encoding; HTML: a document's URLs are parsed
/// with its encoding), a character the encoding lacks as `%26%23NNN%3B`.
pub fn extract_in(
    page_url: &str,
    html: &str,
    content_language: Option<&str>,
    encoding: &'static Encoding,
) -> PageCandidates {
    extract_page(page_url, html, content_language, true, encoding).0
}

/// `query` in `encoding`, each character it lacks as `%26%23NNN%3B` (the
/// decimal reference `&#NNN;` percent-encoded: the WHATWG URL standard's
/// "percent-encode after encoding"); the `url` crate percent-encodes the rest.
fn encode_query(encoding: &'static Encoding, query: &str) -> Vec<u8> {
    use encoding_rs::EncoderResult;
    let mut encoder = encoding.new_encoder();
    let mut out = Vec::with_capacity(query.len() + 16);
    let mut rest = query;
    loop {
        let room = encoder
            .max_buffer_length_from_utf8_without_replacement(rest.len())
            .unwrap_or(rest.len() * 4 + 16);
        out.reserve(room);
        let (result, read) =
            encoder.encode_from_utf8_to_vec_without_replacement(rest, &mut out, true);
        rest = &rest[read..];
        match result {
            EncoderResult::InputEmpty => return out,
            EncoderResult::OutputFull => {}
            EncoderResult::Unmappable(c) => {
                out.extend_from_slice(format!("%26%23{}%3B", u32::from(c)).as_bytes());
            }
        }
    }
}

/// A document's base URL and encoding: what its relative URLs resolve against.
struct Base {
    url: Url,
    encoding: &'static Encoding,
}

impl Base {
    fn join(&self, raw: &str) -> Option<Url> {
        resolve_url(&self.url, raw, self.encoding)
    }
}

/// `raw` (a URL as a document of `encoding` holds it) parsed against
/// `base`: its query encoded in the encoding's output encoding (UTF-8 for
/// UTF-16 and `replacement`), which the `url` crate applies to http, https,
/// file and ftp URLs only, as the WHATWG URL standard says. `None` where it
/// is no URL.
pub fn resolve_url(base: &Url, raw: &str, encoding: &'static Encoding) -> Option<Url> {
    let encoding = encoding.output_encoding();
    if encoding == encoding_rs::UTF_8 {
        return base.join(raw).ok();
    }
    let encode: &dyn Fn(&str) -> std::borrow::Cow<'_, [u8]> =
        &|s| std::borrow::Cow::Owned(encode_query(encoding, s));
    Url::options()
        .base_url(Some(base))
        .encoding_override(Some(encode))
        .parse(raw)
        .ok()
}

/// [`extract`], reading links and frames or not; also says whether
/// anything read held a non-ASCII character (see
/// [`extract_images_from_body`]).
fn extract_page(
    page_url: &str,
    html: &str,
    content_language: Option<&str>,
    links: bool,
    encoding: &'static Encoding,
) -> (PageCandidates, bool) {
    let mut out = PageCandidates::default();
    let Ok(page) = Url::parse(page_url) else {
        return (out, false);
    };
    let scan = Rc::new(RefCell::new(Scan {
        read_links: links,
        ..Scan::default()
    }));
    scan_pass(html, &scan, 0);
    let Ok(scan) = Rc::try_unwrap(scan).map(RefCell::into_inner) else {
        unreachable!("the scan's handlers are dropped with its rewriters");
    };
    let non_ascii = scan.non_ascii;
    let document = Base {
        url: page.clone(),
        encoding,
    };
    let base = Base {
        url: scan
            .base
            .as_deref()
            .and_then(|h| document.join(h))
            .unwrap_or_else(|| page.clone()),
        encoding,
    };
    let title = scan
        .title
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|t| !t.is_empty());
    let lang = scan
        .lang
        .or(scan.xml_lang)
        .map(attr_value)
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .or_else(|| content_language.map(|c| c.split(',').next().unwrap_or("").trim().to_string()))
        .filter(|l| !l.is_empty());
    (out.nofollow, out.noindex) = (scan.nofollow, scan.noindex);
    out.refresh = scan
        .refresh
        .as_deref()
        .and_then(refresh_target)
        .and_then(|u| link_url(Some(u), &base))
        .filter(|u| {
            let mut page = page.clone();
            page.set_fragment(None);
            u != page.as_str()
        });
    if !out.nofollow {
        let mut seen_links: HashSet<String> = HashSet::new();
        for (href, nofollow) in &scan.links {
            if let (false, Some(url)) = (nofollow, link_url(Some(href), &base))
                && seen_links.insert(url.clone())
            {
                out.links.push(url);
            }
        }
        for src in &scan.frames {
            if let Some(url) = link_url(Some(src), &base)
                && seen_links.insert(url.clone())
            {
                out.frames.push(url);
            }
        }
    }
    if out.noindex {
        out.images = scan.imgs.len() as u64;
        return (out, non_ascii);
    }
    let shared = shared_sources(&scan.imgs);
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for img in &scan.imgs {
        out.images += 1;
        let width = parse_dimension(img.attr("width"));
        let height = parse_dimension(img.attr("height"));
        if width.is_some_and(|w| w < 10) || height.is_some_and(|h| h < 10) {
            out.tiny += 1;
            continue;
        }
        let (url, lazy) = match image_url(img, &base, &shared) {
            Ok(found) => found,
            Err(NoUrl::Placeholder) => {
                out.placeholder += 1;
                continue;
            }
            Err(NoUrl::None) => {
                out.no_url += 1;
                continue;
            }
        };
        let mut texts: Vec<(&str, &str)> = Vec::new();
        for source in ["alt", "title"] {
            if let Some(raw) = img.attr(source) {
                texts.push((source, raw));
            }
        }
        if let Some(caption) = img.figure.and_then(|f| scan.captions[f].as_deref()) {
            texts.push(("figcaption", caption));
        }
        for (source, raw) in texts {
            let Some(text) = clean_text(raw) else {
                out.boilerplate += 1;
                continue;
            };
            if text.eq_ignore_ascii_case(url.rsplit('/').next().unwrap_or("")) {
                out.boilerplate += 1;
                continue;
            }
            if !seen.insert((url.clone(), text.clone())) {
                out.repeats += 1;
                continue;
            }
            if lazy {
                out.lazy += 1;
            }
            let mut c = Candidate::new(url.clone(), text, source, page_url);
            c.page_title = title.clone();
            c.page_lang = lang.clone();
            c.width = width;
            c.height = height;
            out.candidates.push(c);
        }
    }
    (out, non_ascii)
}

/// The product token the crawler answers to in robots rules and meta tags.
pub const ROBOTS_TOKEN: &str = wit_net::ROBOTS_TOKEN;

fn link_url(raw: Option<&str>, base: &Base) -> Option<String> {
    let raw = raw?.trim();
    if raw.is_empty() || raw.starts_with('#') {
        return None;
    }
    let mut url = base.join(raw)?;
    url.set_fragment(None);
    matches!(url.scheme(), "http" | "https").then(|| url.to_string())
}

/// Attributes where lazy-loading libraries keep an image's real URL while
/// `src` holds a placeholder, in the order looked up: lazysizes, lozad and
/// vanilla-lazyload (`data-src`), WordPress and Jetpack (`data-lazy-src`),
/// jQuery lazyload (`data-original`), slick (`data-lazy`), echo.js
/// (`data-echo`), and others seen on real pages. A browser running the
/// page's scripts shows these, so they win over `src`.
const LAZY_SRC: &[&str] = &[
    "data-src",
    "data-lazy-src",
    "data-original",
    "data-lazy",
    "data-echo",
    "data-original-src",
    "data-hi-res-src",
    "data-actualsrc",
    "data-lazyload",
    "data-url",
];

/// The `srcset` counterparts of [`LAZY_SRC`].
const LAZY_SRCSET: &[&str] = &["data-srcset", "data-lazy-srcset", "data-original-set"];

/// File names (their stem's words) of the spacer images pages put in `src`
/// until a script swaps the real one in, or put as layout spacers: taken
/// for placeholders wherever they appear.
const SPACER_WORDS: &[&str] = &[
    "blank",
    "spacer",
    "transparent",
    "placeholder",
    "lazy",
    "lazyload",
    "loading",
    "loader",
    "spinner",
    "1x1",
];

/// Spacer words that also name real pictures (`gray.jpg`, `clear.png`,
/// `pixel.jpg`): a placeholder only on an `<img>` marked as lazy-loaded
/// ([`marked_lazy`]).
const SPACER_WORDS_IF_LAZY: &[&str] = &["pixel", "px", "trans", "clear", "empty", "grey", "gray"];

/// Why an `<img>` gives no URL.
enum NoUrl {
    /// Only a placeholder.
    Placeholder,
    /// Nothing usable at all.
    None,
}

/// The `src` values that several `<img>` of the page share with different
/// texts, at least one of them marked as lazy-loaded ([`marked_lazy`]): a
/// spacer swapped out by a script, not an image of each text. Without a
/// mark, a shared `src` is one image shown several times, each with its
/// own text (a documentation page's example figure): real pairs.
fn shared_sources(imgs: &[Img]) -> HashSet<String> {
    let mut by_src: std::collections::HashMap<&str, (u32, HashSet<&str>, bool)> =
        std::collections::HashMap::new();
    for img in imgs {
        if let Some(src) = img.attr("src").map(str::trim) {
            let e = by_src.entry(src).or_default();
            e.0 += 1;
            if let Some(alt) = img.attr("alt") {
                e.1.insert(alt.trim());
            }
            e.2 |= marked_lazy(img);
        }
    }
    by_src
        .into_iter()
        .filter(|(_, (n, alts, marked))| *n >= 3 && alts.len() >= 2 && *marked)
        .map(|(src, _)| src.to_string())
        .collect()
}

/// Whether anything marks an `<img>` as one a script loads later: a
/// lazy-loading attribute (of [`LAZY_SRC`], [`LAZY_SRCSET`], or any name
/// holding `lazy`, even empty), a class naming it (`lazyload`, `lazy`,
/// `js-lazy`, `b-lazy`), or a `<noscript>` copy right after it. Native
/// `loading="lazy"` is no mark: its `src` is the real image.
fn marked_lazy(img: &Img) -> bool {
    let lazy_name =
        |n: &str| n.contains("lazy") || LAZY_SRC.contains(&n) || LAZY_SRCSET.contains(&n);
    img.fallback.is_some()
        || img.attrs.iter().any(|(n, v)| {
            (n != "loading" && n != "class" && lazy_name(n))
                || (n == "class"
                    && v.split_ascii_whitespace()
                        .any(|c| c.to_ascii_lowercase().contains("lazy")))
        })
}

/// Whether a `src` value is a stand-in for the real image: a `data:` URI,
/// a `src` of [`shared_sources`], or a spacer's file name (every word of
/// its stem in [`SPACER_WORDS`], or in [`SPACER_WORDS_IF_LAZY`] too where
/// the `<img>` is `marked` lazy).
fn is_placeholder(src: &str, shared: &HashSet<String>, marked: bool) -> bool {
    if src.starts_with("data:") || shared.contains(src) {
        return true;
    }
    let name = src.split(['?', '#']).next().unwrap_or("");
    let name = name.rsplit('/').next().unwrap_or("");
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let mut words = stem
        .split(['-', '_', '.', ' '])
        .filter(|w| !w.is_empty())
        .peekable();
    words.peek().is_some()
        && words.all(|w| {
            let w = w.to_ascii_lowercase();
            SPACER_WORDS.contains(&w.as_str())
                || (marked && SPACER_WORDS_IF_LAZY.contains(&w.as_str()))
        })
}

/// The URL of an `<img>`, read as a browser running the page's lazy-loading
/// script would show it, and whether it came from elsewhere than `src`
/// and `srcset` (a lazy attribute, a `<noscript>` fallback): a lazy
/// attribute; else `src` unless it is a placeholder; else `srcset`'s first
/// candidate; else the `<img>` of a `<noscript>` right after it.
fn image_url(el: &Img, base: &Base, shared: &HashSet<String>) -> Result<(String, bool), NoUrl> {
    let usable = |v: &&str| {
        let v = v.trim();
        !v.is_empty() && !v.starts_with("data:") && !v.starts_with("javascript:")
    };
    // The first candidate's URL is its first whitespace-separated token
    // (URLs may hold commas); a trailing comma ends a bare URL.
    let first_of_set = |set: &'_ str| -> Option<String> {
        set.split_whitespace()
            .next()
            .map(|u| u.trim_end_matches(',').to_string())
            .filter(|u| usable(&u.as_str()))
    };
    let resolve = |raw: &str| -> Option<String> {
        let url = base.join(raw.trim())?;
        matches!(url.scheme(), "http" | "https").then(|| url.to_string())
    };
    let lazy = LAZY_SRC
        .iter()
        .find_map(|a| el.attr(a).filter(usable).map(str::to_string))
        .or_else(|| {
            LAZY_SRCSET
                .iter()
                .find_map(|a| el.attr(a).and_then(first_of_set))
        });
    if let Some(url) = lazy.as_deref().and_then(resolve) {
        return Ok((url, true));
    }
    let src = el.attr("src").map(str::trim).filter(|s| !s.is_empty());
    let marked = marked_lazy(el);
    let placeholder = src.is_some_and(|s| is_placeholder(s, shared, marked));
    if let Some(url) = src.filter(|s| !placeholder && usable(s)).and_then(resolve) {
        return Ok((url, false));
    }
    if let Some(url) = el
        .attr("srcset")
        .and_then(first_of_set)
        .as_deref()
        .and_then(resolve)
    {
        return Ok((url, false));
    }
    // `<img class="lazyload"><noscript><img src="real.jpg"></noscript>`.
    if src.is_some() && !placeholder {
        return Err(NoUrl::None);
    }
    let fallback = el
        .fallback
        .as_ref()
        .and_then(Option::as_deref)
        .filter(usable)
        .filter(|s| !is_placeholder(s.trim(), shared, marked))
        .and_then(resolve);
    match fallback {
        Some(url) => Ok((url, true)),
        None if placeholder => Err(NoUrl::Placeholder),
        None => Err(NoUrl::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcut for valid UTF-8 gives chardetng's own answer.
    #[test]
    fn valid_utf8_is_what_chardetng_would_guess() {
        let pages: [&[u8]; 4] = [
            b"<p>plain ASCII, no charset</p>",
            "<p>Gr\u{fc}\u{df}e aus K\u{f6}ln</p>".as_bytes(),
            "<p>\u{65e5}\u{672c}\u{8a9e}\u{306e}\u{30da}\u{30fc}\u{30b8}</p>".as_bytes(),
            b"<p>\x1b$B escape bytes, still ASCII</p>",
        ];
        for body in pages {
            let mut d = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
            d.feed(body, true);
            let theirs = d.guess(None, chardetng::Utf8Detection::Allow);
            assert_eq!(theirs, encoding_rs::UTF_8, "{body:?}");
            let (text, name, bad) = decode_html(body, None);
            assert_eq!(
                (text.as_bytes(), name, bad),
                (body, encoding_rs::UTF_8, false)
            );
        }
        // Not UTF-8: chardetng still decides.
        let (_, name, _) = decode_html(b"<p>caf\xe9 cr\xe8me br\xfbl\xe9e</p>", None);
        assert_eq!(name, encoding_rs::WINDOWS_1252);
    }

    #[test]
    fn extracts_alt_title_and_figcaption_with_base_and_filters() {
        let html = r#"<html lang="en"><head><title> A  page </title><base href="/media/"></head><body>
            <img src="dog.jpg" alt=" A brown   dog ¶ " title="Dog" width="300">
            <img src="pixel.gif" alt="tracking" width="1" height="1">
            <img src="data:image/png;base64,xx" data-src="lazy.png" alt="lazy cat">
            <img srcset="small.jpg 1x, big.jpg 2x" alt="logo">
            <img srcset="https://res.example/w_300,h_200/a.jpg 1x, b.jpg 2x" alt="a comma in the URL">
            <figure><img src="https://cdn.example/fig.png" alt="IMG_1234.JPG"><figcaption>A <b>red</b> car.</figcaption></figure>
            <img src="dog.jpg" alt="A brown dog">
            <img alt="no source">
            <img src="mailto:x@y" alt="bad scheme">
            <noscript><img src="real.jpg" alt="the real image"></noscript>
        </body></html>"#;
        let got = extract("http://example.org/a/page.html", html, None);
        let pairs: Vec<(&str, &str, &str)> = got
            .candidates
            .iter()
            .map(|c| (c.url.as_str(), c.text.as_str(), c.text_source.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("http://example.org/media/dog.jpg", "A brown dog", "alt"),
                ("http://example.org/media/dog.jpg", "Dog", "title"),
                ("http://example.org/media/lazy.png", "lazy cat", "alt"),
                (
                    "https://res.example/w_300,h_200/a.jpg",
                    "a comma in the URL",
                    "alt"
                ),
                ("https://cdn.example/fig.png", "A red car.", "figcaption"),
                ("http://example.org/media/real.jpg", "the real image", "alt"),
            ]
        );
        assert_eq!(got.candidates[0].page_title.as_deref(), Some("A page"));
        assert_eq!(got.candidates[0].page_lang.as_deref(), Some("en"));
        assert_eq!(got.candidates[0].width, Some(300));
        assert_eq!(
            (got.images, got.tiny, got.no_url, got.repeats),
            (10, 1, 2, 1)
        );
        // "logo" and the file name are boilerplate.
        assert_eq!(got.boilerplate, 2);
    }

    #[test]
    fn a_query_is_encoded_in_the_pages_encoding_as_a_browser_does() {
        // WHATWG URL standard: the path is always UTF-8; the query of an
        // http(s) URL is encoded in the document's encoding, a character it
        // lacks as the decimal reference `&#NNN;`, percent-encoded; `'` is in
        // the special-query percent-encode set.
        let page = "<html><body>\
            <img src=\"/img/caf\u{e9}.jpg?q=caf\u{e9}&e=\u{20ac}&k=&#26085;&#26412;&a='\" alt=\"A cup of coffee on a table\">\
            </body></html>";
        let cases = [
            (
                encoding_rs::WINDOWS_1252,
                "http://example.org/img/caf%C3%A9.jpg?q=caf%E9&e=%80&k=%26%2326085%3B%26%2326412%3B&a=%27",
            ),
            // 本 is 0x96 0x7B in Shift_JIS; 0x7B (`{`) is outside the set.
            (
                encoding_rs::SHIFT_JIS,
                "http://example.org/img/caf%C3%A9.jpg?q=caf%26%23233%3B&e=%26%238364%3B&k=%93%FA%96{&a=%27",
            ),
            (
                encoding_rs::UTF_8,
                "http://example.org/img/caf%C3%A9.jpg?q=caf%C3%A9&e=%E2%82%AC&k=%E6%97%A5%E6%9C%AC&a=%27",
            ),
            // UTF-16's output encoding is UTF-8.
            (
                encoding_rs::UTF_16LE,
                "http://example.org/img/caf%C3%A9.jpg?q=caf%C3%A9&e=%E2%82%AC&k=%E6%97%A5%E6%9C%AC&a=%27",
            ),
        ];
        for (encoding, want) in cases {
            let got = extract_in("http://example.org/p/", page, None, encoding);
            let urls: Vec<&str> = got.candidates.iter().map(|c| c.url.as_str()).collect();
            assert_eq!(urls, [want], "{}", encoding.name());
        }
        // From the bytes, with the encoding declared.
        let (body, _, _) = encoding_rs::WINDOWS_1252.encode(page);
        let got = extract_images_from_body(
            "http://example.org/p/",
            &body,
            Some("text/html; charset=windows-1252"),
            None,
        );
        assert_eq!(got.candidates[0].url, cases[0].1);
    }

    #[test]
    fn lazy_loaded_images_pair_the_caption_with_the_real_url() {
        // Each as a browser shows the page once its lazy-loading script ran.
        let html = r#"<html><body>
            <img src="/static/blank.gif" data-src="/photos/cat.jpg" alt="A cat sleeping on a sofa">
            <img src="/img/spacer.gif" data-lazy-src="/photos/dog.jpg" alt="A dog in the snow">
            <img src="/img/grey.gif" data-original="/photos/owl.jpg" alt="An owl at night">
            <img src="data:image/svg+xml,%3Csvg%3E" data-srcset="/photos/fox-400.jpg 400w, /photos/fox-800.jpg 800w" alt="A fox in a field">
            <img src="/photos/real.jpg" loading="lazy" alt="A real source, loaded natively">
            <img class="lazyload" src="/static/lazy-placeholder.png" alt="A horse on a beach">
            <noscript><img src="/photos/horse.jpg" alt="A horse on a beach"></noscript>
            <img class="lazyload" data-sizes="auto" alt="A boat at sea">
            <noscript><img src="/photos/boat.jpg"></noscript>
            <img src="/static/blank.gif" alt="A spacer with no real image">
            <img src="/s/p.gif" class="lazy" alt="First of a gallery">
            <img src="/s/p.gif" class="lazy" alt="Second of a gallery">
            <img src="/s/p.gif" class="lazy" alt="Third of a gallery">
            <img src="/photos/figure.png" alt="The figure, first shown">
            <img src="/photos/figure.png" alt="The figure again, cropped">
            <img src="/photos/figure.png" alt="The figure a third time">
            <img src="/photos/loading-dock.jpg" alt="Trucks at a loading dock">
            <img src="/photos/gray.jpg" alt="A grey heron by a pond">
            <img class="lazyload" src="/static/pixel.gif" alt="A lamp on a desk">
            <noscript><img src="/photos/lamp.jpg"></noscript>
        </body></html>"#;
        let got = extract("http://example.org/page.html", html, None);
        let pairs: Vec<(&str, &str)> = got
            .candidates
            .iter()
            .map(|c| (c.url.as_str(), c.text.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                (
                    "http://example.org/photos/cat.jpg",
                    "A cat sleeping on a sofa"
                ),
                ("http://example.org/photos/dog.jpg", "A dog in the snow"),
                ("http://example.org/photos/owl.jpg", "An owl at night"),
                ("http://example.org/photos/fox-400.jpg", "A fox in a field"),
                (
                    "http://example.org/photos/real.jpg",
                    "A real source, loaded natively"
                ),
                ("http://example.org/photos/horse.jpg", "A horse on a beach"),
                ("http://example.org/photos/boat.jpg", "A boat at sea"),
                (
                    "http://example.org/photos/figure.png",
                    "The figure, first shown"
                ),
                (
                    "http://example.org/photos/figure.png",
                    "The figure again, cropped"
                ),
                (
                    "http://example.org/photos/figure.png",
                    "The figure a third time"
                ),
                (
                    "http://example.org/photos/loading-dock.jpg",
                    "Trucks at a loading dock"
                ),
                (
                    "http://example.org/photos/gray.jpg",
                    "A grey heron by a pond"
                ),
                ("http://example.org/photos/lamp.jpg", "A lamp on a desk"),
            ]
        );
        // The horse twice (the lazy <img> and its <noscript> one): kept once.
        assert_eq!(got.repeats, 1);
        // cat, dog, owl, fox, horse, boat and lamp from a lazy attribute or a fallback.
        assert_eq!(got.lazy, 7);
        // The lone spacer and the three lazy images of one shared `src`;
        // not the figure shown three times nor the photo named gray.jpg,
        // which nothing marks as lazy.
        assert_eq!(got.placeholder, 4);
        assert_eq!(got.no_url, 0);
    }

    #[test]
    fn links_frames_and_meta_robots() {
        let html = r##"<html><head><base href="/docs/"></head><body>
            <a href="a.html#part">A</a><a href="a.html">again</a><a href="#top">top</a>
            <a href="mailto:x@y">mail</a><a href="https://other.example/b" rel="external nofollow">ad</a>
            <map><area href="../c.html"></map><iframe src="frame.html"></iframe>
            <img src="x.jpg" alt="a cat on a mat"></body></html>"##;
        let got = extract("http://example.org/index.html", html, None);
        assert_eq!(
            got.links,
            vec![
                "http://example.org/docs/a.html",
                "http://example.org/c.html"
            ]
        );
        assert_eq!(got.frames, vec!["http://example.org/docs/frame.html"]);
        assert_eq!(got.candidates.len(), 1);

        let html = r#"<html><head><meta name="ROBOTS" content="noindex, nofollow"></head>
            <body><a href="a.html">A</a><img src="x.jpg" alt="a cat on a mat"></body></html>"#;
        let got = extract("http://example.org/", html, None);
        assert!(got.nofollow && got.noindex);
        assert!(got.links.is_empty() && got.candidates.is_empty());
        assert_eq!(got.images, 1);
        let html = r#"<meta name="witbot" content="none"><a href="a.html">A</a>"#;
        assert!(extract("http://example.org/", html, None).links.is_empty());
    }

    #[test]
    fn charsets_from_header_meta_or_guess() {
        let (gbk, _, _) = encoding_rs::GBK.encode("<p>中文图片</p>");
        assert_eq!(
            decode_html(&gbk, Some("text/html; charset=GBK")).0,
            "<p>中文图片</p>"
        );
        let mut with_meta =
            b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=windows-1251\">"
                .to_vec();
        with_meta.extend_from_slice(&encoding_rs::WINDOWS_1251.encode("Привет").0);
        assert!(
            decode_html(&with_meta, Some("text/html"))
                .0
                .ends_with("Привет")
        );
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("日本語のテキストです。画像の説明文。");
        assert_eq!(
            decode_html(&sjis, None).0,
            "日本語のテキストです。画像の説明文。"
        );
    }

    /// Pages whose reading depends on how HTML is parsed (a streaming pass
    /// must read them as the HTML standard's tree builder does).
    const TRICKY: &[&str] = &[
        // 0: caption before the image; an image after the figure closed.
        r#"<figure><figcaption>A <b>bold</b> caption<script>x</script></figcaption><p><img src="a.jpg"></figure><img src="b.jpg" alt="after the figure">"#,
        // 1: nested figures: the inner caption is the first of the outer one too.
        r#"<figure><img src="o.jpg"><figure><img src="i.jpg"><figcaption>inner</figcaption></figure><figcaption>outer</figcaption></figure>"#,
        // 2: a figure closed by its parent's end tag.
        r#"<div><figure><img src="a.jpg"><figcaption>cap</figcaption></div><img src="c.jpg" alt="outside">"#,
        // 3: a noscript fallback after text and a comment; none after a closed parent.
        "<img class=lazyload alt=\"first one\"> text <!-- c --> <noscript><img src=\"r1.jpg\"></noscript><a><img class=lazyload alt=\"second one\"></a><noscript><img src=\"r2.jpg\"></noscript>",
        // 4: <image> is <img>; entities in attributes and texts.
        r#"<title>Tom &amp; Jerry &copy 2020</title><image src="x.jpg?a=1&amp;b=2&copy=3" alt="Fish &amp; chips &notit; &#x41;BC"><img src="y.jpg" alt="caf&eacute; au lait">"#,
        // 5: a second <html> adds lang; <base> after the images; upper case.
        r#"<html><body><IMG SRC="p.jpg" ALT="Upper case tags"></body><html lang="de"><base href="/sub/"><img src="q.jpg" alt="a second image" alt="duplicate">"#,
        // 6: images where the tokenizer reads text: textarea, script, title, and template.
        r#"<textarea><img src="t.jpg" alt="in a textarea"></textarea><script>var s='<img src="s.jpg" alt="in a script">'</script><template><img src="tp.jpg" alt="in a template"></template>"#,
        // 7: svg: <image> stays svg, <img> breaks out.
        r#"<svg><image href="sv.jpg"></image><title>svg title</title></svg><svg><img src="br.jpg" alt="broke out of svg"></svg>"#,
        // 8: noscript in head; a figcaption holding a noscript.
        r#"<html><head><noscript><img src="h.jpg" alt="head noscript"></noscript></head><body><figure><img src="f.jpg"><figcaption>before <noscript><i>inside noscript</i></noscript> after</figcaption></figure>"#,
        // 9: an unclosed figure and figcaption; a stray end tag between image and noscript.
        r#"<figure><img src="u.jpg" class=lazyload data-x=1><figcaption>never closed <img src="v.jpg" alt="in the caption">"#,
        "<img class=lazyload alt=\"stray end\"></span><noscript><img src=\"st.jpg\"></noscript><p><img src=\"w.jpg\" alt=\"in a p\"><noscript><img src=\"nw.jpg\"></noscript>",
    ];

    fn reading(html: &str) -> String {
        let p = extract("http://example.org/dir/page.html", html, None);
        let mut s = format!(
            "images={} tiny={} no_url={} placeholder={} lazy={} boilerplate={} repeats={}\n",
            p.images, p.tiny, p.no_url, p.placeholder, p.lazy, p.boilerplate, p.repeats
        );
        for c in &p.candidates {
            s += &format!(
                "{} | {} | {} | {:?} | {:?}\n",
                c.url, c.text, c.text_source, c.page_title, c.page_lang
            );
        }
        s
    }

    /// Each page of [`TRICKY`] read as html5ever's tree builder (scripting
    /// off) read it, the extractor before the streaming pass; where they
    /// part, the line says so.
    #[test]
    fn tricky_markup_is_read_as_the_tree_builder_reads_it() {
        let want = [
            "images=2 tiny=0 no_url=0 placeholder=0 lazy=0 boilerplate=0 repeats=0\n\
             http://example.org/dir/a.jpg | A bold captionx | figcaption | None | None\n\
             http://example.org/dir/b.jpg | after the figure | alt | None | None\n",
            "images=2 tiny=0 no_url=0 placeholder=0 lazy=0 boilerplate=0 repeats=0\n\
             http://example.org/dir/o.jpg | inner | figcaption | None | None\n\
             http://example.org/dir/i.jpg | inner | figcaption | None | None\n",
            "images=2 tiny=0 no_url=0 placeholder=0 lazy=0 boilerplate=0 repeats=0\n\
             http://example.org/dir/a.jpg | cap | figcaption | None | None\n\
             http://example.org/dir/c.jpg | outside | alt | None | None\n",
            "images=4 tiny=0 no_url=1 placeholder=0 lazy=1 boilerplate=0 repeats=0\n\
             http://example.org/dir/r1.jpg | first one | alt | None | None\n",
            "images=2 tiny=0 no_url=0 placeholder=0 lazy=0 boilerplate=0 repeats=0\n\
             http://example.org/dir/x.jpg?a=1&b=2&copy=3 | Fish & chips &notit; ABC | alt | Some(\"Tom & Jerry \u{a9} 2020\") | None\n\
             http://example.org/dir/y.jpg | caf\u{e9} au lait | alt | Some(\"Tom & Jerry \u{a9} 2020\") | None\n",
            "images=2 tiny=0 no_url=0 placeholder=0 lazy=0 boilerplate=0 repeats=0\n\
             http://example.org/sub/p.jpg | Upper case tags | alt | None | Some(\"de\")\n\
             http://example.org/sub/q.jpg | a second image | alt | None | Some(\"de\")\n",
            "images=1 tiny=0 no_url=0 placeholder=0 lazy=0 boilerplate=0 repeats=0\n\
             http://example.org/dir/tp.jpg | in a template | alt | None | None\n",
            // html5ever took the SVG's <title> for the page's title.
            "images=1 tiny=0 no_url=0 placeholder=0 lazy=0 boilerplate=0 repeats=0\n\
             http://example.org/dir/br.jpg | broke out of svg | alt | None | None\n",
            "images=2 tiny=0 no_url=0 placeholder=0 lazy=0 boilerplate=0 repeats=0\n\
             http://example.org/dir/h.jpg | head noscript | alt | None | None\n\
             http://example.org/dir/f.jpg | before inside noscript after | figcaption | None | None\n",
            "images=2 tiny=0 no_url=0 placeholder=0 lazy=0 boilerplate=0 repeats=0\n\
             http://example.org/dir/u.jpg | never closed | figcaption | None | None\n\
             http://example.org/dir/v.jpg | in the caption | alt | None | None\n\
             http://example.org/dir/v.jpg | never closed | figcaption | None | None\n",
            // html5ever ignored the stray </span> and took st.jpg for the
            // first image (lazy=1, no_url=0).
            "images=4 tiny=0 no_url=1 placeholder=0 lazy=0 boilerplate=0 repeats=0\n\
             http://example.org/dir/w.jpg | in a p | alt | None | None\n",
        ];
        assert_eq!(want.len(), TRICKY.len());
        for (i, (page, want)) in TRICKY.iter().zip(want).enumerate() {
            assert_eq!(reading(page), want, "page {i}");
        }
    }

    /// Reading a body without a declared charset skips chardetng only
    /// where its guess cannot change the answer: the same candidates as
    /// decoding with the guess first, for pages whose image texts are ASCII
    /// and for pages whose texts are not.
    #[test]
    fn undeclared_charsets_give_what_the_guess_gives() {
        let cases: [(&'static Encoding, &str); 4] = [
            (
                encoding_rs::WINDOWS_1251,
                "<title>Kittens</title><p>Привет, это страница о кошках и котятах.</p><img src=a.jpg alt=\"A kitten asleep\">",
            ),
            (
                encoding_rs::WINDOWS_1251,
                "<title>Кошки</title><p>Привет, это страница о кошках.</p><img src=a.jpg alt=\"Котёнок спит\">",
            ),
            (
                encoding_rs::SHIFT_JIS,
                "<p>日本語のページです。猫の写真があります。</p><img src=\"/猫.jpg\" alt=\"寝ている子猫の写真\">",
            ),
            (
                encoding_rs::SHIFT_JIS,
                "<p>日本語のページです。猫の写真があります。</p><figure><img src=b.jpg><figcaption>A cat, 猫</figcaption></figure>",
            ),
        ];
        for (encoding, page) in cases {
            let (body, _, _) = encoding.encode(page);
            assert!(std::str::from_utf8(&body).is_err(), "{page}");
            let (text, name, _) = decode_html(&body, Some("text/html"));
            assert_eq!(name, encoding, "chardetng's guess for {page}");
            let want = extract_page("http://example.org/", &text, None, false, encoding).0;
            let got =
                extract_images_from_body("http://example.org/", &body, Some("text/html"), None);
            assert!(!want.candidates.is_empty());
            assert_eq!(
                format!("{:?}", got.candidates),
                format!("{:?}", want.candidates),
                "{page}"
            );
        }
    }
}
