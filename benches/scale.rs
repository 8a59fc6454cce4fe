//! The scale benchmark (`make bench-scale`; skipped by `make bench`): a
//! seeded corpus of candidates of realistic shape, without images, run
//! through `wit match`, `wit balance` and `wit stats` (the release binary, one
//! child process per stage), with each stage's wall time, CPU time (`wait4`),
//! peak RSS (the child's `VmHWM`) and bytes written.
//!
//! The generator (issue 18): a vocabulary of pronounceable pseudo-words with
//! Zipf-distributed frequencies (s = 1, as word frequencies in English);
//! the query list is the 100,000 most frequent words and 20,000 frequent
//! bigrams, so query counts follow a Zipf law as MetaCLIP's do; captions
//! have 2 to 24 words (mean about 9, the shape of alt texts), image URLs
//! spread over 50,000 hosts; about 1.5% of the rows of each part repeat a
//! pair from an earlier part. Everything is drawn from one seed.
//!
//! `WIT_SCALE_ROWS` (default 1000000; comma-separated for several sizes),
//! `WIT_SCALE_PART_ROWS` (default 100000), `WIT_SCALE_DIR` (default: a
//! temporary directory; the data is removed after each size).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use wit_contract::records::{Candidate, candidates_to_batch};
use wit_contract::{
    Counts, Dataset, NoProgress, RunOptions, Stage, StageSpec, pq, run_stage, schema,
};

/// SplitMix64 (Steele, Lea and Flood 2014), the seeded source of every draw.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const VOCAB: usize = 300_000;
const UNIGRAM_QUERIES: usize = 100_000;
const BIGRAM_QUERIES: usize = 20_000;

/// Pseudo-word `i`: syllables from its digits, so every word is distinct.
fn word(i: usize) -> String {
    const SYL: [&str; 40] = [
        "ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "pa", "de", "bo", "li", "ma", "no", "re",
        "ti", "ve", "su", "pi", "da", "ga", "ho", "ju", "ke", "la", "mo", "nu", "pe", "ri", "sa",
        "to", "wa", "ze", "fu", "ci", "bu", "fe", "go", "hi", "ya",
    ];
    let mut n = i + 1;
    let mut w = String::new();
    while n > 0 {
        w.push_str(SYL[n % SYL.len()]);
        n /= SYL.len();
    }
    w
}

/// Zipf(s = 1) over `n` ranks by inversion of the continuous approximation.
fn zipf(rng: &mut Rng, n: usize) -> usize {
    let u = rng.unit();
    let r = ((n as f64 + 1.0).ln() * u).exp() - 1.0;
    (r as usize).min(n - 1)
}

fn caption(rng: &mut Rng, words: &[String]) -> String {
    // 2..=24 words, mean about 9.
    let len = 2 + (rng.below(8) + rng.below(8) + rng.below(8)) as usize;
    let mut t = String::new();
    for k in 0..len {
        if k > 0 {
            t.push(if rng.below(12) == 0 { ',' } else { ' ' });
            if t.ends_with(',') {
                t.push(' ');
            }
        }
        t.push_str(&words[zipf(rng, VOCAB)]);
    }
    t
}

fn write_queries(path: &Path, words: &[String], rng: &mut Rng) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for w in &words[..UNIGRAM_QUERIES] {
        writeln!(f, "{w}").unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < BIGRAM_QUERIES {
        let a = zipf(rng, 5_000);
        let b = zipf(rng, 5_000);
        if a != b && seen.insert((a, b)) {
            writeln!(f, "{} {}", words[a], words[b]).unwrap();
        }
    }
}

/// Writes `rows` candidates in parts of `part_rows` through the real runner.
fn write_candidates(dataset: &Path, rows: usize, part_rows: usize, words: &[String]) {
    let parts = rows.div_ceil(part_rows) as u32;
    let spec = StageSpec {
        stage: Stage::Candidates,
        dir: Dataset::new(dataset).stage_dir(Stage::Candidates),
        parts,
        inputs: vec!["benches/scale.rs".into()],
        params: serde_json::json!({ "rows": rows, "part_rows": part_rows, "seed": 17 }),
    };
    let opts = RunOptions {
        share: None,
        jobs: 2,
        force: false,
        progress: &NoProgress,
    };
    run_stage(&spec, &opts, |ctx| {
        let part = ctx.part() as usize;
        let mut rng = Rng(0x5eed ^ (part as u64).wrapping_mul(0x1000_0000_01b3));
        let n = part_rows.min(rows - part * part_rows);
        let mut out: Vec<Candidate> = Vec::with_capacity(n);
        for i in 0..n {
            // About 1.5% repeat a pair of an earlier part (drawn again from its seed).
            if part > 0 && rng.below(1000) < 15 {
                let earlier = rng.below(part as u64) as usize;
                let mut again = Rng(0x5eed ^ (earlier as u64).wrapping_mul(0x1000_0000_01b3));
                let host = again.below(50_000);
                let text = caption(&mut again, words);
                out.push(Candidate::new(
                    format!("https://img{host}.example.com/i/{earlier}/0.jpg"),
                    text,
                    "alt",
                    format!("https://site{host}.example.com/p/{earlier}"),
                ));
                continue;
            }
            let host = rng.below(50_000);
            let text = caption(&mut rng, words);
            out.push(Candidate::new(
                format!("https://img{host}.example.com/i/{part}/{i}.jpg"),
                text,
                "alt",
                format!("https://site{host}.example.com/p/{part}"),
            ));
        }
        pq::write_file(
            &ctx.output(&format!("part-{part:05}.parquet")),
            schema::candidates(),
            &[candidates_to_batch(&out)?],
        )?;
        Ok(Counts::from([("candidates".to_string(), n as u64)]))
    })
    .unwrap();
}

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
    let words: Vec<String> = (0..VOCAB).map(word).collect();
    println!(
        "| rows | stage | wall s | CPU s | peak RSS MiB | bytes written MB | µs CPU per row |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for rows in sizes {
        let ds = base.join(format!("scale-{rows}"));
        let _ = std::fs::remove_dir_all(&ds);
        std::fs::create_dir_all(&ds).unwrap();
        let mut rng = Rng(17);
        let queries = ds.join("queries.txt");
        write_queries(&queries, &words, &mut rng);
        let t = Instant::now();
        write_candidates(&ds, rows, part_rows, &words);
        eprintln!(
            "scale bench: {rows} candidates generated in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let d = ds.to_str().unwrap();
        let stages: Vec<(&str, Vec<&str>, &str)> = vec![
            (
                "queries import",
                vec!["queries", "import", queries.to_str().unwrap(), "-d", d],
                "queries",
            ),
            ("match", vec!["match", "-d", d], "matched"),
            ("balance", vec!["balance", "-d", d], "balanced"),
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
