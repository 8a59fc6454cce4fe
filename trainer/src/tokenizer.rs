//! CLIP's byte-level BPE tokenizer, giving the ids open_clip gives.
//!
//! - **Vocabulary**: OpenAI's `bpe_simple_vocab_16e6.txt.gz`, vendored in
//!   `trainer/assets/` with its licence: the 256 byte symbols, the same with
//!   an end-of-word mark `</w>`, the first 48,894 merges, then
//!   `<start_of_text>` and `<end_of_text>`: 49,408 ids.
//! - **Cleaning** (open_clip's default, "lower"): ftfy 6.3.1's `fix_text`
//!   with its defaults, Python's `html.unescape` twice, whitespace runs
//!   collapsed, lowercase ([`crate::clean`]).
//! - **Pre-tokens**: the two special tokens, English contractions, letter
//!   runs, single digits, and runs of other non-space characters, without
//!   regard to case; each is UTF-8 encoded, mapped to byte symbols and merged
//!   pair by pair, lowest merge rank first.
//! - **Context**: `[start] + tokens + [end]`, cut to 77 with the end token
//!   kept last, zero-padded.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;

/// The vocabulary file, gzipped, as OpenAI published it.
const VOCAB_GZ: &[u8] = include_bytes!("../assets/bpe_simple_vocab_16e6.txt.gz");

/// Merges used (the file has more; CLIP uses the first 48,894).
const MERGES: usize = 49152 - 256 - 2;

/// CLIP's context length.
pub const CONTEXT: usize = 77;

/// The tokenizer.
#[derive(Debug)]
pub struct Tokenizer {
    byte_symbol: [char; 256],
    encoder: HashMap<String, u32>,
    ranks: HashMap<(String, String), u32>,
    pattern: Regex,
    /// `<start_of_text>`.
    pub start: u32,
    /// `<end_of_text>`.
    pub end: u32,
}

/// The byte-to-symbol map of GPT-2 and CLIP: printable Latin-1 bytes stand
/// for themselves, the others get code points from 256 up, in byte order.
fn byte_symbols() -> [char; 256] {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut out = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        out[b as usize] = if printable(b) {
            char::from_u32(b).expect("Latin-1")
        } else {
            let c = char::from_u32(next).expect("below the surrogates");
            next += 1;
            c
        };
    }
    out
}

/// The order of the first 256 ids: the printable bytes, then the others.
fn symbol_order(symbols: &[char; 256]) -> Vec<char> {
    let mut order: Vec<char> = symbols
        .iter()
        .copied()
        .filter(|c| (*c as u32) < 256)
        .collect();
    order.extend(symbols.iter().copied().filter(|c| (*c as u32) >= 256));
    order
}

impl Tokenizer {
    /// The tokenizer over the vendored vocabulary (built once per process).
    pub fn get() -> &'static Tokenizer {
        static T: OnceLock<Tokenizer> = OnceLock::new();
        T.get_or_init(Tokenizer::build)
    }

    fn build() -> Tokenizer {
        use std::io::Read;
        let mut text = String::new();
        flate2::read::GzDecoder::new(VOCAB_GZ)
            .read_to_string(&mut text)
            .expect("the vendored vocabulary decompresses");
        let merges: Vec<(String, String)> = text
            .split('\n')
            .skip(1)
            .take(MERGES)
            .map(|l| {
                let (a, b) = l.split_once(' ').expect("a merge is two symbols");
                (a.to_string(), b.to_string())
            })
            .collect();
        let byte_symbol = byte_symbols();
        let order = symbol_order(&byte_symbol);
        let mut vocab: Vec<String> = order.iter().map(|c| c.to_string()).collect();
        vocab.extend(order.iter().map(|c| format!("{c}</w>")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.push("<start_of_text>".into());
        vocab.push("<end_of_text>".into());
        let encoder: HashMap<String, u32> = vocab
            .into_iter()
            .enumerate()
            .map(|(i, s)| (s, i as u32))
            .collect();
        let ranks = merges
            .into_iter()
            .enumerate()
            .map(|(i, m)| (m, i as u32))
            .collect();
        let pattern = Regex::new(
            r"(?i)<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+",
        )
        .expect("a valid pattern");
        Tokenizer {
            byte_symbol,
            start: encoder["<start_of_text>"],
            end: encoder["<end_of_text>"],
            encoder,
            ranks,
            pattern,
        }
    }

    /// The vocabulary size (49,408).
    pub fn vocab_size(&self) -> usize {
        self.encoder.len()
    }

    /// The BPE ids of `text`, cleaned, without start and end tokens.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let text = clean(text);
        let mut ids = Vec::new();
        for m in self.pattern.find_iter(&text) {
            let piece = m.as_str();
            if let Some(&id) = self.encoder.get(piece)
                && (piece == "<start_of_text>" || piece == "<end_of_text>")
            {
                ids.push(id);
                continue;
            }
            let symbols: Vec<String> = piece
                .bytes()
                .map(|b| self.byte_symbol[b as usize].to_string())
                .collect();
            for s in self.bpe(symbols) {
                ids.push(self.encoder[&s]);
            }
        }
        ids
    }

    /// Merges the byte symbols of one pre-token, the last marked end-of-word.
    fn bpe(&self, mut word: Vec<String>) -> Vec<String> {
        if let Some(last) = word.last_mut() {
            last.push_str("</w>");
        }
        loop {
            let best = word
                .windows(2)
                .filter_map(|p| {
                    self.ranks
                        .get(&(p[0].clone(), p[1].clone()))
                        .map(|r| (*r, p[0].clone(), p[1].clone()))
                })
                .min();
            let Some((_, a, b)) = best else { break };
            let mut merged = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == a && word[i + 1] == b {
                    merged.push(format!("{a}{b}"));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut word[i]));
                    i += 1;
                }
            }
            word = merged;
            if word.len() == 1 {
                break;
            }
        }
        word
    }

    /// The 77 ids of `text`: start, tokens, end, cut with the end token kept
    /// last, zero-padded.
    pub fn context(&self, text: &str) -> [u32; CONTEXT] {
        let mut out = [0u32; CONTEXT];
        out.copy_from_slice(&self.context_of(text, CONTEXT));
        out
    }

    /// The same for a model with a context of `n` ids (open_clip's
    /// `context_length`): `n` ids, cut with the end token kept last.
    pub fn context_of(&self, text: &str, n: usize) -> Vec<u32> {
        let mut ids = vec![self.start];
        ids.extend(self.encode(text));
        ids.push(self.end);
        if ids.len() > n {
            ids.truncate(n);
            ids[n - 1] = self.end;
        }
        ids.resize(n, 0);
        ids
    }
}

pub use crate::clean::clean;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_and_known_ids() {
        let t = Tokenizer::get();
        assert_eq!(t.vocab_size(), 49_408);
        assert_eq!((t.start, t.end), (49_406, 49_407));
        // "a photo of a cat." as CLIP tokenizes it.
        let ctx = t.context("a photo of a cat.");
        assert_eq!(ctx[0], 49_406);
        let end = ctx.iter().position(|&x| x == 49_407).unwrap();
        assert_eq!(&ctx[1..end], &[320, 1125, 539, 320, 2368, 269]);
        assert!(ctx[end + 1..].iter().all(|&x| x == 0));
    }

    #[test]
    fn long_texts_keep_the_end_token() {
        let t = Tokenizer::get();
        let ctx = t.context(&"word ".repeat(200));
        assert_eq!(ctx[0], t.start);
        assert_eq!(ctx[CONTEXT - 1], t.end);
        assert!(ctx[1..CONTEXT - 1].iter().all(|&x| x != 0 && x != t.end));
    }

    #[test]
    fn cleaning() {
        assert_eq!(
            clean("  A  “Big”\tDOG &amp;amp; ﬁsh\r\n"),
            "a \"big\" dog & fish"
        );
        assert_eq!(
            crate::clean::html_unescape("&#39;&#x41;&unknown;&"),
            "'A&unknown;&"
        );
    }
}
