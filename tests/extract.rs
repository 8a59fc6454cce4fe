//! `wit extract` over real web archives (crawler/tests/fixtures/warc), checked
//! against an independent reading with Python's `warcio` and `html.parser`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use wit_contract::records::string_column;
use wit_contract::schema::{self, col};

use crate::util::*;

/// The real archives, vendored with the crawler's tests
/// (crawler/tests/fixtures/warc, licences in its NOTICE.md).
fn archives_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crawler/tests/fixtures/warc")
}

const REFERENCE: &str = r#"
import sys, json
from urllib.parse import urljoin
from html.parser import HTMLParser
from warcio.archiveiterator import ArchiveIterator

class Images(HTMLParser):
    def __init__(self, page):
        super().__init__()
        self.base, self.count, self.urls, self.raw = page, 0, set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "base" and a.get("href"):
            self.base = urljoin(self.base, a["href"])
        if tag == "img":
            self.count += 1
            for key in ("src", "data-src", "data-lazy-src"):
                if a.get(key):
                    self.raw.append(a[key].strip())
            if a.get("srcset"):
                self.raw.append(a["srcset"].split(",")[0].split()[0] if a["srcset"].split() else "")
    handle_startendtag = handle_starttag

out = {}
for path in sys.argv[1:]:
    pages, images, urls, records, responses = 0, 0, set(), 0, 0
    with open(path, "rb") as f:
        for r in ArchiveIterator(f):
            records += 1
            responses += r.rec_type == "response"
            if r.rec_type != "response" or not r.http_headers:
                continue
            status = int(r.http_headers.get_statuscode() or 0)
            ct = (r.http_headers.get_header("Content-Type") or "").lower()
            if not (200 <= status < 300) or not ("text/html" in ct or "application/xhtml" in ct):
                continue
            pages += 1
            page = r.rec_headers.get_header("WARC-Target-URI").strip("<>")
            p = Images(page)
            p.feed(r.content_stream().read().decode("latin-1"))
            images += p.count
            urls.update(urljoin(p.base, u) for u in p.raw)
    out[path.rsplit("/", 1)[-1]] = {"pages": pages, "images": images, "urls": sorted(urls),
                                     "records": records, "responses": responses}
print(json.dumps(out))
"#;

fn candidate_urls(part: &Path) -> BTreeSet<String> {
    let mut urls = BTreeSet::new();
    for batch in wit_contract::pq::read_file(part, &schema::candidates()).unwrap() {
        let batch = batch.unwrap();
        urls.extend(
            string_column(&batch, col::URL)
                .iter()
                .flatten()
                .map(str::to_string),
        );
    }
    urls
}

fn sidecar(dataset: &Path, part: u32) -> serde_json::Value {
    let path = dataset.join(format!("candidates/_part-{part:05}.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn real_archives_match_an_independent_reading() {
    let warc = archives_dir();
    let Some(py) = python_with(&["warcio"]) else {
        return;
    };
    let files = [
        warc.join("warcfile.warc.gz"),
        warc.join("clueweb-quirk.warc.gz"),
        warc.join("whirlwind/whirlwind.warc.gz"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    let mut args = vec!["extract".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args.extend(["-d".into(), ds.display().to_string()]);
    ok(&wit().args(&args).output().unwrap());

    let o = std::process::Command::new(&py)
        .arg("-c")
        .arg(REFERENCE)
        .args(&files)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reference: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let mut total_candidates = 0;
    for (i, file) in files.iter().enumerate() {
        let name = file.file_name().unwrap().to_str().unwrap();
        let want = &reference[name];
        let counts = &sidecar(&ds, i as u32)["counts"];
        assert_eq!(counts["records"], want["records"], "{name}: records");
        assert_eq!(
            counts["responses"], want["responses"],
            "{name}: response records"
        );
        assert_eq!(counts["html_pages"], want["pages"], "{name}: HTML pages");
        assert_eq!(counts["images"], want["images"], "{name}: <img> elements");
        let allowed: BTreeSet<String> = want["urls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_string())
            .collect();
        let ours = candidate_urls(&ds.join(format!("candidates/part-{i:05}.parquet")));
        let strays: Vec<&String> = ours.iter().filter(|u| !allowed.contains(*u)).collect();
        assert!(
            strays.is_empty(),
            "{name}: image URLs the reference does not resolve: {strays:?}"
        );
        total_candidates += counts["candidates"].as_u64().unwrap();
    }
    // ../shared/data/README.md (where they come from): 32 alt texts in
    // warcfile, 556 in clueweb-quirk;
    // after boilerplate and per-page repeats, hundreds remain.
    assert!(total_candidates > 400, "{total_candidates}");
}

#[test]
fn broken_archives_are_counted_not_fatal() {
    let warc = archives_dir();
    let files = [
        warc.join("clipped.warc.gz"),
        warc.join("warcio/example-bad.warc.gz.bad"),
        warc.join("warcio/example-trunc.warc"),
        warc.join("warcio/example-wrong-chunks.warc.gz"),
        warc.join("warcio/example-bad-non-chunked.warc.gz"),
        warc.join("block-sized-records.warc.gz"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    let mut args = vec!["extract".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args.extend(["-d".into(), ds.display().to_string()]);
    let o = wit().args(&args).output().unwrap();
    ok(&o);
    // Per file: records read, and damage counted (bad records plus bad
    // gzip members). Each file's reading is held to these, and to warcio's.
    let want: [(u64, u64); 6] = [
        // The one record is cut short: counted, not read.
        (0, 1),
        // One gzip stream around the whole file: read whole.
        (6, 0),
        // The last record is cut short.
        (4, 1),
        // A response whose chunked body is broken, and what follows it.
        (1, 2),
        // A body that is not chunked although the header says so: read.
        (6, 0),
        // Records ending exactly on block boundaries: nothing damaged.
        (3, 0),
    ];
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    let mut got = Vec::new();
    for i in 0..files.len() {
        let c = &sidecar(&ds, i as u32)["counts"];
        got.push((
            n(c, "records"),
            n(c, "bad_records") + n(c, "bad_gzip_members"),
        ));
    }
    assert_eq!(got, want, "(records, damaged) per file");
    let Some(py) = python_with(&["warcio"]) else {
        return;
    };
    let o = std::process::Command::new(&py)
        .arg("-c")
        .arg(WARCIO_COUNTS)
        .args(&files)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let theirs: Vec<(u64, bool)> = serde_json::from_slice(&o.stdout).unwrap();
    for ((f, (records, damaged)), (warcio_records, warcio_failed)) in
        files.iter().zip(&got).zip(&theirs)
    {
        let name = f.file_name().unwrap().to_string_lossy();
        // Nothing warcio reads is lost: each of its records is read or
        // counted as damaged.
        assert!(
            records + damaged >= *warcio_records,
            "{name}: {records} read and {damaged} damaged, warcio read {warcio_records}"
        );
        // Where warcio gives up, wit counts the damage or reads past it.
        if *warcio_failed {
            assert!(
                *damaged > 0 || records > warcio_records,
                "{name}: warcio failed after {warcio_records} records, wit read {records} and counted no damage"
            );
        }
    }
}

/// Per file, the records warcio reads (bodies included) before it stops,
/// and whether it stopped on an error: `[[records, failed], ...]`.
const WARCIO_COUNTS: &str = r#"
import sys, json
from warcio.archiveiterator import ArchiveIterator
out = []
for path in sys.argv[1:]:
    n, failed = 0, False
    try:
        with open(path, "rb") as f:
            for r in ArchiveIterator(f):
                r.content_stream().read()
                n += 1
    except Exception:
        failed = True
    out.append([n, failed])
print(json.dumps(out))
"#;

/// Writes a WARC with warcio: one HTML response per content coding (the
/// bodies made by Python's gzip, zlib, brotli and zstandard), then reads it
/// back with warcio and prints, per page, the HTML as those libraries undo
/// its codings; null where they cannot.
const CODINGS: &str = r#"
import sys, io, json, gzip, zlib, brotli, zstandard
from warcio.warcwriter import WARCWriter
from warcio.statusandheaders import StatusAndHeaders
from warcio.archiveiterator import ArchiveIterator

def page(name):
    return f'<html><body><img src="/{name}.jpg" alt="A photo of the {name} page"></body></html>'.encode()
def raw_deflate(b):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(b) + c.flush()
zc = zstandard.ZstdCompressor()
cases = [
    ("gzip", "gzip", gzip.compress),
    ("xgzip", "x-gzip", gzip.compress),
    ("deflate", "deflate", zlib.compress),
    ("rawdeflate", "deflate", raw_deflate),
    ("brotli", "br", brotli.compress),
    ("zstd", "zstd", zc.compress),
    ("stacked", "gzip, br", lambda b: brotli.compress(gzip.compress(b))),
    ("identity", "identity", lambda b: b),
    ("storeddecoded", "br", lambda b: b),
    ("compress", "compress", lambda b: b"\x1f\x9d\x90" + b[:20]),
    ("corrupt", "br", lambda b: b"\x00\xff\x13 not brotli at all \x00" * 3),
]
with open(sys.argv[1], "wb") as f:
    w = WARCWriter(f, gzip=False)
    for name, coding, encode in cases:
        body = encode(page(name))
        headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html"), ("Content-Encoding", coding), ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
        w.write_record(w.create_warc_record(f"http://example.org/{name}.html", "response", payload=io.BytesIO(body), http_headers=headers))

def undo(coding, data):
    for c in reversed([c.strip() for c in coding.split(",")]):
        if c in ("gzip", "x-gzip"):
            data = gzip.decompress(data)
        elif c == "deflate":
            try:
                data = zlib.decompress(data)
            except zlib.error:
                data = zlib.decompress(data, -15)
        elif c == "br":
            data = brotli.decompress(data)
        elif c == "zstd":
            data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        elif c != "identity":
            raise ValueError("unknown coding " + c)
    return data

out = {}
with open(sys.argv[1], "rb") as f:
    for r in ArchiveIterator(f):
        if r.rec_type != "response":
            continue
        name = r.rec_headers.get_header("WARC-Target-URI").rsplit("/", 1)[-1][:-5]
        coding = r.http_headers.get_header("Content-Encoding")
        try:
            data = undo(coding, r.raw_stream.read())
        except Exception:
            data = None
        if name == "storeddecoded":
            # Kept decoded under its header: a reader takes the body as it is.
            data = page(name)
        out[name] = data.decode("utf-8") if data is not None else None
print(json.dumps(out))
"#;

#[test]
fn every_content_coding_of_real_archives_is_decoded_or_counted() {
    let Some(py) = python_with(&["warcio", "brotli", "zstandard"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let warc = tmp.path().join("codings.warc");
    let o = std::process::Command::new(&py)
        .args(["-c", CODINGS])
        .arg(&warc)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reference: BTreeMap<String, Option<String>> = serde_json::from_slice(&o.stdout).unwrap();
    let ds = tmp.path().join("ds");
    ok(&wit()
        .args([
            "extract",
            warc.to_str().unwrap(),
            "-d",
            ds.to_str().unwrap(),
        ])
        .output()
        .unwrap());
    let ours = candidate_urls(&ds.join("candidates/part-00000.parquet"));
    let counts = &sidecar(&ds, 0)["counts"];
    let mut decodable = 0;
    for (name, html) in &reference {
        let url = format!("http://example.org/{name}.jpg");
        match html {
            // Whatever the reference decodes gives its image, from its text.
            Some(html) => {
                decodable += 1;
                assert!(
                    html.contains(&format!("alt=\"A photo of the {name} page\"")),
                    "{name}"
                );
                assert!(ours.contains(&url), "{name}: {ours:?}");
            }
            None => assert!(!ours.contains(&url), "{name}"),
        }
    }
    assert_eq!(decodable, 9, "{reference:?}");
    assert_eq!(counts["html_pages"], 9, "{counts}");
    assert_eq!(counts["undecodable_body"], 2, "{counts}");
    assert_eq!(counts["undecodable_body_unknown_compress"], 1, "{counts}");
    assert_eq!(counts["undecodable_body_corrupt_br"], 1, "{counts}");
}

/// What the extractor finds on each page of a real documentation site
/// (Debian's python-skimage-doc: 198 Sphinx pages, 9 MB), held to the rows
/// committed in `tests/fixtures/skimage-extract.jsonl`: candidates field for
/// field, every counter, the links and frames. The second corpus (after the
/// crawler's vendored archives) a change of parser must leave unchanged.
/// `WIT_BLESS=1` rewrites the fixture; review its diff.
#[test]
fn a_real_site_gives_the_committed_candidates_and_links() {
    let Some(root) = skimage_docs() else {
        return;
    };
    let mut pages = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "html") {
                pages.push(p);
            }
        }
    }
    pages.sort();
    assert!(pages.len() > 150, "{} pages", pages.len());
    let mut got = String::new();
    for page in &pages {
        let rel = page
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let body = std::fs::read(page).unwrap();
        let (text, _, _) = wit_crawler::html::decode_html(&body, Some("text/html"));
        let url = format!("http://docs.test/{rel}");
        let p = wit_crawler::html::extract(&url, &text, None);
        let rows: Vec<serde_json::Value> = p
            .candidates
            .iter()
            .map(|c| {
                serde_json::json!([
                    c.url,
                    c.text,
                    c.text_source,
                    c.page_title,
                    c.page_lang,
                    c.width,
                    c.height
                ])
            })
            .collect();
        let counts: Vec<u64> = p.image_counts().iter().map(|(_, n)| *n).collect();
        got += &serde_json::json!({
            "page": rel,
            "counts": counts,
            "boilerplate": p.boilerplate,
            "repeats": p.repeats,
            "robots": [p.nofollow, p.noindex],
            "rows": rows,
            "links": p.links,
            "frames": p.frames,
        })
        .to_string();
        got.push('\n');
    }
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/skimage-extract.jsonl");
    if std::env::var_os("WIT_BLESS").is_some() {
        std::fs::create_dir_all(fixture.parent().unwrap()).unwrap();
        std::fs::write(&fixture, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&fixture).unwrap();
    let (got, want): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "a page's extraction differs from the committed one");
    }
    assert_eq!(got.len(), want.len(), "pages read vs committed");
}

/// Every `WARC-Date` form W3C-DTF allows (WARC/1.1 §5.4), as Python's
/// `datetime` reads it (a reduced form as its period's first instant, the
/// W3C note's own reading), and as warcio's `iso_date_to_datetime` reads the
/// forms it handles; forms no spec allows are counted, their candidates kept.
#[test]
fn every_w3c_dtf_warc_date_gives_the_fetch_time() {
    let Some(py) = python_with(&["warcio"]) else {
        return;
    };
    let dates = [
        "2024",
        "2024-05",
        "2024-05-01",
        "2024-05-01T10:20Z",
        "2024-05-01T10:20:30Z",
        "2024-05-01T10:20:30.25Z",
        "2024-05-01T10:20:30.123456789Z",
        "2024-05-01T10:20+02:00",
        "2024-05-01T10:20:30-05:30",
        "2024-05-01T10:20:30.5+01:00",
    ];
    let unreadable = ["2024-5-1", "2024-05-01T10:20", "May 1 2024", "2024-02-30"];
    let dir = tempfile::tempdir().unwrap();
    let warc = dir.path().join("dates.warc");
    let mut body = String::new();
    for (i, date) in dates.iter().chain(&unreadable).enumerate() {
        let html = format!(
            "<html><body><img src=\"/i{i}.jpg\" alt=\"A red kite over a hill {i}\"></body></html>"
        );
        let http = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{html}",
            html.len()
        );
        body.push_str(&format!(
            "WARC/1.1\r\nWARC-Type: response\r\nWARC-Target-URI: http://example.org/p{i}\r\n\
             WARC-Date: {date}\r\nWARC-Record-ID: <urn:uuid:d-{i}>\r\n\
             Content-Type: application/http; msgtype=response\r\nContent-Length: {}\r\n\r\n{http}\r\n\r\n",
            http.len()
        ));
    }
    std::fs::write(&warc, body).unwrap();
    let ds = dir.path().join("ds");
    ok(&run(&[
        "extract",
        "-d",
        ds.to_str().unwrap(),
        warc.to_str().unwrap(),
    ]));

    let mut got: BTreeMap<String, Option<i64>> = BTreeMap::new();
    for (_, path) in wit_contract::layout::list_parts(&ds.join("candidates")).unwrap() {
        for batch in wit_contract::pq::read_file(&path, &schema::candidates()).unwrap() {
            let batch = batch.unwrap();
            let page = string_column(&batch, col::PAGE_URL);
            let time = batch
                .column_by_name(col::FETCH_TIME)
                .unwrap()
                .as_any()
                .downcast_ref::<arrow_array::TimestampMillisecondArray>()
                .unwrap();
            for r in 0..batch.num_rows() {
                let t = (!arrow_array::Array::is_null(time, r)).then(|| time.value(r));
                got.insert(page.value(r).to_string(), t);
            }
        }
    }
    let script = r#"
import sys, json, datetime
from warcio.timeutils import iso_date_to_datetime
utc = datetime.timezone.utc
out = []
for d in json.loads(sys.argv[1]):
    full = d + "-01" * (3 - len(d.split("-"))) if "T" not in d else d
    t = datetime.datetime.fromisoformat(full.replace("Z", "+00:00"))
    t = t.replace(tzinfo=utc) if t.tzinfo is None else t
    ms = round(t.timestamp() * 1000)
    # warcio where it reads the form (dates of a day and Z times).
    if len(d.split("-")) == 3 and ("T" not in d or d.endswith("Z")):
        w = iso_date_to_datetime(d).replace(tzinfo=utc)
        assert abs(w.timestamp() * 1000 - ms) < 1, (d, w, t)
    out.append(ms)
print(json.dumps(out))
"#;
    let out = std::process::Command::new(&py)
        .arg("-c")
        .arg(script)
        .arg(serde_json::to_string(&dates).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<i64> = serde_json::from_slice(&out.stdout).unwrap();
    for (i, (date, ms)) in dates.iter().zip(&want).enumerate() {
        let page = format!("http://example.org/p{i}");
        // Python's datetime keeps microseconds: within a millisecond.
        let t = got[&page].unwrap_or_else(|| panic!("{date}: no fetch time"));
        assert!((t - ms).abs() <= 1, "{date}: {t} against {ms}");
    }
    for i in dates.len()..dates.len() + unreadable.len() {
        assert_eq!(got[&format!("http://example.org/p{i}")], None);
    }
    let counts = sidecar(&ds, 0)["counts"].clone();
    assert_eq!(counts["warc_date_unreadable"], 4, "{counts}");
    assert_eq!(counts["candidates"], 14, "{counts}");
}
