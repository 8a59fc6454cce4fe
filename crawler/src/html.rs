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

use std::collections::HashSet;
use std::sync::LazyLock;

use encoding_rs::Encoding;
use scraper::{ElementRef, Html, Selector};
use url::Url;
use wit_contract::records::Candidate;

/// Decodes an HTML body: the byte-order mark, else the charset of the HTTP
/// `Content-Type`, else a `<meta>` charset in the first 1024 bytes, else a
/// statistical guess (chardetng). Returns the text and the encoding's name.
/// Also says whether the body held bytes invalid in that encoding (replaced
/// by U+FFFD).
pub fn decode_html(body: &[u8], content_type: Option<&str>) -> (String, &'static str, bool) {
    let declared = Encoding::for_bom(body)
        .map(|(e, _)| e)
        .or_else(|| {
            content_type
                .and_then(charset_param)
                .and_then(|l| Encoding::for_label(l.as_bytes()))
        })
        .or_else(|| meta_charset(body).and_then(|l| Encoding::for_label(l.as_bytes())));
    let encoding = declared.unwrap_or_else(|| {
        // chardetng answers UTF-8 for any valid UTF-8 input (its UTF-8
        // candidate survives, and ISO-2022-JP detection is off), so its
        // statistics over the whole body are skipped then.
        if std::str::from_utf8(body).is_ok() {
            return encoding_rs::UTF_8;
        }
        let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
        detector.feed(body, true);
        detector.guess(None, chardetng::Utf8Detection::Allow)
    });
    // A page that declares UTF-16 in a meta tag is in fact ASCII-compatible (HTML spec).
    let encoding = if encoding == encoding_rs::UTF_16LE || encoding == encoding_rs::UTF_16BE {
        if Encoding::for_bom(body).is_some() {
            encoding
        } else {
            encoding_rs::UTF_8
        }
    } else {
        encoding
    };
    let (text, _, had_errors) = encoding.decode(body);
    (text.into_owned(), encoding.name(), had_errors)
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
    /// with different texts) and no lazy-loading attribute or `<noscript>`
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

static FIGCAPTION: LazyLock<Selector> =
    LazyLock::new(|| Selector::parse("figcaption").expect("a static selector"));
static IMG: LazyLock<Selector> =
    LazyLock::new(|| Selector::parse("img").expect("a static selector"));

/// The elements of a page the extractor reads, found in one pass over the
/// parsed tree, in the order scraper's `Html::select` visits them (the
/// tree's arena: the order the parser made them).
struct Elements<'a> {
    /// The first `<base href>`'s `href`.
    base: Option<&'a str>,
    /// The first `<title>`.
    title: Option<ElementRef<'a>>,
    /// The first `<html>`.
    html: Option<ElementRef<'a>>,
    /// `<meta name content>`.
    metas: Vec<ElementRef<'a>>,
    /// `<a href>` and `<area href>`.
    links: Vec<ElementRef<'a>>,
    /// `<iframe src>` and `<frame src>`.
    frames: Vec<ElementRef<'a>>,
    /// `<img>`.
    imgs: Vec<ElementRef<'a>>,
}

impl<'a> Elements<'a> {
    fn of(doc: &'a Html) -> Elements<'a> {
        let mut e = Elements {
            base: None,
            title: None,
            html: None,
            metas: Vec::new(),
            links: Vec::new(),
            frames: Vec::new(),
            imgs: Vec::new(),
        };
        for el in doc.tree.nodes().filter_map(ElementRef::wrap) {
            let v = el.value();
            match v.name() {
                "base" if e.base.is_none() => e.base = v.attr("href"),
                "title" if e.title.is_none() => e.title = Some(el),
                "html" if e.html.is_none() => e.html = Some(el),
                "meta" if v.attr("name").is_some() && v.attr("content").is_some() => {
                    e.metas.push(el);
                }
                "a" | "area" if v.attr("href").is_some() => e.links.push(el),
                "iframe" | "frame" if v.attr("src").is_some() => e.frames.push(el),
                "img" => e.imgs.push(el),
                _ => {}
            }
        }
        e
    }
}

/// Extracts the candidates of one page. `page_url` must be absolute.
pub fn extract(page_url: &str, html: &str, content_language: Option<&str>) -> PageCandidates {
    let mut out = PageCandidates::default();
    let Ok(page) = Url::parse(page_url) else {
        return out;
    };
    let doc = parse_html(html);
    let els = Elements::of(&doc);
    let base = els
        .base
        .and_then(|h| page.join(h).ok())
        .unwrap_or_else(|| page.clone());
    let title = els
        .title
        .map(|t| {
            t.text()
                .collect::<String>()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|t| !t.is_empty());
    let lang = els
        .html
        .and_then(|h| {
            h.value()
                .attr("lang")
                .or_else(|| h.value().attr("xml:lang"))
        })
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .or_else(|| content_language.map(|c| c.split(',').next().unwrap_or("").trim().to_string()))
        .filter(|l| !l.is_empty());
    for meta in &els.metas {
        let name = meta.value().attr("name").unwrap_or("").trim();
        if name.eq_ignore_ascii_case("robots") || name.eq_ignore_ascii_case(ROBOTS_TOKEN) {
            for d in meta.value().attr("content").unwrap_or("").split(',') {
                match d.trim().to_ascii_lowercase().as_str() {
                    "nofollow" => out.nofollow = true,
                    "noindex" => out.noindex = true,
                    "none" => (out.nofollow, out.noindex) = (true, true),
                    _ => {}
                }
            }
        }
    }
    if !out.nofollow {
        let mut seen_links: HashSet<String> = HashSet::new();
        for a in &els.links {
            let nofollow = a.value().attr("rel").is_some_and(|r| {
                r.split_whitespace()
                    .any(|t| t.eq_ignore_ascii_case("nofollow"))
            });
            if let (false, Some(url)) = (nofollow, link_url(a.value().attr("href"), &base))
                && seen_links.insert(url.clone())
            {
                out.links.push(url);
            }
        }
        for f in &els.frames {
            if let Some(url) = link_url(f.value().attr("src"), &base)
                && seen_links.insert(url.clone())
            {
                out.frames.push(url);
            }
        }
    }
    if out.noindex {
        out.images = els.imgs.len() as u64;
        return out;
    }
    let shared = shared_sources(&els.imgs);
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for img in els.imgs {
        out.images += 1;
        let el = img.value();
        let width = parse_dimension(el.attr("width"));
        let height = parse_dimension(el.attr("height"));
        if width.is_some_and(|w| w < 10) || height.is_some_and(|h| h < 10) {
            out.tiny += 1;
            continue;
        }
        let (url, lazy) = match image_url(&img, &base, &shared) {
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
        let mut texts: Vec<(&str, String)> = Vec::new();
        for (source, raw) in [("alt", el.attr("alt")), ("title", el.attr("title"))] {
            if let Some(raw) = raw {
                texts.push((source, raw.to_string()));
            }
        }
        if let Some(figure) = img
            .ancestors()
            .filter_map(ElementRef::wrap)
            .find(|a| a.value().name() == "figure")
            && let Some(caption) = figure.select(&FIGCAPTION).next()
        {
            texts.push(("figcaption", caption.text().collect()));
        }
        for (source, raw) in texts {
            let Some(text) = clean_text(&raw) else {
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
    out
}

/// Parses a document as a browser with scripting off does, so that the
/// `<img>` fallbacks inside `<noscript>` (often the real images of lazy-loading
/// pages) are elements, not text.
fn parse_html(html: &str) -> Html {
    use html5ever::tendril::TendrilSink;
    let opts = html5ever::ParseOpts {
        tree_builder: html5ever::tree_builder::TreeBuilderOpts {
            scripting_enabled: false,
            ..Default::default()
        },
        ..Default::default()
    };
    html5ever::driver::parse_document(scraper::HtmlTreeSink::new(Html::new_document()), opts)
        .one(html)
}

/// The product token the crawler answers to in robots rules and meta tags.
pub const ROBOTS_TOKEN: &str = wit_net::ROBOTS_TOKEN;

fn link_url(raw: Option<&str>, base: &Url) -> Option<String> {
    let raw = raw?.trim();
    if raw.is_empty() || raw.starts_with('#') {
        return None;
    }
    let mut url = base.join(raw).ok()?;
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
/// until a script swaps the real one in.
const SPACER_WORDS: &[&str] = &[
    "blank",
    "spacer",
    "pixel",
    "px",
    "transparent",
    "trans",
    "clear",
    "empty",
    "placeholder",
    "lazy",
    "lazyload",
    "loading",
    "loader",
    "spinner",
    "1x1",
    "grey",
    "gray",
];

/// Why an `<img>` gives no URL.
enum NoUrl {
    /// Only a placeholder.
    Placeholder,
    /// Nothing usable at all.
    None,
}

/// The `src` values that several `<img>` of the page share with different
/// texts: a spacer swapped out by a script, not an image of each text.
fn shared_sources(imgs: &[ElementRef<'_>]) -> HashSet<String> {
    let mut by_src: std::collections::HashMap<&str, (u32, HashSet<&str>)> =
        std::collections::HashMap::new();
    for img in imgs {
        if let Some(src) = img.value().attr("src").map(str::trim) {
            let e = by_src.entry(src).or_default();
            e.0 += 1;
            if let Some(alt) = img.value().attr("alt") {
                e.1.insert(alt.trim());
            }
        }
    }
    by_src
        .into_iter()
        .filter(|(_, (n, alts))| *n >= 3 && alts.len() >= 2)
        .map(|(src, _)| src.to_string())
        .collect()
}

/// Whether a `src` value is a stand-in for the real image.
fn is_placeholder(src: &str, shared: &HashSet<String>) -> bool {
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
    words.peek().is_some() && words.all(|w| SPACER_WORDS.contains(&w.to_ascii_lowercase().as_str()))
}

/// The URL of an `<img>`, read as a browser running the page's lazy-loading
/// script would show it, and whether it came from elsewhere than `src`
/// and `srcset` (a lazy attribute, a `<noscript>` fallback): a lazy
/// attribute; else `src` unless it is a placeholder; else `srcset`'s first
/// candidate; else the `<img>` of a `<noscript>` right after it.
fn image_url(
    img: &ElementRef<'_>,
    base: &Url,
    shared: &HashSet<String>,
) -> Result<(String, bool), NoUrl> {
    let el = img.value();
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
        let url = base.join(raw.trim()).ok()?;
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
    let placeholder = src.is_some_and(|s| is_placeholder(s, shared));
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
    let fallback = img
        .next_siblings()
        .filter_map(ElementRef::wrap)
        .next()
        .filter(|n| n.value().name() == "noscript")
        .and_then(|n| n.select(&IMG).next())
        .and_then(|i| i.value().attr("src").filter(usable).map(str::to_string))
        .filter(|s| !is_placeholder(s.trim(), shared))
        .as_deref()
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
            assert_eq!((text.as_bytes(), name, bad), (body, "UTF-8", false));
        }
        // Not UTF-8: chardetng still decides.
        let (_, name, _) = decode_html(b"<p>caf\xe9 cr\xe8me br\xfbl\xe9e</p>", None);
        assert_eq!(name, "windows-1252");
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
            <img src="/s/p.gif" alt="First of a gallery">
            <img src="/s/p.gif" alt="Second of a gallery">
            <img src="/s/p.gif" alt="Third of a gallery">
            <img src="/photos/loading-dock.jpg" alt="Trucks at a loading dock">
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
                    "http://example.org/photos/loading-dock.jpg",
                    "Trucks at a loading dock"
                ),
            ]
        );
        // The horse twice (the lazy <img> and its <noscript> one): kept once.
        assert_eq!(got.repeats, 1);
        // cat, dog, owl, fox, horse and boat from a lazy attribute or a fallback.
        assert_eq!(got.lazy, 6);
        // The lone spacer and the three images of one shared `src`.
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
}
