//! From raw text to tokens: MetaCLIP's tokenizer for counting, and a wikitext
//! cleaner good enough for counting words in Wikipedia articles.

/// True for the characters that MetaCLIP's n-gram tokenizer makes tokens of
/// their own: ASCII punctuation, a few full-width marks, and the scripts
/// written without spaces (CJK, Thai, Lao, Burmese, Khmer, Tibetan).
fn is_single_char_token(c: char) -> bool {
    c.is_ascii_punctuation() || is_extra_punctuation(c) || is_no_space_script(c)
}

fn is_extra_punctuation(c: char) -> bool {
    matches!(
        c,
        '，' | '。'
            | '、'
            | '；'
            | '：'
            | '？'
            | '¿'
            | '！'
            | '“'
            | '”'
            | '‘'
            | '’'
            | '（'
            | '）'
            | '【'
            | '】'
            | '《'
            | '》'
            | '〈'
            | '〉'
            | '「'
            | '」'
            | '『'
            | '』'
            | '～'
            | '—'
    )
}

fn is_no_space_script(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2CEAF
        | 0x2CEB0..=0x2EBEF | 0xF900..=0xFAFF | 0x2E80..=0x2FFF
        | 0x0E00..=0x0EFF | 0x1000..=0x109F | 0x1780..=0x17FF | 0x0F00..=0x0FFF)
}

/// True if `token` is only punctuation.
pub fn is_punctuation(token: &str) -> bool {
    token
        .chars()
        .all(|c| c.is_ascii_punctuation() || is_extra_punctuation(c))
}

/// Calls `f` with each token of `text`, in order, following MetaCLIP's
/// tokenizer for space-separated languages: tokens are split at whitespace,
/// and punctuation and no-space-script characters are tokens of their own.
/// Control characters count as whitespace.
pub fn for_each_token<'a>(text: &'a str, mut f: impl FnMut(&'a str)) {
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() || c.is_control() {
            if let Some(s) = start.take() {
                f(&text[s..i]);
            }
        } else if is_single_char_token(c) {
            if let Some(s) = start.take() {
                f(&text[s..i]);
            }
            f(&text[i..i + c.len_utf8()]);
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        f(&text[s..]);
    }
}

/// Decodes the five XML entities and numeric character references.
pub fn xml_unescape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('&') {
        return s.into();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        // Search bytes: `;` is ASCII, so its position is a character boundary.
        let end = rest.as_bytes()[..rest.len().min(12)]
            .iter()
            .position(|&b| b == b';');
        let decoded = end.and_then(|e| decode_entity(&rest[1..e]).map(|c| (c, e)));
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out.into()
}

fn decode_entity(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "ndash" => '–',
        "mdash" => '—',
        _ => {
            let num = name.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse().ok()?,
            };
            char::from_u32(code)?
        }
    })
}

/// Tags whose content is not prose and is dropped with the tag.
const DROPPED_TAGS: [&str; 9] = [
    "ref",
    "math",
    "gallery",
    "timeline",
    "syntaxhighlight",
    "source",
    "score",
    "chem",
    "graph",
];

/// Link namespaces whose links are not prose (`[[File:x.jpg|thumb|...]]`).
fn is_non_prose_link(target: &str) -> bool {
    let Some((ns, _)) = target.split_once(':') else {
        return false;
    };
    let ns = ns.trim().to_ascii_lowercase();
    matches!(
        ns.as_str(),
        "file"
            | "image"
            | "category"
            | "media"
            | "wikipedia"
            | "wp"
            | "template"
            | "help"
            | "portal"
            | "special"
    ) || (ns.len() <= 3 && ns.chars().all(|c| c.is_ascii_lowercase()) && !ns.is_empty())
}

/// Reduces wikitext (already XML-unescaped) to plain text: comments, tags and
/// their non-prose content, templates, tables and file/category links are
/// dropped; links become their label; bold/italic quotes and heading and list
/// markup go. Good enough for counting words, not for display.
pub fn wikitext_to_text(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    strip_markup(src, &mut out);
    clean_lines(&out)
}

fn strip_markup(src: &str, out: &mut String) {
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let rest = &src[i..];
        if rest.starts_with("<!--") {
            i += rest.find("-->").map_or(rest.len(), |e| e + 3);
        } else if rest.starts_with("{{") || rest.starts_with("{|") {
            i += skip_nested(rest, '{', '}');
        } else if rest.starts_with("[[") {
            let len = skip_nested(rest, '[', ']');
            let inner = rest[2..len].strip_suffix("]]").unwrap_or(&rest[2..len]);
            if !is_non_prose_link(inner) {
                let label = inner.rsplit('|').next().unwrap_or(inner);
                strip_markup(label, out);
            }
            i += len;
        } else if rest.starts_with('[')
            && (rest[1..].starts_with("http://")
                || rest[1..].starts_with("https://")
                || rest[1..].starts_with("//"))
        {
            let end = rest.find(']').unwrap_or(rest.len());
            if let Some((_, label)) = rest[1..end].split_once(' ') {
                out.push_str(label);
            }
            i += (end + 1).min(rest.len());
        } else if rest.starts_with('<') {
            i += skip_tag(rest, out);
        } else if rest.starts_with("''") {
            i += rest.bytes().take_while(|&c| c == b'\'').count();
        } else if rest.starts_with("__") && rest[2..].starts_with(|c: char| c.is_ascii_uppercase())
        {
            // Magic words: __NOTOC__, __TOC__, ...
            let end = rest[2..].find("__").map_or(2, |e| e + 4);
            i += end;
        } else {
            let c = rest.chars().next().expect("rest is not empty");
            out.push(c);
            i += c.len_utf8();
        }
    }
}

/// The length of the balanced `{{...}}`/`{|...|}` or `[[...]]` group at the start of `s`.
fn skip_nested(s: &str, open: char, close: char) -> usize {
    let b = s.as_bytes();
    let (o, c) = (open as u8, close as u8);
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        let next = b.get(i + 1).copied();
        let opens =
            (b[i] == o && next == Some(o)) || (open == '{' && b[i] == b'{' && next == Some(b'|'));
        let closes =
            (b[i] == c && next == Some(c)) || (open == '{' && b[i] == b'|' && next == Some(b'}'));
        if opens {
            depth += 1;
            i += 2;
        } else if closes {
            depth = depth.saturating_sub(1);
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// Skips the HTML tag at the start of `s` (and, for non-prose tags, its content).
fn skip_tag(s: &str, out: &mut String) -> usize {
    // A tag is `<`, an optional `/`, a letter, and its `>` on the same line
    // within 512 bytes; anything else (`x < y`) is text.
    let window = &s.as_bytes()[..s.len().min(512)];
    let end = window.iter().position(|&b| b == b'>' || b == b'\n');
    let starts_like_tag = s[1..]
        .trim_start_matches('/')
        .starts_with(|c: char| c.is_ascii_alphabetic());
    let Some(end) = end.filter(|&e| window[e] == b'>' && starts_like_tag) else {
        out.push('<');
        return 1;
    };
    let tag = &s[1..end];
    let name: String = tag
        .trim_start_matches('/')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    if !tag.starts_with('/') && !tag.ends_with('/') && DROPPED_TAGS.contains(&name.as_str()) {
        return match find_close_tag(&s[end..], &name) {
            Some(c) => end + c,
            None => end + 1,
        };
    }
    out.push(' ');
    end + 1
}

/// The offset just past `</name ...>` in `s`, matching the name without regard to case.
fn find_close_tag(s: &str, name: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&b[from..], b"</") {
        let at = from + i + 2;
        if b.len() >= at + name.len()
            && b[at..at + name.len()].eq_ignore_ascii_case(name.as_bytes())
        {
            let gt = b[at..].iter().position(|&c| c == b'>')?;
            return Some(at + gt + 1);
        }
        from = at;
    }
    None
}

/// Line-level markup: headings, list markers, leftover table rows.
fn clean_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('|') || line.starts_with('!') || line.is_empty() {
            continue;
        }
        let line = line.trim_matches('=').trim();
        let line = line.trim_start_matches(['*', '#', ':', ';']).trim_start();
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(s: &str) -> Vec<&str> {
        let mut v = Vec::new();
        for_each_token(s, |t| v.push(t));
        v
    }

    #[test]
    fn tokenizer_follows_metaclip() {
        assert_eq!(
            tokens("A dog's  bowl,\tred."),
            vec!["A", "dog", "'", "s", "bowl", ",", "red", "."]
        );
        // が (hiragana) is outside MetaCLIP's ranges; 好 and 猫 are CJK ideographs.
        assert_eq!(tokens("猫が好き cat"), vec!["猫", "が", "好", "き", "cat"]);
        assert_eq!(
            tokens("(dog) e-mail"),
            vec!["(", "dog", ")", "e", "-", "mail"]
        );
        assert_eq!(tokens(""), Vec::<&str>::new());
        assert!(is_punctuation("...") && is_punctuation("“") && !is_punctuation("a."));
    }

    #[test]
    fn entities_before_non_ascii_text_do_not_split_characters() {
        assert_eq!(xml_unescape("&lt;ref&gt;Смит"), "<ref>Смит");
        assert_eq!(xml_unescape("&Смит;"), "&Смит;");
        assert_eq!(
            wikitext_to_text("a < b and c > d <REF>x</Ref> e"),
            "a < b and c > d  e\n"
        );
    }

    #[test]
    fn xml_entities_decode() {
        assert_eq!(
            xml_unescape("a &lt;b&gt; &amp;amp; &#233;&#x4E00; & ;"),
            "a <b> &amp; é一 & ;"
        );
    }

    #[test]
    fn wikitext_reduces_to_prose() {
        let src = "'''Dogs''' are [[mammal]]s.<ref>Smith, ''Dogs'', 2001</ref> {{Infobox|a={{b}}|c}}\n\
                   == History ==\n\
                   * The [[Gray wolf|wolf]] was [https://x.org tamed] early.<!-- hidden -->\n\
                   [[File:Dog.jpg|thumb|A [[dog]]]]\n\
                   {| class=\"wikitable\"\n| cell\n|}\n\
                   [[Category:Animals]] <math>x^2</math>Text<br/>more __NOTOC__";
        let text = wikitext_to_text(src);
        assert_eq!(
            text,
            "Dogs are mammals.\nHistory\nThe wolf was tamed early.\nText more\n"
        );
    }
}
