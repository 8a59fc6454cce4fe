//! Matching cost at CLIP's scale, against MetaCLIP's own matcher.
//!
//! - **Queries**: 500,000, like MetaCLIP's list: WordNet lemmas (from
//!   Debian's `wordnet-base`, which the tests unpack into ~/.cache/wit/debian;
//!   pseudo-words where it is absent), then two-word phrases of frequent
//!   words, then the seed numbers "0".."99".
//! - **Captions**: 1,000,000 alt-text-like lines: a Zipf-distributed mix of
//!   those words with function words ("a photo of the ..."), capitals,
//!   commas and full stops, numbers.
//! - **Figures**, one thread each: building wit's matcher (time, memory)
//!   and its `QueryMatcher::find` (normalise, look up, sorted ids); the
//!   `aho-corasick` crate's overlapping search over the same " query "
//!   patterns (its default automaton, a contiguous NFA), on texts normalised
//!   beforehand; and MetaCLIP's pyahocorasick matcher (`metaclip_baseline.py`,
//!   beside this file, in a venv it makes) on the same files. All three count
//!   the matches they find; the counts must agree.
//!
//! Run: `cargo bench -p wit-filter --bench matcher` (part of `make bench`).
//! `WIT_BENCH_QUERIES`, `WIT_BENCH_TEXTS` change the sizes.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use wit_filter::matcher::normalize_into;
use wit_filter::{Case, QueryMatcher};

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    /// An index in 0..n, Zipf-like (rank r with weight about 1/r).
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() as f64 + 1.0) / (1u64 << 31) as f64;
        (((n as f64).powf(u) - 1.0) as usize).min(n - 1)
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// WordNet lemmas (lowercase, `_` as space), or `None` if not unpacked here.
fn wordnet_lemmas() -> Option<Vec<String>> {
    let dir = PathBuf::from(std::env::var_os("HOME")?)
        .join(".cache/wit/debian/wordnet-base/usr/share/wordnet");
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for pos in ["noun", "adj", "verb", "adv"] {
        let text = std::fs::read_to_string(dir.join(format!("index.{pos}"))).ok()?;
        for line in text.lines().filter(|l| !l.starts_with(' ')) {
            let lemma = line.split(' ').next().unwrap_or("").replace('_', " ");
            if !lemma.is_empty() && seen.insert(lemma.clone()) {
                out.push(lemma);
            }
        }
    }
    Some(out)
}

fn pseudo_words(n: usize, rng: &mut Lcg) -> Vec<String> {
    const SYLLABLES: &[&str] = &[
        "ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "an", "el", "or", "ve", "sto", "gra",
    ];
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while out.len() < n {
        let k = 2 + (rng.next() % 3) as usize;
        let w: String = (0..k)
            .map(|_| SYLLABLES[(rng.next() % SYLLABLES.len() as u64) as usize])
            .collect();
        if seen.insert(w.clone()) {
            out.push(w);
        }
    }
    out
}

const FUNCTION_WORDS: &[&str] = &[
    "a", "the", "of", "on", "in", "with", "and", "at", "for", "photo", "image", "picture", "The",
    "A", "view", "near", "by", "from", "two", "three", "my", "our", "new", "old",
];

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n_queries = env_usize("WIT_BENCH_QUERIES", 500_000);
    let n_texts = env_usize("WIT_BENCH_TEXTS", 1_000_000);
    let mut rng = Lcg(42);
    let (mut vocab, source) = match wordnet_lemmas() {
        Some(v) => (v, "WordNet lemmas"),
        None => (
            pseudo_words(150_000, &mut rng),
            "pseudo-words (WordNet not unpacked)",
        ),
    };
    // Frequent words first: single words, shuffled deterministically.
    vocab.retain(|w| !w.contains(' ') || w.len() < 24);
    for i in (1..vocab.len()).rev() {
        vocab.swap(i, (rng.next() as usize) % (i + 1));
    }
    let mut seen: HashSet<String> = HashSet::new();
    let mut queries: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    seen.extend(queries.iter().cloned());
    for w in FUNCTION_WORDS
        .iter()
        .map(|w| w.to_string())
        .chain(vocab.iter().cloned())
    {
        if queries.len() >= n_queries {
            break;
        }
        if seen.insert(w.clone()) {
            queries.push(w);
        }
    }
    let singles = queries.len();
    while queries.len() < n_queries {
        let a = &vocab[rng.zipf(20_000.min(vocab.len()))];
        let b = &vocab[rng.zipf(20_000.min(vocab.len()))];
        let q = format!("{a} {b}");
        if seen.insert(q.clone()) {
            queries.push(q);
        }
    }
    let texts: Vec<String> = (0..n_texts)
        .map(|_| {
            let n = 4 + (rng.next() % 11) as usize;
            let mut s = String::new();
            for i in 0..n {
                let w = if rng.next().is_multiple_of(3) {
                    FUNCTION_WORDS[rng.zipf(FUNCTION_WORDS.len())].to_string()
                } else if rng.next().is_multiple_of(40) {
                    (rng.next() % 2030).to_string()
                } else {
                    vocab[rng.zipf(vocab.len())].clone()
                };
                if i > 0 {
                    s.push_str(match rng.next() % 12 {
                        0 => ", ",
                        1 => ". ",
                        _ => " ",
                    });
                }
                if i == 0 && rng.next().is_multiple_of(2) {
                    let mut c = w.chars();
                    if let Some(f) = c.next() {
                        s.extend(f.to_uppercase());
                        s.push_str(c.as_str());
                    }
                } else {
                    s.push_str(&w);
                }
            }
            s
        })
        .collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    let mb = bytes as f64 / 1e6;
    println!(
        "queries: {} ({singles} single words from {source}, the rest two-word phrases); captions: {n_texts} ({mb:.1} MB)",
        queries.len()
    );

    let t = Instant::now();
    let matcher = QueryMatcher::new(&queries, Case::Sensitive).expect("automaton builds");
    let build = t.elapsed().as_secs_f64();
    println!(
        "wit matcher: built in {build:.2} s, {:.1} MB",
        matcher.memory_usage() as f64 / 1e6
    );

    let (mut buf, mut ids, mut one_by_one) = (String::new(), Vec::new(), 0usize);
    let t = Instant::now();
    for text in &texts {
        matcher.find(text, &mut buf, &mut ids);
        one_by_one += ids.len();
    }
    let single = t.elapsed().as_secs_f64();
    let mut ours_matches = 0usize;
    let t = Instant::now();
    matcher.find_all(texts.iter().map(String::as_str), |_, ids| {
        ours_matches += ids.len()
    });
    let ours = t.elapsed().as_secs_f64();
    assert_eq!(one_by_one, ours_matches);
    println!(
        "wit QueryMatcher::find, one text at a time: {single:.2} s, {:.1} MB/s",
        mb / single
    );

    let padded: Vec<String> = texts
        .iter()
        .map(|t| {
            let mut b = String::new();
            normalize_into(t, Case::Sensitive, &mut b);
            b
        })
        .collect();
    println!(
        "wit QueryMatcher::find_all (what wit match runs): {ours:.2} s, {:.1} MB/s, {:.2} queries per caption",
        mb / ours,
        ours_matches as f64 / n_texts as f64
    );
    let t = Instant::now();
    let ac = aho_corasick::AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::Standard)
        .build(queries.iter().map(|q| format!(" {q} ")))
        .expect("automaton builds");
    let ac_build = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut raw_matches = 0usize;
    let mut seen = Vec::new();
    for p in &padded {
        seen.clear();
        seen.extend(
            ac.find_overlapping_iter(p.as_str())
                .map(|m| m.pattern().as_u32()),
        );
        seen.sort_unstable();
        seen.dedup();
        raw_matches += seen.len();
    }
    let raw = t.elapsed().as_secs_f64();
    println!(
        "aho-corasick overlapping search ({:?}, {:.1} MB, built in {ac_build:.2} s; texts padded beforehand): {raw:.2} s, {:.1} MB/s; wit is {:.1}x faster; matches {}",
        ac.kind(),
        ac.memory_usage() as f64 / 1e6,
        mb / raw,
        raw / ours,
        if raw_matches == ours_matches {
            "equal"
        } else {
            "DIFFERENT"
        }
    );

    // MetaCLIP's matcher on the same files.
    let dir = std::env::temp_dir().join(format!("wit-bench-matcher-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let qfile = dir.join("queries.json");
    std::fs::write(&qfile, serde_json::to_vec(&queries).unwrap()).unwrap();
    let cfile = dir.join("captions.txt");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&cfile).unwrap());
    for t in &texts {
        writeln!(w, "{t}").unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/metaclip_baseline.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&qfile)
        .arg(&cfile)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    match out {
        Ok(o) if o.status.success() => {
            let v: serde_json::Value =
                serde_json::from_slice(o.stdout.trim_ascii_end()).expect("baseline prints JSON");
            let secs = v["match_s"].as_f64().unwrap();
            let their_matches = v["matches"].as_u64().unwrap() as usize;
            println!(
                "MetaCLIP pyahocorasick: built in {:.2} s; matched in {secs:.2} s, {:.2} MB/s; wit is {:.1}x faster per core",
                v["build_s"].as_f64().unwrap(),
                mb / secs,
                secs / ours
            );
            println!(
                "matches: wit {ours_matches}, pyahocorasick {their_matches}: {}",
                if ours_matches == their_matches {
                    "equal"
                } else {
                    "DIFFERENT"
                }
            );
        }
        Ok(o) => println!(
            "MetaCLIP pyahocorasick baseline skipped: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => println!("MetaCLIP pyahocorasick baseline skipped: python3: {e}"),
    }
}
