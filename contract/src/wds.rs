//! WebDataset shards: the tar layout that `wit download` writes and the
//! trainer reads, as the Python `webdataset` library defines it.
//!
//! - A sample is a run of **adjacent** tar members sharing a key: the key is
//!   the member name up to the first `.` of its last path component, the rest
//!   (lowercased) is the field: `000010005.jpg` is field `jpg` of sample
//!   `000010005`. Keys therefore hold no dots in their last component
//!   (directories may: `a.b/c.jpg` is key `a.b/c`). Members whose last
//!   component has no `.` or starts with one (macOS's `._0000.jpg`) are
//!   skipped and counted, as webdataset skips them.
//! - [`ShardWriter`] writes USTAR members, mode 0444, fields of a sample in
//!   sorted order (as webdataset's `TarWriter` does), with a fixed mtime so
//!   the same samples give the same bytes.
//! - [`ShardReader`] reads plain or gzipped shards (`.tar`, `.tgz`,
//!   `.tar.gz`), skips non-files and metadata (`__*__`, `__*__/...`), flags
//!   samples whose key came earlier in the shard (not adjacent), and never
//!   panics on damage: a truncated or corrupt shard ends with an error item
//!   (the samples before it were returned; the one being read when the damage
//!   came is dropped unless the damage is in a member of the next key), and
//!   a sample that repeats a field is returned as an error item and skipped.
//! - [`ShardStream`] streams a list of shards (local, or through any
//!   [`Opener`]: `wit_net` opens http(s) URLs) epoch by epoch, counting
//!   damage in [`StreamCounts`].
//! - [`expand_braces`] turns `shards-{00000..00099}.tar` into shard names;
//!   [`epoch_order`] and [`ShuffleBuffer`] give the per-epoch shard order and
//!   the sample shuffle, seeded.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::sync::Arc;

/// One sample: its key and its fields (extension → bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The key (`__key__` in webdataset).
    pub key: String,
    /// Field name (extension, lowercased) to bytes.
    pub fields: BTreeMap<String, Vec<u8>>,
    /// The shard it came from (`__url__` in webdataset), as named to
    /// [`ShardReader::named`] or [`ShardStream`]; empty if unnamed.
    pub shard: Arc<str>,
    /// Members of this key came earlier in the shard, apart from this run
    /// of members: the tar is not grouped by key, so the sample is split
    /// (webdataset yields each run as its own sample too).
    pub split: bool,
}

/// Splits a member name into key and field, as webdataset's
/// `base_plus_ext` does (`^((?:.*/|)[^.]+)[.]([^/]*)$`): the key is the name
/// up to the first `.` of its last path component, the field the rest.
/// `None` (the member is skipped) when the last component has no `.` or
/// starts with one: hidden files such as macOS's `._0000.jpg`.
pub fn split_name(name: &str) -> Option<(&str, &str)> {
    let last = name.rfind('/').map_or(0, |i| i + 1);
    let dot = name[last..].find('.')? + last;
    if dot == last {
        return None;
    }
    Some((&name[..dot], &name[dot + 1..]))
}

/// Whether a member is webdataset metadata, skipped: a top-level
/// `__name__`, or any name that starts with `__name__/`.
pub fn is_meta(name: &str) -> bool {
    let top = !name.contains('/') && name.starts_with("__") && name.ends_with("__");
    let dir = name.strip_prefix("__").is_some_and(|rest| {
        let first = rest.split('/').next().unwrap_or("");
        // `__[^/]*__($|/)`: the first component ends with `__`, and the
        // name ends there or goes on with `/`.
        first.len() >= 2 && first.ends_with("__")
    });
    top || dir
}

/// Writes samples into one tar shard.
pub struct ShardWriter<W: Write> {
    builder: tar::Builder<W>,
    samples: u64,
}

impl<W: Write> ShardWriter<W> {
    /// A writer into `out`.
    pub fn new(out: W) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Deterministic);
        ShardWriter {
            builder,
            samples: 0,
        }
    }

    /// Appends one sample; `fields` are (extension, bytes), written sorted.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] for a key with a dot or an empty or
    /// repeated field; the writer's I/O errors.
    pub fn write(&mut self, key: &str, fields: &[(&str, &[u8])]) -> io::Result<()> {
        if key.is_empty() || key.contains('.') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("sample key {key:?} is empty or holds a dot"),
            ));
        }
        let mut sorted: Vec<&(&str, &[u8])> = fields.iter().collect();
        sorted.sort_by_key(|f| f.0);
        for pair in sorted.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("sample {key} has field {} twice", pair[0].0),
                ));
            }
        }
        for (ext, bytes) in sorted {
            if ext.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("sample {key} has an empty field name"),
                ));
            }
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o444);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            self.builder
                .append_data(&mut header, format!("{key}.{ext}"), *bytes)?;
        }
        self.samples += 1;
        Ok(())
    }

    /// Samples written so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Ends the archive (two zero blocks) and returns the output.
    ///
    /// # Errors
    /// The writer's I/O errors.
    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}

/// Why a shard or a sample could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The archive is damaged or ends early; nothing after this is read.
    Corrupt(String),
    /// A sample repeats a field; it is skipped.
    RepeatedField {
        /// The sample's key.
        key: String,
        /// The repeated field.
        field: String,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Corrupt(m) => write!(f, "corrupt or truncated shard: {m}"),
            ReadError::RepeatedField { key, field } => {
                write!(f, "sample {key} repeats field {field}")
            }
        }
    }
}

impl std::error::Error for ReadError {}

/// Opens a shard stream, gunzipping it if it starts with the gzip magic.
///
/// # Errors
/// The reader's I/O errors.
pub fn maybe_gunzip<R: Read + 'static>(mut input: R) -> io::Result<Box<dyn Read>> {
    let mut magic = [0u8; 2];
    let mut n = 0;
    while n < 2 {
        match input.read(&mut magic[n..])? {
            0 => break,
            k => n += k,
        }
    }
    let head = io::Cursor::new(magic[..n].to_vec()).chain(input);
    Ok(if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(head))
    } else {
        Box::new(head)
    })
}

/// Reads the samples of one shard, in order.
pub struct ShardReader<R: Read> {
    archive: tar::Archive<R>,
    shard: Arc<str>,
    skipped: u64,
}

impl<R: Read> ShardReader<R> {
    /// A reader over the (already decompressed) tar stream `input`.
    pub fn new(input: R) -> Self {
        Self::named(input, "")
    }

    /// A reader over `input` whose samples name `shard` as their source.
    pub fn named(input: R, shard: &str) -> Self {
        ShardReader {
            archive: tar::Archive::new(input),
            shard: Arc::from(shard),
            skipped: 0,
        }
    }

    /// Regular-file members skipped so far because webdataset skips them:
    /// no `.` in the last path component, or a hidden one (`._0000.jpg`).
    /// Metadata (`__*__`) and non-files are not counted.
    pub fn skipped_members(&self) -> u64 {
        self.skipped
    }

    /// Calls `each` with every sample or error, in order, until the shard
    /// ends or is found corrupt.
    ///
    /// # Errors
    /// None: damage is reported through `each` as [`ReadError`] items.
    pub fn for_each(&mut self, mut each: impl FnMut(Result<Sample, ReadError>)) {
        let entries = match self.archive.entries() {
            Ok(e) => e,
            Err(e) => return each(Err(ReadError::Corrupt(e.to_string()))),
        };
        let mut current: Option<Sample> = None;
        let mut broken: Option<String> = None; // key of a sample being skipped
        let mut seen: HashSet<String> = HashSet::new(); // keys of earlier samples
        let shard = self.shard.clone();
        let flush = |current: &mut Option<Sample>,
                     each: &mut dyn FnMut(Result<Sample, ReadError>)| {
            if let Some(s) = current.take() {
                each(Ok(s));
            }
        };
        for entry in entries {
            let mut entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    // A sample cut by the damage is lost with it.
                    each(Err(ReadError::Corrupt(e.to_string())));
                    return;
                }
            };
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = match entry.path() {
                Ok(p) => p.to_string_lossy().into_owned(),
                Err(e) => {
                    each(Err(ReadError::Corrupt(e.to_string())));
                    return;
                }
            };
            if is_meta(&name) {
                continue;
            }
            let Some((key, field)) = split_name(&name) else {
                self.skipped += 1;
                continue;
            };
            let (key, field) = (key.to_string(), field.to_ascii_lowercase());
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            if let Err(e) = entry.read_to_end(&mut bytes) {
                // A sample of another key before this member was complete.
                if current.as_ref().is_some_and(|s| s.key != key) {
                    flush(&mut current, &mut each);
                }
                each(Err(ReadError::Corrupt(format!("{name}: {e}"))));
                return;
            }
            if broken.as_deref() == Some(key.as_str()) {
                continue;
            }
            broken = None;
            if current.as_ref().is_some_and(|s| s.key != key) {
                flush(&mut current, &mut each);
            }
            let sample = current.get_or_insert_with(|| Sample {
                split: !seen.insert(key.clone()),
                key: key.clone(),
                fields: BTreeMap::new(),
                shard: shard.clone(),
            });
            if sample.fields.insert(field.clone(), bytes).is_some() {
                current = None;
                each(Err(ReadError::RepeatedField {
                    key: key.clone(),
                    field,
                }));
                broken = Some(key);
            }
        }
        flush(&mut current, &mut each);
    }
}

/// Expands brace patterns: `a-{000..012}.tar` (numeric ranges keep the
/// width of their first bound), `{train,val}` (alternatives), several per
/// pattern. A pattern without braces is returned as it is.
///
/// # Errors
/// A message naming the pattern if a brace is unbalanced or a range is not numeric.
pub fn expand_braces(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('{') else {
        if pattern.contains('}') {
            return Err(format!("{pattern}: unbalanced brace"));
        }
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find('}')
        .map(|i| open + i)
        .ok_or_else(|| format!("{pattern}: unbalanced brace"))?;
    let (head, body, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let choices: Vec<String> = if let Some((a, b)) = body.split_once("..") {
        let (lo, hi): (u64, u64) = match (a.parse(), b.parse()) {
            (Ok(lo), Ok(hi)) if lo <= hi => (lo, hi),
            _ => return Err(format!("{pattern}: bad range {{{body}}}")),
        };
        let width = a.len();
        (lo..=hi).map(|n| format!("{n:0width$}")).collect()
    } else {
        body.split(',').map(str::to_string).collect()
    };
    let rests = expand_braces(tail)?;
    let mut out = Vec::with_capacity(choices.len() * rests.len());
    for c in &choices {
        for rest in &rests {
            out.push(format!("{head}{c}{rest}"));
        }
    }
    Ok(out)
}

/// FNV-1a of `s`: a stable 64-bit hash of a name (a sample key, a parameter
/// name) to derive a seed from; the same on every machine and in every run.
pub fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// SplitMix64: a small seeded generator for shuffles.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Shuffles `items` (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// The order in which epoch `epoch` visits `n` shards: a permutation seeded
/// by `seed` and the epoch.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed ^ epoch.wrapping_mul(0xd134_2543_de82_ef95)).shuffle(&mut order);
    order
}

/// A shuffle buffer: holds up to `capacity` items and hands out a random one
/// each time a new one comes in (webdataset's `shuffle(n)`).
#[derive(Debug)]
pub struct ShuffleBuffer<T> {
    items: Vec<T>,
    capacity: usize,
    rng: SplitMix64,
}

impl<T> ShuffleBuffer<T> {
    /// A buffer of `capacity` (at least 1) items, seeded.
    pub fn new(capacity: usize, seed: u64) -> Self {
        ShuffleBuffer {
            items: Vec::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
            rng: SplitMix64::new(seed),
        }
    }

    /// Adds `item`; once the buffer is full, returns a random item out of it.
    pub fn push(&mut self, item: T) -> Option<T> {
        self.items.push(item);
        if self.items.len() > self.capacity {
            let i = self.rng.below(self.items.len());
            Some(self.items.swap_remove(i))
        } else {
            None
        }
    }

    /// The items left, in random order.
    pub fn drain(&mut self) -> Vec<T> {
        let mut rest = std::mem::take(&mut self.items);
        self.rng.shuffle(&mut rest);
        rest
    }
}

/// Opens a shard by its name: a local path, or whatever else an
/// implementation knows (`wit_net` opens http(s) URLs).
pub trait Opener: Sync {
    /// The shard's bytes, as a stream.
    ///
    /// # Errors
    /// Why it cannot be opened.
    fn open(&self, shard: &str) -> io::Result<Box<dyn Read + Send>>;
}

/// Opens local files (`path` or `file://path`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalOpener;

impl Opener for LocalOpener {
    fn open(&self, shard: &str) -> io::Result<Box<dyn Read + Send>> {
        let path = shard.strip_prefix("file://").unwrap_or(shard);
        Ok(Box::new(std::fs::File::open(path)?))
    }
}

/// What a pass over shards met.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamCounts {
    /// Shards read to their end.
    pub shards: u64,
    /// Samples handed out.
    pub samples: u64,
    /// Shards that could not be opened.
    pub unopenable: u64,
    /// Shards that turned out truncated or corrupt (their samples before the
    /// damage were handed out).
    pub corrupt: u64,
    /// Samples skipped because they repeat a field.
    pub bad_samples: u64,
    /// Members skipped as webdataset skips them (hidden, no extension).
    pub skipped_members: u64,
    /// Samples handed out whose key came earlier in their shard, apart
    /// (the shard is not grouped by key: each run is a sample of its own).
    pub split_samples: u64,
}

impl StreamCounts {
    /// Adds `other`'s counts to these (two streams' passes as one).
    pub fn add(&mut self, other: &StreamCounts) {
        self.shards += other.shards;
        self.samples += other.samples;
        self.unopenable += other.unopenable;
        self.corrupt += other.corrupt;
        self.bad_samples += other.bad_samples;
        self.skipped_members += other.skipped_members;
        self.split_samples += other.split_samples;
    }
}

/// Streams the samples of a list of shards, epoch by epoch: the shards in a
/// seeded order that changes every epoch, the samples through a shuffle
/// buffer. Damage is counted and skipped, never fatal.
pub struct ShardStream<'a> {
    shards: Vec<String>,
    opener: &'a dyn Opener,
    seed: u64,
    buffer: usize,
    /// (this stream, streams): see [`ShardStream::part`].
    part: (usize, usize),
    /// Shards drawn with replacement: see [`ShardStream::resampled`].
    resampled: bool,
}

/// Which shard an epoch's stream reads next.
enum Draw {
    /// The epoch's order, dealt round-robin to the streams.
    Dealt(std::vec::IntoIter<usize>),
    /// Drawn with replacement; never again those that gave nothing.
    Resampled {
        rng: SplitMix64,
        n: usize,
        barren: HashSet<usize>,
    },
}

impl Draw {
    fn next(&mut self) -> Option<usize> {
        match self {
            Draw::Dealt(order) => order.next(),
            Draw::Resampled { rng, n, barren } => {
                if barren.len() >= *n {
                    return None;
                }
                loop {
                    let i = rng.below(*n);
                    if !barren.contains(&i) {
                        return Some(i);
                    }
                }
            }
        }
    }

    /// Shard `i` could not be opened or held no sample.
    fn gave_nothing(&mut self, i: usize) {
        if let Draw::Resampled { barren, .. } = self {
            barren.insert(i);
        }
    }
}

impl<'a> ShardStream<'a> {
    /// A stream over `shards` (names for `opener`; brace patterns expanded
    /// with [`expand_braces`] first), with a shuffle buffer of `buffer`
    /// samples (0 or 1: no shuffling, and shards in the given order).
    pub fn new(shards: Vec<String>, opener: &'a dyn Opener, seed: u64, buffer: usize) -> Self {
        ShardStream {
            shards,
            opener,
            seed,
            buffer,
            part: (0, 1),
            resampled: false,
        }
    }

    /// Draws shards with replacement (webdataset's `ResampledShards`,
    /// OpenCLIP's `--dataset-resampled`): each epoch of each stream of
    /// [`ShardStream::part`] reads shards drawn uniformly from all of them,
    /// seeded by the seed, the epoch and the stream, without end until
    /// `each` says stop. A shard that cannot be opened or holds no sample
    /// is not drawn again in that epoch; the epoch ends when no shard is
    /// left. For corpora whose shards do not divide evenly among streams,
    /// with the epoch's length set by its reader (a sample count).
    pub fn resampled(mut self, on: bool) -> Self {
        self.resampled = on;
        self
    }

    /// Stream `stream` of `streams` (`stream < streams`): each epoch's shard
    /// order dealt round-robin, this stream taking the shards at positions
    /// `stream`, `stream + streams`, ... of it, through a shuffle buffer of
    /// its own (seeded by the seed, the epoch and the stream). The streams
    /// of an epoch are disjoint and together read its shards; stream 0 of
    /// 1 is the whole stream. How data-parallel ranks split an epoch.
    ///
    /// # Panics
    /// `stream >= streams`.
    pub fn part(mut self, stream: usize, streams: usize) -> Self {
        assert!(stream < streams, "stream {stream} of {streams}");
        self.part = (stream, streams);
        self
    }

    /// Hands every sample of epoch `epoch` to `each`; returns what it met.
    /// `each` returns `false` to stop early.
    pub fn epoch(&self, epoch: u64, mut each: impl FnMut(Sample) -> bool) -> StreamCounts {
        let mut counts = StreamCounts::default();
        let (stream, streams) = self.part;
        let mut draw = if self.resampled {
            let salt = (stream as u64 + 1).wrapping_mul(0x8cb9_2ba7_2f3d_8dd7);
            Draw::Resampled {
                rng: SplitMix64::new(self.seed ^ epoch.wrapping_mul(0xa076_1d64_78bd_642f) ^ salt),
                n: self.shards.len(),
                barren: HashSet::new(),
            }
        } else {
            let order: Vec<usize> = if self.buffer > 1 {
                epoch_order(self.shards.len(), self.seed, epoch)
            } else {
                (0..self.shards.len()).collect()
            };
            let mine: Vec<usize> = order
                .into_iter()
                .enumerate()
                .filter(|(at, _)| at % streams == stream)
                .map(|(_, i)| i)
                .collect();
            Draw::Dealt(mine.into_iter())
        };
        // Stream 0's buffer is seeded as the whole stream's.
        let salt = (stream as u64).wrapping_mul(0xd6e8_feb8_6659_fd93);
        let mut shuffle =
            ShuffleBuffer::new(self.buffer.max(1), self.seed ^ epoch.rotate_left(17) ^ salt);
        let mut go_on = true;
        while go_on && let Some(i) = draw.next() {
            let name = &self.shards[i];
            let stream = match self.opener.open(name).and_then(maybe_gunzip) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("{name}: cannot open ({e}); skipped");
                    counts.unopenable += 1;
                    draw.gave_nothing(i);
                    continue;
                }
            };
            let mut read = 0u64;
            let mut corrupt = false;
            let mut reader = ShardReader::named(stream, name);
            reader.for_each(|r| match r {
                Ok(sample) if go_on => {
                    read += 1;
                    if sample.split {
                        counts.split_samples += 1;
                    }
                    let out = if self.buffer > 1 {
                        shuffle.push(sample)
                    } else {
                        Some(sample)
                    };
                    if let Some(s) = out {
                        counts.samples += 1;
                        go_on = each(s);
                    }
                }
                Ok(_) => {}
                Err(ReadError::RepeatedField { key, field }) => {
                    tracing::warn!("{name}: sample {key} repeats field {field}; skipped");
                    counts.bad_samples += 1;
                }
                Err(e @ ReadError::Corrupt(_)) => {
                    tracing::warn!("{name}: {e}; the rest of the shard is skipped");
                    corrupt = true;
                }
            });
            counts.skipped_members += reader.skipped_members();
            if read == 0 {
                draw.gave_nothing(i);
            }
            if corrupt {
                counts.corrupt += 1;
            } else {
                counts.shards += 1;
            }
        }
        if go_on {
            for s in shuffle.drain() {
                counts.samples += 1;
                if !each(s) {
                    break;
                }
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: Vec<u8>) -> (Vec<Sample>, Vec<String>) {
        let mut samples = Vec::new();
        let mut errors = Vec::new();
        ShardReader::new(maybe_gunzip(io::Cursor::new(bytes)).unwrap()).for_each(|r| match r {
            Ok(s) => samples.push(s),
            Err(e) => errors.push(e.to_string()),
        });
        (samples, errors)
    }

    #[test]
    fn round_trip_sorted_fields_and_deterministic_bytes() {
        let write = || {
            let mut w = ShardWriter::new(Vec::new());
            w.write("000000000", &[("txt", b"a cat"), ("jpg", b"\xff\xd8jpeg")])
                .unwrap();
            w.write("000000001", &[("json", b"{}"), ("txt", b"a dog")])
                .unwrap();
            w.finish().unwrap()
        };
        let bytes = write();
        assert_eq!(bytes, write(), "same samples, same bytes");
        let (samples, errors) = read_all(bytes.clone());
        assert!(errors.is_empty());
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].key, "000000000");
        assert_eq!(
            samples[0].fields.keys().collect::<Vec<_>>(),
            vec!["jpg", "txt"]
        );
        assert_eq!(samples[1].fields["txt"], b"a dog");
        // Member order: sorted within a sample.
        let names: Vec<String> = tar::Archive::new(io::Cursor::new(bytes))
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "000000000.jpg",
                "000000000.txt",
                "000000001.json",
                "000000001.txt"
            ]
        );
        let mut w = ShardWriter::new(Vec::new());
        assert!(w.write("a.b", &[("txt", b"x")]).is_err());
        assert!(w.write("k", &[("txt", b"x"), ("txt", b"y")]).is_err());
    }

    #[test]
    fn damage_is_reported_never_a_panic() {
        let mut w = ShardWriter::new(Vec::new());
        for i in 0..5 {
            w.write(&format!("{i:03}"), &[("txt", vec![b'x'; 700].as_slice())])
                .unwrap();
        }
        let bytes = w.finish().unwrap();
        // Cut inside the fourth sample's data (a sample: a 512-byte header,
        // 700 bytes padded to 1024).
        let cut = bytes[..1536 * 3 + 512 + 100].to_vec();
        let (samples, errors) = read_all(cut);
        assert_eq!(samples.len(), 3);
        assert_eq!(errors.len(), 1, "{errors:?}");
        // Garbage: one error, no samples.
        let (samples, errors) = read_all(vec![7u8; 2000]);
        assert!(samples.is_empty() && errors.len() == 1, "{errors:?}");
        // Every prefix of a shard reads without panicking.
        for n in (0..bytes.len()).step_by(97) {
            let _ = read_all(bytes[..n].to_vec());
        }
    }

    #[test]
    fn a_stream_over_shards_shuffles_per_epoch_and_skips_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut names = Vec::new();
        for s in 0..4 {
            let mut w = ShardWriter::new(Vec::new());
            for i in 0..25 {
                w.write(
                    &format!("{s}{i:03}"),
                    &[("txt", format!("{s}-{i}").as_bytes())],
                )
                .unwrap();
            }
            let mut bytes = w.finish().unwrap();
            if s == 2 {
                // Ten whole samples, then a torn header: the tenth may have
                // had more fields, so it goes with the damage.
                bytes.truncate(1024 * 10 + 300);
            }
            let path = dir.path().join(format!("s-{s:02}.tar"));
            std::fs::write(&path, bytes).unwrap();
            names.push(path.display().to_string());
        }
        names.push(dir.path().join("missing.tar").display().to_string());
        let pattern = dir.path().join("s-{00..03}.tar").display().to_string();
        assert_eq!(expand_braces(&pattern).unwrap(), names[..4]);
        let plain = ShardStream::new(names.clone(), &LocalOpener, 1, 0);
        let mut seen = Vec::new();
        let counts = plain.epoch(0, |s| {
            seen.push(s.key);
            true
        });
        assert_eq!(
            counts,
            StreamCounts {
                shards: 3,
                samples: 84,
                unopenable: 1,
                corrupt: 1,
                bad_samples: 0,
                skipped_members: 0,
                split_samples: 0,
            }
        );
        assert_eq!(seen[0], "0000");
        let shuffled = ShardStream::new(names, &LocalOpener, 1, 16);
        let epoch = |e| {
            let mut v = Vec::new();
            shuffled.epoch(e, |s| {
                v.push(s.key);
                true
            });
            v
        };
        let (a, b) = (epoch(0), epoch(1));
        assert_eq!(a, epoch(0), "seeded");
        assert_ne!(a, b, "another order each epoch");
        let mut sorted = a.clone();
        sorted.sort();
        let mut want = seen.clone();
        want.sort();
        assert_eq!(sorted, want, "the same samples");
        let mut n = 0;
        shuffled.epoch(0, |_| {
            n += 1;
            n < 5
        });
        assert_eq!(n, 5, "stops when asked");

        // Streams: disjoint, whole shards each, together the epoch.
        let keys = |stream: &ShardStream, e| {
            let mut v = Vec::new();
            stream.epoch(e, |s| {
                v.push(s.key);
                true
            });
            v
        };
        let shuffled = ShardStream::new(want_names(&dir), &LocalOpener, 1, 16);
        assert_eq!(
            keys(
                &ShardStream::new(want_names(&dir), &LocalOpener, 1, 16).part(0, 1),
                3
            ),
            keys(&shuffled, 3),
            "stream 0 of 1 is the whole stream"
        );
        for e in [0, 1] {
            let parts: Vec<Vec<String>> = (0..3)
                .map(|p| {
                    let part = ShardStream::new(want_names(&dir), &LocalOpener, 1, 16).part(p, 3);
                    keys(&part, e)
                })
                .collect();
            let mut all: Vec<String> = parts.concat();
            all.sort();
            assert_eq!(all, want, "epoch {e}: the streams together are the epoch");
            for (p, keys) in parts.iter().enumerate() {
                let shards: std::collections::BTreeSet<char> =
                    keys.iter().map(|k| k.chars().next().unwrap()).collect();
                for (q, other) in parts.iter().enumerate().filter(|(q, _)| *q != p) {
                    assert!(
                        other
                            .iter()
                            .all(|k| !shards.contains(&k.chars().next().unwrap())),
                        "epoch {e}: streams {p} and {q} share a shard"
                    );
                }
            }
        }
    }

    #[test]
    fn a_resampled_stream_draws_shards_with_replacement_and_ends_when_none_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut names = Vec::new();
        for s in 0..3 {
            let mut w = ShardWriter::new(Vec::new());
            for i in 0..5 {
                w.write(&format!("{s}{i:03}"), &[("txt", b"x")]).unwrap();
            }
            let path = dir.path().join(format!("r-{s}.tar"));
            std::fs::write(&path, w.finish().unwrap()).unwrap();
            names.push(path.display().to_string());
        }
        let empty = dir.path().join("empty.tar");
        std::fs::write(&empty, ShardWriter::new(Vec::new()).finish().unwrap()).unwrap();
        names.push(empty.display().to_string());
        names.push(dir.path().join("missing.tar").display().to_string());
        let take = |stream: usize, epoch: u64, n: usize| {
            let s = ShardStream::new(names.clone(), &LocalOpener, 9, 0)
                .part(stream, 2)
                .resampled(true);
            let mut keys = Vec::new();
            let counts = s.epoch(epoch, |x| {
                keys.push(x.key);
                keys.len() < n
            });
            (keys, counts)
        };
        // 200 samples from 15: shards come again, without end.
        let (a, counts) = take(0, 0, 200);
        assert_eq!(a.len(), 200);
        assert_eq!(a, take(0, 0, 200).0, "seeded");
        assert_ne!(a, take(1, 0, 200).0, "each stream draws its own");
        assert_ne!(a, take(0, 1, 200).0, "each epoch draws anew");
        for s in 0..3 {
            let heads = a.iter().filter(|k| **k == format!("{s}000")).count();
            // 40 draws of 3 shards: about 13 each (binomial sd 3).
            assert!((4..=25).contains(&heads), "shard {s} read {heads} times");
        }
        // The shards that give nothing are drawn once, then no more.
        assert!(counts.unopenable <= 1, "{counts:?}");
        assert_eq!(counts.samples, 200);
        // Nothing to give: the epoch ends rather than drawing forever.
        let barren = ShardStream::new(names[3..].to_vec(), &LocalOpener, 9, 0).resampled(true);
        let counts = barren.epoch(0, |_| true);
        assert_eq!(
            (counts.samples, counts.unopenable, counts.shards),
            (0, 1, 1)
        );
    }

    /// The four shards' and the missing shard's names, as the test above
    /// made them.
    fn want_names(dir: &tempfile::TempDir) -> Vec<String> {
        let mut names: Vec<String> = (0..4)
            .map(|s| {
                dir.path()
                    .join(format!("s-{s:02}.tar"))
                    .display()
                    .to_string()
            })
            .collect();
        names.push(dir.path().join("missing.tar").display().to_string());
        names
    }

    #[test]
    fn names_braces_and_shuffles() {
        assert_eq!(split_name("a/b.seg.png"), Some(("a/b", "seg.png")));
        assert_eq!(split_name("x.d/000.jpg"), Some(("x.d/000", "jpg")));
        assert_eq!(split_name("noext"), None);
        assert_eq!(
            expand_braces("s-{008..011}.tar").unwrap(),
            ["s-008.tar", "s-009.tar", "s-010.tar", "s-011.tar"]
        );
        assert_eq!(
            expand_braces("{train,val}-{0..1}.tar").unwrap(),
            ["train-0.tar", "train-1.tar", "val-0.tar", "val-1.tar"]
        );
        assert!(expand_braces("a-{1..x}.tar").is_err());
        assert!(expand_braces("a-{1..2.tar").is_err());
        let a = epoch_order(100, 7, 0);
        assert_eq!(a, epoch_order(100, 7, 0));
        assert_ne!(a, epoch_order(100, 7, 1));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        let mut buf = ShuffleBuffer::new(10, 1);
        let mut out: Vec<u32> = (0..100).filter_map(|i| buf.push(i)).collect();
        out.extend(buf.drain());
        let mut sorted = out.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(out, (0..100).collect::<Vec<_>>());
    }
}
