//! `wit download` against a real image server on 127.0.0.1, read back by the
//! Python `webdataset`, `pyarrow` and `polars` libraries.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use wit_contract::records::{Candidate, string_column};
use wit_contract::schema::{self, col};
use wit_contract::wds::{ShardReader, maybe_gunzip};

use crate::server::{Gate, Reply, Server};
use crate::util::*;

/// A PNG of `w` x `h` with a pattern from `seed`.
fn png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 7 + seed) as u8,
            (y * 3 + seed * 5) as u8,
            (seed * 11) as u8,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x + seed) as u8, (y * 2) as u8, (seed * 3) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// Prepares DATASET up to `balanced/` with one candidate per URL path, each
/// caption "a photo of item N" (query "item" matches them all, t keeps all).
fn balanced_dataset(ds: &Path, server: &Server, paths: &[String]) {
    let urls: Vec<String> = paths.iter().map(|p| server.url(p)).collect();
    balanced_dataset_of(ds, &urls);
}

/// [`balanced_dataset`] of whole URLs (on any host).
fn balanced_dataset_of(ds: &Path, urls: &[String]) {
    let rows: Vec<Candidate> = urls
        .iter()
        .enumerate()
        .map(|(i, u)| {
            Candidate::new(
                u.clone(),
                format!("a photo of item number {i}"),
                "alt",
                "http://127.0.0.1/page.html",
            )
        })
        .collect();
    let half = rows.len() / 2;
    write_candidate_parts(ds, &[rows[..half].to_vec(), rows[half..].to_vec()]);
    import_queries(ds, &["item".to_string(), "photo".to_string()]);
    let d = ds.to_str().unwrap();
    ok(&run(&["match", "-d", d]));
    ok(&run(&["balance", "-d", d, "-t", "1000000"]));
}

/// A shard row: key, status, error message, width, height.
type Row = (String, String, Option<String>, Option<u32>, Option<u32>);

/// Every batch of the shards' Parquet files in `dir` (`shard` schema).
fn shard_batches(dir: &Path) -> Vec<arrow_array::RecordBatch> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".parquet") || name.starts_with('_') {
            continue;
        }
        for batch in wit_contract::pq::read_file(&p, &schema::shard()).unwrap() {
            out.push(batch.unwrap());
        }
    }
    out
}

/// Every row of the shards' Parquet files, by URL.
fn shard_rows(dir: &Path) -> BTreeMap<String, Row> {
    let mut out = BTreeMap::new();
    for b in shard_batches(dir) {
        let u32col = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_any()
                .downcast_ref::<arrow_array::UInt32Array>()
                .unwrap()
                .clone()
        };
        let (w, h) = (u32col(col::WIDTH), u32col(col::HEIGHT));
        let errs = string_column(&b, col::ERROR_MESSAGE);
        use arrow_array::Array;
        for i in 0..b.num_rows() {
            out.insert(
                string_column(&b, col::URL).value(i).to_string(),
                (
                    string_column(&b, col::KEY).value(i).to_string(),
                    string_column(&b, col::STATUS).value(i).to_string(),
                    errs.is_valid(i).then(|| errs.value(i).to_string()),
                    w.is_valid(i).then(|| w.value(i)),
                    h.is_valid(i).then(|| h.value(i)),
                ),
            );
        }
    }
    out
}

fn tar_samples(path: &Path) -> Vec<(String, BTreeMap<String, Vec<u8>>)> {
    let mut out = Vec::new();
    ShardReader::new(maybe_gunzip(std::fs::File::open(path).unwrap()).unwrap()).for_each(|s| {
        let s = s.unwrap();
        out.push((s.key, s.fields));
    });
    out
}

#[test]
fn downloads_resize_and_shard_as_img2dataset_with_every_failure_counted() {
    let busy = AtomicU32::new(0);
    let server = Server::start(move |path| {
        let n: u32 = path
            .trim_start_matches("/img/")
            .split('.')
            .next()
            .unwrap_or("")
            .parse()
            .unwrap_or(0);
        match path {
            "/robots.txt" => {
                Reply::with_type(200, "text/plain", "User-agent: *\nDisallow: /private/\n")
            }
            "/img/busy.png" => {
                if busy.fetch_add(1, Ordering::SeqCst) == 0 {
                    Reply::status(429, &[("Retry-After", "1")])
                } else {
                    Reply::with_type(200, "image/png", png(300, 200, 99))
                }
            }
            "/img/noai.png" => Reply::Full {
                status: 200,
                headers: vec![
                    ("Content-Type".into(), "image/png".into()),
                    ("X-Robots-Tag".into(), "witbot: noimageai".into()),
                ],
                body: png(50, 50, 1),
            },
            "/img/otherbot.png" => Reply::Full {
                status: 200,
                headers: vec![
                    ("Content-Type".into(), "image/png".into()),
                    ("X-Robots-Tag".into(), "otherbot: noai".into()),
                ],
                body: png(60, 40, 2),
            },
            "/img/broken.png" => {
                Reply::with_type(200, "image/png", b"\x89PNG\r\n\x1a\nnot really".to_vec())
            }
            "/img/error.png" => Reply::status(500, &[]),
            p if p.starts_with("/private/") => Reply::with_type(200, "image/png", png(10, 10, 3)),
            p if p.ends_with(".jpg") && n > 0 => Reply::with_type(
                200,
                "image/jpeg",
                jpeg(100 + n * 13 % 500, 80 + n * 7 % 300, n),
            ),
            p if p.ends_with(".png") && n > 0 => Reply::with_type(
                200,
                "image/png",
                png(120 + n * 11 % 400, 90 + n * 5 % 200, n),
            ),
            _ => Reply::with_type(404, "text/html", "<h1>Not Found</h1>"),
        }
    });
    let mut paths: Vec<String> = (1..=40)
        .map(|n| format!("/img/{n}.{}", if n % 2 == 0 { "jpg" } else { "png" }))
        .collect();
    for p in [
        "/img/busy.png",
        "/img/noai.png",
        "/img/otherbot.png",
        "/img/broken.png",
        "/img/error.png",
        "/img/missing.png",
        "/private/secret.png",
    ] {
        paths.push(p.to_string());
    }
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    balanced_dataset(&ds, &server, &paths);
    let d = ds.to_str().unwrap();
    let out = run(&[
        "download",
        "-d",
        d,
        "--allow-private",
        "--shard-size",
        "16",
        "--resize-mode",
        "center_crop",
        "--image-size",
        "64",
        "--retries",
        "1",
        "--timeout",
        "5",
    ]);
    ok(&out);
    let shards = ds.join("shards");
    let rows = shard_rows(&shards);
    assert_eq!(
        rows.len(),
        paths.len(),
        "one row per pair, failures included"
    );
    let status = |p: &str| rows[&server.url(p)].1.clone();
    let error = |p: &str| rows[&server.url(p)].2.clone().unwrap_or_default();
    for n in 1..=40 {
        let p = format!("/img/{n}.{}", if n % 2 == 0 { "jpg" } else { "png" });
        assert_eq!(status(&p), "success", "{p}: {}", error(&p));
        assert_eq!(
            (rows[&server.url(&p)].3, rows[&server.url(&p)].4),
            (Some(64), Some(64))
        );
    }
    assert_eq!(status("/img/busy.png"), "success", "retried after 429");
    assert_eq!(
        status("/img/otherbot.png"),
        "success",
        "another crawler's opt-out"
    );
    assert_eq!(status("/img/noai.png"), "failed_to_download");
    assert!(error("/img/noai.png").contains("X-Robots-Tag"));
    assert_eq!(status("/img/broken.png"), "failed_to_resize");
    assert_eq!(status("/img/error.png"), "failed_to_download");
    assert_eq!(status("/img/missing.png"), "failed_to_download");
    assert_eq!(status("/private/secret.png"), "failed_to_download");
    assert!(error("/private/secret.png").contains("robots.txt"));
    assert!(
        !server.requests().iter().any(|p| p.starts_with("/private/")),
        "robots.txt was obeyed before any request"
    );
    let m = manifest(&ds, "shards");
    let c = &m["counts"];
    assert_eq!(c["samples"], paths.len() as u64);
    assert_eq!(c["success"], 42);
    assert_eq!(c["failed_to_resize"], 1);
    assert_eq!(c["failed_to_download"], 4);
    assert_eq!(c["error_opt_out"], 1);
    assert_eq!(c["error_robots"], 1);
    assert_eq!(c["error_http_5xx"], 1);
    assert_eq!(c["error_http_4xx"], 1);
    assert_eq!(m["parts"], 3);

    // The tars hold the successes, keyed as the Parquet rows say, in order.
    let mut samples = Vec::new();
    for s in 0..3 {
        let tar = shards.join(format!("{s:05}.tar"));
        let got = tar_samples(&tar);
        let keys: Vec<&String> = got.iter().map(|g| &g.0).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        for (key, fields) in &got {
            assert_eq!(key.len(), 7, "shard size 16: 5 + 2 digits");
            assert_eq!(fields.keys().collect::<Vec<_>>(), ["jpg", "json", "txt"]);
            let img = image::load_from_memory(&fields["jpg"]).unwrap();
            assert_eq!((img.width(), img.height()), (64, 64));
            let meta: serde_json::Value = serde_json::from_slice(&fields["json"]).unwrap();
            assert_eq!(meta["key"], key.as_str());
            assert_eq!(
                meta["caption"].as_str().unwrap().as_bytes(),
                fields["txt"].as_slice()
            );
        }
        samples.extend(got);
        let stats: serde_json::Value = serde_json::from_slice(
            &std::fs::read(shards.join(format!("{s:05}_stats.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(stats["count"], if s < 2 { 16 } else { 15 });
    }
    assert_eq!(samples.len(), 42);
    // The shuffle mixes: shard 0 is not the first 16 pairs in order.
    let shard0: Vec<&String> = rows
        .iter()
        .filter(|r| r.1.0.starts_with("00000"))
        .map(|r| r.0)
        .collect();
    let first16: Vec<String> = paths[..16].iter().map(|p| server.url(p)).collect();
    assert!(shard0.iter().any(|u| !first16.contains(u)));

    // The real libraries read it as documented.
    let Some(py) = python_with(&["webdataset", "pyarrow", "polars"]) else {
        return;
    };
    let script = r#"
import sys, json, glob, webdataset as wds, pyarrow.parquet as pq, polars as pl
d = sys.argv[1]
out = {}
for s in wds.WebDataset(sorted(glob.glob(d + "/*.tar")), shardshuffle=False, empty_check=False):
    out[s["__key__"]] = {k: len(v) for k, v in s.items() if not k.startswith("__")}
t = pq.read_table(sorted(glob.glob(d + "/[0-9]*.parquet")))
names = t.schema.names
lf = pl.scan_parquet(d + "/[0-9]*.parquet")
ok = lf.filter(pl.col("status") == "success").select(pl.len()).collect().item()
print(json.dumps({"samples": out, "columns": names, "rows": t.num_rows, "successes": ok}))
"#;
    let o = std::process::Command::new(&py)
        .args(["-c", script])
        .arg(&shards)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let theirs: BTreeMap<String, BTreeMap<String, u64>> =
        serde_json::from_value(v["samples"].clone()).unwrap();
    let ours: BTreeMap<String, BTreeMap<String, u64>> = samples
        .iter()
        .map(|(k, f)| {
            (
                k.clone(),
                f.iter().map(|(e, b)| (e.clone(), b.len() as u64)).collect(),
            )
        })
        .collect();
    assert_eq!(theirs, ours);
    let columns: Vec<String> = serde_json::from_value(v["columns"].clone()).unwrap();
    let want: Vec<String> = schema::shard()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(columns, want);
    assert_eq!(v["rows"], paths.len() as u64);
    assert_eq!(v["successes"], 42);
}

#[test]
fn a_killed_download_resumes_to_the_same_shards() {
    // Images through a gate, so that the kill lands mid-shard: the killed
    // run gets 57 images (shards of 50), then waits on the rest.
    let gate = Arc::new(Gate::default());
    let gate2 = gate.clone();
    let server = Server::start(move |path| {
        let n: u32 = path
            .trim_start_matches("/img/")
            .trim_end_matches(".png")
            .parse()
            .unwrap_or(0);
        if path == "/robots.txt" {
            return Reply::status(404, &[]);
        }
        gate2.pass();
        if n.is_multiple_of(9) {
            Reply::status(404, &[])
        } else {
            Reply::with_type(200, "image/png", png(80 + n % 50, 60 + n % 30, n))
        }
    });
    let paths: Vec<String> = (1..=120).map(|n| format!("/img/{n}.png")).collect();
    let dir = tempfile::tempdir().unwrap();
    let (whole, killed) = (dir.path().join("whole"), dir.path().join("killed"));
    balanced_dataset(&whole, &server, &paths);
    balanced_dataset(&killed, &server, &paths);
    let args = |ds: &Path| {
        vec![
            "download".to_string(),
            "-d".into(),
            ds.display().to_string(),
            "--allow-private".into(),
            "--shard-size".into(),
            "50".into(),
            "--concurrency".into(),
            "2".into(),
            "--image-size".into(),
            "32".into(),
        ]
    };
    ok(&wit().args(args(&whole)).output().unwrap());

    gate.close_after(57);
    let mut child = wit()
        .args(args(&killed))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once both of its fetches wait at the gate: shard 0 is written
    // and shard 1 half fetched, and neither can move.
    assert!(
        gate.wait_held(2, Duration::from_secs(60)),
        "the download never waited on its 58th image"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "finished before the kill"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    gate.open();
    server.quiesce();
    assert!(!killed.join("shards/_manifest.json").exists());
    let fetched_before = server.requests().len();
    let out = wit().args(args(&killed)).output().unwrap();
    ok(&out);
    let refetched = server.requests().len() - fetched_before;
    // Shard 0 was complete and shard 1 half done: the rerun fetched less
    // than the whole second and third shards.
    assert!(refetched < 70 + 1, "{refetched} requests after the kill");

    let data = |ds: &Path| -> HashMap<String, Vec<u8>> {
        std::fs::read_dir(ds.join("shards"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                n.ends_with(".tar") || (n.ends_with(".parquet") && !n.starts_with('_'))
            })
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect()
    };
    let (a, b) = (data(&whole), data(&killed));
    assert_eq!(a.len(), 6);
    assert_eq!(
        a.keys().collect::<std::collections::BTreeSet<_>>(),
        b.keys().collect::<std::collections::BTreeSet<_>>()
    );
    for (name, bytes) in &a {
        assert!(b[name] == *bytes, "{name} differs after kill and resume");
    }
}

#[test]
fn retry_failed_fetches_only_the_failures() {
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = healthy.clone();
    let server = Server::start(move |path| {
        let n: u32 = path
            .trim_start_matches("/img/")
            .trim_end_matches(".png")
            .parse()
            .unwrap_or(0);
        if path == "/robots.txt" {
            Reply::status(404, &[])
        } else if n.is_multiple_of(4) && !h.load(Ordering::SeqCst) {
            Reply::status(503, &[])
        } else {
            Reply::with_type(200, "image/png", png(40 + n, 30 + n, n))
        }
    });
    let paths: Vec<String> = (1..=30).map(|n| format!("/img/{n}.png")).collect();
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    balanced_dataset(&ds, &server, &paths);
    let d = ds.to_str().unwrap();
    let args = [
        "download",
        "-d",
        d,
        "--allow-private",
        "--shard-size",
        "10",
        "--retries",
        "0",
        "--image-size",
        "32",
    ];
    ok(&run(&args));
    let before = shard_rows(&ds.join("shards"));
    let failed: Vec<&String> = before
        .iter()
        .filter(|r| r.1.1 == "failed_to_download")
        .map(|r| r.0)
        .collect();
    assert_eq!(failed.len(), 7);
    let successes_before: Vec<(String, BTreeMap<String, Vec<u8>>)> = (0..3)
        .flat_map(|s| tar_samples(&ds.join(format!("shards/{s:05}.tar"))))
        .collect();

    // A retry that sets a parameter to another value is refused, on one
    // line naming it with both values, before any request.
    let n = server.requests().len();
    let other = run(&["download", "-d", d, "--retry-failed", "--image-size", "64"]);
    assert_eq!(other.status.code(), Some(2), "{}", stderr(&other));
    let err = stderr(&other);
    assert!(
        err.contains("other parameters than this run: image_size 32 (this run: 64);"),
        "{err}"
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("image_size 32 (this run: 64);"), "{err}");
    assert_eq!(server.requests().len(), n);

    // The retry names only what is not a parameter of the output: the
    // others (shard size, image size) come from the earlier run.
    healthy.store(true, Ordering::SeqCst);
    let retry = [
        "download",
        "-d",
        d,
        "--allow-private",
        "--retries",
        "0",
        "--retry-failed",
    ];
    let out = run(&retry);
    ok(&out);
    assert!(
        stderr(&out).contains("the earlier run's parameters where not given:")
            && stderr(&out).contains("--image-size=32")
            && stderr(&out).contains("--shard-size=10"),
        "{}",
        stderr(&out)
    );
    let asked: Vec<String> = server.requests()[n..]
        .iter()
        .filter(|p| *p != "/robots.txt")
        .cloned()
        .collect();
    assert_eq!(asked.len(), 7, "only the failures: {asked:?}");
    let after = shard_rows(&ds.join("shards"));
    assert!(after.values().all(|r| r.1 == "success"));
    for (url, row) in &before {
        assert_eq!(after[url].0, row.0, "keys do not move");
    }
    let all: Vec<(String, BTreeMap<String, Vec<u8>>)> = (0..3)
        .flat_map(|s| tar_samples(&ds.join(format!("shards/{s:05}.tar"))))
        .collect();
    assert_eq!(all.len(), 30);
    for s in &successes_before {
        assert!(all.contains(s), "earlier successes kept as they were");
    }
    assert_eq!(manifest(&ds, "shards")["counts"]["success"], 30);
}

#[test]
fn a_download_refused_every_address_fails_naming_the_remedy() {
    let server = Server::start(|path| match path {
        "/robots.txt" => Reply::status(404, &[]),
        _ => Reply::with_type(200, "image/png", png(20, 20, 1)),
    });
    let paths: Vec<String> = (1..=5).map(|n| format!("/img/{n}.png")).collect();
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    balanced_dataset(&ds, &server, &paths);
    let d = ds.to_str().unwrap();
    // Without --allow-private: refused as itself (not as robots.txt), and
    // the run fails saying why and what to do.
    let out = run(&["download", "-d", d, "--image-size", "16"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let last = stderr(&out).trim().lines().last().unwrap_or("").to_string();
    assert_eq!(
        last,
        "error: shards: nothing could be fetched: 5 of 5 images failed as refused_address: \
         the hosts are at private, loopback or link-local addresses, which wit refuses unless \
         told: rerun with --allow-private --retry-failed"
    );
    assert!(server.requests().is_empty());
    let c = &manifest(&ds, "shards")["counts"];
    assert_eq!(c["error_refused_address"], 5, "{c}");
    assert!(c.get("error_robots_unreachable").is_none(), "{c}");
    // The remedy works as said; progress is by image, also in plain lines.
    let out = run(&["download", "-d", d, "--allow-private", "--retry-failed"]);
    ok(&out);
    assert_eq!(manifest(&ds, "shards")["counts"]["success"], 5);
    let log = stderr(&out);
    assert!(log.contains("shards: images: 0/5 done, starting"), "{log}");
    assert!(log.contains("shards: images: 5/5 done, "), "{log}");
}

/// Every shard row's reason, cause and final URL, by URL.
fn failure_columns(dir: &Path) -> BTreeMap<String, [Option<String>; 3]> {
    use arrow_array::Array;
    let mut out = BTreeMap::new();
    for b in shard_batches(dir) {
        let get = |c: &str, i: usize| {
            let a = string_column(&b, c);
            a.is_valid(i).then(|| a.value(i).to_string())
        };
        for i in 0..b.num_rows() {
            out.insert(
                get(col::URL, i).unwrap(),
                [
                    get(col::ERROR_REASON, i),
                    get(col::ERROR_CAUSE, i),
                    get(col::FINAL_URL, i),
                ],
            );
        }
    }
    out
}

#[test]
fn redirects_are_followed_with_every_hop_checked_and_unreachable_robots_name_their_cause() {
    // Host B: its own robots.txt, which keeps /private/ out.
    let b = Server::start(|path| match path {
        "/robots.txt" => {
            Reply::with_type(200, "text/plain", "User-agent: *\nDisallow: /private/\n")
        }
        "/img/3.jpg" => Reply::with_type(200, "image/jpeg", jpeg(90, 70, 3)),
        _ => Reply::with_type(200, "image/png", png(20, 20, 9)),
    });
    // Host D: robots.txt answers 503 (unreachable: nothing allowed).
    let d_host = Server::start(|path| match path {
        "/robots.txt" => Reply::status(503, &[]),
        _ => Reply::with_type(200, "image/png", png(20, 20, 8)),
    });
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (b_url, dead_url) = (
        b.url("/img/3.jpg"),
        format!("http://127.0.0.1:{dead}/img/5.png"),
    );
    let b_private = b.url("/private/x.jpg");
    let (b_private_url, dead_url_row) = (b_private.clone(), dead_url.clone());
    let a = Server::start(move |path| {
        let to = |l: &str| Reply::status(302, &[("Location", l)]);
        match path {
            "/robots.txt" => Reply::status(404, &[]),
            "/img/1.jpg" => Reply::with_type(200, "image/jpeg", jpeg(80, 60, 1)),
            "/img/2.png" => Reply::with_type(200, "image/png", png(70, 50, 2)),
            "/img/noai.png" => Reply::Full {
                status: 200,
                headers: vec![
                    ("Content-Type".into(), "image/png".into()),
                    ("X-Robots-Tag".into(), "noai".into()),
                ],
                body: png(30, 30, 4),
            },
            "/r/same" => to("/img/1.jpg"),
            "/r/chain" => Reply::status(301, &[("Location", "/r/chain2")]),
            "/r/chain2" => Reply::status(307, &[("Location", "/img/2.png")]),
            "/r/other-host" => to(&b_url),
            "/r/other-private" => to(&b_private),
            "/r/loop" => to("/r/loop"),
            "/r/no-location" => Reply::status(302, &[]),
            "/r/not-http" => to("ftp://127.0.0.1/img/1.jpg"),
            "/r/opt-out" => to("/img/noai.png"),
            "/r/dead" => to(&dead_url),
            _ => Reply::with_type(404, "text/html", "<h1>Not Found</h1>"),
        }
    });
    let mut urls: Vec<String> = [
        "/r/same",
        "/r/chain",
        "/r/other-host",
        "/r/other-private",
        "/r/loop",
        "/r/no-location",
        "/r/not-http",
        "/r/opt-out",
        "/r/dead",
    ]
    .iter()
    .map(|p| a.url(p))
    .collect();
    urls.push(format!("http://127.0.0.1:{dead}/img/6.png"));
    urls.push(d_host.url("/img/7.png"));
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    balanced_dataset_of(&ds, &urls);
    let d = ds.to_str().unwrap();
    ok(&run(&[
        "download",
        "-d",
        d,
        "--allow-private",
        "--retries",
        "0",
        "--timeout",
        "5",
        "--image-size",
        "32",
        "--max-redirects",
        "3",
    ]));
    let got = failure_columns(&ds.join("shards"));
    let row = |u: &str| {
        got[u]
            .iter()
            .map(|c| c.as_deref().unwrap_or("-").to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        row(&a.url("/r/same")),
        format!("- - {}", a.url("/img/1.jpg"))
    );
    assert_eq!(
        row(&a.url("/r/chain")),
        format!("- - {}", a.url("/img/2.png"))
    );
    assert_eq!(
        row(&a.url("/r/other-host")),
        format!("- - {}", b.url("/img/3.jpg"))
    );
    // A failure after a redirect names the URL it failed at.
    assert_eq!(
        row(&a.url("/r/other-private")),
        format!("robots - {b_private_url}"),
        "host B's robots.txt"
    );
    assert_eq!(
        row(&a.url("/r/loop")),
        format!("too_many_redirects - {}", a.url("/r/loop"))
    );
    assert_eq!(row(&a.url("/r/no-location")), "bad_redirect - -");
    assert_eq!(
        row(&a.url("/r/not-http")),
        "bad_url - ftp://127.0.0.1/img/1.jpg"
    );
    assert_eq!(
        row(&a.url("/r/opt-out")),
        format!("opt_out - {}", a.url("/img/noai.png"))
    );
    assert_eq!(
        row(&a.url("/r/dead")),
        format!("robots_unreachable connect {dead_url_row}")
    );
    assert_eq!(
        row(&format!("http://127.0.0.1:{dead}/img/6.png")),
        "robots_unreachable connect -"
    );
    assert_eq!(
        row(&d_host.url("/img/7.png")),
        "robots_unreachable http_5xx -"
    );
    assert!(
        !b.requests().iter().any(|p| p.starts_with("/private/")),
        "a redirect's target obeys its own host's robots.txt"
    );
    assert!(!d_host.requests().iter().any(|p| p.starts_with("/img/")));
    assert_eq!(
        a.requests().iter().filter(|p| *p == "/r/loop").count(),
        4,
        "the first request and 3 redirects"
    );
    let m = manifest(&ds, "shards");
    let c = &m["counts"];
    assert_eq!(c["success"], 3);
    assert_eq!(c["error_robots_unreachable"], 3);
    assert_eq!(c["error_robots_unreachable_connect"], 2);
    assert_eq!(c["error_robots_unreachable_http_5xx"], 1);
    // The tar's metadata names where the image came from.
    let tar = tar_samples(&ds.join("shards/00000.tar"));
    let finals: Vec<String> = tar
        .iter()
        .map(|(_, f)| {
            let meta: serde_json::Value = serde_json::from_slice(&f["json"]).unwrap();
            meta["final_url"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(finals.len(), 3);
    assert!(finals.contains(&b.url("/img/3.jpg")));
    // And the statistics count the causes.
    ok(&run(&["stats", d]));
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ds.join("stats/stats.json")).unwrap()).unwrap();
    let causes = &stats["downloads"]["failures_by_cause"];
    assert_eq!(causes["robots_unreachable: connect"], 2, "{causes}");
    assert_eq!(causes["robots_unreachable: http_5xx"], 1, "{causes}");
}

/// JPEG coding processes and image formats the specs allow and Pillow
/// decodes (shards/tests/fixtures/spec-valid/make.sh wrote the
/// arithmetic-coded ones): decoded to the pixels Pillow gives, oriented as
/// `ImageOps.exif_transpose`, alpha over white; a truncated file fails as
/// damage, as in Pillow.
#[test]
fn spec_valid_images_decode_to_the_pixels_pillow_gives() {
    use wit_shards::resize::{Encoding, ImageOptions, ResizeMode, process};
    let Some(py) = python_with(&["pillow"]) else {
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shards/tests/fixtures/spec-valid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jpg" || x == "avif"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let script = r#"
import sys, json
from PIL import Image, ImageOps
out = {}
for f in sys.argv[1:]:
    try:
        im = ImageOps.exif_transpose(Image.open(f))
        if "A" in im.getbands():
            # Over white, as wit stores images with alpha.
            px = [(c * a + 255 * (255 - a) + 127) // 255
                  for r, g, b, a in im.convert("RGBA").getdata() for c in (r, g, b)]
            out[f] = [im.width, im.height, bytes(px).hex()]
            continue
        im = im.convert("RGB")
        out[f] = [im.width, im.height, im.tobytes().hex()]
    except Exception as e:
        out[f] = str(e)
print(json.dumps(out))
"#;
    let out = std::process::Command::new(&py)
        .arg("-c")
        .arg(script)
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pillow: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let opts = ImageOptions {
        mode: ResizeMode::No,
        encoding: Encoding::Png,
        ..ImageOptions::default()
    };
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let theirs = &pillow[f.to_str().unwrap()];
        let ours = process(&std::fs::read(f).unwrap(), &opts);
        let Some(theirs) = theirs.as_array() else {
            // Pillow refuses it: so do we, as damage.
            let e = ours.expect_err(&name);
            assert_eq!(e.key(), "decode_error", "{name}: {e} (Pillow: {theirs})");
            continue;
        };
        let p = ours.unwrap_or_else(|e| panic!("{name}: {e}"));
        let img = image::load_from_memory(&p.bytes).unwrap().to_rgb8();
        let (w, h) = (theirs[0].as_u64().unwrap(), theirs[1].as_u64().unwrap());
        assert_eq!(
            (u64::from(img.width()), u64::from(img.height())),
            (w, h),
            "{name}"
        );
        let want = unhex(theirs[2].as_str().unwrap());
        let diffs: Vec<u8> = img
            .as_raw()
            .iter()
            .zip(&want)
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let max = diffs.iter().copied().max().unwrap_or(0);
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        eprintln!("{name}: {w} x {h}, max |ours - Pillow| {max}, mean {mean:.3}");
        assert!(max <= 2 && mean <= 0.5, "{name}: max {max}, mean {mean}");
    }
}
