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

/// Compares `lines` with the committed `tests/fixtures/NAME`, line by line;
/// under `WIT_BLESS=1` rewrites it instead.
fn held_to_fixture(lines: &[String], name: &str) {
    let got = lines.join("\n") + "\n";
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    if std::env::var_os("WIT_BLESS").is_some() {
        std::fs::write(&fixture, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&fixture).unwrap();
    let (got, want): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{name}: row {i} differs from the committed one");
    }
    assert_eq!(got.len(), want.len(), "{name}: rows found vs committed");
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
    held_to_fixture(&lines, "warc-candidates.jsonl");
}

/// A WAT file of hand-made records for what real ones may hold: escapes,
/// nulls, missing fields, links that are not images, a `<base>`, repeats,
/// a record of broken JSON, and a metadata record that is not JSON.
fn tricky_wat(dir: &std::path::Path) -> PathBuf {
    use std::io::Write;
    let records = [
        r#"{"Envelope":{"WARC-Header-Metadata":{"WARC-Type":"response","WARC-Target-URI":"http://example.org/a/page.html"},"Payload-Metadata":{"HTTP-Response-Metadata":{"Headers":{"Server":"x"},"HTML-Metadata":{"Head":{"Title":"  A caf\u00e9 \/ \"quoted\"  page ","Base":"/media/","Metas":[{"name":"x","content":"y"}]},"Links":[{"path":"IMG@/src","url":"dog.jpg","alt":"A brown dog on a sofa","title":"Dog"},{"path":"A@/href","url":"other.html","text":"next"},{"path":"IMG@/src","url":"dog.jpg","alt":"A brown dog on a sofa"},{"path":"IMG@/src","url":"logo.png","alt":"logo"},{"path":"IMG@/src","alt":"no url at all"},{"path":"IMG@/src","url":"mailto:x@y","alt":"not http"},{"path":"IMG@/src","url":"https://cdn.example/\u00e9t\u00e9.jpg","alt":"Summer \ud83c\udf1e at the beach","title":null},{"path":"LINK@/href","url":"style.css"}]}}}},"Container":{"Offset":"0"}}"#,
        r#"{"Envelope":{"WARC-Header-Metadata":{"WARC-Target-URI":"http://example.org/no-html"},"Payload-Metadata":{"HTTP-Response-Metadata":{"Headers":{}}}}}"#,
        r#"{"Envelope":{"WARC-Header-Metadata":{"WARC-Target-URI":"http://example.org/null-html"},"Payload-Metadata":{"HTTP-Response-Metadata":{"HTML-Metadata":null}}}}"#,
        r#"{"Envelope":{"WARC-Header-Metadata":{"WARC-Target-URI":"http://example.org/t"},"Payload-Metadata":{"HTTP-Response-Metadata":{"HTML-Metadata":{"Head":{},"Links":[{"path":"IMG@/src","url":"/x.jpg","alt":"A title-less page's image"}]}}}}}"#,
        r#"{"Envelope":{"WARC-Header-Metadata":{"WARC-Target-URI":"http://example.org/broken"},"Payload-Metadata":{"HTTP-Response-Meta"#,
        "fetchTimeMs: 123\r\ncharset-detected: UTF-8",
    ];
    let path = dir.join("tricky.warc.wat.gz");
    let mut file = std::fs::File::create(&path).unwrap();
    for body in records {
        let record = format!(
            "WARC/1.0\r\nWARC-Type: metadata\r\nWARC-Target-URI: x\r\nWARC-Date: 2024-05-31T01:17:49Z\r\nContent-Length: {}\r\n\r\n{body}\r\n\r\n",
            body.len()
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(record.as_bytes()).unwrap();
        file.write_all(&gz.finish().unwrap()).unwrap();
    }
    path
}

/// WAT files (Common Crawl's layout): one made from the vendored archives
/// (`tests/fixtures/wat/pages.warc.wat.gz`: a `metadata` record per HTML
/// response, its `HTML-Metadata` holding every `<img src>` with `alt` and
/// `title`, every `<a href>` and the `<title>`), and hand-made records;
/// the rows and counters are held to `tests/fixtures/wat-candidates.jsonl`.
#[test]
fn wat_files_give_the_committed_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wat/pages.warc.wat.gz"),
        tricky_wat(dir.path()),
    ];
    let mut lines = Vec::new();
    for f in &files {
        let (rows, counts) = wit_crawler::extract_archive(f).unwrap();
        lines.push(serde_json::json!({ "file": f.file_name().unwrap().to_string_lossy(), "counts": counts }).to_string());
        for c in rows {
            lines.push(
                serde_json::json!({
                    "offset": c.origin_offset,
                    "url": c.url,
                    "text": c.text,
                    "source": c.text_source,
                    "page": c.page_url,
                    "title": c.page_title,
                    "uid": c.uid,
                })
                .to_string(),
            );
        }
    }
    held_to_fixture(&lines, "wat-candidates.jsonl");
}
