//! `wit download` side by side with img2dataset, on the same images, the same
//! settings (256 px, center_crop, JPEG 95) and the same two cores.
//!
//! - **Images**: every raster image of Debian's python-skimage-doc (unpacked
//!   by the tests into ~/.cache/wit/debian; the benchmark says so and stops
//!   where it is absent): about 335 real PNG and JPEG figures and photos of
//!   many sizes, each also served re-encoded as JPEG, so about 670 distinct
//!   images behind 10,000 URLs (`WIT_BENCH_IMAGES`).
//! - **Server**: a keep-alive HTTP server on 127.0.0.1 in a child process
//!   (this binary with `--serve`), so that neither tool's CPU time counts it.
//! - **wit**: `run_download` in this process, 64 downloads in flight, 2
//!   worker threads; CPU time from getrusage(RUSAGE_SELF).
//! - **img2dataset**: pip-installed into ~/.cache/wit/bench-venv, run with 2
//!   processes x 64 threads, webdataset output; CPU time from
//!   getrusage(RUSAGE_CHILDREN).
//! - **Floor**: decode + resize + encode of every image on one thread, no
//!   network, no writing.
//!
//! Run: `cargo bench -p wit-shards --bench download` (part of `make bench`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_array::builder::{ListBuilder, UInt32Builder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wit_contract::records::{Candidate, candidates_to_batch};
use wit_contract::{
    Counts, Dataset, NoProgress, RunOptions, Stage, StageSpec, pq, run_stage, schema,
};
use wit_shards::resize::{Encoding, ImageOptions, ResizeMode, process};
use wit_shards::{DownloadOptions, run_download};

fn cpu(who: i32) -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(who, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn source_images() -> Option<Vec<Vec<u8>>> {
    let root = PathBuf::from(std::env::var_os("HOME")?)
        .join(".cache/wit/debian/python-skimage-doc/usr/share/doc/python-skimage-doc/html");
    let mut files = Vec::new();
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p
                .extension()
                .is_some_and(|x| x == "png" || x == "jpg" || x == "jpeg")
                && !p.is_symlink()
            {
                out.push(p);
            }
        }
    }
    walk(&root, &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        let Ok(img) = image::load_from_memory(&bytes) else {
            continue;
        };
        let mut jpg = std::io::Cursor::new(Vec::new());
        if img
            .to_rgb8()
            .write_to(&mut jpg, image::ImageFormat::Jpeg)
            .is_ok()
        {
            out.push(jpg.into_inner());
        }
        out.push(bytes);
    }
    (!out.is_empty()).then_some(out)
}

/// `--serve`: serve /i/N (image N modulo the set) until stdin closes.
fn serve() {
    let images = Arc::new(source_images().expect("images"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else { continue };
                let images = images.clone();
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
                        let n: Option<usize> = path
                            .strip_prefix("/i/")
                            .and_then(|p| p.split('.').next())
                            .and_then(|p| p.parse().ok());
                        let (status, ctype, body): (&str, &str, &[u8]) = match n {
                            Some(n) => {
                                let b = &images[n % images.len()];
                                let ct = if b.starts_with(b"\x89PNG") { "image/png" } else { "image/jpeg" };
                                ("200 OK", ct, b)
                            }
                            None => ("404 Not Found", "text/plain", b"no"),
                        };
                        let head = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
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
        });
        // Until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await
        .unwrap();
    });
}

/// Writes a `balanced` stage of `urls` through the runner.
fn balanced(ds: &Path, urls: &[String]) {
    let opts = RunOptions {
        share: None,
        jobs: 1,
        force: false,
        progress: &NoProgress,
    };
    let spec = StageSpec {
        stage: Stage::Balanced,
        dir: Dataset::new(ds).stage_dir(Stage::Balanced),
        parts: 1,
        inputs: vec!["bench".into()],
        params: serde_json::json!({ "n": urls.len() }),
    };
    run_stage(&spec, &opts, |ctx| {
        let rows: Vec<Candidate> = urls
            .iter()
            .enumerate()
            .map(|(i, u)| {
                Candidate::new(u.clone(), format!("image number {i}"), "alt", "http://p/")
            })
            .collect();
        let batch = candidates_to_batch(&rows)?;
        let mut lists =
            ListBuilder::new(UInt32Builder::new()).with_field(match schema::query_ids_type() {
                arrow_schema::DataType::List(f) => f,
                _ => unreachable!(),
            });
        for _ in &rows {
            lists.values().append_value(0);
            lists.append(true);
        }
        let mut cols = batch.columns().to_vec();
        cols.push(Arc::new(lists.finish()));
        let batch = RecordBatch::try_new(schema::balanced(), cols).unwrap();
        pq::write_file(
            &ctx.output("part-00000.parquet"),
            schema::balanced(),
            &[batch],
        )?;
        Ok(Counts::from([("kept".to_string(), rows.len() as u64)]))
    })
    .unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if args.iter().any(|a| a == "--serve") {
        serve();
        return;
    }
    let Some(images) = source_images() else {
        println!(
            "skipped: python-skimage-doc is not unpacked in ~/.cache/wit/debian (the tests do it: cargo test --test e2e crawl)"
        );
        return;
    };
    let n: usize = std::env::var("WIT_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let total_bytes: usize = (0..n).map(|i| images[i % images.len()].len()).sum();
    println!(
        "{} distinct images (skimage docs, PNG and JPEG), {n} URLs, {:.1} MB in all",
        images.len(),
        total_bytes as f64 / 1e6
    );
    let opts = ImageOptions {
        size: 256,
        mode: ResizeMode::CenterCrop,
        encoding: Encoding::Jpeg(95),
        ..ImageOptions::default()
    };

    // Floor: decode + resize + encode, one thread.
    let t = Instant::now();
    let sample = n.min(2000);
    for i in 0..sample {
        let _ = process(&images[i % images.len()], &opts);
    }
    let floor = t.elapsed().as_secs_f64() / sample as f64;
    println!(
        "floor (decode + resize + encode, one thread): {:.2} ms per image, {:.0} images/s per core",
        floor * 1e3,
        1.0 / floor
    );

    // The server, in a child process.
    let exe = std::env::current_exe().unwrap();
    let mut server = Command::new(exe)
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let urls: Vec<String> = (0..n)
        .map(|i| format!("http://127.0.0.1:{port}/i/{i}.img"))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    balanced(&ds, &urls);
    let download = DownloadOptions {
        image: opts,
        concurrency: 64,
        per_host: 64,
        threads: 2,
        robots: false,
        policy: wit_net::addr::AddressPolicy {
            allow_private: true,
        },
        timeout: Duration::from_secs(60),
        ..DownloadOptions::default()
    };
    let run = RunOptions {
        share: None,
        jobs: 2,
        force: false,
        progress: &NoProgress,
    };
    let cpu0 = cpu(libc::RUSAGE_SELF);
    let t = Instant::now();
    let summary = run_download(&Dataset::new(&ds), &download, &run).unwrap();
    let wall = t.elapsed().as_secs_f64();
    let cpu_wit = cpu(libc::RUSAGE_SELF) - cpu0;
    let ok = summary.counts.get("success").copied().unwrap_or(0);
    println!(
        "wit download: {ok} of {n} stored in {wall:.1} s: {:.0} images/s, {:.2} ms CPU per image",
        n as f64 / wall,
        cpu_wit / n as f64 * 1e3
    );

    // img2dataset on the same URLs.
    let venv = PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/wit/bench-venv");
    let py = venv.join("bin/python");
    let have = py.exists()
        && Command::new(&py)
            .args(["-c", "import img2dataset"])
            .status()
            .is_ok_and(|s| s.success());
    if !have {
        let installed = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(&py)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "img2dataset",
                ])
                .status()
                .is_ok_and(|s| s.success());
        if !installed {
            println!("img2dataset: skipped (pip could not install it)");
            let _ = server.kill();
            let _ = server.wait();
            return;
        }
    }
    let list = dir.path().join("urls.csv");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&list).unwrap());
    writeln!(w, "url,caption").unwrap();
    for (i, u) in urls.iter().enumerate() {
        writeln!(w, "{u},image number {i}").unwrap();
    }
    drop(w);
    let out = dir.path().join("img2dataset");
    let cpu0 = cpu(libc::RUSAGE_CHILDREN);
    let t = Instant::now();
    let status = Command::new(venv.join("bin/img2dataset"))
        .arg("--url_list")
        .arg(&list)
        .args([
            "--input_format",
            "csv",
            "--url_col",
            "url",
            "--caption_col",
            "caption",
        ])
        .args(["--output_format", "webdataset", "--output_folder"])
        .arg(&out)
        .args([
            "--processes_count",
            "2",
            "--thread_count",
            "64",
            "--image_size",
            "256",
            "--resize_mode",
            "center_crop",
            "--encode_quality",
            "95",
            "--number_sample_per_shard",
            "10000",
            "--retries",
            "0",
            "--timeout",
            "60",
            "--enable_wandb",
            "False",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let wall_ref = t.elapsed().as_secs_f64();
    let cpu_ref = cpu(libc::RUSAGE_CHILDREN) - cpu0;
    let _ = server.kill();
    let _ = server.wait();
    if !status.is_ok_and(|s| s.success()) {
        println!("img2dataset: failed to run");
        return;
    }
    let mut stored = 0u64;
    for e in std::fs::read_dir(&out).unwrap().flatten() {
        if e.path().to_string_lossy().ends_with("_stats.json") {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            stored += v["successes"].as_u64().unwrap_or(0);
        }
    }
    println!(
        "img2dataset: {stored} of {n} stored in {wall_ref:.1} s: {:.0} images/s, {:.2} ms CPU per image",
        n as f64 / wall_ref,
        cpu_ref / n as f64 * 1e3
    );
    println!(
        "wit is {:.2}x img2dataset's images/s and uses {:.2}x its CPU per image",
        wall_ref / wall,
        cpu_wit / cpu_ref
    );
}
