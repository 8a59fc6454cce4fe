//! Crawler throughput, each figure next to a reference measured in the same run:
//!
//! 1. **Parsing**: HTML pages of a real site (Debian's python-skimage-doc,
//!    unpacked by the tests into ~/.cache/wit/debian) decoded and run through
//!    the extractor on one thread, pages/s and MB/s; the reference is Python's
//!    `html.parser` collecting the same `<img>` alt texts and links.
//! 2. **Archives**: `extract_archive` over the vendored copies of
//!    ../shared/data/warc's archives (tests/fixtures/warc; read several
//!    times), MB/s of archive on one thread; the reference is Python's
//!    `warcio` iterating the same records and reading their bodies (no HTML
//!    parsing: it bounds what reading alone costs in Python), FastWARC
//!    (Resiliparse's C++ reader) reading the same, and
//!    MetaCLIP's way of extracting: `warcio` with `selectolax`'s lexbor
//!    parser, `<img>` with `alt`/`title`, URLs joined (issue 23's target:
//!    wit at twice its rate per core).
//!    Then **WAT** (2b): the same pages as a WAT file in Common Crawl's
//!    layout (one `metadata` record of JSON per page, its
//!    `HTML-Metadata.Links` holding every `<img src>` with `alt`/`title` and
//!    every `<a href>`; `tests/fixtures/wat/`); `extract_archive` against
//!    Python reading it as cc2dataset does (`warcio`, `json.loads`, the
//!    `IMG@/src` links).
//! 3. **Crawling**: `run_crawl` over a generated site of 5,000 linked pages
//!    served on 127.0.0.1 by a keep-alive server in this process, URLs/s and
//!    URLs per CPU-second; the reference is the same client fetching the same
//!    URLs as fast as it can without parsing, scheduling or writing anything.
//!
//! Run: `cargo bench -p wit-crawler --bench crawl` (part of `make bench`).
//! A part whose input is missing says so and is skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wit_contract::{Dataset, NoProgress};
use wit_crawler::html::{decode_html, extract};
use wit_crawler::{CrawlOptions, Scope, extract_archive, extract_archive_at, run_crawl};
use wit_net::addr::AddressPolicy;

fn cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn python() -> Option<PathBuf> {
    let home = PathBuf::from(std::env::var_os("HOME")?);
    let venv = home.join(".cache/wit/python-venv/bin/python");
    Some(if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    })
}

/// Installs the references' modules into the venv where they are missing
/// (from PyPI, once).
fn install_references() {
    let Some(py) = python() else { return };
    for module in ["warcio", "selectolax", "fastwarc"] {
        let have = Command::new(&py)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !have {
            let _ = Command::new(&py)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    module,
                ])
                .status();
        }
    }
}

/// Runs a Python snippet with `args`; its stdout (a number: seconds).
fn python_seconds(script: &str, args: &[&str]) -> Option<f64> {
    let dir = std::env::temp_dir().join(format!("wit-bench-crawl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let file = dir.join("ref.py");
    std::fs::File::create(&file)
        .ok()?
        .write_all(script.as_bytes())
        .ok()?;
    let out = Command::new(python()?)
        .arg(&file)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "  (reference skipped: {})",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

const PARSE_REF: &str = r#"
import sys, time
from html.parser import HTMLParser
class P(HTMLParser):
    def __init__(self):
        super().__init__(); self.n = 0
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img" and a.get("alt"): self.n += 1
        if tag == "a" and a.get("href"): self.n += 1
files = [open(f, "rb").read() for f in sys.argv[1:]]
t = time.perf_counter()
for b in files:
    p = P(); p.feed(b.decode("utf-8", "replace")); p.close()
print(time.perf_counter() - t)
"#;

const FASTWARC_REF: &str = r#"
import sys, time
from fastwarc.warc import ArchiveIterator
reps, files = int(sys.argv[1]), sys.argv[2:]
t = time.perf_counter()
for _ in range(reps):
    for f in files:
        with open(f, "rb") as fh:
            for r in ArchiveIterator(fh, parse_http=True):
                r.reader.read()
print(time.perf_counter() - t)
"#;

const WARC_REF: &str = r#"
import sys, time
from warcio.archiveiterator import ArchiveIterator
reps, files = int(sys.argv[1]), sys.argv[2:]
t = time.perf_counter()
for _ in range(reps):
    for f in files:
        with open(f, "rb") as fh:
            try:
                for r in ArchiveIterator(fh):
                    r.content_stream().read()
            except Exception:
                pass
print(time.perf_counter() - t)
"#;

fn html_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            html_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "html") {
            out.push(p);
        }
    }
}

fn bench_parsing() {
    println!("1. HTML parsing (one thread)");
    let Some(home) = std::env::var_os("HOME") else {
        return;
    };
    let root = PathBuf::from(home)
        .join(".cache/wit/debian/python-skimage-doc/usr/share/doc/python-skimage-doc/html");
    let mut files = Vec::new();
    html_files(&root, &mut files);
    if files.is_empty() {
        println!(
            "  skipped: {} is absent (the crawl tests unpack it: cargo test --test e2e crawl)",
            root.display()
        );
        return;
    }
    files.sort();
    let pages: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|p| {
            (
                format!(
                    "http://127.0.0.1/{}",
                    p.strip_prefix(&root).unwrap().display()
                ),
                std::fs::read(p).unwrap(),
            )
        })
        .collect();
    let bytes: usize = pages.iter().map(|p| p.1.len()).sum();
    let reps = 3;
    let t = Instant::now();
    let mut found = 0;
    for _ in 0..reps {
        for (url, body) in &pages {
            let (text, _, _) = decode_html(body, Some("text/html; charset=utf-8"));
            let got = extract(url, &text, None);
            found += got.candidates.len() + got.links.len();
        }
    }
    let ours = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "  wit: {} pages ({:.1} MB) in {:.3} s: {:.0} pages/s, {:.1} MB/s ({found} items)",
        pages.len(),
        bytes as f64 / 1e6,
        ours,
        pages.len() as f64 / ours,
        bytes as f64 / 1e6 / ours
    );
    let args: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    if let Some(theirs) = python_seconds(PARSE_REF, &args) {
        println!(
            "  Python html.parser: {:.3} s, {:.0} pages/s; wit is {:.2}x",
            theirs,
            pages.len() as f64 / theirs,
            theirs / ours
        );
    }
}

/// Serves `files` (by file name) on 127.0.0.1 over HTTP/1.1, one thread a
/// connection, whole bodies only; returns the port.
fn serve_files(files: &[PathBuf]) -> u16 {
    use std::io::{BufRead, BufReader};
    let bodies: std::collections::HashMap<String, Arc<Vec<u8>>> = files
        .iter()
        .map(|f| {
            (
                f.file_name().unwrap().to_string_lossy().into_owned(),
                Arc::new(std::fs::read(f).unwrap()),
            )
        })
        .collect();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let bodies = bodies.clone();
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let mut from: Option<usize> = None;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        from = v.trim().trim_end_matches('-').parse().ok();
                    }
                }
                let name = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches('/');
                match bodies.get(name) {
                    Some(b) => {
                        // Ranges as real servers give them: damaged archives
                        // are resynchronised by seeking.
                        let start = from.unwrap_or(0).min(b.len());
                        let head = match from {
                            Some(_) => format!(
                                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                                b.len() - start,
                                b.len().saturating_sub(1),
                                b.len()
                            ),
                            None => format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                b.len()
                            ),
                        };
                        let _ = conn.write_all(head.as_bytes());
                        if !line.starts_with("HEAD") {
                            let _ = conn.write_all(&b[start..]);
                        }
                    }
                    None => {
                        let _ =
                            conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                    }
                }
            });
        }
    });
    port
}

fn bench_archives() {
    println!("2. Archive reading (one thread)");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/warc");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".warc.gz"))
                .collect()
        })
        .unwrap_or_default();
    if files.is_empty() {
        println!("  skipped: {} is absent", dir.display());
        return;
    }
    files.sort();
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    let reps = 20;
    let t = Instant::now();
    let mut rows = 0;
    for _ in 0..reps {
        for f in &files {
            rows += extract_archive(f).unwrap().0.len();
        }
    }
    let ours = t.elapsed().as_secs_f64();
    let mb = (bytes * reps) as f64 / 1e6;
    println!(
        "  wit extract: {mb:.1} MB of gzipped WARC in {ours:.2} s: {:.1} MB/s ({} candidates per pass)",
        mb / ours,
        rows / reps as usize
    );
    // The same archives streamed over HTTP from 127.0.0.1, as `wit extract
    // https://...` reads Common Crawl in place.
    let port = serve_files(&files);
    let t = Instant::now();
    let mut http_rows = 0;
    for _ in 0..reps {
        for f in &files {
            let url = format!(
                "http://127.0.0.1:{port}/{}",
                f.file_name().unwrap().to_string_lossy()
            );
            http_rows += extract_archive_at(&url).unwrap().0.len();
        }
    }
    let http = t.elapsed().as_secs_f64();
    assert_eq!(http_rows, rows, "the same candidates over HTTP");
    println!(
        "  wit extract over http://127.0.0.1: {http:.2} s: {:.1} MB/s; {:.2}x the local files' rate",
        mb / http,
        ours / http
    );
    let t = Instant::now();
    let mut body_bytes = 0;
    for _ in 0..reps {
        for f in &files {
            wit_crawler::warc::read_records(f, |r| {
                body_bytes +=
                    wit_crawler::warc::parse_http(&r.block).map_or(r.block.len(), |h| h.body.len());
            })
            .unwrap();
        }
    }
    let read_only = t.elapsed().as_secs_f64();
    println!(
        "  wit read only (records and HTTP bodies, as warcio below): {read_only:.2} s: {:.1} MB/s",
        mb / read_only
    );
    let mut args = vec![reps.to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Some(theirs) = python_seconds(WARC_REF, &args) {
        println!(
            "  Python warcio (read only): {theirs:.2} s, {:.1} MB/s; wit reading is {:.2}x warcio",
            mb / theirs,
            theirs / read_only
        );
    }
    if let Some(theirs) = python_seconds(FASTWARC_REF, &args) {
        println!(
            "  FastWARC (read only, HTTP headers parsed): {theirs:.2} s, {:.1} MB/s; wit reading is {:.2}x FastWARC",
            mb / theirs,
            theirs / read_only
        );
    }
    if let Some(theirs) = python_seconds(METACLIP_REF, &args) {
        println!(
            "  MetaCLIP's way, warcio + selectolax (lexbor): {theirs:.2} s, {:.1} MB/s; wit extract is {:.2}x it per core",
            mb / theirs,
            theirs / ours
        );
    }
    bench_wat();
}

/// warcio + selectolax (lexbor): the HTML pages' `<img>` with their `alt`
/// and `title`, URLs joined to the page's; prints seconds.
const METACLIP_REF: &str = r#"
import sys, time
from urllib.parse import urljoin
from warcio.archiveiterator import ArchiveIterator
from selectolax.lexbor import LexborHTMLParser
reps, files = int(sys.argv[1]), sys.argv[2:]
n = 0
t = time.perf_counter()
for _ in range(reps):
    for f in files:
        with open(f, "rb") as fh:
            try:
                for r in ArchiveIterator(fh):
                    if r.rec_type != "response" or r.http_headers is None:
                        continue
                    body = r.content_stream().read()
                    if "html" not in (r.http_headers.get_header("Content-Type") or "").lower():
                        continue
                    page = r.rec_headers.get_header("WARC-Target-URI")
                    for img in LexborHTMLParser(body).css("img"):
                        a = img.attributes
                        src = a.get("src")
                        if not src:
                            continue
                        url = urljoin(page, src.strip())
                        for k in ("alt", "title"):
                            v = a.get(k)
                            if v and v.strip():
                                n += 1
            except Exception:
                pass
print(time.perf_counter() - t)
"#;

/// warcio + json: the `IMG@/src` links of WAT metadata records with their
/// `alt`, URLs joined (cc2dataset's reading); prints seconds.
const WAT_REF: &str = r#"
import sys, time, json
from urllib.parse import urljoin
from warcio.archiveiterator import ArchiveIterator
reps, files = int(sys.argv[1]), sys.argv[2:]
n = 0
t = time.perf_counter()
for _ in range(reps):
    for f in files:
        with open(f, "rb") as fh:
            for r in ArchiveIterator(fh):
                if r.rec_type != "metadata":
                    continue
                doc = json.loads(r.content_stream().read())
                env = doc["Envelope"]
                page = env["WARC-Header-Metadata"]["WARC-Target-URI"]
                html = env["Payload-Metadata"]["HTTP-Response-Metadata"].get("HTML-Metadata")
                if not html:
                    continue
                for link in html.get("Links", []):
                    if link.get("path") == "IMG@/src" and link.get("url"):
                        url = urljoin(page, link["url"].strip())
                        if link.get("alt"):
                            n += 1
print(time.perf_counter() - t)
"#;

fn bench_wat() {
    println!("2b. WAT reading (one thread)");
    // A record per HTML response of the shared archives (their vendored
    // copies), in Common Crawl's layout: see tests/fixtures/NOTICE.md.
    let wat =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wat/pages.warc.wat.gz");
    let records = extract_archive(&wat).unwrap().1["records"];
    let bytes = std::fs::metadata(&wat).unwrap().len();
    let reps = 200;
    let t = Instant::now();
    let mut rows = 0;
    for _ in 0..reps {
        rows += extract_archive(&wat).unwrap().0.len();
    }
    let ours = t.elapsed().as_secs_f64();
    let mb = (bytes * reps) as f64 / 1e6;
    let per_s = (records as u64 * reps) as f64 / ours;
    println!(
        "  wit extract: {records} WAT records ({:.2} MB gzipped) x {reps} in {ours:.2} s: {per_s:.0} records/s, {:.1} MB/s ({} candidates per pass)",
        bytes as f64 / 1e6,
        mb / ours,
        rows / reps as usize
    );
    let args = [reps.to_string(), wat.display().to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Some(theirs) = python_seconds(WAT_REF, &args) {
        println!(
            "  Python warcio + json (cc2dataset's reading): {theirs:.2} s, {:.0} records/s, {:.1} MB/s; wit is {:.2}x it per core",
            (records as u64 * reps) as f64 / theirs,
            mb / theirs,
            theirs / ours
        );
    }
}

const PAGES: usize = 5000;

fn site_page(i: usize) -> Vec<u8> {
    let mut html =
        format!("<!doctype html><html lang=en><head><title>Page {i}</title></head><body>");
    for k in 1..=10 {
        html.push_str(&format!(
            "<a href=\"/p/{}.html\">next {k}</a> ",
            (i * 7 + k * 13) % PAGES
        ));
    }
    for k in 0..5 {
        html.push_str(&format!(
            "<figure><img src=\"/img/{i}-{k}.jpg\" alt=\"a photo of object {k} on page {i}\" width=320 height=240><figcaption>Figure {k} of page {i}, a striped cat</figcaption></figure>"
        ));
    }
    html.push_str(&"<p>Some text to make the page a realistic size. ".repeat(60));
    html.push_str("</body></html>");
    html.into_bytes()
}

/// A keep-alive HTTP/1.1 server of the generated site.
async fn serve(listener: tokio::net::TcpListener, pages: Arc<Vec<Vec<u8>>>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let pages = pages.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") else {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end + 4);
                let path = head.split(' ').nth(1).unwrap_or("/");
                let page = path
                    .strip_prefix("/p/")
                    .and_then(|p| p.strip_suffix(".html"))
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| pages.get(n));
                let (status, body): (&str, &[u8]) = match (path, page) {
                    ("/robots.txt", _) => ("200 OK", b"User-agent: *\nDisallow:\n"),
                    (_, Some(p)) => ("200 OK", p),
                    _ => ("404 Not Found", b"not found"),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                if conn.write_all(head.as_bytes()).await.is_err()
                    || conn.write_all(body).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

fn bench_crawl() {
    println!("3. Crawling a generated site of {PAGES} pages on 127.0.0.1");
    let pages: Arc<Vec<Vec<u8>>> = Arc::new((0..PAGES).map(site_page).collect());
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    server.spawn(serve(listener, pages.clone()));

    let concurrency = 64;
    let dir = tempfile::tempdir().unwrap();
    let opts = CrawlOptions {
        seeds: vec![format!("http://127.0.0.1:{port}/p/0.html")],
        policy: AddressPolicy {
            allow_private: true,
        },
        scope: Scope::Host,
        max_depth: 10_000,
        concurrency,
        per_host: concurrency,
        delay: Duration::ZERO,
        part_urls: 1000,
        threads: 1,
        ..CrawlOptions::default()
    };
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let summary = run_crawl(&Dataset::new(dir.path()), &opts, false, &NoProgress).unwrap();
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let urls = summary.counts.get("urls").copied().unwrap_or(0);
    println!(
        "  wit crawl (1 worker thread, {concurrency} at once): {urls} URLs, {} candidates in {wall:.2} s: {:.0} URLs/s, {:.0} URLs per CPU-second (server included)",
        summary.counts.get("candidates").copied().unwrap_or(0),
        urls as f64 / wall,
        urls as f64 / cpu
    );

    // Reference: the same client fetching the same URLs, nothing else.
    let client = wit_net::http::Client::new(&wit_net::http::ClientOptions {
        user_agent: "bench".into(),
        policy: AddressPolicy {
            allow_private: true,
        },
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(30),
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    rt.block_on(async {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, next) = (client.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= PAGES {
                        return;
                    }
                    let url =
                        url::Url::parse(&format!("http://127.0.0.1:{port}/p/{i}.html")).unwrap();
                    client.get(&url, 1 << 20, |_| Ok(())).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let wall_ref = t.elapsed().as_secs_f64();
    let cpu_ref = cpu_seconds() - cpu0;
    println!(
        "  fetch only (same client, no parsing or scheduling): {PAGES} URLs in {wall_ref:.2} s: {:.0} URLs/s, {:.0} URLs per CPU-second; the crawl runs at {:.2}x its rate",
        PAGES as f64 / wall_ref,
        PAGES as f64 / cpu_ref,
        (urls as f64 / wall) / (PAGES as f64 / wall_ref)
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    install_references();
    bench_parsing();
    bench_archives();
    bench_crawl();
}
