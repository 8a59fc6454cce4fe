//! The candidates `wit extract` finds in real archives
//! (`tests/fixtures/warc/`, vendored from chatnoir-resiliparse's tests, as
//! ../shared/data/warc has them), held to the rows committed in
//! `tests/fixtures/warc-candidates.jsonl`: a change to the extractor (a
//! faster parser, a new shortcut) must find the same rows, field for field.
//!
//! After a change that is meant to alter them, rewrite the fixture with
//! `WIT_BLESS=1 cargo test -p wit-crawler --test golden` and review its
//! diff.

use std::path::PathBuf;

/// The vendored archives, sorted.
fn archives() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/warc");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".warc.gz"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{}", dir.display());
    files
}

#[test]
fn the_real_archives_give_the_committed_candidates() {
    let files = archives();
    let mut lines = Vec::new();
    for f in &files {
        let (rows, _) = wit_crawler::extract_archive(f).unwrap();
        for c in rows {
            lines.push(
                serde_json::json!({
                    "origin": c.origin,
                    "offset": c.origin_offset,
                    "url": c.url,
                    "text": c.text,
                    "source": c.text_source,
                    "page": c.page_url,
                    "title": c.page_title,
                    "lang": c.page_lang,
                    "width": c.width,
                    "height": c.height,
                    "uid": c.uid,
                })
                .to_string(),
            );
        }
    }
    let got = lines.join("\n") + "\n";
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/warc-candidates.jsonl");
    if std::env::var_os("WIT_BLESS").is_some() {
        std::fs::write(&fixture, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&fixture).unwrap();
    let (got, want): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "row {i} differs from the committed one");
    }
    assert_eq!(got.len(), want.len(), "rows found vs committed");
}
