//! `wit demo-candidates`: a seeded corpus of candidates of realistic shape,
//! without images, for measuring the stages past the crawl at scale
//! (`make bench-scale`, docs/scale.md) and for tests that need many rows.
//!
//! - **Words**: a vocabulary of 300,000 pronounceable pseudo-words whose
//!   frequencies follow a Zipf law with s = 1, as word frequencies in English
//!   do.
//! - **Queries**: the 100,000 most frequent words after the 3,000 most
//!   frequent (which play the function words) and 20,000 bigrams of frequent
//!   words, written one per line to `DATASET/queries.txt`; query counts then
//!   follow a Zipf law, as MetaCLIP's do, and a caption matches about 3.5
//!   queries.
//! - **Captions**: 2 to 24 words (mean about 9, the shape of alt texts in
//!   LAION and MetaCLIP's pool), some with commas.
//! - **URLs**: image URLs over 50,000 hosts, with the page that held them.
//! - **Repeats**: about 1.5% of each part's rows repeat a pair (image URL and
//!   text) of an earlier part, as crawls of overlapping snapshots do.
//!
//! Every draw comes from one SplitMix64 stream per part, seeded by the part
//! number and the seed, so the corpus is the same on every machine and a
//! part does not depend on the others: the parts go through the stage
//! runner and a killed run resumes.

use std::io::Write;
use std::path::{Path, PathBuf};

use wit_contract::records::{Candidate, candidates_to_batch};
use wit_contract::{
    Counts, Dataset, Error, IoContext, Result, RunOptions, Stage, StageSpec, Summary, pq,
    run_stage, schema,
};

/// What `wit demo-candidates` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleOptions {
    /// Candidates in all.
    pub rows: u64,
    /// Candidates per part (the last part may hold fewer).
    pub part_rows: u64,
    /// Seeds every draw.
    pub seed: u64,
    /// Where the image URLs point: `https://img{host}.example.com` by
    /// default; with a base (`http://127.0.0.1:8080`), `{base}/img{host}`,
    /// for downloads from a local server.
    pub image_base: Option<String>,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        ScaleOptions {
            rows: 1_000_000,
            part_rows: 100_000,
            seed: 17,
            image_base: None,
        }
    }
}

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

/// Size of the vocabulary.
pub const VOCAB: usize = 300_000;
/// The most frequent words, which are not queries (as function words are
/// not): with them out, a caption matches about 3.5 queries, as MetaCLIP's
/// texts do.
pub const STOP_WORDS: usize = 3_000;
/// Queries that are single words: the most frequent after the stop words.
pub const UNIGRAM_QUERIES: usize = 100_000;
/// Queries that are bigrams of frequent words.
pub const BIGRAM_QUERIES: usize = 20_000;
/// Image hosts.
const HOSTS: u64 = 50_000;
/// Repeats of an earlier part's pair, per 1000 rows.
const REPEATS_PER_MILLE: u64 = 15;

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

/// Zipf(s = 1) over `n` ranks, by inverting the continuous approximation of
/// its distribution function.
fn zipf(rng: &mut Rng, n: usize) -> usize {
    let u = rng.unit();
    let r = ((n as f64 + 1.0).ln() * u).exp() - 1.0;
    (r as usize).min(n - 1)
}

fn caption(rng: &mut Rng, words: &[String]) -> String {
    // 2..=23 words, mean about 9.5.
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

fn write_queries(path: &Path, words: &[String], seed: u64) -> Result<()> {
    let mut rng = Rng(seed);
    let file = std::fs::File::create(path).at(path)?;
    let mut f = std::io::BufWriter::new(file);
    for w in &words[STOP_WORDS..STOP_WORDS + UNIGRAM_QUERIES] {
        writeln!(f, "{w}").at(path)?;
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < BIGRAM_QUERIES {
        let a = STOP_WORDS + zipf(&mut rng, 5_000);
        let b = STOP_WORDS + zipf(&mut rng, 5_000);
        if a != b && seen.insert((a, b)) {
            writeln!(f, "{} {}", words[a], words[b]).at(path)?;
        }
    }
    f.flush().at(path)
}

/// Row `i` of part `part`: (image URL, text, page URL). Each row draws from
/// its own stream, so a repeat can copy any earlier row at once; a row that
/// repeats a repeat gives the original pair.
fn row(opts: &ScaleOptions, part: u64, i: u64, words: &[String]) -> (String, String, String) {
    let mut rng = Rng(0x5eed ^ opts.seed.wrapping_mul(0x9e37_79b9) ^ (part << 32 | i));
    if part > 0 && rng.below(1000) < REPEATS_PER_MILLE {
        let earlier = rng.below(part);
        return row(opts, earlier, rng.below(opts.part_rows), words);
    }
    let host = rng.below(HOSTS);
    let text = caption(&mut rng, words);
    let image = match &opts.image_base {
        Some(base) => format!("{}/img{host}", base.trim_end_matches('/')),
        None => format!("https://img{host}.example.com"),
    };
    (
        format!("{image}/i/{part}/{i}.jpg"),
        text,
        format!("https://site{host}.example.com/p/{part}"),
    )
}

/// Writes the query list to `DATASET/queries.txt` and the candidates stage
/// (`DATASET/candidates/`, parts of `part_rows`) through the stage runner.
/// Returns the query list's path and the stage summary.
///
/// # Errors
/// [`Error::Usage`] for zero rows or part size; as [`run_stage`].
pub fn write_scale_corpus(
    dataset: &Dataset,
    opts: &ScaleOptions,
    run: &RunOptions<'_>,
) -> Result<(PathBuf, Summary)> {
    if opts.rows == 0 || opts.part_rows == 0 {
        return Err(Error::Usage(
            "--rows and --part-rows must be at least 1".into(),
        ));
    }
    std::fs::create_dir_all(dataset.root()).at(dataset.root())?;
    let words: Vec<String> = (0..VOCAB).map(word).collect();
    let queries = dataset.root().join("queries.txt");
    write_queries(&queries, &words, opts.seed)?;
    let (rows, part_rows) = (opts.rows, opts.part_rows);
    let spec = StageSpec {
        stage: Stage::Candidates,
        dir: dataset.stage_dir(Stage::Candidates),
        parts: rows.div_ceil(part_rows) as u32,
        inputs: vec!["wit demo-candidates".into()],
        params: serde_json::json!({
            "rows": rows,
            "part_rows": part_rows,
            "seed": opts.seed,
            "image_base": opts.image_base,
        }),
    };
    let summary = run_stage(&spec, run, |ctx| {
        let part = u64::from(ctx.part());
        let n = part_rows.min(rows - part * part_rows);
        let out: Vec<Candidate> = (0..n)
            .map(|i| {
                let (url, text, page) = row(opts, part, i, &words);
                Candidate::new(url, text, "alt", page)
            })
            .collect();
        pq::write_file(
            &ctx.output(&wit_contract::layout::part_file_name(part as u32)),
            schema::candidates(),
            &[candidates_to_batch(&out)?],
        )?;
        Ok(Counts::from([("candidates".to_string(), n)]))
    })?;
    Ok((queries, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_distinct_and_zipf_favours_low_ranks() {
        let words: Vec<String> = (0..1000).map(word).collect();
        let set: std::collections::HashSet<_> = words.iter().collect();
        assert_eq!(set.len(), words.len());
        let mut rng = Rng(1);
        let n = 100_000;
        let low = (0..n).filter(|_| zipf(&mut rng, VOCAB) < 10).count();
        // P(rank < 10) = ln 11 / ln 300001, about 0.19.
        assert!((17_000..21_000).contains(&low), "{low}");
    }
}
