//! Scale-out with real parts: the dataset on a real S3 server (SeaweedFS,
//! signatures checked) and the stages as job arrays on a real single-node
//! Slurm, compared byte for byte with one local process.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Output};

use wit_contract::store::Remote;

use crate::util::*;

/// `wit demo-web` generated into `dir` and served on 127.0.0.1 until dropped.
pub struct DemoWeb {
    child: Child,
    pub url: String,
}

impl Drop for DemoWeb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn demo_web(dir: &Path, pages: u32) -> DemoWeb {
    let web = dir.join("web");
    let args = |serve: bool| {
        let mut a = vec![
            "demo-web".to_string(),
            "--out".into(),
            web.display().to_string(),
            "--pages".into(),
            pages.to_string(),
            "--eval-per-class".into(),
            "2".into(),
        ];
        if serve {
            a.push("--serve".into());
        }
        a
    };
    ok(&wit().args(args(false)).output().unwrap());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = wit()
        .args(args(true))
        .args(["--port", &port.to_string(), "-q"])
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    DemoWeb {
        child,
        url: format!("http://127.0.0.1:{port}/"),
    }
}

/// The store at `url`, with the test server's credentials.
pub fn remote(s3: &S3Server, url: &str) -> Remote {
    Remote::open_with(
        url,
        &[
            ("aws_access_key_id", S3_KEY),
            ("aws_secret_access_key", S3_SECRET),
            ("aws_endpoint", &s3.endpoint),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
        ],
    )
    .unwrap()
}

/// Every object under `rel`, name to bytes.
fn objects(r: &Remote, rel: &str) -> BTreeMap<String, Vec<u8>> {
    r.list(rel)
        .unwrap()
        .into_keys()
        .map(|name| {
            let bytes = r.get(&format!("{rel}/{name}")).unwrap().unwrap().to_vec();
            (name, bytes)
        })
        .collect()
}

/// Every file under `dir` (recursively), name to bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let name = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(name, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The files a run must reproduce byte for byte: data and global files, not
/// the records of when and how long (sidecars, manifests, journals).
fn reproducible(files: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    files
        .into_iter()
        .filter(|(n, _)| {
            let base = n.rsplit('/').next().unwrap_or(n);
            !(base.starts_with("_part-")
                || base == "_manifest.json"
                || base.starts_with(".tmp")
                || n.starts_with("_work/")
                || base.ends_with("_stats.json")
                || base == "summary.json")
        })
        .collect()
}

fn run_env(s3: &S3Server, args: &[&str]) -> Output {
    s3.env(&mut wit()).args(args).output().unwrap()
}

fn show(o: &Output) -> String {
    format!(
        "{:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn queries_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/demo-queries.txt")
}

/// The pairs of a candidates stage, as a set.
fn candidate_pairs(parts: &BTreeMap<String, Vec<u8>>) -> BTreeSet<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = BTreeSet::new();
    for (name, bytes) in parts {
        if !name.ends_with(".parquet") || name.starts_with('_') {
            continue;
        }
        let path = dir.path().join(name.replace('/', "_"));
        std::fs::write(&path, bytes).unwrap();
        for batch in
            wit_contract::pq::read_file(&path, &wit_contract::schema::candidates()).unwrap()
        {
            let batch = batch.unwrap();
            let urls = wit_contract::records::string_column(&batch, "url");
            let texts = wit_contract::records::string_column(&batch, "text");
            for i in 0..batch.num_rows() {
                out.insert((urls.value(i).to_string(), texts.value(i).to_string()));
            }
        }
    }
    out
}

const CRAWL: &[&str] = &[
    "--allow-private",
    "--delay",
    "0",
    "--per-host",
    "8",
    "--max-depth",
    "4",
    "--part-urls",
    "30",
];
const MATCH: &[&str] = &["--lang", "en"];
const BALANCE: &[&str] = &["-t", "20"];
const DOWNLOAD: &[&str] = &[
    "--allow-private",
    "--image-size",
    "32",
    "--resize-mode",
    "center_crop",
    "--shard-size",
    "40",
    "--per-host",
    "8",
];

fn toml_list(args: &[&str], extra: &[&str]) -> String {
    let all: Vec<String> = args.iter().chain(extra).map(|a| format!("{a:?}")).collect();
    format!("[{}]", all.join(", "))
}

fn pipeline(dataset: &str, seed: &str, tasks: u32) -> String {
    format!(
        r#"dataset = "{dataset}"
[resources]
cpus = 1
time = "00:20:00"
throttle = 2

[[stage]]
command = "queries import"
args = [{queries:?}]

[[stage]]
command = "crawl"
args = {crawl}

[[stage]]
command = "match"
args = {matching}
tasks = {tasks}

[[stage]]
command = "balance"
args = {balance}
tasks = {tasks}

[[stage]]
command = "download"
args = {download}
tasks = {tasks}
"#,
        queries = queries_file().display().to_string(),
        crawl = toml_list(CRAWL, &["--seed", seed]),
        matching = toml_list(MATCH, &[]),
        balance = toml_list(BALANCE, &[]),
        download = toml_list(DOWNLOAD, &[]),
    )
}

/// The same stages in one local process each; the candidates are copied
/// from `candidates` (the crawl's output depends on arrival order).
fn local_run(dir: &Path, candidates: &BTreeMap<String, Vec<u8>>) {
    let d = dir.to_str().unwrap();
    ok(&run(&[
        "queries",
        "import",
        queries_file().to_str().unwrap(),
        "-d",
        d,
    ]));
    let cand = dir.join("candidates");
    for (name, bytes) in candidates {
        let path = cand.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let stage = |cmd: &str, args: &[&str]| {
        let mut all = vec![cmd, "-d", d];
        all.extend_from_slice(args);
        ok(&run(&all));
    };
    stage("match", MATCH);
    stage("balance", BALANCE);
    stage("download", DOWNLOAD);
}

#[test]
fn the_demo_pipeline_on_s3_as_slurm_job_arrays_equals_one_local_process() {
    let Some(s3) = s3() else { return };
    let Some(()) = slurm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let web = demo_web(tmp.path(), 80);
    let url = s3.prefix("pipeline");
    let file = tmp.path().join("pipeline.toml");
    std::fs::write(&file, pipeline(&url, &web.url, 3)).unwrap();

    let clock = std::time::Instant::now();
    let out = run_env(
        s3,
        &[
            "slurm",
            file.to_str().unwrap(),
            "--out",
            tmp.path().join("slurm").to_str().unwrap(),
            "--poll",
            "0.5",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    eprintln!("slurm pipeline took {:.1} s", clock.elapsed().as_secs_f64());
    let r = remote(s3, &url);

    // At least 3 parts per partitioned stage, all on the store.
    for stage in ["candidates", "matched", "balanced", "shards"] {
        let m: serde_json::Value =
            serde_json::from_slice(&r.get(&format!("{stage}/_manifest.json")).unwrap().unwrap())
                .unwrap();
        assert!(m["parts"].as_u64().unwrap() >= 3, "{stage}: {m}");
        assert!(
            !m["inputs"].to_string().contains("wit-mirror"),
            "the manifest names the working directory: {m}"
        );
    }
    // No temporary objects are left on the store.
    let all = r.list("").unwrap();
    assert!(!all.keys().any(|k| k.contains(".tmp")), "{all:?}");

    // The crawl against a local crawl of the same site, as sets.
    let local = tmp.path().join("local");
    let crawl_dir = tmp.path().join("crawl-only");
    let mut crawl = vec![
        "crawl",
        "-d",
        crawl_dir.to_str().unwrap(),
        "--seed",
        &web.url,
    ];
    crawl.extend_from_slice(CRAWL);
    ok(&run(&crawl));
    let remote_candidates = objects(&r, "candidates");
    assert_eq!(
        candidate_pairs(&remote_candidates),
        candidate_pairs(&files(&crawl_dir.join("candidates")))
    );

    // Every later stage byte for byte against one local process each.
    local_run(&local, &remote_candidates);
    for stage in ["matched", "balanced", "shards"] {
        let want = reproducible(files(&local.join(stage)));
        let got = reproducible(objects(&r, stage));
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{stage}: other files"
        );
        for (name, bytes) in &want {
            assert!(got[name] == *bytes, "{stage}/{name} differs");
        }
    }
    let tars = objects(&r, "shards")
        .keys()
        .filter(|k| k.ends_with(".tar"))
        .count();
    assert!(tars >= 3, "{tars} shards");
}
