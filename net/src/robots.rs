//! robots.txt (RFC 9309), as real sites write it.
//!
//! Rules are grouped under one or more `User-agent` lines; the groups whose
//! product token equals ours (case-insensitively; `WitBot/1.0` is `witbot`)
//! apply, merged, else the `*` groups, else nothing (all allowed). Within the
//! applicable rules the longest matching pattern wins, and `Allow` wins a tie;
//! `*` matches any run of characters and a final `$` anchors the end.
//! `Crawl-delay` is read from the same groups. Real files are messy: a BOM,
//! CRLF or CR line ends, comments, keys in any case, `Disallow` lines before
//! any `User-agent` (kept for everyone, as most crawlers do), spaces before the
//! colon, HTML error pages (no valid line: everything allowed). The first
//! 4 MiB are read: the RFC asks for at least 500 KiB, and real files exceed it
//! (docs.oracle.com's is 1.6 MB, with rules past the first 500 KiB).

use url::Url;

use crate::http::{Client, Failure};

/// Bytes of a robots.txt that are parsed.
pub const MAX_BYTES: usize = 4 << 20;

/// Redirects followed to reach a robots.txt (RFC 9309 section 2.3.1.2: "at
/// least five consecutive redirects"); past them it counts as unavailable.
pub const MAX_REDIRECTS: usize = 5;

/// What fetching an origin's robots.txt gave (RFC 9309 section 2.3.1).
#[derive(Debug)]
pub enum Fetched {
    /// A `2xx` answer, after any redirects.
    Found {
        /// The body, at most [`MAX_BYTES`] of it parsed.
        body: Vec<u8>,
        /// The answer's `Content-Type`, if any.
        content_type: Option<String>,
    },
    /// "Unavailable": a `4xx` other than `429`, a redirect with no target,
    /// or more than [`MAX_REDIRECTS`] redirects. Every URL is allowed.
    Unavailable,
    /// "Unreachable": `429`, `5xx`, or no answer at all. Every URL is
    /// disallowed; the failure says why (its [`Failure::key`] is the cause
    /// callers record next to `robots_unreachable`).
    Unreachable(Failure),
}

/// Fetches `/robots.txt` of `url`'s origin with `client` (its address
/// policy, timeouts and size limit apply to every hop), following up to
/// [`MAX_REDIRECTS`] redirects, to other hosts too.
pub async fn fetch(client: &Client, url: &Url) -> Fetched {
    let Ok(mut at) = url.join("/robots.txt") else {
        return Fetched::Unreachable(Failure::BadUrl);
    };
    for _ in 0..=MAX_REDIRECTS {
        let resp = match client.get(&at, MAX_BYTES as u64, |_| Ok(())).await {
            Ok(r) => r,
            Err(f) => return Fetched::Unreachable(f),
        };
        match resp.status {
            200..=299 => {
                return Fetched::Found {
                    content_type: resp.header("content-type").map(str::to_string),
                    body: resp.body,
                };
            }
            300..=399 => match resp.location(&at) {
                Some(to) => at = to,
                None => return Fetched::Unavailable,
            },
            429 => return Fetched::Unreachable(Failure::Http4xx(429)),
            400..=499 => return Fetched::Unavailable,
            s => {
                return Fetched::Unreachable(
                    Failure::from_status(s).unwrap_or(Failure::Http5xx(s)),
                );
            }
        }
    }
    Fetched::Unavailable
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    allow: bool,
    pattern: String,
}

#[derive(Debug, Clone, Default)]
struct Group {
    agents: Vec<String>,
    rules: Vec<Rule>,
    crawl_delay: Option<f64>,
}

/// A parsed robots.txt.
#[derive(Debug, Clone, Default)]
pub struct Robots {
    groups: Vec<Group>,
    /// `Sitemap` URLs, in file order.
    pub sitemaps: Vec<String>,
}

/// The rules of one robots.txt that apply to one crawler.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    /// The crawl delay asked of this crawler, in seconds.
    pub crawl_delay: Option<f64>,
}

impl Robots {
    /// Parses a robots.txt body (any bytes; invalid UTF-8 is replaced).
    pub fn parse(body: &[u8]) -> Robots {
        let body = &body[..body.len().min(MAX_BYTES)];
        let text = String::from_utf8_lossy(body);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut robots = Robots::default();
        let mut current: Option<Group> = None;
        let mut orphan = Group::default(); // rules before any User-agent line
        let mut last_was_agent = false;
        for line in text.split(['\n', '\r']) {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim();
            match key.as_str() {
                "user-agent" => {
                    if !last_was_agent {
                        robots.groups.extend(current.take());
                    }
                    let group = current.get_or_insert_with(Group::default);
                    group.agents.push(value.to_ascii_lowercase());
                    last_was_agent = true;
                    continue;
                }
                "allow" | "disallow" => {
                    // An empty Disallow allows everything: no rule.
                    if !value.is_empty() {
                        let allow = key == "allow";
                        let pattern = canonical(value, true);
                        let group = current.as_mut().unwrap_or(&mut orphan);
                        // As Google does: allowing a directory's index page
                        // allows the directory's own URL too.
                        if allow
                            && let Some(dir) = pattern
                                .strip_suffix("index.html")
                                .or_else(|| pattern.strip_suffix("index.htm"))
                            && dir.ends_with('/')
                        {
                            group.rules.push(Rule {
                                allow,
                                pattern: format!("{dir}$"),
                            });
                        }
                        group.rules.push(Rule { allow, pattern });
                    }
                }
                "crawl-delay" => {
                    if let Ok(d) = value.parse::<f64>()
                        && d.is_finite()
                        && d >= 0.0
                    {
                        let group = current.as_mut().unwrap_or(&mut orphan);
                        group.crawl_delay.get_or_insert(d);
                    }
                }
                "sitemap" => {
                    // Not part of any group: it does not end a run of User-agent lines.
                    robots.sitemaps.push(value.to_string());
                    continue;
                }
                _ => continue,
            }
            last_was_agent = false;
        }
        robots.groups.extend(current);
        if !orphan.rules.is_empty() || orphan.crawl_delay.is_some() {
            orphan.agents.push("*".into());
            robots.groups.push(orphan);
        }
        robots
    }

    /// The rules for the crawler whose product token is `agent` (e.g. `witbot`).
    pub fn rules_for(&self, agent: &str) -> Rules {
        let agent = agent.to_ascii_lowercase();
        // RFC 9309 2.2.1: the product token (letters, `_` and `-`) at the start
        // of the line's value, compared with ours without regard to case.
        let specific = |g: &&Group| {
            g.agents.iter().any(|a| {
                let token: String = a
                    .chars()
                    .take_while(|c| c.is_ascii_alphabetic() || *c == '_' || *c == '-')
                    .collect();
                !token.is_empty() && token == agent
            })
        };
        let mut groups: Vec<&Group> = self.groups.iter().filter(specific).collect();
        if groups.is_empty() {
            groups = self
                .groups
                .iter()
                .filter(|g| g.agents.iter().any(|a| a == "*"))
                .collect();
        }
        Rules {
            rules: groups
                .iter()
                .flat_map(|g| g.rules.iter().cloned())
                .collect(),
            crawl_delay: groups.iter().find_map(|g| g.crawl_delay),
        }
    }
}

impl Rules {
    /// Whether `path` (the URL's path and query, starting with `/`) may be fetched.
    pub fn allowed(&self, path: &str) -> bool {
        // RFC 9309, 2.2.2: /robots.txt itself is always allowed.
        if path == "/robots.txt" {
            return true;
        }
        let path = canonical(if path.is_empty() { "/" } else { path }, false);
        let mut best: Option<(usize, bool)> = None;
        for rule in &self.rules {
            if matches(&rule.pattern, &path) {
                let len = rule.pattern.len();
                best = match best {
                    Some((l, a)) if l > len || (l == len && a) => Some((l, a)),
                    _ => Some((len, rule.allow)),
                };
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

/// RFC 3986's unreserved characters: letters, digits, `-`, `.`, `_`, `~`.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The form in which rule patterns and URL paths are compared (RFC 9309
/// section 2.2.2, read as protego and Google read it): an escape of an
/// unreserved character becomes the character (`%7E` is `~`); every other
/// octet but `/` is percent-encoded with upper-case hex digits: reserved
/// characters written literally (`*` in a path is `%2A`), their escapes in
/// any case (`%2a` is `%2A`), non-ASCII characters as their UTF-8 octets
/// (`é` is `%C3%A9`), and a `%` that starts no escape (`%25`). In a rule
/// pattern (`pattern`), `*` and a final `$` written literally stay: they
/// are the wildcard and the end anchor; written `%2A` and `%24` they are the
/// characters. So `/caf%c3%a9`, `/café` and `/caf%C3%A9` are one path, and
/// `Disallow: /a-%2A.html` keeps out `/a-*.html`.
fn canonical(s: &str, pattern: bool) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    let push_escape = |out: &mut String, v: u8| {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        out.push('%');
        out.push(HEX[usize::from(v >> 4)] as char);
        out.push(HEX[usize::from(v & 15)] as char);
    };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%'
            && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            let v = u8::from_str_radix(&s[i + 1..i + 3], 16).expect("two hex digits");
            if unreserved(v) {
                out.push(v as char);
            } else {
                push_escape(&mut out, v);
            }
            i += 3;
            continue;
        }
        let special = pattern && (c == b'*' || (c == b'$' && i + 1 == b.len()));
        if unreserved(c) || c == b'/' || special {
            out.push(c as char);
        } else {
            push_escape(&mut out, c);
        }
        i += 1;
    }
    out
}

/// Matches a robots pattern (with `*` and a final `$`) against the start of `path`.
fn matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut pos = 0;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            if !path.starts_with(part) {
                return false;
            }
            pos = part.len();
        } else if i == parts.len() - 1 && anchored {
            // The last piece must end the path, after pos.
            return path.len() >= pos + part.len() && path.ends_with(part);
        } else {
            match path[pos..].find(part) {
                Some(at) => pos += at + part.len(),
                None => return false,
            }
        }
    }
    !anchored || pos == path.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(robots: &str, agent: &str, path: &str) -> bool {
        Robots::parse(robots.as_bytes())
            .rules_for(agent)
            .allowed(path)
    }

    #[test]
    fn longest_match_wins_and_allow_wins_ties() {
        let r =
            "User-agent: *\nDisallow: /a\nAllow: /a/b\nDisallow: /a/b/c\nAllow: /x\nDisallow: /x\n";
        assert!(!allowed(r, "witbot", "/a/x"));
        assert!(allowed(r, "witbot", "/a/b/x"));
        assert!(!allowed(r, "witbot", "/a/b/c"));
        assert!(allowed(r, "witbot", "/x"));
        assert!(allowed(r, "witbot", "/other"));
    }

    #[test]
    fn wildcards_and_anchors() {
        let r = "User-agent: *\nDisallow: /*.gif$\nDisallow: /private*/\nAllow: /$\nDisallow: /\n";
        assert!(allowed(r, "w", "/"));
        assert!(!allowed(r, "w", "/a.gif"));
        assert!(!allowed(r, "w", "/page"));
        let r = "User-agent: *\nDisallow: /*.gif$\n";
        assert!(allowed(r, "w", "/a.gif?x=1"));
        assert!(!allowed(r, "w", "/dir/a.gif"));
        let r = "User-agent: *\nDisallow: /private*/\n";
        assert!(!allowed(r, "w", "/private-stuff/x"));
        assert!(allowed(r, "w", "/private"));
    }

    #[test]
    fn groups_agents_and_messy_files() {
        let r = "\u{feff}# comment\r\nUser-Agent: WitBot\r\nUser-agent: other\r\nDisallow: /no-wit # why\r\nCrawl-delay: 2.5\r\n\r\nUSER-AGENT: *\r\nDISALLOW : /no-all\r\nSitemap: https://x/sitemap.xml\r\n";
        let robots = Robots::parse(r.as_bytes());
        let wit = robots.rules_for("witbot");
        assert!(!wit.allowed("/no-wit") && wit.allowed("/no-all"));
        assert_eq!(wit.crawl_delay, Some(2.5));
        let anyone = robots.rules_for("somebot");
        assert!(anyone.allowed("/no-wit") && !anyone.allowed("/no-all"));
        assert_eq!(robots.sitemaps, vec!["https://x/sitemap.xml"]);
        // An HTML error page allows everything.
        assert!(allowed(
            "<html><body>404 Not Found</body></html>",
            "w",
            "/x"
        ));
        // Empty Disallow allows everything; rules before any User-agent apply to all.
        assert!(allowed("User-agent: *\nDisallow:\n", "w", "/x"));
        assert!(!allowed("Disallow: /x\n", "w", "/x"));
        // A Sitemap line does not end a run of User-agent lines.
        assert!(!allowed(
            "User-agent: *\nSitemap: /s.xml\nUser-agent: other\nDisallow: /\n",
            "w",
            "/x"
        ));
        // Allowing the index page allows the directory URL; /robots.txt is always allowed.
        let r = "User-agent: *\nDisallow: /d/\nAllow: /d/index.html\nDisallow: /robots.txt\n";
        assert!(
            allowed(r, "w", "/d/") && !allowed(r, "w", "/d/x") && allowed(r, "w", "/robots.txt")
        );
        // RFC 9309's own example: escapes of unreserved characters match them.
        assert!(!allowed(
            "User-agent: *\nDisallow: /foo/bar/%62%61%7A\n",
            "w",
            "/foo/bar/baz"
        ));
        // The product token is matched whole: "wit" is another crawler, "WitBot/1.0" is us.
        assert!(allowed("User-agent: wit\nDisallow: /\n", "witbot", "/x"));
        assert!(!allowed(
            "User-agent: WitBot/1.0\nDisallow: /\n",
            "witbot",
            "/x"
        ));
        // Percent-encoding and non-ASCII compare alike.
        assert!(!allowed(
            "User-agent: *\nDisallow: /caf%c3%a9\n",
            "w",
            "/café"
        ));
    }

    #[test]
    fn rules_and_paths_are_compared_in_one_percent_encoded_form() {
        let d = |rule: &str| format!("User-agent: *\nDisallow: {rule}\n");
        // RFC 9309 2.2.3: an escaped reserved character is the character.
        let r = d("/path/file-with-a-%2A.html");
        assert!(!allowed(&r, "w", "/path/file-with-a-*.html"));
        assert!(!allowed(&r, "w", "/path/file-with-a-%2a.html"));
        // ... but not a wildcard.
        assert!(allowed(&r, "w", "/path/file-with-a-xyz.html"));
        let r = d("/path/foo-%24");
        assert!(!allowed(&r, "w", "/path/foo-$"));
        assert!(allowed(&r, "w", "/path/foo-"), "%24 is no end anchor");
        // A literal reserved character in the rule equals its escape in the path.
        assert!(!allowed(&d("/a!b"), "w", "/a%21b"));
        assert!(!allowed(&d("/a(b)"), "w", "/a%28b%29"));
        // `$` anchors only at the end of a rule; elsewhere it is a character.
        assert!(!allowed(&d("/a$b"), "w", "/a%24b"));
        assert!(allowed(&d("/a$"), "w", "/ab") && !allowed(&d("/a$"), "w", "/a"));
        // Unreserved escapes are the characters, both ways; `/` and its escape differ.
        assert!(!allowed(&d("/%7Euser"), "w", "/~user"));
        assert!(!allowed(&d("/~user"), "w", "/%7euser"));
        assert!(allowed(&d("/a%2Fb"), "w", "/a/b"));
        // Non-ASCII either way, a stray `%` is `%25`.
        assert!(!allowed(&d("/日本"), "w", "/%E6%97%A5%E6%9C%AC"));
        assert!(!allowed(&d("/%e6%97%a5"), "w", "/日本"));
        assert!(!allowed(&d("/100%"), "w", "/100%25"));
    }
}
