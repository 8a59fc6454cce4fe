//! External sorting: records that do not fit in memory are written as sorted
//! runs to disk and read back as one sorted stream.
//!
//! A record is a byte-string key and a byte-string value. Runs are plain files
//! of `[u32 key length][key][u32 value length][value]`, little-endian; they are
//! scratch files of one process and live in a directory the caller removes.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wit_contract::{IoContext, Result};

/// A key-value record.
pub type Record = (Vec<u8>, Vec<u8>);

static RUN_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `records` (sorted here) as a new run file in `dir`; returns its path.
///
/// # Errors
/// [`wit_contract::Error::Io`] naming the run file.
pub fn write_run(dir: &Path, prefix: &str, records: &mut [Record]) -> Result<PathBuf> {
    records.sort_unstable();
    let path = dir.join(format!(
        "{prefix}-{:06}.run",
        RUN_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&path).at(&path)?);
    for (k, v) in records.iter() {
        write_record(&mut w, k, v).at(&path)?;
    }
    w.flush().at(&path)?;
    Ok(path)
}

/// Writes already sorted `(key, count)` entries as a new run file in `dir`.
///
/// # Errors
/// [`wit_contract::Error::Io`] naming the run file.
pub fn write_count_run<'a>(
    dir: &Path,
    prefix: &str,
    entries: impl Iterator<Item = (&'a [u8], u64)>,
) -> Result<PathBuf> {
    let path = dir.join(format!(
        "{prefix}-{:06}.run",
        RUN_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&path).at(&path)?);
    for (k, v) in entries {
        write_record(&mut w, k, &v.to_le_bytes()).at(&path)?;
    }
    w.flush().at(&path)?;
    Ok(path)
}

fn write_record(w: &mut impl Write, k: &[u8], v: &[u8]) -> std::io::Result<()> {
    w.write_all(&(k.len() as u32).to_le_bytes())?;
    w.write_all(k)?;
    w.write_all(&(v.len() as u32).to_le_bytes())?;
    w.write_all(v)
}

/// Reads one run file in order, into buffers it reuses.
pub struct RunReader {
    path: PathBuf,
    reader: BufReader<File>,
    /// The current record's key (valid after [`RunReader::advance`] returned true).
    pub key: Vec<u8>,
    /// The current record's value.
    pub value: Vec<u8>,
    /// The first 8 bytes of `key`, big-endian, zero-padded: compares like the key
    /// as far as it goes, so most merge comparisons need no memcmp.
    head: u64,
}

impl RunReader {
    /// Opens a run file.
    ///
    /// # Errors
    /// [`wit_contract::Error::Io`] naming it.
    pub fn open(path: &Path) -> Result<RunReader> {
        Ok(RunReader {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 18, File::open(path).at(path)?),
            key: Vec::new(),
            value: Vec::new(),
            head: 0,
        })
    }

    /// Reads the next record into `key` and `value`; false at the end.
    ///
    /// # Errors
    /// [`wit_contract::Error::Io`] if the file is short or unreadable.
    pub fn advance(&mut self) -> Result<bool> {
        let mut len = [0u8; 4];
        // A clean end is an end before a record's first byte; any other short
        // read is a damaged run, an error rather than silently fewer records.
        let mut got = 0;
        while got < 4 {
            match self.reader.read(&mut len[got..]).at(&self.path)? {
                0 if got == 0 => return Ok(false),
                0 => {
                    return Err(wit_contract::Error::io(
                        &self.path,
                        std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "run file ends inside a record",
                        ),
                    ));
                }
                n => got += n,
            }
        }
        self.key.resize(u32::from_le_bytes(len) as usize, 0);
        self.reader.read_exact(&mut self.key).at(&self.path)?;
        self.reader.read_exact(&mut len).at(&self.path)?;
        self.value.resize(u32::from_le_bytes(len) as usize, 0);
        self.reader.read_exact(&mut self.value).at(&self.path)?;
        let mut head = [0u8; 8];
        let n = self.key.len().min(8);
        head[..n].copy_from_slice(&self.key[..n]);
        self.head = u64::from_be_bytes(head);
        Ok(true)
    }
}

/// Merges sorted runs into one sorted stream (ties in run order), without
/// allocating per record: a binary heap of run indices ordered by each run's
/// current key.
pub struct Merge {
    readers: Vec<RunReader>,
    heap: Vec<usize>,
    /// The run whose record was returned last; advanced on the next call.
    last: Option<usize>,
}

impl Merge {
    /// Opens every run.
    ///
    /// # Errors
    /// As [`RunReader`].
    pub fn new(runs: &[PathBuf]) -> Result<Merge> {
        let mut m = Merge {
            readers: Vec::with_capacity(runs.len()),
            heap: Vec::with_capacity(runs.len()),
            last: None,
        };
        for path in runs {
            let mut r = RunReader::open(path)?;
            let i = m.readers.len();
            let live = r.advance()?;
            m.readers.push(r);
            if live {
                m.heap.push(i);
                m.sift_up(m.heap.len() - 1);
            }
        }
        Ok(m)
    }

    fn less(&self, a: usize, b: usize) -> bool {
        let (ra, rb) = (&self.readers[a], &self.readers[b]);
        ra.head
            .cmp(&rb.head)
            .then_with(|| ra.key.cmp(&rb.key))
            .then(a.cmp(&b))
            .is_lt()
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.less(self.heap[i], self.heap[parent]) {
                self.heap.swap(i, parent);
                i = parent;
            } else {
                break;
            }
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut best = i;
            if l < self.heap.len() && self.less(self.heap[l], self.heap[best]) {
                best = l;
            }
            if r < self.heap.len() && self.less(self.heap[r], self.heap[best]) {
                best = r;
            }
            if best == i {
                return;
            }
            self.heap.swap(i, best);
            i = best;
        }
    }

    /// Moves to the next record in key order; returns its key and value, or
    /// `None` at the end.
    ///
    /// # Errors
    /// As [`RunReader::advance`].
    pub fn next_record(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        if let Some(i) = self.last.take() {
            // The top of the heap is still run i: advance it in place.
            if self.readers[i].advance()? {
                self.sift_down(0);
            } else {
                let end = self.heap.pop().expect("run i is in the heap");
                if !self.heap.is_empty() {
                    self.heap[0] = end;
                    self.sift_down(0);
                }
            }
        }
        let Some(&top) = self.heap.first() else {
            return Ok(None);
        };
        self.last = Some(top);
        let r = &self.readers[top];
        Ok(Some((&r.key, &r.value)))
    }
}

/// A u64 as a record value.
pub fn u64_value(n: u64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

/// A record value as a u64 (0 if malformed, which runs written here never are).
pub fn value_u64(v: &[u8]) -> u64 {
    v.get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Merges runs of u64 counts, summing the counts of equal keys.
pub struct SumMerge {
    merge: Merge,
    key: Vec<u8>,
    pending_key: Vec<u8>,
    pending: Option<u64>,
}

impl SumMerge {
    /// Opens every run.
    ///
    /// # Errors
    /// As [`Merge::new`].
    pub fn new(runs: &[PathBuf]) -> Result<SumMerge> {
        let mut merge = Merge::new(runs)?;
        let mut pending_key = Vec::new();
        let pending = merge.next_record()?.map(|(k, v)| {
            pending_key.extend_from_slice(k);
            value_u64(v)
        });
        Ok(SumMerge {
            merge,
            key: Vec::new(),
            pending_key,
            pending,
        })
    }

    /// The next key with its summed count; the key stays valid until the next call.
    ///
    /// # Errors
    /// As [`Merge::next_record`].
    pub fn next_count(&mut self) -> Result<Option<(&[u8], u64)>> {
        let Some(mut sum) = self.pending.take() else {
            return Ok(None);
        };
        std::mem::swap(&mut self.key, &mut self.pending_key);
        while let Some((k, v)) = self.merge.next_record()? {
            if k == self.key.as_slice() {
                sum += value_u64(v);
            } else {
                self.pending_key.clear();
                self.pending_key.extend_from_slice(k);
                self.pending = Some(value_u64(v));
                break;
            }
        }
        Ok(Some((&self.key, sum)))
    }
}

/// Runs merged at once at most: more would need more open files than many
/// systems allow a process (often 1,024).
pub const MAX_FAN_IN: usize = 128;

/// Merges groups of runs into fewer, longer runs until at most [`MAX_FAN_IN`]
/// remain, summing equal keys' u64 values when `sum` (count runs), keeping
/// every record otherwise. The merged inputs are deleted.
///
/// # Errors
/// As [`Merge`] and [`write_run`].
pub fn cascade(
    mut runs: Vec<PathBuf>,
    dir: &Path,
    prefix: &str,
    sum: bool,
) -> Result<Vec<PathBuf>> {
    while runs.len() > MAX_FAN_IN {
        let mut next = Vec::with_capacity(runs.len() / MAX_FAN_IN + 1);
        for group in runs.chunks(MAX_FAN_IN) {
            let path = dir.join(format!(
                "{prefix}-{:06}.run",
                RUN_SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            let mut w = BufWriter::with_capacity(1 << 20, File::create(&path).at(&path)?);
            if sum {
                let mut m = SumMerge::new(group)?;
                while let Some((k, n)) = m.next_count()? {
                    write_record(&mut w, k, &n.to_le_bytes()).at(&path)?;
                }
            } else {
                let mut m = Merge::new(group)?;
                while let Some((k, v)) = m.next_record()? {
                    write_record(&mut w, k, v).at(&path)?;
                }
            }
            w.flush().at(&path)?;
            for run in group {
                let _ = std::fs::remove_file(run);
            }
            next.push(path);
        }
        runs = next;
    }
    Ok(runs)
}

/// Collects records in memory up to a byte budget, spilling sorted runs to `dir`.
pub struct Sorter {
    dir: PathBuf,
    prefix: String,
    budget: usize,
    bytes: usize,
    records: Vec<Record>,
    runs: Vec<PathBuf>,
}

impl Sorter {
    /// A sorter spilling to `dir` whenever it holds more than `budget` bytes.
    pub fn new(dir: &Path, prefix: &str, budget: usize) -> Sorter {
        Sorter {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            budget,
            bytes: 0,
            records: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Adds a record.
    ///
    /// # Errors
    /// As [`write_run`].
    pub fn push(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        // Two small allocations and their headers, the tuple, and the vector's slack.
        self.bytes += key.len() + value.len() + 112;
        self.records.push((key, value));
        if self.bytes > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        if !self.records.is_empty() {
            let run = write_run(&self.dir, &self.prefix, &mut self.records)?;
            self.runs.push(run);
            self.records.clear();
            self.bytes = 0;
        }
        Ok(())
    }

    /// Spills what is left and returns every run.
    ///
    /// # Errors
    /// As [`write_run`].
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        self.spill()?;
        Ok(self.runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cascade_reduces_many_runs_and_keeps_sums() {
        let dir = tempfile::tempdir().unwrap();
        let mut runs = Vec::new();
        for i in 0..(MAX_FAN_IN * 2 + 5) {
            let mut recs = vec![
                (b"common".to_vec(), u64_value(1)),
                (format!("k{i}").into_bytes(), u64_value(2)),
            ];
            runs.push(write_run(dir.path(), "t", &mut recs).unwrap());
        }
        let runs = cascade(runs, dir.path(), "c", true).unwrap();
        assert!(runs.len() <= MAX_FAN_IN);
        let mut m = SumMerge::new(&runs).unwrap();
        let mut total = 0;
        let mut common = 0;
        while let Some((k, n)) = m.next_count().unwrap() {
            total += n;
            if k == b"common" {
                common = n;
            }
        }
        assert_eq!(common, (MAX_FAN_IN * 2 + 5) as u64);
        assert_eq!(total, 3 * (MAX_FAN_IN * 2 + 5) as u64);
    }

    #[test]
    fn sorter_spills_and_merges_in_order_with_sums() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sorter::new(dir.path(), "t", 300);
        let words = ["pear", "apple", "fig", "apple", "kiwi", "fig", "apple"];
        for (i, w) in words.iter().cycle().take(70).enumerate() {
            s.push(w.as_bytes().to_vec(), u64_value(i as u64 % 3 + 1))
                .unwrap();
        }
        let runs = s.finish().unwrap();
        assert!(runs.len() > 3, "expected spills, got {} runs", runs.len());
        let mut m = SumMerge::new(&runs).unwrap();
        let mut got = Vec::new();
        while let Some((k, n)) = m.next_count().unwrap() {
            got.push((String::from_utf8(k.to_vec()).unwrap(), n));
        }
        let mut want = std::collections::BTreeMap::<String, u64>::new();
        for (i, w) in words.iter().cycle().take(70).enumerate() {
            *want.entry(w.to_string()).or_default() += i as u64 % 3 + 1;
        }
        assert_eq!(got, want.into_iter().collect::<Vec<_>>());
    }
}
