//! WebDataset shards against the Python `webdataset` library, both ways.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wit_contract::wds::{
    LocalOpener, Opener, ReadError, Sample, ShardReader, ShardStream, ShardWriter, expand_braces,
    maybe_gunzip,
};

use crate::util::*;

/// Every sample of a shard as the Python library reads it: key -> field -> hex.
const PY_READ: &str = r#"
import sys, json, webdataset as wds
out = []
for s in wds.WebDataset(sys.argv[1], shardshuffle=False, empty_check=False):
    out.append({"key": s["__key__"], "fields": {k: v.hex() for k, v in s.items() if not k.startswith("__")}})
print(json.dumps(out))
"#;

fn python_read(py: &Path, shard: &Path) -> Vec<(String, BTreeMap<String, Vec<u8>>)> {
    let out = std::process::Command::new(py)
        .args(["-c", PY_READ])
        .arg(shard)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let fields = s["fields"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, hex)| (k.clone(), unhex(hex.as_str().unwrap())))
                .collect();
            (s["key"].as_str().unwrap().to_string(), fields)
        })
        .collect()
}

fn our_read(shard: &Path) -> (Vec<Sample>, Vec<String>) {
    let file = std::fs::File::open(shard).unwrap();
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    ShardReader::new(maybe_gunzip(file).unwrap()).for_each(
        |r: Result<Sample, ReadError>| match r {
            Ok(s) => samples.push(s),
            Err(e) => errors.push(e.to_string()),
        },
    );
    (samples, errors)
}

#[test]
fn our_reader_reads_a_shard_written_by_the_python_library() {
    let shard =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webdataset/sample.tgz");
    let (ours, errors) = our_read(&shard);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(ours.len(), 90);
    for s in &ours {
        assert_eq!(s.fields.keys().collect::<Vec<_>>(), ["cls", "png"]);
        assert!(s.fields["png"].starts_with(b"\x89PNG"));
    }
    let Some(py) = python_with(&["webdataset"]) else {
        return;
    };
    let theirs = python_read(&py, &shard);
    let ours: Vec<(String, BTreeMap<String, Vec<u8>>)> =
        ours.into_iter().map(|s| (s.key, s.fields)).collect();
    assert_eq!(ours, theirs, "sample for sample");
}

#[test]
fn the_python_library_reads_our_shards() {
    let Some(py) = python_with(&["webdataset"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut want = Vec::new();
    let mut rng = Lcg(3);
    let mut w = ShardWriter::new(Vec::new());
    for i in 0..50u32 {
        let key = format!("{:09}", 10_000 + i);
        let jpg: Vec<u8> = (0..(rng.next() % 3000)).map(|_| rng.next() as u8).collect();
        let txt = format!("a photo of thing {i}, ünïcode");
        let json = format!("{{\"key\": \"{key}\", \"status\": \"success\"}}");
        w.write(
            &key,
            &[
                ("jpg", &jpg),
                ("txt", txt.as_bytes()),
                ("json", json.as_bytes()),
            ],
        )
        .unwrap();
        want.push((
            key,
            BTreeMap::from([
                ("jpg".to_string(), jpg),
                ("txt".to_string(), txt.into_bytes()),
                ("json".to_string(), json.into_bytes()),
            ]),
        ));
    }
    let path = dir.path().join("00000.tar");
    std::fs::write(&path, w.finish().unwrap()).unwrap();
    assert_eq!(python_read(&py, &path), want);
    let (ours, errors) = our_read(&path);
    assert!(errors.is_empty());
    let ours: Vec<(String, BTreeMap<String, Vec<u8>>)> =
        ours.into_iter().map(|s| (s.key, s.fields)).collect();
    assert_eq!(ours, want);
}

/// Shards over http(s), through wit's HTTP client.
struct HttpOpener(wit_net::http::Client);

impl Opener for HttpOpener {
    fn open(&self, shard: &str) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        self.0.open_stream(shard)
    }
}

#[test]
fn shards_stream_the_same_over_http_as_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    for s in 0..3 {
        let mut w = ShardWriter::new(Vec::new());
        for i in 0..200u32 {
            let body = vec![(i % 251) as u8; 3000 + i as usize];
            w.write(&format!("{s}{i:04}"), &[("bin", &body), ("txt", b"x")])
                .unwrap();
        }
        std::fs::write(
            dir.path().join(format!("shard-{s:03}.tar")),
            w.finish().unwrap(),
        )
        .unwrap();
    }
    let server = crate::server::Server::files(dir.path().to_path_buf());
    let local = expand_braces(
        &dir.path()
            .join("shard-{000..002}.tar")
            .display()
            .to_string(),
    )
    .unwrap();
    let remote = expand_braces(&server.url("/shard-{000..002}.tar")).unwrap();
    let client = wit_net::http::Client::new(&wit_net::http::ClientOptions {
        user_agent: "test".into(),
        policy: wit_net::addr::AddressPolicy {
            allow_private: true,
        },
        connect_timeout: std::time::Duration::from_secs(5),
        timeout: std::time::Duration::from_secs(30),
    })
    .unwrap();
    let http = HttpOpener(client);
    let read = |names: Vec<String>, opener: &dyn Opener| {
        let mut out = Vec::new();
        let counts = ShardStream::new(names, opener, 9, 50).epoch(3, |s| {
            // Each names its shard as given: a path here, a URL there.
            let shard = s.shard.rsplit('/').next().unwrap().to_string();
            out.push((shard, s.key, s.fields));
            true
        });
        (out, counts)
    };
    let (a, ca) = read(local, &LocalOpener);
    let (b, cb) = read(remote.clone(), &http);
    assert_eq!(a.len(), 600);
    assert_eq!(ca, cb);
    assert!(a == b, "the same samples in the same order");
    // A missing shard over http is counted, not fatal.
    let mut with_missing = remote;
    with_missing.push(server.url("/nope.tar"));
    let (c, cc) = read(with_missing, &http);
    assert_eq!((c.len(), cc.unopenable), (600, 1));
}

/// A tar of `members` (name, bytes) as other tools write them: GNU tar
/// headers, directories included when a name ends with `/`.
fn raw_tar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, bytes) in members {
        let mut h = tar::Header::new_gnu();
        if name.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_mode(0o755);
        } else {
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
        }
        h.set_mtime(0);
        // The name as written, `./` kept (`set_path` would drop it).
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, *bytes).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn member_names_follow_the_python_library_hidden_dotted_upper_case_meta_and_apart() {
    let members: Vec<(&str, &[u8])> = vec![
        // macOS tar: an AppleDouble `._` file beside every member.
        ("0000.jpg", b"jpeg 0"),
        ("._0000.jpg", b"\x00\x05\x16\x07 resource fork"),
        ("0000.txt", b"a cat"),
        ("._0000.txt", b"\x00\x05\x16\x07"),
        // A directory entry, a dotted directory, upper-case extensions.
        ("dir.v1/", b""),
        ("dir.v1/0001.JPG", b"jpeg 1"),
        ("dir.v1/0001.TXT", b"a dog"),
        ("dir.v1/.DS_Store", b"finder"),
        // `tar cf x.tar .` names.
        ("./0002.jpg", b"jpeg 2"),
        ("./0002.txt", b"a bird"),
        // Metadata, skipped; a name that only starts with `__` is a key.
        ("__index__", b"meta"),
        ("____/x.json", b"meta too"),
        ("__meta__/info.json", b"{}"),
        ("__key.jpg", b"jpeg k"),
        ("README", b"no extension"),
        ("0005.seg.png", b"mask"),
        ("0005.jpg", b"jpeg 5"),
        // Members of one key apart: each run is a sample of its own.
        ("0003.jpg", b"jpeg 3"),
        ("0004.jpg", b"jpeg 4"),
        ("0003.txt", b"a fish"),
        ("0004.txt", b"a cow"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.tar");
    std::fs::write(&path, raw_tar(&members)).unwrap();
    let (ours, errors) = our_read(&path);
    assert!(errors.is_empty(), "{errors:?}");
    let keys: Vec<(&str, Vec<&str>, bool)> = ours
        .iter()
        .map(|s| {
            (
                s.key.as_str(),
                s.fields.keys().map(String::as_str).collect(),
                s.split,
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("0000", vec!["jpg", "txt"], false),
            ("dir.v1/0001", vec!["jpg", "txt"], false),
            ("./0002", vec!["jpg", "txt"], false),
            ("__key", vec!["jpg"], false),
            ("0005", vec!["jpg", "seg.png"], false),
            ("0003", vec!["jpg"], false),
            ("0004", vec!["jpg"], false),
            ("0003", vec!["txt"], true),
            ("0004", vec!["txt"], true),
        ]
    );
    let mut reader = ShardReader::new(std::fs::File::open(&path).unwrap());
    reader.for_each(|_| {});
    assert_eq!(reader.skipped_members(), 4, "3 hidden members and README");
    let Some(py) = python_with(&["webdataset"]) else {
        return;
    };
    let theirs = python_read(&py, &path);
    let ours: Vec<(String, BTreeMap<String, Vec<u8>>)> =
        ours.into_iter().map(|s| (s.key, s.fields)).collect();
    assert_eq!(ours, theirs, "sample for sample, as webdataset reads it");
}
