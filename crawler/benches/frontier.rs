//! Frontier memory and speed as it grows from 10^5 to 10^7 URLs.
//!
//! Each size runs in a child process (so each peak resident memory is its
//! own): push N distinct URLs over 1,000 hosts (with every tenth push a
//! repeat, which the seen-set must catch), pop half, checkpoint. Memory should
//! grow by about 8 bytes per seen URL (the fingerprint set), not with the
//! queued URLs, which spill to disk beyond 100,000 in memory per queue.
//!
//! Run: `cargo bench -p wit-crawler --bench frontier` (part of `make bench`);
//! `WIT_BENCH_FRONTIER=100000,1000000` to choose the sizes.

use std::process::Command;
use std::time::Instant;

use wit_crawler::frontier::{Frontier, Kind};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn child(n: u64) {
    let dir = std::env::temp_dir().join(format!("wit-bench-frontier-{}", std::process::id()));
    let mut f = Frontier::new(&dir, 100_000, 100).unwrap();
    let t = Instant::now();
    for i in 0..n {
        let url = format!(
            "http://host{}.example/section/{}/page-{i}.html",
            i % 1000,
            i % 97
        );
        f.push(&url, 1, Kind::Page).unwrap();
        if i % 10 == 0 {
            f.push(&url, 2, Kind::Page).unwrap();
        }
    }
    let push = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..n / 2 {
        f.pop().unwrap();
    }
    let pop = t.elapsed().as_secs_f64();
    f.checkpoint(&dir.join("checkpoint"), &[]).unwrap();
    println!(
        "{push} {pop} {} {} {}",
        f.seen(),
        f.queued(),
        peak_rss_mib()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--child" {
        child(args[2].parse().unwrap());
        return;
    }
    let sizes: Vec<u64> = std::env::var("WIT_BENCH_FRONTIER")
        .unwrap_or_else(|_| "100000,1000000,10000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for n in sizes {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--child", &n.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        println!(
            "frontier {n} URLs: {:.2} M pushes/s, {:.2} M pops/s, {} seen, {} still queued, peak memory {:.0} MiB",
            n as f64 * 1.1 / v[0] / 1e6,
            n as f64 / 2.0 / v[1] / 1e6,
            v[2],
            v[3],
            v[4]
        );
    }
}
