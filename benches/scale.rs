//! The scale benchmark (`make bench-scale`; skipped by `make bench`): a
//! seeded corpus of candidates of realistic shape, without images
//! (`wit demo-candidates`: Zipf query counts, alt-text caption lengths,
//! about 3.6 matched queries a text, 1.3% repeats across parts), run through
//! `wit match`, `wit balance`, `wit download --plan-only` and `wit stats`
//! (the release binary, one child process per stage), with each stage's
//! wall time, CPU time (`wait4`), peak RSS (the child's `VmHWM`) and bytes
//! written.
//!
//! Balancing's t is MetaCLIP's 20,000 at 400M pairs, scaled to the size
//! (t = 20,000 · rows / 400M, at least 20), so that balancing drops the
//! same share of the head at every size.
//!
//! The bucketed passes run with a fixed memory budget per task, so that a
//! task's memory is the same at every size: `WIT_SCALE_BALANCE_BUDGET`
//! (default 32M: reduce buckets of about 1M pairs) and
//! `WIT_SCALE_PLAN_BUDGET` (default 128M: plan groups of about 520,000
//! pairs); `wit`'s own default is 1G for both.
//!
//! At sizes up to `WIT_SCALE_DOWNLOAD_ROWS` (default 1000000) the image URLs
//! point at a server in this process on 127.0.0.1 that answers one tiny
//! JPEG (64 x 64) for every URL and 404 for robots.txt, and the shards are
//! downloaded in full (`--image-size 64`, 64 in flight, all to the one host).
//!
//! `WIT_SCALE_ROWS` (default 1000000; comma-separated for several sizes),
//! `WIT_SCALE_PART_ROWS` (default 100000), `WIT_SCALE_DIR` (default: a
//! temporary directory; the data is removed after each size).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

struct Measured {
    wall: f64,
    cpu: f64,
    peak_rss_mib: f64,
}

/// Runs `cmd` and measures it: CPU time from `wait4`; peak RSS from the
/// child's `VmHWM` in /proc, read every 10 ms (the high-water mark of its own
/// image: `ru_maxrss` would carry over this process's size from the fork).
// The child is reaped by `wait4`, which also gives its resource usage.
#[allow(clippy::zombie_processes)]
fn measure(cmd: &mut Command) -> Measured {
    let t = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("wit runs");
    let pid = child.id() as i32;
    let status_file = format!("/proc/{pid}/status");
    let mut peak_kib = 0u64;
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
            && let Some(kib) = line.split_whitespace().nth(1).and_then(|v| v.parse().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        // SAFETY: waiting for our own child; status and rusage are ours.
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if got == pid {
            break;
        }
        assert!(got == 0, "wait4 failed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed"
    );
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Measured {
        wall: t.elapsed().as_secs_f64(),
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        peak_rss_mib: peak_kib as f64 / 1024.0,
    }
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_bytes(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

/// A 64 x 64 JPEG.
fn tiny_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 4, y as u8 * 4, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// Serves `body` as image/jpeg for every path but /robots.txt (404), with
/// keep-alive, a thread per connection, on 127.0.0.1; returns its base URL.
fn serve_images(body: Vec<u8>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let body = std::sync::Arc::new(body);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let body = body.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                    // The rest of the head.
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                    }
                    let (status, ctype, bytes): (&str, &str, &[u8]) = if path == "/robots.txt" {
                        ("404 Not Found", "text/plain", b"none")
                    } else {
                        ("200 OK", "image/jpeg", &body)
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                        bytes.len()
                    );
                    // One write: a head and a body in two would wait on Nagle.
                    let mut reply = head.into_bytes();
                    reply.extend_from_slice(bytes);
                    if conn.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    base
}

fn main() {
    if std::env::var_os("WIT_BENCH_SCALE").is_none() {
        println!("scale bench: skipped (run `make bench-scale`)");
        return;
    }
    let sizes: Vec<usize> = std::env::var("WIT_SCALE_ROWS")
        .unwrap_or_else(|_| "1000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("WIT_SCALE_ROWS: numbers"))
        .collect();
    let part_rows: usize = std::env::var("WIT_SCALE_PART_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let wit = PathBuf::from(env!("CARGO_BIN_EXE_wit"));
    let base = std::env::var_os("WIT_SCALE_DIR").map(PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let base = base.unwrap_or_else(|| tmp.path().to_path_buf());
    let download_rows: usize = std::env::var("WIT_SCALE_DOWNLOAD_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let server = serve_images(tiny_jpeg());
    let budget = |var: &str, default: &str| std::env::var(var).unwrap_or_else(|_| default.into());
    let balance_budget = budget("WIT_SCALE_BALANCE_BUDGET", "32M");
    let plan_budget = budget("WIT_SCALE_PLAN_BUDGET", "128M");
    println!(
        "| rows | stage | wall s | CPU s | peak RSS MiB | bytes written MB | µs CPU per row |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for rows in sizes {
        let ds = base.join(format!("scale-{rows}"));
        let _ = std::fs::remove_dir_all(&ds);
        std::fs::create_dir_all(&ds).unwrap();
        let d = ds.to_str().unwrap();
        let queries = ds.join("queries.txt");
        let t = (20_000 * rows / 400_000_000).max(20).to_string();
        let (rows_s, part_s) = (rows.to_string(), part_rows.to_string());
        let download = rows <= download_rows;
        let mut generate = vec![
            "demo-candidates",
            "-d",
            d,
            "--rows",
            &rows_s,
            "--part-rows",
            &part_s,
        ];
        if download {
            generate.extend(["--image-base", server.as_str()]);
        }
        let mut stages: Vec<(&str, Vec<&str>, &str)> = vec![
            ("generate", generate, "candidates"),
            (
                "queries import",
                vec!["queries", "import", queries.to_str().unwrap(), "-d", d],
                "queries",
            ),
            ("match", vec!["match", "-d", d], "matched"),
            (
                "balance",
                vec![
                    "balance",
                    "-d",
                    d,
                    "-t",
                    &t,
                    "--memory-budget",
                    &balance_budget,
                ],
                "balanced",
            ),
            (
                "download plan",
                vec![
                    "download",
                    "-d",
                    d,
                    "--plan-only",
                    "--memory-budget",
                    &plan_budget,
                ],
                "shards",
            ),
        ];
        if download {
            stages.push((
                "download",
                vec![
                    "download",
                    "-d",
                    d,
                    "--allow-private",
                    "--image-size",
                    "64",
                    "--concurrency",
                    "64",
                    "--per-host",
                    "64",
                ],
                "shards",
            ));
        }
        stages.push(("stats", vec!["stats", d], "stats"));
        for (name, args, out) in stages {
            let m = measure(Command::new(&wit).args(&args).arg("-q"));
            let bytes = dir_bytes(&ds.join(out));
            println!(
                "| {rows} | {name} | {:.1} | {:.1} | {:.0} | {:.1} | {:.2} |",
                m.wall,
                m.cpu,
                m.peak_rss_mib,
                bytes as f64 / 1e6,
                m.cpu * 1e6 / rows as f64
            );
        }
        let _ = std::fs::remove_dir_all(&ds);
    }
}
