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
//! Cost: one Aho-Corasick automaton over all queries, built once (the crate
//! picks a contiguous NFA for large sets: about 21 MB and 0.3 s per 100,000
//! Wikipedia titles by its own documentation), then one pass per text.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
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
    for c in text.chars() {
        match c {
            '\t' | '\n' | '\r' => out.push(' '),
            c if PADDED.contains(&c) => {
                out.push(' ');
                out.push(c);
                out.push(' ');
            }
            c if case == Case::Fold => out.extend(c.to_lowercase()),
            c => out.push(c),
        }
    }
    out.push(' ');
}

/// Finds which queries a text contains.
#[derive(Debug, Clone)]
pub struct QueryMatcher {
    automaton: AhoCorasick,
    case: Case,
    queries: usize,
}

impl QueryMatcher {
    /// Builds the automaton over `queries`; a match reports the query's index.
    ///
    /// # Errors
    /// [`Error::Usage`] if the automaton cannot be built (too many states for its id type).
    pub fn new(queries: &[String], case: Case) -> Result<QueryMatcher> {
        // Queries fold exactly as texts do, character by character
        // (`str::to_lowercase` would turn a final Σ into ς, `char`'s into σ).
        let patterns = queries.iter().map(|q| {
            let q: String = match case {
                Case::Sensitive => q.clone(),
                Case::Fold => q.chars().flat_map(char::to_lowercase).collect(),
            };
            format!(" {q} ")
        });
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(patterns)
            .map_err(|e| {
                Error::Usage(format!(
                    "cannot build the matcher over {} queries: {e}",
                    queries.len()
                ))
            })?;
        tracing::debug!(
            "matcher over {} queries: {:?}, {} bytes",
            queries.len(),
            automaton.kind(),
            automaton.memory_usage()
        );
        Ok(QueryMatcher {
            automaton,
            case,
            queries: queries.len(),
        })
    }

    /// How many queries the matcher holds.
    pub fn len(&self) -> usize {
        self.queries
    }

    /// Whether the matcher holds no queries.
    pub fn is_empty(&self) -> bool {
        self.queries == 0
    }

    /// The automaton kind and its heap size in bytes, for logs and benchmarks.
    pub fn footprint(&self) -> (AhoCorasickKind, usize) {
        (self.automaton.kind(), self.automaton.memory_usage())
    }

    /// Writes the sorted, distinct ids of every query `text` contains into `ids`.
    /// `buf` is scratch space reused between calls.
    pub fn find(&self, text: &str, buf: &mut String, ids: &mut Vec<u32>) {
        normalize_into(text, self.case, buf);
        ids.clear();
        ids.extend(
            self.automaton
                .find_overlapping_iter(buf.as_str())
                .map(|m| m.pattern().as_u32()),
        );
        ids.sort_unstable();
        ids.dedup();
    }
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
}
