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
        eprintln!("SKIP: cannot download the protego sdist (no registry access?)");
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
        if !got && *has_orphans {
            // rules written before any User-agent line apply to every crawler
            // (protego drops them);
            orphans += 1;
        } else if !got && path.contains('?') {
            // patterns match the query string too, as RFC 9309 and Google do.
            queries += 1;
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
