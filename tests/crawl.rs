//! `wit crawl` against real HTTP servers on 127.0.0.1: one that misbehaves in
//! every way the issue lists, and a real documentation website.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::server::{Gate, Reply, Server};
use crate::util::*;

/// Runs `wit` and fails the test if it has not finished within `limit`.
fn run_within(args: &[&str], limit: Duration) -> Output {
    let child = wit()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wit runs");
    wait_within(child, limit)
}

fn wait_within(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("wit hung for {limit:?}:\n{}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The sum of the counts of every part sidecar of `candidates/`.
fn part_counts(dataset: &Path) -> BTreeMap<String, u64> {
    let dir = dataset.join("candidates");
    let mut sum = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("_part-") {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            for (k, n) in v["counts"].as_object().unwrap() {
                *sum.entry(k.clone()).or_default() += n.as_u64().unwrap();
            }
        }
    }
    sum
}

const FAST: &[&str] = &[
    "--allow-private",
    "--delay",
    "0",
    "--per-host",
    "4",
    "--timeout",
    "3",
    "--connect-timeout",
    "2",
];

fn page(links: &[String], body: &str) -> String {
    let a: String = links
        .iter()
        .map(|l| format!("<a href=\"{l}\">{l}</a>\n"))
        .collect();
    format!(
        "<!doctype html><html lang=\"en\"><head><title>T</title></head><body>{a}{body}</body></html>"
    )
}

#[test]
fn faults_are_counted_by_reason_and_never_hang() {
    // Origin C answers robots.txt with 503: all its pages are off limits.
    let c = Server::start(|path| match path {
        "/robots.txt" => Reply::status(503, &[]),
        _ => Reply::html(page(&[], "")),
    });
    // Origin B: real rules with a Crawl-delay.
    let b = Server::start(|path| match path {
        "/robots.txt" => Reply::with_type(
            200,
            "text/plain",
            "User-agent: *\nDisallow: /secret\nCrawl-delay: 0.2\n",
        ),
        "/" => Reply::html(page(
            &["/secret".into(), "/open".into()],
            "<img src=\"/b.jpg\" alt=\"a blue boat\">",
        )),
        _ => Reply::html(page(&[], "<img src=\"/o.jpg\" alt=\"an open door\">")),
    });
    let busy_hits = AtomicU32::new(0);
    let other = [b.url("/"), c.url("/"), c.url("/two")];
    let a = Server::start(move |path| {
        let links: Vec<String> = [
            "/drip",
            "/reset",
            "/truncated",
            "/endless",
            "/loop1",
            "/chain/0",
            "/busy",
            "/busy-always",
            "/error",
            "/missing",
            "/data",
            "/bad-utf8",
            "/latin1",
            "/deflate-raw",
            "/compress",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(other.iter().cloned())
        .collect();
        match path {
            // An HTML error page served as robots.txt: no rules.
            "/robots.txt" => {
                Reply::html("<html><body><h1>Welcome!</h1><p>Disallow: /</p></body></html>")
            }
            "/" => Reply::html(page(&links, "<img src=\"/a.jpg\" alt=\"a red car\">")),
            "/drip" => Reply::Drip {
                body: vec![b'x'; 1000],
                every: Duration::from_millis(50),
            },
            "/reset" => Reply::Reset,
            "/truncated" => Reply::Truncated {
                declared: 5000,
                body: b"<html><body><img src=x.jpg alt=cut".to_vec(),
            },
            "/endless" => Reply::Endless,
            "/loop1" => Reply::status(302, &[("Location", "/loop2")]),
            "/loop2" => Reply::status(301, &[("Location", "/loop1")]),
            p if p.starts_with("/chain/") => {
                let n: u32 = p[7..].parse().unwrap();
                Reply::status(302, &[("Location", &format!("/chain/{}", n + 1))])
            }
            "/busy" => {
                if busy_hits.fetch_add(1, Ordering::SeqCst) == 0 {
                    Reply::status(429, &[("Retry-After", "1")])
                } else {
                    Reply::html(page(&[], "<img src=\"/busy.jpg\" alt=\"a patient cat\">"))
                }
            }
            "/busy-always" => Reply::status(429, &[("Retry-After", "0")]),
            "/error" => Reply::status(500, &[]),
            "/data" => Reply::with_type(200, "application/json", "{\"a\": 1}"),
            // Codings the HTTP client does not ask for, sent anyway.
            "/deflate-raw" => {
                use std::io::Write;
                let mut e =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(page(&[], "<img src=\"/d.jpg\" alt=\"a deflated duck\">").as_bytes())
                    .unwrap();
                Reply::Full {
                    status: 200,
                    headers: vec![
                        ("Content-Type".into(), "text/html".into()),
                        ("Content-Encoding".into(), "deflate".into()),
                    ],
                    body: e.finish().unwrap(),
                }
            }
            "/compress" => Reply::Full {
                status: 200,
                headers: vec![
                    ("Content-Type".into(), "text/html".into()),
                    ("Content-Encoding".into(), "compress".into()),
                ],
                body: b"\x1f\x9d\x90<html>".to_vec(),
            },
            "/bad-utf8" => Reply::html(
                b"<html><body><img src=\"/u.jpg\" alt=\"caf\xff\xfe latte art\"></body></html>"
                    .to_vec(),
            ),
            "/latin1" => Reply::with_type(
                200,
                "text/html; charset=iso-8859-1",
                b"<html><body><img src=\"/l.jpg\" alt=\"cr\xe8me br\xfbl\xe9e\"></body></html>"
                    .to_vec(),
            ),
            _ => Reply::with_type(404, "text/html", "<h1>Not Found</h1>"),
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    let seed = a.url("/");
    let mut args = vec![
        "crawl",
        "--out",
        ds.to_str().unwrap(),
        "--seed",
        &seed,
        "--max-redirects",
        "3",
        "--max-page-bytes",
        "100000",
        "--retries",
        "2",
    ];
    args.extend_from_slice(FAST);
    let start = Instant::now();
    let out = run_within(&args, Duration::from_secs(60));
    ok(&out);
    assert!(!stderr(&out).contains("panicked"));
    // Drip (1000 bytes at 50 ms) hits the 3 s timeout; nothing waits longer.
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );

    let counts = part_counts(&ds);
    let get = |k: &str| counts.get(k).copied().unwrap_or(0);
    let expect = [
        ("fail_timeout", 1),
        ("fail_network", 1),
        ("fail_truncated", 1),
        ("fail_too_large", 1),
        ("fail_redirect_loop", 1),
        ("fail_redirect_limit", 1),
        ("fail_http_5xx", 1),
        // /missing, and /busy-always after its 2 retries.
        ("fail_http_4xx", 2),
        ("fail_wrong_type", 1),
        ("fail_robots", 1),
        ("fail_robots_unreachable", 2),
        ("robots_html", 1),
        ("robots_fetched", 1),
        ("robots_unreachable", 1),
        // ... and why: origin C's robots.txt answered 503.
        ("robots_unreachable_http_5xx", 1),
        ("retries", 3),
        ("pages_bad_encoding", 1),
        ("fail_undecodable_body", 1),
    ];
    for (k, n) in expect {
        assert_eq!(get(k), n, "{k} in {counts:?}");
    }
    // Pages: A's index, busy (after its retry), bad-utf8, latin1,
    // deflate-raw; B's index and /open.
    assert_eq!(get("pages"), 7, "{counts:?}");
    // Every URL reached an end: 1 + 15 + 3 linked from A, /open and /secret from B.
    assert_eq!(get("urls"), 21, "{counts:?}");
    let failed: u64 = counts
        .iter()
        .filter(|(k, _)| k.starts_with("fail_"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(failed + get("pages"), get("urls"), "{counts:?}");

    // Robots rules were obeyed, and C was never asked for a page.
    assert!(!b.requests().contains(&"/secret".to_string()));
    assert_eq!(c.requests(), vec!["/robots.txt"]);
    let robots_fetches = a.requests().iter().filter(|p| *p == "/robots.txt").count();
    assert_eq!(robots_fetches, 1, "robots.txt is cached per origin");

    let texts: BTreeSet<String> = candidate_rows(&ds).into_iter().map(|r| r.2).collect();
    for t in [
        "a red car",
        "a patient cat",
        "a blue boat",
        "an open door",
        "crème brûlée",
        "a deflated duck",
    ] {
        assert!(texts.contains(t), "{t} in {texts:?}");
    }
    assert!(
        texts.iter().any(|t| t.starts_with("caf\u{fffd}")),
        "{texts:?}"
    );

    // Finished: the manifest is there and a rerun fetches nothing.
    assert_eq!(manifest(&ds, "candidates")["parts"], 1);
    let before = a.requests().len();
    ok(&run_within(&args, Duration::from_secs(30)));
    assert_eq!(a.requests().len(), before);
}

#[test]
fn private_addresses_are_refused_by_default() {
    let a = Server::start(|_| Reply::html("<img src=x.jpg alt=\"a red car\">"));
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    let localhost = format!("http://localhost:{}/", a.port);
    let out = run_within(
        &[
            "crawl",
            "--out",
            ds.to_str().unwrap(),
            "--seed",
            &a.url("/"),
            "--seed",
            &localhost,
        ],
        Duration::from_secs(30),
    );
    // Nothing could be fetched: the run fails, saying why and what to do.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let last = stderr(&out).trim().lines().last().unwrap_or("").to_string();
    assert!(
        last.starts_with(
            "error: crawl: nothing could be fetched: 2 of 2 URLs failed as refused_address:"
        ) && last.contains("rerun with --allow-private --force"),
        "{last}"
    );
    let counts = part_counts(&ds);
    assert_eq!(counts.get("fail_refused_address"), Some(&2), "{counts:?}");
    assert!(a.requests().is_empty(), "nothing reached the server");
    // The remedy works as said.
    let mut again = vec!["crawl", "--out", ds.to_str().unwrap(), "--seed"];
    let seed = a.url("/");
    again.extend([seed.as_str(), "--allow-private", "--force"]);
    ok(&run_within(&again, Duration::from_secs(30)));
    assert_eq!(part_counts(&ds).get("pages"), Some(&1));
}

/// An independent reading of a static site on disk: breadth-first from
/// index.html over `<a>`/`<area>` links (Python's html.parser and urljoin),
/// counting the HTML pages reached and their `<img>` elements and alt texts.
const SITE_REFERENCE: &str = r#"
import sys, os, json
from urllib.parse import urljoin, urldefrag, urlsplit, unquote
from html.parser import HTMLParser

root, base = sys.argv[1], sys.argv[2]

class Page(HTMLParser):
    def __init__(self, url):
        super().__init__()
        self.base, self.links, self.imgs, self.alts = url, [], 0, []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "base" and a.get("href"):
            self.base = urljoin(self.base, a["href"])
        if tag in ("a", "area") and a.get("href") and "nofollow" not in (a.get("rel") or "").lower().split():
            self.links.append(urldefrag(urljoin(self.base, a["href"].strip()))[0])
        if tag == "img":
            self.imgs += 1
            alt = " ".join((a.get("alt") or "").split())
            if alt and (a.get("src") or "").strip():
                self.alts.append((urljoin(self.base, a["src"].strip()), alt))

def file_of(url):
    p = unquote(urlsplit(url).path)
    f = os.path.join(root, p.lstrip("/"))
    if os.path.isdir(f):
        f = os.path.join(f, "index.html")
    return f

seen, queue, pages, imgs, alts = {base}, [base], [], 0, []
while queue:
    url = queue.pop(0)
    f = file_of(url)
    if not (f.endswith(".html") and os.path.isfile(f)):
        continue
    pages.append(urlsplit(url).path)
    p = Page(url)
    p.feed(open(f, encoding="utf-8", errors="replace").read())
    imgs += p.imgs
    alts += [(url, u, t) for u, t in p.alts]
    for l in p.links:
        s = urlsplit(l)
        if s.scheme == "http" and s.netloc == urlsplit(base).netloc and not s.query and l not in seen:
            seen.add(l)
            queue.append(l)
json.dump({"pages": sorted(pages), "images": imgs, "alts": sorted(set(alts))}, sys.stdout)
"#;

#[test]
fn crawls_a_real_documentation_site_as_an_independent_reading_counts_it() {
    let Some(root) = skimage_docs() else {
        return;
    };
    crawl_matches_a_plain_reading(&root);
}

/// A site whose pages show one figure several times, each with its own alt
/// text (`modules/decomposition.html`): no pair is taken for a placeholder.
#[test]
fn a_figure_shown_several_times_keeps_each_of_its_texts() {
    let Some(root) = sklearn_docs() else {
        return;
    };
    crawl_matches_a_plain_reading(&root);
}

/// Crawls the static site at `root` and holds the pages, images and (image,
/// alt text) pairs to an independent reading with Python's html.parser.
fn crawl_matches_a_plain_reading(root: &Path) {
    let Some(python) = python_with(&[]) else {
        return;
    };
    let site = Server::files(root.to_path_buf());
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    let seed = site.url("/index.html");
    let mut args = vec![
        "crawl",
        "--out",
        ds.to_str().unwrap(),
        "--seed",
        &seed,
        "--max-depth",
        "100",
        "--part-urls",
        "100",
        "--concurrency",
        "8",
    ];
    args.extend_from_slice(FAST);
    ok(&run_within(&args, Duration::from_secs(300)));

    let script = dir.path().join("site.py");
    std::fs::write(&script, SITE_REFERENCE).unwrap();
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(root)
        .arg(&seed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ref_pages: BTreeSet<String> = reference["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();

    let counts = part_counts(&ds);
    let get = |k: &str| counts.get(k).copied().unwrap_or(0);
    // The same pages, each fetched once.
    let fetched: Vec<String> = site
        .requests()
        .into_iter()
        .filter(|p| ref_pages.contains(p))
        .collect();
    let unique: BTreeSet<String> = fetched.iter().cloned().collect();
    assert_eq!(unique, ref_pages, "pages reached");
    assert_eq!(fetched.len(), unique.len(), "no page fetched twice");
    assert_eq!(get("pages") as usize, ref_pages.len(), "{counts:?}");
    assert_eq!(
        get("images"),
        reference["images"].as_u64().unwrap(),
        "{counts:?}"
    );
    // Alt texts: every candidate is one the reference found; those it left
    // out are boilerplate (file names, "image", navigation words).
    let ours: BTreeSet<(String, String, String)> = candidate_rows(&ds)
        .into_iter()
        .filter(|r| r.3 == "alt")
        .map(|r| (r.0, r.1, r.2))
        .collect();
    let theirs: BTreeSet<(String, String, String)> = reference["alts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let t = t.as_array().unwrap();
            let s = |i: usize| t[i].as_str().unwrap().to_string();
            (s(0), s(1), s(2))
        })
        .collect();
    let extra: Vec<_> = ours.difference(&theirs).collect();
    assert!(extra.is_empty(), "not in the reference: {extra:?}");
    // Every pair of the plain reading is kept but those whose text is
    // boilerplate (empty words, file names, the image's own file name):
    // nothing on this site is lazy-loaded, so nothing is a placeholder.
    let kept: BTreeSet<(String, String, String)> = theirs
        .iter()
        .filter_map(|(page, url, alt)| {
            let text = wit_crawler::html::clean_text(alt)?;
            let file = url.rsplit('/').next().unwrap_or("");
            (!text.eq_ignore_ascii_case(file)).then(|| (page.clone(), url.clone(), alt.clone()))
        })
        .collect();
    let lost: Vec<_> = kept.difference(&ours).collect();
    assert!(lost.is_empty(), "pairs of the plain reading lost: {lost:?}");
    assert_eq!(get("images_placeholder"), 0, "{counts:?}");
    let dropped = theirs.len() - ours.len();
    eprintln!(
        "site: {} pages, {} images, {} alt candidates ({} of the reference's alts dropped as boilerplate)",
        ref_pages.len(),
        get("images"),
        ours.len(),
        dropped
    );
    assert!(get("candidates") >= ours.len() as u64);
    assert!(manifest(&ds, "candidates")["parts"].as_u64().unwrap() >= 2);
}

#[test]
fn a_killed_crawl_resumes_without_refetching_committed_pages() {
    let Some(root) = skimage_docs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let crawl = |site: &Server, ds: &Path| -> std::process::Command {
        let mut cmd = wit();
        cmd.args(["crawl", "--out", ds.to_str().unwrap(), "--seed"])
            .arg(site.url("/index.html"))
            .args(["--max-depth", "100", "--part-urls", "20"])
            .args(["--allow-private", "--per-host", "2", "--delay", "0.01"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };

    // Uninterrupted.
    let site = Server::files(root.clone());
    let whole = dir.path().join("whole");
    let out = wait_within(
        crawl(&site, &whole).spawn().unwrap(),
        Duration::from_secs(300),
    );
    ok(&out);
    // Rows with the server's address taken out (each run has its own port).
    let paths_only = |ds: &Path, site: &Server| -> Vec<(String, String, String, String)> {
        let prefix = site.url("");
        candidate_rows(ds)
            .into_iter()
            .map(|(p, u, t, s)| (p.replace(&prefix, ""), u.replace(&prefix, ""), t, s))
            .collect()
    };
    let expected: BTreeSet<_> = paths_only(&whole, &site).into_iter().collect();

    // Killed after three parts, then run again. The server answers 100
    // requests and holds the rest until the kill, so four parts of 20 URLs
    // are committed and the crawl cannot finish first.
    let gate = Arc::new(Gate::default());
    gate.close_after(100);
    let site = Server::files_gated(root, gate.clone(), "/");
    let ds = dir.path().join("ds");
    let mut child = crawl(&site, &ds).spawn().unwrap();
    let marker = ds.join("candidates/_part-00002.json");
    let start = Instant::now();
    while !marker.exists() {
        if start.elapsed() > Duration::from_secs(120) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("no third part in 120 s, or the crawl ended with requests held");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The held requests go on to dead connections; every request the killed
    // run sent is logged before counting.
    gate.open();
    site.quiesce();
    let before = site.requests().len();
    let first: Vec<String> = site
        .requests()
        .into_iter()
        .filter(|p| p != "/robots.txt")
        .collect();
    let committed = part_counts(&ds)["urls"];
    assert!(committed >= 60, "{committed}");
    let out = wait_within(crawl(&site, &ds).spawn().unwrap(), Duration::from_secs(300));
    ok(&out);
    let all = site.requests();
    let second: BTreeSet<&String> = all[before..]
        .iter()
        .filter(|p| *p != "/robots.txt")
        .collect();
    let again: Vec<&String> = first.iter().filter(|p| second.contains(p)).collect();
    assert!(
        again.len() as u64 <= first.len() as u64 - committed,
        "{} URLs fetched again ({again:?}), but only {} were not committed",
        again.len(),
        first.len() as u64 - committed,
    );
    let rows = paths_only(&ds, &site);
    let got: BTreeSet<_> = rows.iter().cloned().collect();
    assert_eq!(rows.len(), got.len(), "no candidate twice");
    let missing: Vec<_> = expected.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "not the candidates of an uninterrupted crawl: missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(part_counts(&ds)["pages"], part_counts(&whole)["pages"]);
}

/// `wit status` gives a crawl's time from its start, not from its first
/// commit: one part of ten pages answered 200 ms apart takes 2 s or more.
#[test]
fn status_gives_the_crawls_time_from_its_start() {
    let a = Server::start(|path| {
        if path == "/robots.txt" {
            return Reply::status(404, &[]);
        }
        std::thread::sleep(Duration::from_millis(200));
        let n: u32 = path
            .trim_start_matches('/')
            .trim_end_matches(".html")
            .parse()
            .unwrap_or(0);
        let next = if n < 9 {
            format!("<a href=\"/{}.html\">next</a>", n + 1)
        } else {
            String::new()
        };
        Reply::html(format!("{next}<img src=\"/i{n}.jpg\" alt=\"a red car\">"))
    });
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    let d = ds.to_str().unwrap();
    let seed = a.url("/0.html");
    let args = [
        "crawl",
        "-d",
        d,
        "--seed",
        &seed,
        "--allow-private",
        "--per-host",
        "1",
        "--delay",
        "0",
        "--max-depth",
        "20",
    ];
    ok(&run_within(&args, Duration::from_secs(60)));
    let m = manifest(&ds, "candidates");
    let got = (m["parts"].as_u64(), m["counts"]["pages"].as_u64());
    assert_eq!(got, (Some(1), Some(10)), "{m}");
    let out = run(&["status", d]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("candidates"))
        .unwrap_or_else(|| panic!("{text}"));
    let seconds: f64 = row.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(seconds >= 2.0, "{row}");
}

/// A seeds file as editors save it (a UTF-8 BOM, CRLF, blank lines and
/// a comment) gives every seed: before issue 37 the first seed, behind
/// the BOM, was lost with only a warning. One in UTF-16 (Notepad's
/// "Unicode") reads the same; one in Latin-1 is refused naming the line.
#[test]
fn a_seeds_file_with_a_bom_loses_no_seed() {
    let a = Server::start(|_| Reply::html("<img src=x.jpg alt=\"a red car\">"));
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\r\n\r\n# a comment\r\n{}\r\n",
        a.url("/one"),
        a.url("/two")
    );
    let mut utf16 = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        utf16.extend_from_slice(&u.to_le_bytes());
    }
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend_from_slice(text.as_bytes());
    for (name, bytes) in [("bom", bom), ("utf16", utf16)] {
        let seeds = dir.path().join(format!("{name}.txt"));
        std::fs::write(&seeds, bytes).unwrap();
        let ds = dir.path().join(name);
        let mut args = vec!["crawl", "--out", ds.to_str().unwrap(), "--seeds"];
        args.push(seeds.to_str().unwrap());
        args.extend_from_slice(FAST);
        ok(&run_within(&args, Duration::from_secs(30)));
        assert_eq!(part_counts(&ds).get("pages"), Some(&2), "{name}");
    }
    let requests = a.requests();
    assert_eq!(
        requests.iter().filter(|r| r.as_str() == "/one").count(),
        2,
        "{requests:?}"
    );
    let latin1 = dir.path().join("latin1.txt");
    std::fs::write(&latin1, b"http://127.0.0.1:1/caf\xe9\n").unwrap();
    let ds = dir.path().join("latin1");
    let o = run(&[
        "crawl",
        "--out",
        ds.to_str().unwrap(),
        "--seeds",
        latin1.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("latin1.txt") && err.contains("not UTF-8: line 1"),
        "{err}"
    );
}

/// A page that sends the browser on with `<meta http-equiv="refresh">`
/// (or the HTTP `Refresh` header) is followed there, as a redirect is:
/// counted, and held to the checks a link gets (robots, scope, a loop).
/// Before issue 37 such an entry page gave one page, 0 candidates and
/// exit 0, saying nothing.
#[test]
fn meta_refresh_and_the_refresh_header_are_followed_with_a_links_checks() {
    let a = Server::start(|path| match path {
        "/robots.txt" => Reply::with_type(200, "text/plain", "User-agent: *\nDisallow: /private\n"),
        "/" => Reply::html(
            "<html><head><meta http-equiv=\"Refresh\" content=\"0; URL='/home'\"></head>\
             <body>Moved.</body></html>",
        ),
        "/home" => {
            Reply::html("<img src=car.jpg alt=\"a red car on a bridge\"><a href=/header>next</a>")
        }
        "/header" => Reply::Full {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "text/html".into()),
                ("Refresh".into(), "1;url=/after-header".into()),
            ],
            body: b"<p>wait</p>".to_vec(),
        },
        "/after-header" => Reply::html(
            "<img src=boat.jpg alt=\"a small boat at sea\">\
             <meta http-equiv=refresh content=\"0;url=/private/x\">",
        ),
        "/loop" => Reply::html("<meta http-equiv=refresh content=\"0;url=/loop2\">"),
        "/loop2" => Reply::html("<meta http-equiv=refresh content=\"0;url=/loop\">"),
        "/away" => Reply::html("<meta http-equiv=refresh content=\"0;url=http://other.invalid/\">"),
        _ => Reply::html("<p>other</p>"),
    });
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    let seeds: Vec<String> = ["/", "/loop", "/away"].iter().map(|p| a.url(p)).collect();
    let mut args = vec!["crawl", "--out", ds.to_str().unwrap()];
    for s in &seeds {
        args.extend(["--seed", s.as_str()]);
    }
    args.extend_from_slice(FAST);
    ok(&run_within(&args, Duration::from_secs(30)));
    let texts: BTreeSet<String> = candidate_rows(&ds).into_iter().map(|r| r.2).collect();
    assert_eq!(
        texts,
        BTreeSet::from([
            "a red car on a bridge".to_string(),
            "a small boat at sea".to_string()
        ])
    );
    let counts = part_counts(&ds);
    let get = |k: &str| counts.get(k).copied().unwrap_or(0);
    // /, /home, /header, /after-header, /loop, /loop2, /away
    assert_eq!(get("pages"), 7, "{counts:?}");
    assert_eq!(get("refreshes"), 6, "{counts:?}");
    assert_eq!(get("refresh_loop"), 1, "{counts:?}");
    assert_eq!(get("refresh_out_of_scope"), 1, "{counts:?}");
    assert_eq!(get("fail_robots"), 1, "{counts:?}");
    let requests = a.requests();
    assert!(
        !requests.iter().any(|r| r.starts_with("/private")),
        "{requests:?}"
    );

    // A crawl that finds pages but no candidate says why.
    let b = Server::start(|_| Reply::html("<img src=a.jpg><img src=b.jpg alt=image>"));
    let ds = dir.path().join("empty");
    let seed = b.url("/");
    let mut args = vec!["crawl", "--out", ds.to_str().unwrap(), "--seed", &seed];
    args.extend_from_slice(FAST);
    let o = run_within(&args, Duration::from_secs(30));
    ok(&o);
    let err = stderr(&o);
    assert!(
        err.contains(
            "crawl: 1 pages fetched and no candidate found: 2 images, 1 texts that describe nothing"
        ),
        "{err}"
    );
}
