//! `wit tokenize` gives open_clip's ids on real captions (web-archive alt
//! texts in Chinese, Russian and English, documentation alts, edge cases),
//! against ids made by scripts/tokenizer-reference.py with open_clip itself.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

use crate::util::*;

#[test]
fn ids_equal_open_clips_on_real_captions() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("trainer/tests/data");
    let captions = std::fs::read_to_string(data.join("captions.txt")).unwrap();
    let want: Vec<String> = std::fs::read_to_string(data.join("caption_ids.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let mut child = wit()
        .arg("tokenize")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(captions.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    ok(&out);
    let got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let lines: Vec<&str> = captions.lines().collect();
    assert_eq!(got.len(), want.len());
    assert!(want.len() >= 200);
    let differ: Vec<(&str, &String, &String)> = lines
        .iter()
        .zip(&got)
        .zip(&want)
        .filter(|((_, g), w)| g != w)
        .map(|((l, g), w)| (*l, g, w))
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} captions differ; first: {:?}",
        differ.len(),
        want.len(),
        differ.first()
    );
}

/// 2,249 generated lines of every class open_clip's cleaning treats
/// specially (scripts/tokenizer-cases.py: every HTML5 entity with and
/// without `;`, numeric references, C0 and C1 controls, terminal escapes,
/// mojibake one to three layers deep, zero-width and bidi characters, emoji
/// sequences, ligatures, widths, quotes, white space), against the cleaned
/// text and ids open_clip gives (scripts/tokenizer-reference.py --jsonl).
#[test]
fn cleaning_and_ids_equal_open_clips_on_every_class_of_unusual_text() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("trainer/tests/data");
    let captions: Vec<String> = std::fs::read_to_string(data.join("unusual_captions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: Vec<serde_json::Value> =
        std::fs::read_to_string(data.join("unusual_caption_ids.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(captions.len(), want.len());
    assert!(captions.len() >= 2000);
    let tok = wit_trainer::tokenizer::Tokenizer::get();
    let mut differ = Vec::new();
    for (caption, want) in captions.iter().zip(&want) {
        let clean = wit_trainer::clean::clean(caption);
        let mut ids = tok.context(caption).to_vec();
        while ids.last() == Some(&0) {
            ids.pop();
        }
        let want_ids: Vec<u32> = serde_json::from_value(want["ids"].clone()).unwrap();
        if clean != want["clean"].as_str().unwrap() || ids != want_ids {
            differ.push(format!(
                "{caption:?}: wit {clean:?}, open_clip {:?}",
                want["clean"].as_str().unwrap()
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} lines differ: {:#?}",
        differ.len(),
        captions.len(),
        &differ[..differ.len().min(20)]
    );
}
