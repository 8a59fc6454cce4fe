//! Unigram counts and bigram PMI over a corpus too large for memory.
//!
//! Counting is exact and runs on every core: each worker thread counts the
//! text it is handed into its own hash maps and, when they pass its share of
//! the memory budget, writes them to disk as sorted runs ([`crate::spill`]).
//! At the end the runs are merged:
//!
//! 1. Unigram runs merge into one sorted, summed unigram file; the total token
//!    count N and the unigrams over `min_count` fall out of the same pass.
//! 2. Bigram runs merge in `(first, second)` order and are joined with the
//!    unigram file on the first word. Since a bigram occurs at most as often as
//!    either of its words, PMI = log2(c(ab)·N / (c(a)·c(b))) <= log2(N / c(a)),
//!    so bigrams whose first word is too frequent to reach `min_pmi` are
//!    dropped here. The rest are re-sorted (spilling) by second word,
//! 3. and joined with the unigram file again for c(b); those with PMI >=
//!    `min_pmi` are kept.
//!
//! Memory is the budget plus the survivors (at most `keep` per list), whatever
//! the corpus size; disk holds the runs, about the size of the distinct n-grams.
//! PMI is NLTK's `BigramAssocMeasures.pmi` (base 2, N = total unigram count),
//! which MetaCLIP used.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use std::hash::BuildHasher;

use hashbrown::HashTable;
use wit_contract::{IoContext, Progress, Result};

use crate::spill::{Merge, RunReader, Sorter, SumMerge, cascade, value_u64, write_count_run};
use crate::text::{for_each_token, is_punctuation};
use crate::wikipedia;

/// What a worker is handed.
pub enum Work {
    /// Plain text.
    Text(String),
    /// MediaWiki XML holding whole `<page>` elements.
    Xml(String),
    /// Whole bzip2 streams of MediaWiki XML (a multistream dump's chunk).
    Bz2(Vec<u8>),
}

/// Where the readers send work. Sending stops (returns false) once a worker
/// has failed, so that a reader never blocks on workers that are gone.
pub struct Feed<'a> {
    tx: SyncSender<Work>,
    failed: &'a AtomicBool,
}

impl Feed<'_> {
    /// Hands `work` to a worker; false if counting has failed and the reader should stop.
    pub fn send(&self, work: Work) -> bool {
        !self.failed.load(Ordering::Relaxed) && self.tx.send(work).is_ok()
    }
}

/// Thresholds and resources of counting.
#[derive(Debug, Clone)]
pub struct NgramOptions {
    /// Keep unigrams with at least this count (MetaCLIP: 100).
    pub min_count: u64,
    /// Keep bigrams with at least this PMI, base 2 (MetaCLIP: 30).
    pub min_pmi: f64,
    /// Ignore bigrams seen fewer times than this.
    pub bigram_min_count: u64,
    /// Keep at most this many unigrams and bigrams (the best by count and PMI).
    pub keep: usize,
    /// Bytes of memory for the counting maps, over all threads.
    pub memory: usize,
    /// Worker threads.
    pub threads: usize,
}

/// The result of counting.
#[derive(Debug, Clone, Default)]
pub struct NgramCounts {
    /// Unigrams with count >= `min_count`, by count (descending), then text.
    pub unigrams: Vec<(String, u64)>,
    /// Bigrams ("a b") with PMI >= `min_pmi`, by PMI (descending), then text.
    pub bigrams: Vec<(String, f64)>,
    /// Tokens counted (N).
    pub tokens: u64,
    /// Distinct unigrams.
    pub distinct_unigrams: u64,
    /// Distinct bigrams.
    pub distinct_bigrams: u64,
    /// Runs spilled to disk while counting.
    pub runs: u64,
    /// Wikipedia articles counted.
    pub pages: u64,
    /// Pages skipped: other namespaces, redirects, or cut at a chunk edge.
    pub pages_skipped: u64,
}

/// Counts the text that `feed` sends, with `opts.threads` workers, spilling
/// to `scratch` (which must exist; the caller removes it).
///
/// # Errors
/// The first error of `feed` or of a worker (I/O on the scratch directory, a
/// corrupt bzip2 chunk).
pub fn count(
    opts: &NgramOptions,
    scratch: &Path,
    progress: &dyn Progress,
    feed: impl FnOnce(&Feed<'_>) -> Result<()>,
) -> Result<NgramCounts> {
    let started = std::time::Instant::now();
    let threads = opts.threads.max(1);
    let (tx, rx) = sync_channel::<Work>(threads * 2);
    let rx = Mutex::new(rx);
    let runs = Mutex::new((Vec::<PathBuf>::new(), Vec::<PathBuf>::new()));
    let pages = AtomicU64::new(0);
    let skipped = AtomicU64::new(0);
    let budget = (opts.memory / threads).max(1 << 10);
    let failed = AtomicBool::new(false);
    let (feed_result, worker_results) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let result = worker(&rx, scratch, budget, &runs, &pages, &skipped);
                    if result.is_err() {
                        // Stop the readers, and keep the channel drained until they have.
                        failed.store(true, Ordering::Relaxed);
                        while rx.lock().expect("no panics hold this lock").recv().is_ok() {}
                    }
                    result
                })
            })
            .collect();
        let fed = feed(&Feed {
            tx,
            failed: &failed,
        });
        let results: Vec<Result<()>> = workers
            .into_iter()
            .map(|w| w.join().expect("counting workers do not panic"))
            .collect();
        (fed, results)
    });
    // A worker's error explains a reader's stop: report it first.
    for r in worker_results {
        r?;
    }
    feed_result?;
    let (uni_runs, bi_runs) = runs.into_inner().expect("workers joined");
    tracing::debug!(
        "counting took {:.1}s, {} unigram and {} bigram runs spilled",
        started.elapsed().as_secs_f64(),
        uni_runs.len(),
        bi_runs.len()
    );
    let merging = std::time::Instant::now();
    progress.start("merging n-gram counts", 3, 0);
    let mut out = finalize(opts, scratch, &uni_runs, &bi_runs, progress)?;
    progress.finish();
    tracing::debug!("merging took {:.1}s", merging.elapsed().as_secs_f64());
    out.runs = (uni_runs.len() + bi_runs.len()) as u64;
    out.pages = pages.into_inner();
    out.pages_skipped = skipped.into_inner();
    Ok(out)
}

/// Counts of byte strings, with the strings in one arena: no allocation per
/// key, an exact memory figure, and clearing in O(1) after a spill.
struct StrCounts {
    table: HashTable<Slot>,
    arena: Vec<u8>,
    hasher: foldhash::fast::FixedState,
}

/// One counted string: its hash, its count, and the string itself, inline
/// when short (most words and bigrams: one cache line per lookup, no trip to
/// the arena) or as a range of the arena.
struct Slot {
    hash: u64,
    count: u64,
    len: u32,
    offset: u32,
    inline: [u8; INLINE],
}

/// Keys up to this many bytes are stored in the slot.
const INLINE: usize = 16;

impl Slot {
    fn key<'a>(&'a self, arena: &'a [u8]) -> &'a [u8] {
        let len = self.len as usize;
        if len <= INLINE {
            &self.inline[..len]
        } else {
            &arena[self.offset as usize..self.offset as usize + len]
        }
    }
}

impl StrCounts {
    fn new() -> StrCounts {
        StrCounts {
            table: HashTable::new(),
            arena: Vec::new(),
            hasher: foldhash::fast::FixedState::with_seed(0x5eed),
        }
    }

    /// Counts `key`, unless that needs the table or the arena to grow past
    /// `limit` bytes (counting the old and new allocations while they coexist);
    /// then returns false and counts nothing.
    fn add(&mut self, key: &[u8], limit: usize) -> bool {
        let hash = self.hasher.hash_one(key);
        let StrCounts { table, arena, .. } = self;
        if let Some(slot) =
            table.find_mut(hash, |s| s.len as usize == key.len() && s.key(arena) == key)
        {
            slot.count += 1;
            return true;
        }
        let slot_bytes = std::mem::size_of::<Slot>() + 1;
        let table_grows = table.len() == table.capacity();
        let arena_grows = key.len() > INLINE && arena.len() + key.len() > arena.capacity();
        if table_grows || arena_grows {
            let table_now = table.capacity() * slot_bytes;
            let table_peak = if table_grows {
                3 * table_now.max(16 * slot_bytes)
            } else {
                table_now
            };
            let arena_peak = if arena_grows {
                3 * arena.capacity().max(key.len() * 64)
            } else {
                arena.capacity()
            };
            let offsets_full = arena.len() + key.len() > u32::MAX as usize;
            if (offsets_full || table_peak + arena_peak + (table.len() + 1) * 16 > limit)
                && !table.is_empty()
            {
                return false;
            }
        }
        let mut slot = Slot {
            hash,
            count: 1,
            len: key.len() as u32,
            offset: 0,
            inline: [0; INLINE],
        };
        if key.len() <= INLINE {
            slot.inline[..key.len()].copy_from_slice(key);
        } else {
            slot.offset = arena.len() as u32;
            arena.extend_from_slice(key);
        }
        table.insert_unique(hash, slot, |s| s.hash);
        true
    }

    /// Bytes held: the arena, the table's slots (and control bytes), and the
    /// 16 bytes per entry that sorting for a spill will take.
    fn bytes(&self) -> usize {
        self.arena.capacity()
            + self.table.capacity() * 8 / 7 * (std::mem::size_of::<Slot>() + 1)
            + self.table.len() * 16
    }

    /// Writes the counts as a sorted run and empties the counter.
    fn spill(&mut self, dir: &Path, prefix: &str) -> Result<Option<PathBuf>> {
        if self.table.is_empty() {
            return Ok(None);
        }
        let arena = &self.arena;
        // Sort references to the slots (16 bytes an entry, with an 8-byte
        // big-endian key prefix that settles most comparisons without a memcmp).
        let mut entries: Vec<(u64, &Slot)> = self
            .table
            .iter()
            .map(|s| {
                let key = s.key(arena);
                let mut head = [0u8; 8];
                let n = key.len().min(8);
                head[..n].copy_from_slice(&key[..n]);
                (u64::from_be_bytes(head), s)
            })
            .collect();
        entries.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| a.1.key(arena).cmp(b.1.key(arena)))
        });
        let run = write_count_run(
            dir,
            prefix,
            entries.iter().map(|(_, s)| (s.key(arena), s.count)),
        )?;
        drop(entries);
        // Free the memory, not just the entries: the budget counts capacity.
        self.table = HashTable::new();
        self.arena = Vec::new();
        Ok(Some(run))
    }
}

/// A worker's unigram and bigram counts, spilled to sorted runs whenever
/// they would grow past the worker's memory budget.
struct Maps<'a> {
    uni: StrCounts,
    bi: StrCounts,
    key: Vec<u8>,
    budget: usize,
    dir: &'a Path,
    runs: (Vec<PathBuf>, Vec<PathBuf>),
}

impl<'a> Maps<'a> {
    fn new(budget: usize, dir: &'a Path) -> Maps<'a> {
        Maps {
            uni: StrCounts::new(),
            bi: StrCounts::new(),
            key: Vec::new(),
            budget,
            dir,
            runs: (Vec::new(), Vec::new()),
        }
    }

    /// Counts the tokens of `text`; bigrams do not cross line breaks (lines are
    /// documents or paragraphs), so the result does not depend on how text is cut into work.
    fn count_text(&mut self, text: &str) -> Result<()> {
        for line in text.split('\n') {
            self.count_line(line)?;
        }
        Ok(())
    }

    fn count_line(&mut self, text: &str) -> Result<()> {
        let mut prev: Option<&str> = None;
        let mut failed = None;
        for_each_token(text, |tok| {
            if failed.is_some() {
                return;
            }
            if is_punctuation(tok) {
                prev = None;
                return;
            }
            if let Err(e) = self.add(tok.as_bytes(), false) {
                failed = Some(e);
                return;
            }
            if let Some(p) = prev {
                let mut key = std::mem::take(&mut self.key);
                key.clear();
                key.extend_from_slice(p.as_bytes());
                key.push(b' ');
                key.extend_from_slice(tok.as_bytes());
                if let Err(e) = self.add(&key, true) {
                    failed = Some(e);
                }
                self.key = key;
            }
            prev = Some(tok);
        });
        failed.map_or(Ok(()), Err)
    }

    /// Counts `key` in one table, spilling both first if it would outgrow the budget.
    fn add(&mut self, key: &[u8], bigram: bool) -> Result<()> {
        let (table, other) = if bigram {
            (&mut self.bi, &self.uni)
        } else {
            (&mut self.uni, &self.bi)
        };
        if !table.add(key, self.budget.saturating_sub(other.bytes())) {
            self.spill()?;
            let table = if bigram { &mut self.bi } else { &mut self.uni };
            table.add(key, usize::MAX);
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        self.runs.0.extend(self.uni.spill(self.dir, "uni")?);
        self.runs.1.extend(self.bi.spill(self.dir, "bi")?);
        Ok(())
    }
}

fn worker(
    rx: &Mutex<Receiver<Work>>,
    scratch: &Path,
    budget: usize,
    runs: &Mutex<(Vec<PathBuf>, Vec<PathBuf>)>,
    pages: &AtomicU64,
    skipped: &AtomicU64,
) -> Result<()> {
    let mut maps = Maps::new(budget, scratch);
    loop {
        let work = rx.lock().expect("no panics hold this lock").recv();
        let Ok(work) = work else { break };
        match work {
            Work::Text(text) => maps.count_text(&text)?,
            Work::Xml(xml) => count_pages(&xml, &mut maps, pages, skipped)?,
            Work::Bz2(bytes) => {
                let xml = wikipedia::decompress_bz2(&bytes)?;
                count_pages(&xml, &mut maps, pages, skipped)?;
            }
        }
    }
    maps.spill()?;
    let mut shared = runs.lock().expect("no panics hold this lock");
    shared.0.append(&mut maps.runs.0);
    shared.1.append(&mut maps.runs.1);
    Ok(())
}

fn count_pages(
    xml: &str,
    maps: &mut Maps<'_>,
    pages: &AtomicU64,
    skipped: &AtomicU64,
) -> Result<()> {
    let (mut n, mut s) = (0, 0);
    let mut result = Ok(());
    wikipedia::for_each_article(xml, |text| match text {
        Some(t) => {
            n += 1;
            if result.is_ok() {
                result = maps.count_text(&t);
            }
        }
        None => s += 1,
    });
    pages.fetch_add(n, Ordering::Relaxed);
    skipped.fetch_add(s, Ordering::Relaxed);
    result
}

/// Keeps the best `keep` items of `v` by `better` order (amortised).
fn trim<T>(v: &mut Vec<T>, keep: usize, cmp: impl Fn(&T, &T) -> std::cmp::Ordering) {
    if v.len() > keep.saturating_mul(2).max(1024) {
        v.sort_by(&cmp);
        v.truncate(keep);
    }
}

/// A cursor over the sorted unigram file, for merge joins.
struct UnigramCursor {
    reader: RunReader,
    live: bool,
}

impl UnigramCursor {
    fn open(path: &Path) -> Result<UnigramCursor> {
        let mut reader = RunReader::open(path)?;
        let live = reader.advance()?;
        Ok(UnigramCursor { reader, live })
    }

    /// The count of `word`; words must be asked for in ascending order.
    fn count_of(&mut self, word: &[u8]) -> Result<u64> {
        while self.live {
            match self.reader.key.as_slice().cmp(word) {
                std::cmp::Ordering::Less => self.live = self.reader.advance()?,
                std::cmp::Ordering::Equal => return Ok(value_u64(&self.reader.value)),
                std::cmp::Ordering::Greater => return Ok(0),
            }
        }
        Ok(0)
    }
}

fn finalize(
    opts: &NgramOptions,
    scratch: &Path,
    uni_runs: &[PathBuf],
    bi_runs: &[PathBuf],
    progress: &dyn Progress,
) -> Result<NgramCounts> {
    use std::io::Write;
    let mut out = NgramCounts::default();
    let by_count = |a: &(String, u64), b: &(String, u64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0));
    let by_pmi =
        |a: &(String, f64), b: &(String, f64)| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0));

    // 1. Unigrams: one sorted, summed file; N; survivors.
    let uni_runs = cascade(uni_runs.to_vec(), scratch, "uni-merged", true)?;
    let bi_runs = cascade(bi_runs.to_vec(), scratch, "bi-merged", true)?;
    let (uni_runs, bi_runs) = (uni_runs.as_slice(), bi_runs.as_slice());
    let uni_path = scratch.join("unigrams.sorted");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&uni_path).at(&uni_path)?);
        let mut merge = SumMerge::new(uni_runs)?;
        while let Some((word, c)) = merge.next_count()? {
            out.tokens += c;
            out.distinct_unigrams += 1;
            if c >= opts.min_count {
                out.unigrams
                    .push((String::from_utf8_lossy(word).into_owned(), c));
                trim(&mut out.unigrams, opts.keep, by_count);
            }
            w.write_all(&(word.len() as u32).to_le_bytes())
                .at(&uni_path)?;
            w.write_all(word).at(&uni_path)?;
            w.write_all(&8u32.to_le_bytes()).at(&uni_path)?;
            w.write_all(&c.to_le_bytes()).at(&uni_path)?;
        }
        w.flush().at(&uni_path)?;
    }
    out.unigrams.sort_by(by_count);
    out.unigrams.truncate(opts.keep);
    progress.advance(1);

    // 2. Bigrams joined on the first word, pruned by the PMI bound, re-sorted by the second.
    let n = out.tokens as f64;
    let reachable = |c: u64| c > 0 && (n / c as f64).log2() >= opts.min_pmi - 1e-9;
    let mut by_second = Sorter::new(scratch, "bi2", opts.memory.max(1 << 10));
    {
        let mut merge = SumMerge::new(bi_runs)?;
        let mut first = UnigramCursor::open(&uni_path)?;
        while let Some((key, c_ab)) = merge.next_count()? {
            out.distinct_bigrams += 1;
            if c_ab < opts.bigram_min_count {
                continue;
            }
            let Some(space) = key.iter().position(|&b| b == b' ') else {
                continue;
            };
            let c_a = first.count_of(&key[..space])?;
            if !reachable(c_a) {
                continue;
            }
            let mut value = Vec::with_capacity(16 + space);
            value.extend_from_slice(&c_ab.to_le_bytes());
            value.extend_from_slice(&c_a.to_le_bytes());
            value.extend_from_slice(&key[..space]);
            by_second.push(key[space + 1..].to_vec(), value)?;
        }
    }
    progress.advance(1);

    // 3. Joined on the second word: PMI.
    let runs = cascade(by_second.finish()?, scratch, "bi2-merged", false)?;
    let mut merge = Merge::new(&runs)?;
    let mut second = UnigramCursor::open(&uni_path)?;
    while let Some((b, value)) = merge.next_record()? {
        let c_b = second.count_of(b)?;
        let c_ab = value_u64(&value[..8]);
        let c_a = value_u64(&value[8..16]);
        if c_b == 0 {
            continue;
        }
        let pmi = (c_ab as f64 * n / (c_a as f64 * c_b as f64)).log2();
        if pmi >= opts.min_pmi {
            let a = String::from_utf8_lossy(&value[16..]);
            out.bigrams
                .push((format!("{a} {}", String::from_utf8_lossy(b)), pmi));
            trim(&mut out.bigrams, opts.keep, by_pmi);
        }
    }
    out.bigrams.sort_by(by_pmi);
    out.bigrams.truncate(opts.keep);
    progress.advance(1);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wit_contract::NoProgress;

    fn opts(memory: usize, min_pmi: f64) -> NgramOptions {
        NgramOptions {
            min_count: 2,
            min_pmi,
            bigram_min_count: 1,
            keep: 1000,
            memory,
            threads: 3,
        }
    }

    fn run(texts: &[&str], o: &NgramOptions) -> NgramCounts {
        let dir = tempfile::tempdir().unwrap();
        count(o, dir.path(), &NoProgress, |feed| {
            for t in texts {
                assert!(feed.send(Work::Text(t.to_string())));
            }
            Ok(())
        })
        .unwrap()
    }

    #[test]
    fn pmi_matches_a_hand_computed_example() {
        // Tokens: "new york is big , new york is old , a cat"
        // N = 10 (commas are not counted). c(new york) = 2, c(new) = 2, c(york) = 2:
        // PMI = log2(2 * 10 / (2 * 2)) = log2(5) = 2.3219...
        // c(is big) = 1, c(is) = 2, c(big) = 1: log2(1 * 10 / 2) = log2(5) as well;
        // c(york is) = 2, c(york) = 2, c(is) = 2: log2(5). c(a cat): log2(10) = 3.3219.
        let c = run(
            &["new york is big, new york is old, a cat"],
            &opts(1 << 20, 3.0),
        );
        assert_eq!(c.tokens, 10);
        assert_eq!(c.bigrams.len(), 1);
        assert_eq!(c.bigrams[0].0, "a cat");
        assert!((c.bigrams[0].1 - 10f64.log2()).abs() < 1e-12);
        let c = run(
            &["new york is big, new york is old, a cat"],
            &opts(1 << 20, 2.0),
        );
        let names: Vec<&str> = c.bigrams.iter().map(|b| b.0.as_str()).collect();
        assert_eq!(
            names,
            vec!["a cat", "is big", "is old", "new york", "york is"]
        );
        assert!((c.bigrams[3].1 - 5f64.log2()).abs() < 1e-12);
        // A comma breaks the chain: no "big new" bigram.
        assert!(!names.contains(&"big new"));
        assert_eq!(
            c.unigrams,
            vec![
                ("is".to_string(), 2),
                ("new".to_string(), 2),
                ("york".to_string(), 2)
            ]
        );
    }

    #[test]
    fn spilling_gives_the_same_result_as_memory() {
        let mut texts = Vec::new();
        for i in 0..300 {
            texts.push(format!(
                "w{} w{} common w{} rare{i} pair{} pair{}x",
                i % 17,
                i % 5,
                i % 3,
                i % 40,
                i % 40
            ));
        }
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let big = run(&texts, &opts(1 << 30, 4.0));
        let small = run(&texts, &opts(1, 4.0));
        assert!(small.runs > big.runs, "{} vs {}", small.runs, big.runs);
        assert_eq!(big.unigrams, small.unigrams);
        assert_eq!(big.bigrams, small.bigrams);
        assert_eq!(
            (big.tokens, big.distinct_bigrams),
            (small.tokens, small.distinct_bigrams)
        );
        assert!(!big.bigrams.is_empty());
    }
}
