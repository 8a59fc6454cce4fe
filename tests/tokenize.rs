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
