//! Counting words and bigrams at scale: throughput and peak memory.
//!
//! Generates a corpus (Zipf-distributed words over a 5-million-word vocabulary,
//! sentences with punctuation) of `WIT_BENCH_MB` MiB (default 1024) and, with
//! `WIT_BENCH_SCALES` (default "1,10"), also multiples of it. Each size is
//! counted in a child process (the real `wit_queries::build` path, unigrams and
//! bigram PMI, 1 GiB counting memory, every core) so that each one's peak
//! resident memory is its own: flat peaks across sizes show that memory does
//! not grow with the corpus. The reference, counted in the same run on a
//! 64 MiB sample, is a plain Python implementation of MetaCLIP's n-gram
//! counting (its tokenizer and dictionaries), on one core; figures are words
//! per second per core and their ratio.
//!
//! Run: `cargo bench -p wit-queries --bench count` (part of `make bench`).
//! Needs about 11 GiB of free disk for the 10x corpus.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use wit_contract::NoProgress;
use wit_queries::ngrams::NgramOptions;
use wit_queries::titles::TitleOptions;
use wit_queries::{Budgets, BuildSpec};

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    fn unit(&mut self) -> f64 {
        self.next() as f64 / (1u64 << 53) as f64
    }
}

fn word(mut rank: u64, out: &mut Vec<u8>) {
    const LETTERS: &[u8] = b"etaoinshrdlucmfwypvbgkqjxz";
    loop {
        out.push(LETTERS[(rank % 26) as usize]);
        rank /= 26;
        if rank == 0 {
            break;
        }
    }
}

/// Writes `bytes` of text; returns the number of words.
fn generate(path: &Path, bytes: u64, seed: u64) -> u64 {
    let mut rng = Lcg(seed);
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let (mut written, mut words) = (0u64, 0u64);
    let ln_v = (5_000_000f64).ln();
    let mut line = Vec::with_capacity(256);
    while written < bytes {
        line.clear();
        let n = 5 + rng.next() % 16;
        for i in 0..n {
            // Log-uniform rank: a Zipf(1)-like law.
            let rank = (rng.unit() * ln_v).exp() as u64;
            word(rank, &mut line);
            words += 1;
            line.push(if i + 1 == n {
                b'.'
            } else if rng.next().is_multiple_of(9) {
                b','
            } else {
                b' '
            });
            if line.last() == Some(&b',') {
                line.push(b' ');
            }
        }
        line.push(b'\n');
        w.write_all(&line).unwrap();
        written += line.len() as u64;
    }
    w.flush().unwrap();
    words
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The child: counts one corpus and prints "seconds tokens peak_mib".
fn child(corpus: &Path, scratch: &Path) {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(std::io::stderr)
        .init();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let spec = BuildSpec {
        wordnet: None,
        wikipedia: vec![],
        corpus: vec![corpus.to_path_buf()],
        pageviews: vec![],
        titles: None,
        include: vec![],
        seed_numbers: false,
        ngrams: NgramOptions {
            min_count: 100,
            min_pmi: 30.0,
            bigram_min_count: 1,
            keep: 500_000,
            memory: 1 << 30,
            threads,
        },
        title_options: TitleOptions {
            project: "en".into(),
            min_row_views: 50,
            min_views: 70,
        },
        max_queries: 500_000,
        budgets: Budgets::default(),
    };
    let t = Instant::now();
    let (_, counts) = wit_queries::build(&spec, scratch, &NoProgress).unwrap();
    println!(
        "{} {} {}",
        t.elapsed().as_secs_f64(),
        counts["tokens"],
        peak_rss_mib()
    );
}

const PYTHON_REFERENCE: &str = r#"
import sys, time, string
from collections import defaultdict
punct = set(string.punctuation)
def tokens(text):
    cur = []
    for ch in text:
        if ch in punct:
            if cur: yield "".join(cur); cur = []
            yield ch
        elif ch.isspace():
            if cur: yield "".join(cur); cur = []
        else:
            cur.append(ch)
    if cur: yield "".join(cur)
t = time.time()
uni, bi = defaultdict(int), defaultdict(int)
n = 0
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        prev = None
        for tok in tokens(line):
            if all(c in punct for c in tok):
                prev = None
                continue
            uni[tok] += 1
            n += 1
            if prev is not None:
                bi[prev + " " + tok] += 1
            prev = tok
print(time.time() - t, n)
"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--child" {
        child(Path::new(&args[2]), Path::new(&args[3]));
        return;
    }
    let base_mib: u64 = std::env::var("WIT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let scales: Vec<u64> = std::env::var("WIT_BENCH_SCALES")
        .unwrap_or_else(|_| "1,10".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let dir = PathBuf::from(
        std::env::var("WIT_BENCH_DIR")
            .unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
    )
    .join(format!("wit-bench-count-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    // The reference on a sample.
    let sample = dir.join("sample.txt");
    let sample_words = generate(&sample, 64 << 20, 1);
    let py = if std::env::var_os("WIT_BENCH_NO_REFERENCE").is_some() {
        Command::new("false").output()
    } else {
        Command::new("python3")
            .arg("-c")
            .arg(PYTHON_REFERENCE)
            .arg(&sample)
            .output()
    };

    let reference = match py {
        Ok(o) if o.status.success() => {
            let out = String::from_utf8_lossy(&o.stdout);
            let secs: f64 = out
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            let rate = sample_words as f64 / secs;
            println!(
                "reference (Python, MetaCLIP's counting, 1 core): {sample_words} words in {secs:.1}s = {:.2} M words/s",
                rate / 1e6
            );
            Some(rate)
        }
        _ => {
            println!("reference: python3 not available, ratio not computed");
            None
        }
    };
    let _ = std::fs::remove_file(&sample);

    for scale in scales {
        let corpus = dir.join("corpus.txt");
        let bytes = (base_mib * scale) << 20;
        let t = Instant::now();
        let words = generate(&corpus, bytes, 7);
        println!(
            "corpus {}x: {:.1} GiB, {words} words, generated in {:.0}s",
            scale,
            bytes as f64 / (1u64 << 30) as f64,
            t.elapsed().as_secs_f64()
        );
        let scratch = dir.join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--child",
                corpus.to_str().unwrap(),
                scratch.to_str().unwrap(),
            ])
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let f: Vec<f64> = text
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        let (secs, tokens, peak) = (f[0], f[1], f[2]);
        let per_core = tokens / secs / cores as f64;
        let ratio = reference.map_or(String::new(), |r| {
            format!(", {:.1}x the reference per core", per_core / r)
        });
        println!(
            "wit {}x: {tokens} words in {secs:.1}s on {cores} cores = {:.2} M words/s per core{ratio}; peak memory {peak:.0} MiB",
            scale,
            per_core / 1e6
        );
        let _ = std::fs::remove_file(&corpus);
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
