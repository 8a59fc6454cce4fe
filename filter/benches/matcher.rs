//! Matching cost at CLIP's scale: building the automaton over 500,000 queries
//! and matching captions against it. Prints figures; asserts nothing.
//!
//! Queries are synthetic (pseudo-words and two-word phrases with a Zipf-like
//! length mix), captions are drawn from the same vocabulary, so most captions
//! match several queries, as real alt texts do (MetaCLIP: about 3.5 matches per text).
//!
//! Run: `cargo bench -p wit-filter --bench matcher` (or `make bench`).

use std::time::Instant;

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
}

fn word(rng: &mut Lcg) -> String {
    const SYLLABLES: &[&str] = &[
        "ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "an", "el", "or", "ve",
    ];
    let n = 2 + (rng.next() % 4) as usize;
    (0..n)
        .map(|_| SYLLABLES[(rng.next() % SYLLABLES.len() as u64) as usize])
        .collect()
}

fn main() {
    let n_queries: usize = std::env::var("WIT_BENCH_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let n_texts: usize = std::env::var("WIT_BENCH_TEXTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let mut rng = Lcg(42);
    let mut seen = std::collections::HashSet::new();
    let mut vocab: Vec<String> = Vec::with_capacity(50_000);
    while vocab.len() < 50_000 {
        let w = word(&mut rng);
        if seen.insert(w.clone()) {
            vocab.push(w);
        }
    }
    let mut queries: Vec<String> = Vec::with_capacity(n_queries);
    while queries.len() + vocab.len() < n_queries {
        let a = &vocab[(rng.next() % vocab.len() as u64) as usize];
        let q = if rng.next().is_multiple_of(3) {
            format!("{a} {}", vocab[(rng.next() % vocab.len() as u64) as usize])
        } else {
            format!("{a}{}", rng.next() % 20)
        };
        if seen.insert(q.clone()) {
            queries.push(q);
        }
    }
    queries.extend(vocab.iter().cloned());
    let texts: Vec<String> = (0..n_texts)
        .map(|_| {
            let n = 3 + (rng.next() % 12) as usize;
            (0..n)
                .map(|_| vocab[(rng.next() % 5000) as usize].as_str())
                .collect::<Vec<_>>()
                .join(if rng.next().is_multiple_of(4) {
                    ", "
                } else {
                    " "
                })
        })
        .collect();
    let bytes: usize = texts.iter().map(String::len).sum();

    let t = Instant::now();
    let matcher = QueryMatcher::new(&queries, Case::Sensitive).expect("automaton builds");
    let build = t.elapsed();
    let (kind, memory) = matcher.footprint();

    let (mut buf, mut ids, mut total) = (String::new(), Vec::new(), 0usize);
    let t = Instant::now();
    for text in &texts {
        matcher.find(text, &mut buf, &mut ids);
        total += ids.len();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "matcher: {} queries built in {:.2}s ({kind:?}, {:.1} MB)",
        queries.len(),
        build.as_secs_f64(),
        memory as f64 / 1e6
    );
    println!(
        "matcher: {n_texts} texts ({:.1} MB) in {secs:.2}s: {:.0} texts/s, {:.1} MB/s, {:.2} matches per text",
        bytes as f64 / 1e6,
        n_texts as f64 / secs,
        bytes as f64 / 1e6 / secs,
        total as f64 / n_texts as f64
    );
}
