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
    let child = cmd.spawn().expect("wit runs");
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
        let stages: Vec<(&str, Vec<&str>, &str)> = vec![
            (
                "generate",
                vec![
                    "demo-candidates",
                    "-d",
                    d,
                    "--rows",
                    &rows_s,
                    "--part-rows",
                    &part_s,
                ],
                "candidates",
            ),
            (
                "queries import",
                vec!["queries", "import", queries.to_str().unwrap(), "-d", d],
                "queries",
            ),
            ("match", vec!["match", "-d", d], "matched"),
            ("balance", vec!["balance", "-d", d, "-t", &t], "balanced"),
            ("stats", vec!["stats", d], "stats"),
        ];
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
