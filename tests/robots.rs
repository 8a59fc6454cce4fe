//! robots.txt decisions on 4,231 real files (the test data of the `protego`
//! sdist), compared with protego, the parser Scrapy uses.

use std::path::PathBuf;
use std::process::Command;

use wit_net::robots::Robots;

use crate::util::*;

/// The protego sdist's test data, downloaded once into ~/.cache/wit/pypi.
fn protego_test_data(py: &std::path::Path) -> Option<PathBuf> {
    let cache = PathBuf::from(std::env::var_os("HOME")?).join(".cache/wit/pypi");
    let data = cache.join("protego-0.7.0/tests/test_data");
    if data.is_dir() {
        return Some(data);
    }
    std::fs::create_dir_all(&cache).ok()?;
    let got = Command::new(py)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            "protego",
            "protego==0.7.0",
            "-d",
        ])
        .arg(&cache)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("tar")
            .arg("xzf")
            .arg(cache.join("protego-0.7.0.tar.gz"))
            .arg("-C")
            .arg(&cache)
            .status()
            .is_ok_and(|s| s.success());
    if !got || !data.is_dir() {
        skip("cannot download the protego sdist (no registry access?)");
        return None;
    }
    Some(data)
}

const REFERENCE: &str = r#"
import sys, os, json, re
from protego import Protego
root = sys.argv[1]
out = []
for name in sorted(os.listdir(root)):
    # protego does not skip a byte-order mark (it then ignores the first
    # User-agent line): give it the text without one, as wit reads it.
    text = open(os.path.join(root, name), "rb").read().decode("utf-8", "replace").lstrip("\ufeff")
    paths = {"/", "/index.html", "/search?q=dog", "/wp-admin/", "/images/dog.jpg", "/a/b/c.php?x=1"}
    for m in re.finditer(r"(?im)^\s*(?:dis)?allow\s*:\s*(\S+)", text):
        p = m.group(1).replace("*", "x").rstrip("$")
        if p.startswith("/"):
            paths.add(p)
            paths.add(p + "z")
    rp = Protego.parse(text)
    for p in sorted(paths)[:40]:
        out.append([name, p, bool(rp.can_fetch("http://example.com" + p, "witbot"))])
json.dump(out, sys.stdout)
"#;

#[test]
fn decisions_agree_with_protego_on_4231_real_files() {
    let Some(py) = python_with(&["protego"]) else {
        return;
    };
    let Some(data) = protego_test_data(&py) else {
        return;
    };
    let o = Command::new(&py)
        .arg("-c")
        .arg(REFERENCE)
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cases: Vec<(String, String, bool)> = serde_json::from_slice(&o.stdout).unwrap();
    let files = std::fs::read_dir(&data).unwrap().count();
    assert!(files >= 4000, "{files} files");
    let mut current: Option<(String, wit_net::robots::Rules, bool)> = None;
    let (mut orphans, mut queries, mut unexplained) = (0, 0, Vec::new());
    // The excused cases, made comparable: (text, path) for both readers.
    let mut recheck: Vec<(String, String)> = Vec::new();
    for (name, path, want) in &cases {
        if current.as_ref().is_none_or(|c| &c.0 != name) {
            let body = std::fs::read(data.join(name)).unwrap();
            current = Some((
                name.clone(),
                Robots::parse(&body).rules_for("witbot"),
                rules_before_any_agent(&body),
            ));
        }
        let (_, rules, has_orphans) = current.as_ref().unwrap();
        let got = rules.allowed(path);
        if got == *want {
            continue;
        }
        // Two deliberate differences, both stricter than protego:
        let text = || {
            let body = std::fs::read(data.join(name)).unwrap();
            String::from_utf8_lossy(&body)
                .trim_start_matches('\u{feff}')
                .to_string()
        };
        if !got && *has_orphans {
            // rules written before any User-agent line apply to every crawler
            // (protego drops them): without those lines both must agree;
            orphans += 1;
            recheck.push((without_orphan_rules(&text()), path.clone()));
        } else if !got && path.contains('?') {
            // patterns match the query string too, as RFC 9309 and Google do
            // (protego matches the path alone): on the path alone both must
            // agree.
            queries += 1;
            let bare = path.split('?').next().unwrap_or("/").to_string();
            recheck.push((text(), bare));
        } else {
            unexplained.push(format!("{name} {path}: wit {got}, protego {want}"));
        }
    }
    eprintln!(
        "{} decisions over {files} files: {orphans} differ by rules before any User-agent, {queries} by query strings, {} otherwise",
        cases.len(),
        unexplained.len()
    );
    assert!(
        unexplained.is_empty(),
        "decisions that differ from protego: {unexplained:#?}"
    );
    assert!(
        orphans + queries < cases.len() / 500,
        "{orphans} + {queries} deliberate differences"
    );
    let theirs = protego_decides(&py, &recheck);
    let still: Vec<String> = recheck
        .iter()
        .zip(&theirs)
        .filter(|((text, path), want)| {
            Robots::parse(text.as_bytes())
                .rules_for("witbot")
                .allowed(path)
                != **want
        })
        .map(|((_, path), want)| format!("{path}: protego {want}"))
        .collect();
    assert!(
        still.is_empty(),
        "{} excused differences remain without their cause: {still:#?}",
        still.len()
    );
}

/// Whether an Allow or Disallow line comes before the first User-agent line.
fn rules_before_any_agent(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    for line in text.trim_start_matches('\u{feff}').lines() {
        let key = line
            .split('#')
            .next()
            .unwrap_or("")
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match key.as_str() {
            "user-agent" => return false,
            "allow" | "disallow" => return true,
            _ => {}
        }
    }
    false
}

/// protego's answer for each (robots.txt text, path) case.
fn protego_decides(py: &std::path::Path, cases: &[(String, String)]) -> Vec<bool> {
    let mut child = Command::new(py)
        .args(["-c", DECIDE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), cases).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `text` without the Allow and Disallow lines before its first User-agent
/// line.
fn without_orphan_rules(text: &str) -> String {
    let mut seen_agent = false;
    let mut out = String::new();
    for line in text.lines() {
        let key = line
            .split([':', '#'])
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        seen_agent |= key == "user-agent";
        if !seen_agent && (key == "allow" || key == "disallow") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// protego's answer for each (robots.txt, path) case, read as JSON on stdin.
const DECIDE: &str = r#"
import sys, json
from protego import Protego
cases = json.load(sys.stdin)
json.dump([bool(Protego.parse(t).can_fetch("http://example.com" + p, "witbot")) for t, p in cases], sys.stdout)
"#;

/// Generated rule/path pairs of every class that RFC 9309 section 2.2.2
/// says compare alike or apart: escapes of unreserved characters, of
/// reserved ones, literal reserved characters, hex digits in either case,
/// non-ASCII text, and `*` and `$` literal (wildcard, anchor) or escaped
/// (characters). Paths only: protego leaves query strings as they are.
/// Left out, where protego departs from the RFC: `=` (kept literal in its
/// patterns, escaped in its paths: a rule with `=` never matches), `;` and
/// `?` (its URL parser splits them off), `#`, and a `%` that starts no
/// escape (protego leaves it bare in paths, so `/100%25` misses `/100%`;
/// wit reads it as `%25`, RFC 3986's only spelling of it).
fn encoding_cases() -> Vec<(String, String)> {
    let mut cases = Vec::new();
    let mut pair = |rule: String, path: String| {
        let text = format!("User-agent: *\nDisallow: {rule}\n");
        cases.push((text.clone(), path.clone()));
        // The same rule must not catch a path that differs after it.
        cases.push((text, format!("/other{path}")));
    };
    let hex = |c: u8, lower: bool| {
        if lower {
            format!("%{c:02x}")
        } else {
            format!("%{c:02X}")
        }
    };
    for c in b"aZ5-._~".iter().chain(b"!$&'()*+,:@[]".iter()) {
        let ch = *c as char;
        for lower in [false, true] {
            let e = hex(*c, lower);
            pair(format!("/p{e}q"), format!("/p{ch}q"));
            pair(format!("/p{ch}q"), format!("/p{e}q"));
            pair(format!("/p{e}q"), format!("/p{e}q"));
            pair(format!("/p{e}"), format!("/p{ch}"));
        }
        if *c != b'*' {
            pair(format!("/p{ch}q"), format!("/p{ch}q"));
        }
    }
    for (literal, escaped) in [
        ("/café", "/caf%C3%A9"),
        ("/日本/x", "/%E6%97%A5%E6%9C%AC/x"),
        ("/naïve-ß", "/na%C3%AFve-%C3%9F"),
    ] {
        pair(literal.into(), escaped.into());
        pair(escaped.into(), literal.into());
        pair(escaped.to_lowercase(), literal.into());
        pair(literal.into(), escaped.to_lowercase());
    }
    for (rule, path) in [
        ("/path/file-with-a-%2A.html", "/path/file-with-a-*.html"),
        ("/path/file-with-a-%2A.html", "/path/file-with-a-xyz.html"),
        ("/path/file-with-a-*.html", "/path/file-with-a-xyz.html"),
        ("/path/foo-%24", "/path/foo-$"),
        ("/path/foo-%24", "/path/foo-"),
        ("/path/foo-$", "/path/foo-"),
        ("/path/foo-$", "/path/foo-x"),
        ("/a%2Fb", "/a/b"),
        ("/a/b", "/a%2Fb"),
        ("/%7Euser/", "/~user/x"),
    ] {
        pair(rule.into(), path.into());
    }
    cases
}

#[test]
fn percent_encoding_classes_agree_with_protego() {
    let cases = encoding_cases();
    // Ours first: the classes that must compare alike do.
    let ours: Vec<bool> = cases
        .iter()
        .map(|(text, path)| {
            Robots::parse(text.as_bytes())
                .rules_for("witbot")
                .allowed(path)
        })
        .collect();
    let decide = |rule: &str, path: &str| {
        let text = format!("User-agent: *\nDisallow: {rule}\n");
        Robots::parse(text.as_bytes())
            .rules_for("witbot")
            .allowed(path)
    };
    assert!(!decide(
        "/path/file-with-a-%2A.html",
        "/path/file-with-a-*.html"
    ));
    let Some(py) = python_with(&["protego"]) else {
        return;
    };
    let theirs = protego_decides(&py, &cases);
    let differ: Vec<String> = cases
        .iter()
        .zip(ours.iter().zip(&theirs))
        .filter(|(_, (a, b))| a != b)
        .map(|((t, p), (a, b))| format!("{:?} {p}: wit {a}, protego {b}", t.lines().nth(1)))
        .collect();
    eprintln!("{} generated cases, {} differ", cases.len(), differ.len());
    assert!(differ.is_empty(), "{differ:#?}");
}
