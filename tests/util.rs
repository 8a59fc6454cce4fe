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
                Candidate::new(
                    format!("http://img.example/{part}/{i}.jpg"),
                    text.trim_end(),
                    "alt",
                    format!("http://page.example/{part}"),
                )
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
        if !name.starts_with('_') && !name.starts_with('.') {
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
    std::fs::create_dir_all(home.join(".cache/wit")).ok()?;
    let lock = std::fs::File::create(home.join(".cache/wit/python-venv.lock")).ok()?;
    // SAFETY: flock on a file descriptor we own; released when `lock` is dropped.
    unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    let python = venv.join("bin/python");
    if !python.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("SKIP: cannot create a Python venv at {}", venv.display());
            return None;
        }
    }
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new(&python)
                .args(["-c", &format!("import {p}")])
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if !missing.is_empty() {
        let installed = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(&missing)
            .status();
        if !installed.is_ok_and(|s| s.success()) {
            eprintln!("SKIP: pip could not install {missing:?} (no registry access?)");
            return None;
        }
    }
    Some(python)
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
            eprintln!("SKIP: apt-get cannot download Debian's {name} here");
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
        eprintln!("SKIP: cannot unpack {}", deb.display());
        return None;
    }
    Some(root)
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
