//! WordNet synset names, by MetaCLIP's rule.
//!
//! MetaCLIP takes every synset of WordNet 3.0 through NLTK and keeps the part
//! of its name before the first `.`, with `_` as a space. NLTK names a synset
//! after its first lemma, lowercased, with an adjective's syntactic marker
//! (`(a)`, `(p)`, `(ip)`) removed. This module reads the same names straight
//! from the database files (the layout of Debian's `wordnet-base`), so neither
//! Python nor NLTK is needed.
//!
//! On WordNet 3.0 this gives 117,659 synsets and 86,554 distinct non-empty
//! names; with MetaCLIP's seed entries "0".."99" that is the 86,654 WordNet
//! entries of its Table 1.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;

use wit_contract::{Error, IoContext, Result};

/// The database files read, in this order.
pub const DATA_FILES: [&str; 4] = ["data.noun", "data.verb", "data.adj", "data.adv"];

/// What [`synset_names`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordNet {
    /// Distinct names in file order (noun, verb, adjective, adverb; offset order within each).
    pub names: Vec<String>,
    /// Synsets read.
    pub synsets: u64,
}

/// Reads every synset of the four data files under `dir` and returns their
/// distinct names.
///
/// # Errors
/// [`Error::BadInput`] naming the file if one is missing or a line is malformed.
pub fn synset_names(dir: &Path) -> Result<WordNet> {
    let mut seen = HashSet::new();
    let mut out = WordNet {
        names: Vec::new(),
        synsets: 0,
    };
    for file in DATA_FILES {
        let path = dir.join(file);
        if !path.is_file() {
            return Err(Error::bad_input(
                &path,
                "not found: --wordnet wants the directory of the WordNet 3.0 database (data.noun, data.verb, data.adj, data.adv), as Debian's wordnet-base installs it in /usr/share/wordnet",
            ));
        }
        let reader = BufReader::new(std::fs::File::open(&path).at(&path)?);
        for (n, line) in reader.split(b'\n').enumerate() {
            let line = line.at(&path)?;
            // The license header's lines start with two spaces.
            if line.starts_with(b"  ") || line.is_empty() {
                continue;
            }
            // WordNet 3.0 is ASCII; decode leniently all the same.
            let line = String::from_utf8_lossy(&line);
            let name = synset_name(&line).ok_or_else(|| {
                Error::bad_input(&path, format!("line {}: not a WordNet data line", n + 1))
            })?;
            out.synsets += 1;
            if !name.is_empty() && seen.insert(name.clone()) {
                out.names.push(name);
            }
        }
    }
    Ok(out)
}

/// The MetaCLIP entry of one data line: `offset lex_filenum ss_type w_cnt word lex_id ...`.
fn synset_name(line: &str) -> Option<String> {
    let mut fields = line.split(' ');
    let offset = fields.next()?;
    if offset.len() != 8 || !offset.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let _lex_filenum = fields.next()?;
    let _ss_type = fields.next()?;
    let _w_cnt = fields.next()?;
    let lemma = fields.next()?;
    let lemma = ["(a)", "(p)", "(ip)"]
        .iter()
        .find_map(|m| lemma.strip_suffix(m))
        .unwrap_or(lemma)
        .to_lowercase();
    let stem = lemma.split('.').next().unwrap_or("");
    Some(stem.replace('_', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_nltk_and_metaclip() {
        let line = |w: &str| format!("00001740 03 n 01 {w} 0 001 @ 00001930 n 0000 | a gloss");
        assert_eq!(synset_name(&line("entity")).unwrap(), "entity");
        assert_eq!(synset_name(&line("hot_dog")).unwrap(), "hot dog");
        assert_eq!(synset_name(&line("Aberdeen")).unwrap(), "aberdeen");
        assert_eq!(synset_name(&line("galore(ip)")).unwrap(), "galore");
        assert_eq!(synset_name(&line("outback(a)")).unwrap(), "outback");
        assert_eq!(
            synset_name(&line("ready_to_hand(p)")).unwrap(),
            "ready to hand"
        );
        // The part before the first dot, as MetaCLIP cuts the NLTK name.
        assert_eq!(synset_name(&line("st._louis")).unwrap(), "st");
        assert_eq!(synset_name(&line(".22")).unwrap(), "");
        assert_eq!(synset_name("  1 This software and database"), None);
    }

    #[test]
    fn reads_files_in_order_and_dedups() {
        let dir = tempfile::tempdir().unwrap();
        let header = "  1 This software and database is being provided\n";
        let l = |o: u32, w: &str| format!("{o:08} 03 n 01 {w} 0 000 | gloss\n");
        std::fs::write(
            dir.path().join("data.noun"),
            format!("{header}{}{}", l(1, "dog"), l(2, "Dog")),
        )
        .unwrap();
        std::fs::write(dir.path().join("data.verb"), l(3, "run")).unwrap();
        std::fs::write(dir.path().join("data.adj"), l(4, "red(a)")).unwrap();
        std::fs::write(dir.path().join("data.adv"), l(5, "run")).unwrap();
        let wn = synset_names(dir.path()).unwrap();
        assert_eq!(wn.names, vec!["dog", "run", "red"]);
        assert_eq!(wn.synsets, 5);
        std::fs::remove_file(dir.path().join("data.adv")).unwrap();
        let err = synset_names(dir.path()).unwrap_err();
        assert!(
            err.is_bad_input() && err.to_string().contains("data.adv"),
            "{err}"
        );
    }
}
