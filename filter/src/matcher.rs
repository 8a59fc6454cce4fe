//! Substring matching of texts against the query list, as MetaCLIP defines it.
//!
//! A text is padded with a space on each side; the characters `, . ; : ? !` and
//! the backtick get a space on both sides; tab, newline and carriage return
//! become spaces. Each query is matched as `" " + query + " "`, so a query
//! matches whole words or phrases only. Matching is case-sensitive ("the" and
//! "The" are different queries) unless [`Case::Fold`] lowercases both sides.
//! Overlapping matches all count: in `" red car "`, both `" red "` and
//! `" car "` match although they share the space between them.
//!
//! As in MetaCLIP, queries are not normalised: a query holding one of the
//! padded punctuation characters (`"U.S."`) can never match.
//!
//! # How
//!
//! A pattern `" q "` can only match between two spaces of the normalised
//! text, so matching needs no automaton over bytes: for each space, the spans
//! up to each later space are looked up in one hash table holding every query
//! and every prefix of a query that ends just before one of its spaces
//! (`"red"` for `"red car"`); the walk from a space stops at the first span
//! that is neither. That is one table probe per word for most words (a word
//! that begins some multi-word query costs one more), where an Aho-Corasick
//! automaton over 500,000 queries (a 64 MB contiguous NFA) takes a cache miss
//! per byte. Measured on these machines over 500,000 queries and a million
//! captions (`cargo bench -p wit-filter --bench matcher`): see the figures in
//! that benchmark's output; it checks that the `aho-corasick` crate's
//! overlapping search finds the same matches.
//!
//! Memory: an open-addressing table of 32-byte slots (the hash, the key
//! itself up to 16 bytes, else its place in an arena, and the query id), at
//! most half full: 64 to 128 bytes per key plus the long keys' bytes.

use std::hash::BuildHasher;

use wit_contract::{Error, Result};

/// Case handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Case {
    /// Match as written (MetaCLIP's behaviour).
    #[default]
    Sensitive,
    /// Lowercase texts and queries before matching.
    Fold,
}

/// The characters that MetaCLIP surrounds with spaces.
const PADDED: [char; 7] = [',', '.', ';', ':', '?', '!', '`'];

/// Writes the normalised, space-padded form of `text` into `out`.
pub fn normalize_into(text: &str, case: Case, out: &mut String) {
    out.clear();
    out.reserve(text.len() + 8);
    out.push(' ');
    if case == Case::Sensitive || text.is_ascii() {
        // Every character that changes is ASCII, so work on bytes: copy the
        // runs between them whole.
        let table = match case {
            Case::Sensitive => &SPECIAL_SENSITIVE,
            Case::Fold => &SPECIAL_FOLD,
        };
        let bytes = text.as_bytes();
        let mut run = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let kind = table[usize::from(b)];
            if kind == 0 {
                continue;
            }
            out.push_str(&text[run..i]);
            run = i + 1;
            match kind {
                WHITESPACE => out.push(' '),
                UPPER => out.push(b.to_ascii_lowercase() as char),
                _ => {
                    out.push(' ');
                    out.push(b as char);
                    out.push(' ');
                }
            }
        }
        out.push_str(&text[run..]);
    } else {
        for c in text.chars() {
            match c {
                '\t' | '\n' | '\r' => out.push(' '),
                c if PADDED.contains(&c) => {
                    out.push(' ');
                    out.push(c);
                    out.push(' ');
                }
                c => out.extend(c.to_lowercase()),
            }
        }
    }
    out.push(' ');
}

const WHITESPACE: u8 = 1;
const PUNCTUATION: u8 = 2;
const UPPER: u8 = 3;

/// What [`normalize_into`] does with each byte of an ASCII-safe text.
const fn special_table(fold: bool) -> [u8; 256] {
    let mut t = [0u8; 256];
    t[b'\t' as usize] = WHITESPACE;
    t[b'\n' as usize] = WHITESPACE;
    t[b'\r' as usize] = WHITESPACE;
    let mut i = 0;
    while i < PADDED.len() {
        t[PADDED[i] as usize] = PUNCTUATION;
        i += 1;
    }
    if fold {
        let mut c = b'A';
        while c <= b'Z' {
            t[c as usize] = UPPER;
            c += 1;
        }
    }
    t
}

static SPECIAL_SENSITIVE: [u8; 256] = special_table(false);
static SPECIAL_FOLD: [u8; 256] = special_table(true);

/// Keys up to this many bytes are stored in their slot.
const INLINE: usize = 16;

const OCCUPIED: u8 = 1;
const PREFIX: u8 = 2;

/// One key of the table (a query, a prefix of one, or both) in one 32-byte
/// slot, so that a lookup of a short key touches one cache line.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(32))]
struct Slot {
    hash: u64,
    /// The key if it fits; else its offset in the arena (first 4 bytes).
    key: [u8; INLINE],
    /// The query id if one query equals the key; the offset of the ids in
    /// `ids` if several do.
    id: u32,
    len: u16,
    /// How many queries equal the key (0: a prefix only).
    n_ids: u8,
    flags: u8,
}

/// While building: the ids of the queries equal to a key, and whether a
/// longer query starts with it and a space.
type KeyInfo = (Vec<u32>, bool);

/// Finds which queries a text contains.
#[derive(Clone)]
pub struct QueryMatcher {
    slots: Vec<Slot>,
    mask: usize,
    keys: usize,
    arena: Vec<u8>,
    ids: Vec<u32>,
    hasher: foldhash::fast::FixedState,
    case: Case,
    queries: usize,
}

impl std::fmt::Debug for QueryMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryMatcher")
            .field("queries", &self.queries)
            .field("keys", &self.keys)
            .field("case", &self.case)
            .finish()
    }
}

impl QueryMatcher {
    /// Builds the table over `queries`; a match reports the query's index.
    ///
    /// # Errors
    /// [`Error::Usage`] if a query is longer than 65,535 bytes or a text
    /// repeats one more than 255 times.
    pub fn new(queries: &[String], case: Case) -> Result<QueryMatcher> {
        // Queries fold exactly as texts do, character by character
        // (`str::to_lowercase` would turn a final Σ into ς, `char`'s into σ).
        let folded: Vec<String> = queries
            .iter()
            .map(|q| match case {
                Case::Sensitive => q.clone(),
                Case::Fold => q.chars().flat_map(char::to_lowercase).collect(),
            })
            .collect();
        // Ids per key, in id order (a list may hold the same query twice),
        // and the prefixes that end before a space inside a query.
        let mut by_key: std::collections::HashMap<&[u8], KeyInfo> =
            std::collections::HashMap::new();
        for (id, q) in folded.iter().enumerate() {
            if q.len() > usize::from(u16::MAX) {
                return Err(Error::Usage(format!(
                    "query {id} is {} bytes long; the matcher takes queries up to 65,535 bytes",
                    q.len()
                )));
            }
            by_key.entry(q.as_bytes()).or_default().0.push(id as u32);
            for (i, _) in q.bytes().enumerate().filter(|(_, b)| *b == b' ') {
                by_key.entry(&q.as_bytes()[..i]).or_default().1 = true;
            }
        }
        // At most 5/8 full: linear probing stays short, the table small.
        let capacity = (by_key.len() * 8 / 5).next_power_of_two().max(16);
        let mut m = QueryMatcher {
            slots: slots(capacity),
            mask: capacity - 1,
            keys: by_key.len(),
            arena: Vec::new(),
            ids: Vec::new(),
            hasher: foldhash::fast::FixedState::with_seed(0x5eed_0f3e_7ac1_1f00),
            case,
            queries: queries.len(),
        };
        // Insert in a fixed order, so that the table is the same every time.
        let mut entries: Vec<(&[u8], KeyInfo)> = by_key.into_iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (key, (ids, prefix)) in entries {
            let mut slot = Slot {
                hash: m.key_hash(&padded(key), 0, key.len()),
                len: key.len() as u16,
                flags: OCCUPIED | if prefix { PREFIX } else { 0 },
                ..Slot::default()
            };
            if key.len() <= INLINE {
                slot.key[..key.len()].copy_from_slice(key);
            } else {
                slot.key[..4].copy_from_slice(&(m.arena.len() as u32).to_le_bytes());
                m.arena.extend_from_slice(key);
            }
            slot.n_ids = u8::try_from(ids.len()).map_err(|_| {
                Error::Usage(format!(
                    "the query list repeats {:?} {} times",
                    String::from_utf8_lossy(key),
                    ids.len()
                ))
            })?;
            match ids.len() {
                0 => {}
                1 => slot.id = ids[0],
                _ => {
                    slot.id = m.ids.len() as u32;
                    m.ids.extend(ids);
                }
            }
            let mut i = slot.hash as usize & m.mask;
            while m.slots[i].flags & OCCUPIED != 0 {
                i = (i + 1) & m.mask;
            }
            m.slots[i] = slot;
        }
        tracing::debug!(
            "matcher over {} queries: {} keys, {} bytes",
            queries.len(),
            m.keys,
            m.memory_usage()
        );
        Ok(m)
    }

    /// The hash of the key `bytes[start..end]`; `bytes` holds at least
    /// [`INLINE`] bytes from `start`. A short key is hashed from one 16-byte
    /// load with two multiplications; a longer one with foldhash.
    #[inline]
    fn key_hash(&self, bytes: &[u8], start: usize, end: usize) -> u64 {
        let len = end - start;
        if len > INLINE {
            return self.hasher.hash_one(&bytes[start..end]);
        }
        let word = u128::from_le_bytes(
            bytes[start..start + INLINE]
                .try_into()
                .expect("the buffer is padded"),
        ) & short_mask(len);
        let mix = |a: u64, b: u64| {
            let p = u128::from(a) * u128::from(b);
            (p as u64) ^ ((p >> 64) as u64)
        };
        let lo = word as u64 ^ 0x243f_6a88_85a3_08d3;
        let hi = (word >> 64) as u64 ^ 0x1319_8a2e_0370_7344 ^ (len as u64);
        mix(mix(lo, 0x9e37_79b9_7f4a_7c15) ^ hi, 0xff51_afd7_ed55_8ccd)
    }

    /// Asks the CPU to bring the slot of `hash` into cache.
    #[inline]
    fn prefetch(&self, hash: u64) {
        let slot: *const Slot = &self.slots[hash as usize & self.mask];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetching is a hint and never faults; SSE is part of x86_64.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(slot.cast());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }

    /// The slot of the key `bytes[start..end]` with hash `hash`. `bytes`
    /// must hold at least [`INLINE`] bytes from `start` (a [`Prepared`]
    /// buffer is padded), so that a short key is compared as one 16-byte
    /// load.
    fn lookup_at(&self, bytes: &[u8], start: usize, end: usize, hash: u64) -> Option<&Slot> {
        let len = end - start;
        let short = (len <= INLINE).then(|| {
            let word = u128::from_le_bytes(
                bytes[start..start + INLINE]
                    .try_into()
                    .expect("the buffer is padded"),
            );
            word & short_mask(len)
        });
        let mut i = hash as usize & self.mask;
        loop {
            let slot = &self.slots[i];
            if slot.flags & OCCUPIED == 0 {
                return None;
            }
            if slot.hash == hash && usize::from(slot.len) == len {
                let equal = match short {
                    Some(word) => u128::from_le_bytes(slot.key) == word,
                    None => {
                        let at =
                            u32::from_le_bytes(slot.key[..4].try_into().expect("4 bytes")) as usize;
                        self.arena[at..at + len] == bytes[start..end]
                    }
                };
                if equal {
                    return Some(slot);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// How many queries the matcher holds.
    pub fn len(&self) -> usize {
        self.queries
    }

    /// Whether the matcher holds no queries.
    pub fn is_empty(&self) -> bool {
        self.queries == 0
    }

    /// The heap size of the table, arena and id lists in bytes.
    pub fn memory_usage(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.arena.capacity()
            + self.ids.capacity() * 4
    }

    /// Writes the sorted, distinct ids of every query `text` contains into `ids`.
    /// `buf` is scratch space reused between calls. To match many texts,
    /// [`QueryMatcher::find_all`] is faster.
    pub fn find(&self, text: &str, buf: &mut String, ids: &mut Vec<u32>) {
        let mut prepared = Prepared {
            buf: std::mem::take(buf),
            spans: Vec::new(),
        };
        self.prepare(text, &mut prepared);
        self.resolve(&prepared, ids);
        *buf = prepared.buf;
    }

    /// Calls `each(i, ids)` with the sorted, distinct ids of every query the
    /// `i`-th text contains, in order. Texts are normalised and their table
    /// slots fetched from memory a few texts ahead of the lookups, so that
    /// the lookups of one text do not wait on memory one after the other
    /// (the table is tens of megabytes: most lookups miss the cache).
    pub fn find_all<'t>(
        &self,
        texts: impl IntoIterator<Item = &'t str>,
        mut each: impl FnMut(usize, &[u32]),
    ) {
        const AHEAD: usize = 4;
        let mut ring: [Prepared; AHEAD] = Default::default();
        let mut ids = Vec::new();
        let mut n = 0;
        for text in texts {
            if n >= AHEAD {
                self.resolve(&ring[n % AHEAD], &mut ids);
                each(n - AHEAD, &ids);
            }
            self.prepare(text, &mut ring[n % AHEAD]);
            n += 1;
        }
        for i in n.saturating_sub(AHEAD)..n {
            self.resolve(&ring[i % AHEAD], &mut ids);
            each(i, &ids);
        }
    }

    /// Normalises `text`, hashes each word between two spaces, and each
    /// pair of words, and asks for their slots (a frequent word usually
    /// begins some two-word query, so the pair is looked up too).
    fn prepare(&self, text: &str, p: &mut Prepared) {
        normalize_into(text, self.case, &mut p.buf);
        // Padding, so that any key can be read as 16 bytes (see `lookup_at`).
        p.buf.push_str("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        p.spans.clear();
        let bytes = p.buf.as_bytes();
        let (mut prev, mut prev2): (Option<usize>, Option<usize>) = (None, None);
        for at in memchr::memchr_iter(b' ', bytes) {
            if let Some(s) = prev {
                let hash = self.key_hash(bytes, s + 1, at);
                self.prefetch(hash);
                p.spans.push((s as u32, at as u32, hash, 0));
            }
            if let Some(s2) = prev2 {
                let pair = self.key_hash(bytes, s2 + 1, at);
                self.prefetch(pair);
                let n = p.spans.len();
                p.spans[n - 2].3 = pair;
            }
            prev2 = prev;
            prev = Some(at);
        }
    }

    /// The lookups of a prepared text: each word, then longer spans from the
    /// same space while the table says some query goes on.
    fn resolve(&self, p: &Prepared, ids: &mut Vec<u32>) {
        ids.clear();
        let bytes = p.buf.as_bytes();
        for (i, &(s, e, hash, _)) in p.spans.iter().enumerate() {
            let (s, e) = (s as usize, e as usize);
            let Some(mut slot) = self.lookup_at(bytes, s + 1, e, hash) else {
                continue;
            };
            let mut end = e;
            let mut words = 1;
            loop {
                match slot.n_ids {
                    0 => {}
                    1 => ids.push(slot.id),
                    n => {
                        let at = slot.id as usize;
                        ids.extend_from_slice(&self.ids[at..at + usize::from(n)]);
                    }
                }
                if slot.flags & PREFIX == 0 {
                    break;
                }
                let Some(next) = memchr::memchr(b' ', &bytes[end + 1..]) else {
                    break;
                };
                end += 1 + next;
                words += 1;
                let hash = match p.spans.get(i + 1) {
                    // The pair's hash, computed ahead.
                    Some(n) if words == 2 && n.1 as usize == end => p.spans[i].3,
                    _ => self.key_hash(bytes, s + 1, end),
                };
                let longer = self.lookup_at(bytes, s + 1, end, hash);
                match longer {
                    Some(longer) => slot = longer,
                    None => break,
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
    }
}

/// The mask of the first `len` (at most 16) bytes of a little-endian u128.
#[inline]
fn short_mask(len: usize) -> u128 {
    if len >= INLINE {
        u128::MAX
    } else {
        (1u128 << (len * 8)) - 1
    }
}

/// `key` followed by [`INLINE`] zero bytes, for [`QueryMatcher::key_hash`].
fn padded(key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.len() + INLINE);
    v.extend_from_slice(key);
    v.resize(key.len() + INLINE, 0);
    v
}

/// A normalised text and its words (space, next space, hash of the word,
/// hash of the word and the next one), ready for lookup.
#[derive(Debug, Default)]
struct Prepared {
    buf: String,
    spans: Vec<(u32, u32, u64, u64)>,
}

/// `n` empty slots; on Linux the kernel is asked to back them with huge
/// pages, since lookups land anywhere in a table of tens of megabytes and
/// 4 KiB pages would cost a TLB miss on most of them.
fn slots(n: usize) -> Vec<Slot> {
    let mut v: Vec<Slot> = Vec::with_capacity(n);
    #[cfg(target_os = "linux")]
    {
        let bytes = n * std::mem::size_of::<Slot>();
        let start = v.as_mut_ptr() as usize;
        let huge = 2 << 20;
        let aligned = start.next_multiple_of(huge);
        if bytes >= 2 * huge && aligned < start + bytes {
            let len = (start + bytes - aligned) / huge * huge;
            // SAFETY: advice on memory this Vec owns and has not touched yet;
            // a refusal changes nothing.
            unsafe {
                libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
            }
        }
    }
    v.resize(n, Slot::default());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T {
        queries: &'static [&'static str],
        case: Case,
        text: &'static str,
        want: &'static [u32],
    }

    const fn t(queries: &'static [&'static str], text: &'static str, want: &'static [u32]) -> T {
        T {
            queries,
            case: Case::Sensitive,
            text,
            want,
        }
    }

    const TABLE: &[T] = &[
        t(&["dog"], "a dog", &[0]),
        t(&["dog"], "dog", &[0]),
        t(&["dog"], "hotdog stand", &[]),
        t(&["dog"], "dogs", &[]),
        t(&["dog", "hot dog"], "a hot dog.", &[0, 1]),
        t(&["red", "car"], "red car", &[0, 1]),
        t(&["red car", "car park"], "red car park", &[0, 1]),
        t(&["dog"], "dog,cat", &[0]),
        t(&["cat"], "dog;cat!", &[0]),
        t(&["dog"], "`dog`", &[0]),
        t(&["dog"], "a\tdog\nrun", &[0]),
        t(&["dog"], "a\r\ndog", &[0]),
        t(&["dog"], "dog's bowl", &[]),
        t(&["dog"], "(dog)", &[]),
        t(&["the", "The"], "The dog", &[1]),
        t(&["U.S."], "the U.S. army", &[]),
        t(&["a  b"], "a  b", &[0]),
        t(&["a b"], "a  b", &[]),
        t(&["über"], "Ein über Bild", &[0]),
        t(&["猫"], "一只 猫 在", &[0]),
        t(&["dog", "dog"], "dog", &[0, 1]),
        T {
            queries: &["the", "The", "DOG"],
            case: Case::Fold,
            text: "THE Dog",
            want: &[0, 1, 2],
        },
        T {
            queries: &["ΟΔΟΣ"],
            case: Case::Fold,
            text: "μια ΟΔΟΣ εδώ",
            want: &[0],
        },
        T {
            queries: &["Über"],
            case: Case::Fold,
            text: "ÜBER alles",
            want: &[0],
        },
    ];

    #[test]
    fn table() {
        let (mut buf, mut ids) = (String::new(), Vec::new());
        for (i, case) in TABLE.iter().enumerate() {
            let queries: Vec<String> = case.queries.iter().map(|q| q.to_string()).collect();
            let m = QueryMatcher::new(&queries, case.case).unwrap();
            m.find(case.text, &mut buf, &mut ids);
            assert_eq!(
                ids, case.want,
                "row {i}: {:?} in {:?}",
                case.queries, case.text
            );
        }
    }

    /// The automaton agrees with MetaCLIP's reference loop (`" q " in text`).
    #[test]
    fn agrees_with_the_naive_reference() {
        let words = [
            "a", "dog", "red", "car", "the", "The", "park", "hot", "red car", "car park", "a dog",
        ];
        let queries: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let m = QueryMatcher::new(&queries, Case::Sensitive).unwrap();
        let (mut buf, mut ids) = (String::new(), Vec::new());
        let mut seed = 7u64;
        for _ in 0..500 {
            let mut text = String::new();
            for _ in 0..8 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let w = words[(seed >> 33) as usize % words.len()];
                let sep = [" ", ", ", ".", "  ", "\n"][(seed >> 20) as usize % 5];
                text.push_str(w);
                text.push_str(sep);
            }
            m.find(&text, &mut buf, &mut ids);
            normalize_into(&text, Case::Sensitive, &mut buf);
            let naive: Vec<u32> = (0..queries.len() as u32)
                .filter(|&i| buf.contains(&format!(" {} ", queries[i as usize])))
                .collect();
            assert_eq!(ids, naive, "{text:?}");
        }
    }

    #[test]
    fn agrees_with_aho_corasick_overlapping_search() {
        // Queries with repeats, inner and outer spaces, unicode, and prefixes
        // of each other; texts drawn from the same pieces.
        let pieces = [
            "a", "dog", "red", "car", "the", "The", "park", "hot", "über", "猫", "", " ", "x",
        ];
        let mut seed = 11u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let mut queries: Vec<String> = Vec::new();
        for _ in 0..300 {
            let n = 1 + next() % 3;
            let q: Vec<&str> = (0..n).map(|_| pieces[next() % pieces.len()]).collect();
            queries.push(q.join(if next() % 7 == 0 { "  " } else { " " }));
        }
        for case in [Case::Sensitive, Case::Fold] {
            let m = QueryMatcher::new(&queries, case).unwrap();
            let folded: Vec<String> = queries
                .iter()
                .map(|q| match case {
                    Case::Sensitive => q.clone(),
                    Case::Fold => q.chars().flat_map(char::to_lowercase).collect(),
                })
                .collect();
            let ac = aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::Standard)
                .build(folded.iter().map(|q| format!(" {q} ")))
                .unwrap();
            let (mut buf, mut ids) = (String::new(), Vec::new());
            for _ in 0..2000 {
                let mut text = String::new();
                for _ in 0..(next() % 12) {
                    text.push_str(pieces[next() % pieces.len()]);
                    text.push_str([" ", "  ", ", ", ".", "\t", "!"][next() % 6]);
                }
                m.find(&text, &mut buf, &mut ids);
                let mut want: Vec<u32> = ac
                    .find_overlapping_iter(buf.as_str())
                    .map(|x| x.pattern().as_u32())
                    .collect();
                want.sort_unstable();
                want.dedup();
                assert_eq!(ids, want, "{case:?} {text:?}");
            }
        }
    }
}
