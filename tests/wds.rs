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
                .map(|(k, hex)| {
                    let hex = hex.as_str().unwrap();
                    let bytes = (0..hex.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                        .collect();
                    (k.clone(), bytes)
                })
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
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/webdataset/sample.tgz");
    if !shard.is_file() {
        eprintln!("SKIP: {} is absent", shard.display());
        return;
    }
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
            out.push(s);
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
