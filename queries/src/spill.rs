//! External sorting: records that do not fit in memory are written as sorted
//! runs to disk and read back as one sorted stream.
//!
//! A record is a byte-string key and a byte-string value. Runs are plain files
//! of `[u32 key length][key][u32 value length][value]`, little-endian; they are
//! scratch files of one process and live in a directory the caller removes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
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

fn write_record(w: &mut impl Write, k: &[u8], v: &[u8]) -> std::io::Result<()> {
    w.write_all(&(k.len() as u32).to_le_bytes())?;
    w.write_all(k)?;
    w.write_all(&(v.len() as u32).to_le_bytes())?;
    w.write_all(v)
}

/// Reads one run file in order.
pub struct RunReader {
    path: PathBuf,
    reader: BufReader<File>,
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
        })
    }

    /// The next record, or `None` at the end.
    ///
    /// # Errors
    /// [`wit_contract::Error::Io`] if the file is short or unreadable.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        let mut len = [0u8; 4];
        match self.reader.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(wit_contract::Error::io(&self.path, e)),
        }
        let mut key = vec![0; u32::from_le_bytes(len) as usize];
        self.reader.read_exact(&mut key).at(&self.path)?;
        self.reader.read_exact(&mut len).at(&self.path)?;
        let mut value = vec![0; u32::from_le_bytes(len) as usize];
        self.reader.read_exact(&mut value).at(&self.path)?;
        Ok(Some((key, value)))
    }
}

/// A record at the head of run `.1`, ordered by key, then run.
type Head = Reverse<(Vec<u8>, usize, Vec<u8>)>;

/// Merges sorted runs into one sorted stream (ties in run order).
pub struct Merge {
    readers: Vec<RunReader>,
    heap: BinaryHeap<Head>,
}

impl Merge {
    /// Opens every run.
    ///
    /// # Errors
    /// As [`RunReader`].
    pub fn new(runs: &[PathBuf]) -> Result<Merge> {
        let mut readers = Vec::with_capacity(runs.len());
        let mut heap = BinaryHeap::with_capacity(runs.len());
        for (i, path) in runs.iter().enumerate() {
            let mut r = RunReader::open(path)?;
            if let Some((k, v)) = r.next_record()? {
                heap.push(Reverse((k, i, v)));
            }
            readers.push(r);
        }
        Ok(Merge { readers, heap })
    }

    /// The next record in key order.
    ///
    /// # Errors
    /// As [`RunReader::next_record`].
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        let Some(Reverse((k, i, v))) = self.heap.pop() else {
            return Ok(None);
        };
        if let Some((nk, nv)) = self.readers[i].next_record()? {
            self.heap.push(Reverse((nk, i, nv)));
        }
        Ok(Some((k, v)))
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
    pending: Option<Record>,
}

impl SumMerge {
    /// Opens every run.
    ///
    /// # Errors
    /// As [`Merge::new`].
    pub fn new(runs: &[PathBuf]) -> Result<SumMerge> {
        let mut merge = Merge::new(runs)?;
        let pending = merge.next_record()?;
        Ok(SumMerge { merge, pending })
    }

    /// The next key with its summed count.
    ///
    /// # Errors
    /// As [`Merge::next_record`].
    pub fn next_count(&mut self) -> Result<Option<(Vec<u8>, u64)>> {
        let Some((key, v)) = self.pending.take() else {
            return Ok(None);
        };
        let mut sum = value_u64(&v);
        loop {
            match self.merge.next_record()? {
                Some((k, v)) if k == key => sum += value_u64(&v),
                other => {
                    self.pending = other;
                    return Ok(Some((key, sum)));
                }
            }
        }
    }
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
        self.bytes += key.len() + value.len() + 64;
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
            got.push((String::from_utf8(k).unwrap(), n));
        }
        let mut want = std::collections::BTreeMap::<String, u64>::new();
        for (i, w) in words.iter().cycle().take(70).enumerate() {
            *want.entry(w.to_string()).or_default() += i as u64 % 3 + 1;
        }
        assert_eq!(got, want.into_iter().collect::<Vec<_>>());
    }
}
