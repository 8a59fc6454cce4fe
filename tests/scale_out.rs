//! Scale-out with real parts: the dataset on a real S3 server (SeaweedFS,
//! signatures checked) and the stages as job arrays on a real single-node
//! Slurm, compared byte for byte with one local process.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use wit_contract::store::Remote;

use crate::server::{Gate, Server};
use crate::util::*;

/// `wit demo-web` generated into `dir` and served on 127.0.0.1 (a port the
/// server bound itself) until dropped; its image requests (`/img/`) go
/// through `gate`, open until a test closes it.
pub struct DemoWeb {
    _server: Server,
    pub gate: Arc<Gate>,
    pub url: String,
}

/// The demo web of `pages` pages, served with its images (`/img/`) behind a
/// gate.
pub fn demo_web(dir: &Path, pages: u32) -> DemoWeb {
    demo_web_gating(dir, pages, "/img/")
}

/// The demo web, served with the paths under `gated` behind a gate.
pub fn demo_web_gating(dir: &Path, pages: u32, gated: &'static str) -> DemoWeb {
    let web = dir.join("web");
    ok(&wit()
        .args(["demo-web", "--out", web.to_str().unwrap(), "--pages"])
        .arg(pages.to_string())
        .args(["--eval-per-class", "2"])
        .output()
        .unwrap());
    let gate = Arc::new(Gate::default());
    let server = Server::files_gated(wit_demo::site_dir(&web), gate.clone(), gated);
    DemoWeb {
        url: server.url("/"),
        _server: server,
        gate,
    }
}

/// The store at `url`, with the test server's credentials.
pub fn remote(s3: &S3Server, url: &str) -> Remote {
    Remote::open_with(
        url,
        &[
            ("aws_access_key_id", S3_KEY),
            ("aws_secret_access_key", S3_SECRET),
            ("aws_endpoint", &s3.endpoint),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
        ],
    )
    .unwrap()
}

/// Every object under `rel`, name to bytes.
fn objects(r: &Remote, rel: &str) -> BTreeMap<String, Vec<u8>> {
    r.list(rel)
        .unwrap()
        .into_keys()
        .map(|name| {
            let bytes = r.get(&format!("{rel}/{name}")).unwrap().unwrap().to_vec();
            (name, bytes)
        })
        .collect()
}

/// Every file under `dir` (recursively), name to bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let name = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(name, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The files a run must reproduce byte for byte: data and global files, not
/// the records of when and how long (sidecars, manifests, journals).
fn reproducible(files: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    files
        .into_iter()
        .filter(|(n, _)| {
            let base = n.rsplit('/').next().unwrap_or(n);
            !(base.starts_with("_part-")
                || base == "_manifest.json"
                || base.starts_with(".tmp")
                || n.starts_with("_work/")
                || base.ends_with("_stats.json")
                || base == "summary.json")
        })
        .collect()
}

/// Asserts the same file names with the same bytes (names only in the message).
fn assert_same(stage: &str, got: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{stage}: other files"
    );
    for (name, bytes) in want {
        assert!(got[name] == *bytes, "{stage}/{name} differs");
    }
}

/// True when `bytes` do not hold the test server's secret.
fn free_of_secret(bytes: &[u8]) -> bool {
    !bytes
        .windows(S3_SECRET.len())
        .any(|w| w == S3_SECRET.as_bytes())
}

fn run_env(s3: &S3Server, args: &[&str]) -> Output {
    s3.env(&mut wit()).args(args).output().unwrap()
}

fn show(o: &Output) -> String {
    format!(
        "{:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn queries_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/demo-queries.txt")
}

/// The pairs of a candidates stage, as a set.
fn candidate_pairs(parts: &BTreeMap<String, Vec<u8>>) -> BTreeSet<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = BTreeSet::new();
    for (name, bytes) in parts {
        if !name.ends_with(".parquet") || name.starts_with('_') {
            continue;
        }
        let path = dir.path().join(name.replace('/', "_"));
        std::fs::write(&path, bytes).unwrap();
        for batch in
            wit_contract::pq::read_file(&path, &wit_contract::schema::candidates()).unwrap()
        {
            let batch = batch.unwrap();
            let urls = wit_contract::records::string_column(&batch, "url");
            let texts = wit_contract::records::string_column(&batch, "text");
            for i in 0..batch.num_rows() {
                out.insert((urls.value(i).to_string(), texts.value(i).to_string()));
            }
        }
    }
    out
}

const CRAWL: &[&str] = &[
    "--allow-private",
    "--delay",
    "0",
    "--per-host",
    "8",
    "--max-depth",
    "4",
    "--part-urls",
    "30",
];
const MATCH: &[&str] = &["--lang", "en"];
const BALANCE: &[&str] = &["-t", "20"];
const DOWNLOAD: &[&str] = &[
    "--allow-private",
    "--image-size",
    "32",
    "--resize-mode",
    "center_crop",
    "--shard-size",
    "40",
    "--per-host",
    "8",
];

fn toml_list(args: &[&str], extra: &[&str]) -> String {
    let all: Vec<String> = args.iter().chain(extra).map(|a| format!("{a:?}")).collect();
    format!("[{}]", all.join(", "))
}

fn pipeline(dataset: &str, seed: &str, tasks: u32) -> String {
    format!(
        r#"dataset = "{dataset}"
[resources]
cpus = 1
time = "00:20:00"
throttle = 2

[[stage]]
command = "queries import"
args = [{queries:?}]

[[stage]]
command = "crawl"
args = {crawl}

[[stage]]
command = "match"
args = {matching}
tasks = {tasks}

[[stage]]
command = "balance"
args = {balance}
tasks = {tasks}

[[stage]]
command = "download"
args = {download}
tasks = {tasks}
"#,
        queries = queries_file().display().to_string(),
        crawl = toml_list(CRAWL, &["--seed", seed]),
        matching = toml_list(MATCH, &[]),
        balance = toml_list(BALANCE, &[]),
        download = toml_list(DOWNLOAD, &[]),
    )
}

/// The same stages in one local process each; the candidates are copied
/// from `candidates` (the crawl's output depends on arrival order).
fn local_run(dir: &Path, candidates: &BTreeMap<String, Vec<u8>>) {
    let d = dir.to_str().unwrap();
    ok(&run(&[
        "queries",
        "import",
        queries_file().to_str().unwrap(),
        "-d",
        d,
    ]));
    let cand = dir.join("candidates");
    for (name, bytes) in candidates {
        let path = cand.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let stage = |cmd: &str, args: &[&str]| {
        let mut all = vec![cmd, "-d", d];
        all.extend_from_slice(args);
        ok(&run(&all));
    };
    stage("match", MATCH);
    stage("balance", BALANCE);
    stage("download", DOWNLOAD);
}

#[test]
fn the_demo_pipeline_on_s3_as_slurm_job_arrays_equals_one_local_process() {
    let Some(s3) = s3() else { return };
    let Some(()) = slurm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let web = demo_web(tmp.path(), 80);
    let url = s3.prefix("pipeline");
    let file = tmp.path().join("pipeline.toml");
    std::fs::write(&file, pipeline(&url, &web.url, 3)).unwrap();

    let clock = std::time::Instant::now();
    let out = run_env(
        s3,
        &[
            "slurm",
            file.to_str().unwrap(),
            "--out",
            tmp.path().join("slurm").to_str().unwrap(),
            "--poll",
            "0.5",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    eprintln!("slurm pipeline took {:.1} s", clock.elapsed().as_secs_f64());
    // The cluster's MaxArraySize (2) split each stage of 3 tasks in two arrays.
    let listing = String::from_utf8_lossy(&out.stdout);
    for chunk in ["03-match.0", "03-match.1", "04-balance.1", "05-download.1"] {
        assert!(
            listing.contains(&format!("{chunk}\tjob ")),
            "{chunk} not submitted (is the test Slurm's MaxArraySize {SLURM_MAX_ARRAY_SIZE}?):\n{listing}"
        );
    }
    let r = remote(s3, &url);

    // At least 3 parts per partitioned stage, all on the store.
    for stage in ["candidates", "matched", "balanced", "shards"] {
        let m: serde_json::Value =
            serde_json::from_slice(&r.get(&format!("{stage}/_manifest.json")).unwrap().unwrap())
                .unwrap();
        assert!(m["parts"].as_u64().unwrap() >= 3, "{stage}: {m}");
        assert!(
            !m["inputs"].to_string().contains("wit-mirror"),
            "the manifest names the working directory: {m}"
        );
    }
    // No temporary objects are left on the store, and the secret is in no
    // object and no task's log.
    let all = r.list("").unwrap();
    assert!(!all.keys().any(|k| k.contains(".tmp")), "{all:?}");
    for (name, bytes) in objects(&r, "") {
        assert!(free_of_secret(&bytes), "the secret is in {name}");
    }
    for (name, bytes) in files(&tmp.path().join("slurm")) {
        assert!(free_of_secret(&bytes), "the secret is in {name}");
    }

    // The crawl against a local crawl of the same site, as sets.
    let local = tmp.path().join("local");
    let crawl_dir = tmp.path().join("crawl-only");
    let mut crawl = vec![
        "crawl",
        "-d",
        crawl_dir.to_str().unwrap(),
        "--seed",
        &web.url,
    ];
    crawl.extend_from_slice(CRAWL);
    ok(&run(&crawl));
    let remote_candidates = objects(&r, "candidates");
    assert_eq!(
        candidate_pairs(&remote_candidates),
        candidate_pairs(&files(&crawl_dir.join("candidates")))
    );

    // Every later stage byte for byte against one local process each.
    local_run(&local, &remote_candidates);
    for stage in ["matched", "balanced", "shards"] {
        let want = reproducible(files(&local.join(stage)));
        let got = reproducible(objects(&r, stage));
        assert_same(stage, &got, &want);
    }
    let shard_objects = objects(&r, "shards");
    let tars: Vec<&String> = shard_objects
        .keys()
        .filter(|k| k.ends_with(".tar"))
        .collect();
    assert!(tars.len() >= 3, "{tars:?}");

    // Python reads the results where they lie: Polars scans the Parquet parts
    // on S3, webdataset streams the shards through `pipe:wit cat`.
    let Some(py) = python_with(&["polars", "webdataset"]) else {
        skip("no Python with polars and webdataset");
        return;
    };
    let manifest = |stage: &str| -> serde_json::Value {
        serde_json::from_slice(&r.get(&format!("{stage}/_manifest.json")).unwrap().unwrap())
            .unwrap()
    };
    let kept = manifest("balanced")["counts"]["kept"].as_u64().unwrap();
    let success = manifest("shards")["counts"]["success"].as_u64().unwrap();
    let wit_bin = env!("CARGO_BIN_EXE_wit");
    let shard_urls: Vec<String> = tars
        .iter()
        .map(|t| format!("pipe:{wit_bin} cat {url}/shards/{t}"))
        .collect();
    let script = format!(
        r#"
import json, os, polars as pl, webdataset as wds
opts = {{"aws_access_key_id": "{S3_KEY}", "aws_secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
        "aws_endpoint_url": "{endpoint}", "aws_region": "us-east-1", "aws_allow_http": "true"}}
rows = pl.scan_parquet("{url}/balanced/*.parquet", storage_options=opts).select(pl.len()).collect().item()
samples = sum(1 for s in wds.WebDataset({shards}, shardshuffle=False) if "jpg" in s and "txt" in s)
print(json.dumps({{"rows": rows, "samples": samples}}))
"#,
        endpoint = s3.endpoint,
        shards = serde_json::to_string(&shard_urls).unwrap(),
    );
    let out = s3
        .env(&mut Command::new(&py))
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let got: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(got["rows"], kept, "Polars over s3://");
    assert_eq!(got["samples"], success, "webdataset over pipe:wit cat");

    // The trainer streams the shards from the store; its run goes up there.
    let out = run_env(
        s3,
        &[
            "train",
            "-d",
            &url,
            "--model",
            "demo",
            "--steps",
            "2",
            "--batch-size",
            "16",
            "--workers",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let run = r.list("runs/demo").unwrap();
    assert!(run.contains_key("model.safetensors"), "{run:?}");
}

/// A gzipped WARC file of `pages` HTML responses, one gzip member a record,
/// each page with two captioned images.
fn warc_file(seed: u32, pages: u32) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::new();
    let mut rng = Lcg(u64::from(seed) * 7919 + 1);
    for p in 0..pages {
        let alt1: Vec<&str> = (0..4).map(|_| rng.pick(WORDS)).collect();
        let alt2: Vec<&str> = (0..5).map(|_| rng.pick(WORDS)).collect();
        let html = format!(
            "<html lang=en><head><title>page {seed}-{p}</title></head><body>\
             <img src=\"/img/{seed}/{p}a.jpg\" alt=\"{} photo\">\
             <figure><img src=\"/img/{seed}/{p}b.jpg\"><figcaption>{} here</figcaption></figure>\
             <p>{}</p></body></html>",
            alt1.join(" "),
            alt2.join(" "),
            "filler text ".repeat(50)
        );
        let http = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n{html}",
            html.len()
        );
        let record = format!(
            "WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: http://site{seed}.example/p{p}.html\r\n\
             WARC-Date: 2024-03-01T12:00:00Z\r\nWARC-Record-ID: <urn:uuid:{seed}-{p}>\r\n\
             Content-Type: application/http; msgtype=response\r\nContent-Length: {}\r\n\r\n{http}\r\n\r\n",
            http.len()
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(record.as_bytes()).unwrap();
        out.extend(gz.finish().unwrap());
    }
    out
}

/// An HTTP/1.1 server on 127.0.0.1 for `files` that honours `Range: bytes=N-`
/// and, the first time each file is asked for whole, cuts the body in the
/// middle and closes the connection. Returns its port and its request log
/// (`GET /name bytes=N-`).
fn range_server(
    files: BTreeMap<String, Vec<u8>>,
    ranges: bool,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        let mut cut: BTreeSet<String> = BTreeSet::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
            let mut range: Option<u64> = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=")
                    && ranges
                {
                    range = v.trim().trim_end_matches('-').parse().ok();
                }
            }
            let name = path.trim_start_matches('/').to_string();
            log2.lock().unwrap().push(format!(
                "{method} /{name} {}",
                range.map(|r| format!("bytes={r}-")).unwrap_or_default()
            ));
            let Some(body) = files.get(&name) else {
                let _ = conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            };
            let start = range.unwrap_or(0).min(body.len() as u64) as usize;
            let rest = &body[start..];
            let head = if range.is_some() {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
                    rest.len(),
                    body.len() - 1,
                    body.len()
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
                    body.len()
                )
            };
            let _ = conn.write_all(head.as_bytes());
            if method == "HEAD" {
                continue;
            }
            if start == 0 && cut.insert(name.clone()) {
                let _ = conn.write_all(&rest[..rest.len() / 2]);
                let _ = conn.flush();
                let _ = conn.shutdown(std::net::Shutdown::Both);
                continue;
            }
            let _ = conn.write_all(rest);
        }
    });
    (port, log)
}

#[test]
fn extract_reads_archives_in_place_from_s3_and_http_and_resumes_a_broken_stream() {
    let Some(s3) = s3() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let names = ["a.warc.gz", "b.warc.gz", "c.warc.gz"];
    let archives: BTreeMap<String, Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), warc_file(i as u32, 40)))
        .collect();
    let local_files: Vec<String> = names
        .iter()
        .map(|n| {
            let p = tmp.path().join(n);
            std::fs::write(&p, &archives[*n]).unwrap();
            p.display().to_string()
        })
        .collect();

    // The reference: local copies into a local dataset.
    let local = tmp.path().join("local");
    let mut args = vec!["extract".to_string()];
    args.extend(local_files.iter().cloned());
    args.extend(["-d".into(), local.display().to_string()]);
    ok(&run(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    let want = reproducible(files(&local.join("candidates")));
    assert!(want.len() == 3, "{:?}", want.keys());

    // The same archives on S3, into a dataset on S3.
    let base = s3.prefix("extract");
    let r = remote(s3, &base);
    for (name, bytes) in &archives {
        r.put(&format!("crawl/{name}"), bytes.clone()).unwrap();
    }
    let mut args = vec!["extract".to_string()];
    args.extend(names.iter().map(|n| format!("{base}/crawl/{n}")));
    args.extend(["-d".into(), format!("{base}/ds")]);
    let out = run_env(s3, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(reproducible(objects(&r, "ds/candidates")), want);

    // Over HTTP, from a paths listing as Common Crawl publishes it, through a
    // server that cuts every file's first transfer in the middle.
    let served: BTreeMap<String, Vec<u8>> = archives
        .iter()
        .map(|(n, b)| (format!("crawl/{n}"), b.clone()))
        .collect();
    let (port, log) = range_server(served.clone(), true);
    let listing = tmp.path().join("warc.paths.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(
        &mut gz,
        names
            .iter()
            .map(|n| format!("crawl/{n}\n"))
            .collect::<String>()
            .as_bytes(),
    )
    .unwrap();
    std::fs::write(&listing, gz.finish().unwrap()).unwrap();
    let over_http = tmp.path().join("http");
    let out = run(&[
        "extract",
        "--paths",
        listing.to_str().unwrap(),
        "--base-url",
        &format!("http://127.0.0.1:{port}/"),
        "-d",
        over_http.to_str().unwrap(),
    ]);
    ok(&out);
    assert_eq!(reproducible(files(&over_http.join("candidates"))), want);
    let requests = log.lock().unwrap().clone();
    for n in names {
        assert!(
            requests
                .iter()
                .any(|r| r.starts_with(&format!("GET /crawl/{n} bytes="))),
            "no ranged resume of {n}: {requests:?}"
        );
    }
    assert!(
        stderr(&out).contains("resuming with a ranged read"),
        "{}",
        stderr(&out)
    );

    // A server that ignores ranges: the resume reads from the start again
    // and drops what it already had.
    let (plain_port, _) = range_server(served, false);
    let no_ranges = tmp.path().join("no-ranges");
    let mut args = vec!["extract".to_string()];
    args.extend(
        names
            .iter()
            .map(|n| format!("http://127.0.0.1:{plain_port}/crawl/{n}")),
    );
    args.extend(["-d".into(), no_ranges.display().to_string()]);
    ok(&run(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(reproducible(files(&no_ranges.join("candidates"))), want);

    // A listing with a bad line is refused, naming the file and the line.
    let bad = tmp.path().join("bad.paths");
    std::fs::write(&bad, "crawl/a.warc.gz\ncrawl/b c.warc.gz\n").unwrap();
    let out = run(&[
        "extract",
        "--paths",
        bad.to_str().unwrap(),
        "-d",
        over_http.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("bad.paths: line 2"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_stores_get_one_line_errors_and_the_secret_is_never_written() {
    let Some(s3) = s3() else { return };
    let url = s3.prefix("errors");
    let check = |out: &Output, needle: &str| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(2), "{needle}: {}", show(out));
        let last = err.lines().last().unwrap_or("");
        assert!(
            last.starts_with("error: ") && last.contains(needle),
            "{needle}: {err}"
        );
    };
    // Wrong secret: the server checks the signature.
    let out = s3
        .env(&mut wit())
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .args(["status", &url])
        .output()
        .unwrap();
    check(&out, "SignatureDoesNotMatch");
    assert!(stderr(&out).contains(&url), "{}", stderr(&out));
    // A bucket that does not exist.
    let out = run_env(s3, &["status", "s3://no-such-bucket-wit/x"]);
    check(&out, "NoSuchBucket");
    // An endpoint nobody listens on.
    let out = s3
        .env(&mut wit())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .args(["status", &url])
        .output()
        .unwrap();
    check(&out, "cannot be reached");
    // Malformed URLs.
    check(&run_env(s3, &["status", "s3:///x"]), "names no bucket");
    check(&run_env(s3, &["status", "ftp://h/x"]), "unknown URL scheme");

    // A whole run at the most verbose level: the secret is in no log line
    // and no object wit wrote.
    let tmp = tempfile::tempdir().unwrap();
    let q = tmp.path().join("q.txt");
    std::fs::write(&q, "red\nblue car\n").unwrap();
    let out = s3
        .env(&mut wit())
        .env("RUST_LOG", "trace")
        .args(["-vv", "queries", "import", q.to_str().unwrap(), "-d", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let logs = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out);
    assert!(!logs.contains(S3_SECRET), "the secret is in the log");
    let r = remote(s3, &url);
    let stored = objects(&r, "queries");
    assert!(stored.contains_key("_manifest.json"), "{:?}", stored.keys());
    for (name, bytes) in stored {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(S3_SECRET),
            "the secret is in {name}"
        );
    }
}

/// `squeue` lines (`ID STATE`) of a job, array tasks one a line.
fn squeue(job: &str) -> Vec<(String, String)> {
    let out = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i %T", "-j", job])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.trim().to_string()))
        .collect()
}

/// The sidecars of a stage on the store, name to bytes.
fn sidecars(r: &Remote, stage: &str) -> BTreeMap<String, Vec<u8>> {
    objects(r, stage)
        .into_iter()
        .filter(|(n, _)| n.starts_with("_part-"))
        .collect()
}

#[test]
fn a_corrupt_part_or_a_killed_task_fails_alone_and_a_resubmission_redoes_only_what_is_missing() {
    let Some(s3) = s3() else { return };
    let Some(()) = slurm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let web = demo_web(tmp.path(), 80);
    let url = s3.prefix("faults");
    let r = remote(s3, &url);
    let queries = queries_file();
    let ok_env = |args: &[&str]| {
        let out = run_env(s3, args);
        assert!(out.status.success(), "{}", show(&out));
    };
    ok_env(&["queries", "import", queries.to_str().unwrap(), "-d", &url]);
    let mut crawl = vec!["crawl", "-d", &url, "--seed", &web.url];
    crawl.extend_from_slice(CRAWL);
    ok_env(&crawl);
    let candidates = objects(&r, "candidates");
    let slurm = |name: &str, text: String, follow: bool| {
        let file = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&file, text).unwrap();
        let out_dir = tmp.path().join(name);
        let mut args = vec![
            "slurm".to_string(),
            file.display().to_string(),
            "--out".into(),
            out_dir.display().to_string(),
            "--poll".into(),
            "0.5".into(),
        ];
        if !follow {
            args.push("--no-follow".into());
        }
        run_env(s3, &args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let match_balance = format!(
        "dataset = \"{url}\"\n[resources]\ncpus = 1\n\
         [[stage]]\ncommand = \"match\"\nargs = {}\ntasks = 3\n\
         [[stage]]\ncommand = \"balance\"\nargs = {}\ntasks = 3\n",
        toml_list(MATCH, &[]),
        toml_list(BALANCE, &[])
    );

    // A corrupt input part: its task fails alone, naming the part and the
    // input; the stage behind it never starts.
    r.put("candidates/part-00001.parquet", b"PAR1 not really".to_vec())
        .unwrap();
    let out = slurm("corrupt", match_balance.clone(), true);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("01-match task 1 FAILED (exit 2:0)") && err.contains("part-00001.parquet"),
        "{err}"
    );
    for task in 0..3 {
        assert!(
            err.contains(&format!("02-balance task {task} CANCELLED")),
            "{err}"
        );
    }
    let done = sidecars(&r, "matched");
    assert_eq!(
        done.keys().collect::<Vec<_>>(),
        ["_part-00000.json", "_part-00002.json"],
        "the other parts are committed"
    );
    assert!(r.get("balanced/_manifest.json").unwrap().is_none());

    // Repaired and resubmitted: only part 1 runs again.
    r.put(
        "candidates/part-00001.parquet",
        candidates["part-00001.parquet"].clone(),
    )
    .unwrap();
    let out = slurm("repaired", match_balance, true);
    assert!(out.status.success(), "{}", show(&out));
    let again = sidecars(&r, "matched");
    for (name, bytes) in &done {
        assert_eq!(&again[name], bytes, "{name} was redone");
    }
    assert!(again.contains_key("_part-00001.json"));

    // Download one image at a time per task; after 4 images (of 80, in
    // parts of 40) the demo web holds every image request, so both tasks
    // are mid-part, and stay so, when one is cancelled (scancel) and one's
    // wit is killed (SIGKILL).
    let mut slow: Vec<&str> = DOWNLOAD.to_vec();
    let at = slow.iter().position(|a| *a == "--per-host").unwrap();
    slow[at + 1] = "1";
    web.gate.close_after(4);
    let download = format!(
        "dataset = \"{url}\"\n[resources]\ncpus = 1\n\
         [[stage]]\ncommand = \"download\"\nargs = {}\ntasks = 2\n",
        toml_list(&slow, &[])
    );
    let out = slurm("download", download.clone(), false);
    assert!(out.status.success(), "{}", show(&out));
    let job = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "job")
        .nth(1)
        .unwrap()
        .to_string();
    // Some images in, and each task waiting on its next one.
    let held = web.gate.wait_held(2, std::time::Duration::from_secs(120));
    assert!(
        held,
        "the two tasks never both waited on an image: {}",
        std::fs::read_to_string(tmp.path().join("download/logs/01-download-0.log"))
            .unwrap_or_default()
    );
    assert!(sidecars(&r, "shards").is_empty(), "a part finished");
    ok(&Command::new("scancel")
        .arg(format!("{job}_1"))
        .output()
        .unwrap());
    // Task 0's wit, by the PID its log gives (the script execs wit).
    let log = std::fs::read_to_string(tmp.path().join("download/logs/01-download-0.log"))
        .unwrap_or_default();
    let pid: i32 = log
        .lines()
        .find_map(|l| {
            l.strip_prefix("wit-slurm: ")?
                .rsplit_once(", pid ")?
                .1
                .trim()
                .parse()
                .ok()
        })
        .expect("task 0 logged its PID");
    // SAFETY: signalling the wit process of a task this test submitted.
    let killed = unsafe { libc::kill(pid, libc::SIGKILL) } == 0;
    assert!(killed, "no wit process of task 0 to kill");
    while !squeue(&job).is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    web.gate.open();
    assert!(r.get("shards/_manifest.json").unwrap().is_none());
    // What a reader of `*.tar` sees now; checked whole against the end result below.
    let visible_after_kill: BTreeMap<String, Vec<u8>> = objects(&r, "shards")
        .into_iter()
        .filter(|(n, _)| n.ends_with(".tar"))
        .collect();
    let all = r.list("shards").unwrap();
    assert!(
        !all.keys()
            .any(|k| k.starts_with(".tmp") || k.contains("/.tmp")),
        "{all:?}"
    );

    // Resubmitted: complete, and the same bytes as one local process.
    let out = slurm("download-again", download, true);
    assert!(out.status.success(), "{}", show(&out));
    let local = tmp.path().join("local");
    local_run(&local, &candidates);
    let want = reproducible(files(&local.join("shards")));
    let got = reproducible(objects(&r, "shards"));
    assert_same("shards", &got, &want);
    // Every shard a reader could see after the kills was whole: the killed
    // tasks' uploads were never completed.
    for (name, bytes) in &visible_after_kill {
        assert!(want[name] == *bytes, "{name} was visible half-written");
    }
}

#[test]
fn a_refused_submission_cancels_and_names_what_was_submitted_before_it() {
    let Some(()) = slurm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("p.toml");
    // The second stage asks for a partition the cluster lacks: sbatch refuses
    // it after the first stage was submitted.
    std::fs::write(
        &file,
        format!(
            "dataset = \"{}\"\n[[stage]]\ncommand = \"match\"\ntasks = 3\nthrottle = 1\n\
             [[stage]]\ncommand = \"balance\"\npartition = \"nosuch\"\n",
            tmp.path().join("ds").display()
        ),
    )
    .unwrap();
    let out = run(&[
        "slurm",
        file.to_str().unwrap(),
        "--out",
        tmp.path().join("slurm").to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "{}", show(&out));
    let err = stderr(&out);
    let line = err.lines().last().unwrap_or_default();
    assert!(
        line.starts_with(
            "error: sbatch: 02-balance was refused: invalid partition specified: nosuch; \
             Batch job submission failed: Invalid partition name specified. "
        ),
        "{err}"
    );
    assert!(
        !err.contains("sbatch: sbatch:") && !err.contains("error: sbatch: error:"),
        "{err}"
    );
    // Both chunks of the first stage were submitted, then cancelled, and named.
    let ids: Vec<String> = line
        .split("(job ")
        .skip(1)
        .map(|s| s.split(')').next().unwrap().to_string())
        .collect();
    assert!(
        line.contains("Cancelled what was already submitted: 01-match.0 (job "),
        "{line}"
    );
    assert!(line.contains(", 01-match.1 (job "), "{line}");
    assert_eq!(ids.len(), 2, "{line}");
    // Nothing is left queued: the second chunk, held behind the first
    // (throttle 1), was cancelled; the first may have run before the cancel.
    for (i, id) in ids.iter().enumerate() {
        let show_job = Command::new("scontrol")
            .args(["show", "job", "-o", id])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&show_job.stdout);
        assert!(!text.trim().is_empty(), "job {id} unknown to Slurm");
        for record in text.lines().filter(|l| !l.trim().is_empty()) {
            let state = record
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix("JobState="))
                .unwrap_or_default();
            let ended = if i == 1 {
                state == "CANCELLED"
            } else {
                ["CANCELLED", "COMPLETED", "FAILED"].contains(&state)
            };
            assert!(ended, "job {id}: {record}");
        }
    }
}

#[test]
fn slurm_dry_run_and_kube_write_their_files_and_bad_pipelines_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("p.toml");
    std::fs::write(
        &file,
        pipeline("s3://bucket/corpus", "http://example.org/", 4),
    )
    .unwrap();
    let out_dir = tmp.path().join("scripts");
    let out = run(&[
        "slurm",
        file.to_str().unwrap(),
        "--dry-run",
        "--out",
        out_dir.to_str().unwrap(),
        "--max-array-size",
        "4",
    ]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for want in [
        "#SBATCH --array=0-3%2",
        "#SBATCH --kill-on-invalid-dep=yes",
        "download --allow-private",
        "--dataset s3://bucket/corpus --parts 4 --part \"$SLURM_ARRAY_TASK_ID\"",
    ] {
        assert!(text.contains(want), "{want} not in\n{text}");
    }
    let scripts: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sbatch"))
        .collect();
    assert_eq!(scripts.len(), 5, "{scripts:?}");
    for s in &scripts {
        let ok_bash = Command::new("bash")
            .arg("-n")
            .arg(out_dir.join(s))
            .status()
            .unwrap();
        assert!(ok_bash.success(), "{s} is not valid bash");
    }

    // Arrays of at most 3 tasks: each stage of 4 in two, the second adding 3
    // to the array index.
    let chunked = tmp.path().join("chunked");
    let out = run(&[
        "slurm",
        file.to_str().unwrap(),
        "--dry-run",
        "--out",
        chunked.to_str().unwrap(),
        "--max-array-size",
        "3",
    ]);
    ok(&out);
    let text = std::fs::read_to_string(chunked.join("05-download.1.sbatch")).unwrap();
    for want in [
        "#SBATCH --array=0-0%2",
        "--parts 4 --part \"$((SLURM_ARRAY_TASK_ID + 3))\"",
        "#SBATCH --output=",
    ] {
        assert!(text.contains(want), "{want} not in\n{text}");
    }
    let text = std::fs::read_to_string(chunked.join("05-download.0.sbatch")).unwrap();
    assert!(text.contains("#SBATCH --array=0-2%2"), "{text}");
    assert_eq!(
        std::fs::read_dir(&chunked)
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".sbatch"))
            .count(),
        8
    );

    let kube = tmp.path().join("kube");
    ok(&run(&[
        "kube",
        file.to_str().unwrap(),
        "--out",
        kube.to_str().unwrap(),
    ]));
    let job: serde_json::Value =
        serde_json::from_slice(&std::fs::read(kube.join("05-download.json")).unwrap()).unwrap();
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    assert_eq!(job["spec"]["completions"], 4);
    assert!(kube.join("run.sh").is_file());

    std::fs::write(
        &file,
        "dataset = \"d\"\n[[stage]]\ncommand = \"crawl\"\ntasks = 3\n",
    )
    .unwrap();
    let out = run(&["slurm", file.to_str().unwrap(), "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("p.toml: stage 1 (crawl): runs as one task"),
        "{err}"
    );
}

#[test]
fn a_crawl_killed_on_s3_resumes_from_its_frontier_on_the_store() {
    let Some(s3) = s3() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // Every request waits once 45 are answered: one part of 30 URLs is
    // committed, and the crawl cannot finish before the kill.
    let web = demo_web_gating(tmp.path(), 80, "/");
    web.gate.close_after(45);
    let url = s3.prefix("crawl-kill");
    let r = remote(s3, &url);
    let mut args: Vec<&str> = vec!["crawl", "-d", &url, "--seed", &web.url];
    args.extend_from_slice(CRAWL);
    let mut child = s3.env(&mut wit()).args(&args).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while r.size("candidates/_part-00000.json").unwrap().is_none() {
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("no part committed in 60 s, or the crawl ended with requests held");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    web.gate.open();
    assert!(
        r.get("candidates/_manifest.json").unwrap().is_none(),
        "it finished before the kill"
    );
    let checkpoints: Vec<String> = r
        .list("candidates/_crawl")
        .unwrap()
        .into_keys()
        .filter(|k| k.starts_with("checkpoint-"))
        .collect();
    assert!(
        !checkpoints.is_empty(),
        "no frontier checkpoint on the store"
    );

    let out = run_env(s3, &args);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stderr(&out).contains("resuming the crawl after"),
        "{}",
        stderr(&out)
    );
    let local = tmp.path().join("local");
    let mut local_args: Vec<&str> =
        vec!["crawl", "-d", local.to_str().unwrap(), "--seed", &web.url];
    local_args.extend_from_slice(CRAWL);
    ok(&run(&local_args));
    assert_eq!(
        candidate_pairs(&objects(&r, "candidates")),
        candidate_pairs(&files(&local.join("candidates")))
    );
}

#[test]
fn the_config_files_store_table_sets_the_endpoint_and_credentials() {
    let Some(s3) = s3() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("wit.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\naws_endpoint = \"{}\"\naws_allow_http = true\naws_region = \"us-east-1\"\n\
             aws_access_key_id = \"{S3_KEY}\"\naws_secret_access_key = \"{S3_SECRET}\"\n",
            s3.endpoint
        ),
    )
    .unwrap();
    let url = s3.prefix("config");
    let q = tmp.path().join("q.txt");
    std::fs::write(&q, "red\nblue car\n").unwrap();
    let bare = |args: &[&str]| {
        let mut cmd = wit();
        for v in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT",
            "AWS_ALLOW_HTTP",
            "AWS_REGION",
        ] {
            cmd.env_remove(v);
        }
        cmd.args(args).output().unwrap()
    };
    let out = bare(&[
        "--config",
        config.to_str().unwrap(),
        "queries",
        "import",
        q.to_str().unwrap(),
        "-d",
        &url,
    ]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        remote(s3, &url)
            .get("queries/_manifest.json")
            .unwrap()
            .is_some()
    );

    std::fs::write(&config, "[store]\naws_endpiont = \"x\"\n").unwrap();
    let out = bare(&["--config", config.to_str().unwrap(), "status", &url]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("unknown key `aws_endpiont`"),
        "{}",
        stderr(&out)
    );
}

/// Object-store locations are a bucket and a raw key, as S3 users write
/// them: an archive that boto3 (the AWS SDK for Python) put under a key
/// with `#`, `?`, `%`, spaces and non-ASCII letters is read by `wit
/// extract` from the URL written with that key as it is, giving the same
/// candidates as the local file; a key that is not there is named in the
/// error. Before issue 37, `#` started a fragment: `no such object`.
#[test]
fn store_keys_are_taken_as_written() {
    let Some(s3) = s3() else { return };
    let Some(py) = python_with(&["boto3"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("b.warc.gz");
    std::fs::write(&archive, warc_file(7, 10)).unwrap();
    let local = tmp.path().join("local");
    ok(&run(&[
        "extract",
        archive.to_str().unwrap(),
        "-d",
        local.to_str().unwrap(),
    ]));

    let base = s3.prefix("keys");
    let prefix = base.strip_prefix(&format!("s3://{S3_BUCKET}/")).unwrap();
    let key = format!("{prefix}/in/crawl #1/b?v=2 100% é.warc.gz");
    let put = std::process::Command::new(&py)
        .arg("-c")
        .arg(
            r#"
import sys, boto3
endpoint, bucket, key, path, ak, sk = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ak,
                  aws_secret_access_key=sk, region_name="us-east-1")
s3.put_object(Bucket=bucket, Key=key, Body=open(path, "rb").read())
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=key.split("/")[0])["Contents"]]
assert keys == [key], keys
"#,
        )
        .args([
            &s3.endpoint,
            S3_BUCKET,
            &key,
            archive.to_str().unwrap(),
            S3_KEY,
            S3_SECRET,
        ])
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );

    let url = format!("s3://{S3_BUCKET}/{key}");
    let ds = tmp.path().join("ds");
    let out = run_env(s3, &["extract", &url, "-d", ds.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let rows = |d: &Path| -> BTreeSet<(String, String)> {
        candidate_rows(d).into_iter().map(|r| (r.1, r.2)).collect()
    };
    assert!(!rows(&local).is_empty());
    assert_eq!(rows(&ds), rows(&local));

    let missing = format!("s3://{S3_BUCKET}/{prefix}/in/crawl #2/b.warc.gz");
    let out = run_env(
        s3,
        &[
            "extract",
            &missing,
            "-d",
            tmp.path().join("none").to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "no such object (key `{prefix}/in/crawl #2/b.warc.gz`)"
        )),
        "{err}"
    );
}

/// `--force` on a dataset on the store starts each stage over with its new
/// parameters: the runner's stages (`match`) and those that run passes
/// before it (`balance`, `download`) alike.
#[test]
fn force_on_a_store_starts_every_stage_over() {
    let Some(s3) = s3() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let web = demo_web(tmp.path(), 40);
    let url = s3.prefix("force");
    let r = remote(s3, &url);
    let ok_env = |args: &[&str]| {
        let out = run_env(s3, args);
        assert!(out.status.success(), "{}", show(&out));
    };
    let queries = queries_file();
    ok_env(&["queries", "import", queries.to_str().unwrap(), "-d", &url]);
    let mut crawl = vec!["crawl", "-d", &url, "--seed", &web.url];
    crawl.extend_from_slice(CRAWL);
    ok_env(&crawl);
    let stage = |cmd: &str, args: &[&str], extra: &[&str]| {
        let mut all = vec![cmd, "-d", &url];
        all.extend_from_slice(args);
        all.extend_from_slice(extra);
        ok_env(&all);
    };
    stage("match", MATCH, &[]);
    stage("balance", BALANCE, &[]);
    stage("download", DOWNLOAD, &[]);
    let params = |name: &str| -> serde_json::Value {
        let m: serde_json::Value =
            serde_json::from_slice(&r.get(&format!("{name}/_manifest.json")).unwrap().unwrap())
                .unwrap();
        m["params"].clone()
    };
    assert_eq!(params("balanced")["t"], 20);
    assert_eq!(params("shards")["image_size"], 32);

    // Other parameters, forced: each stage runs again and records them.
    stage("match", MATCH, &["--force", "--min-length", "3"]);
    stage("balance", &["-t", "5"], &["--force"]);
    let mut download: Vec<&str> = DOWNLOAD.to_vec();
    download[2] = "24";
    stage("download", &download, &["--force"]);
    assert_eq!(params("balanced")["t"], 5);
    assert_eq!(params("shards")["image_size"], 24);
}
