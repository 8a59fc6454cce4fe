//! Resumable, shardable stages: a stage killed with SIGKILL in the middle and
//! rerun gives byte-identical output to an uninterrupted run, and N processes
//! sharing a stage with --parts/--part give the same output as one.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::*;

const PARTS: u32 = 24;
const ROWS: usize = 3000;

/// A dataset with queries and candidates, ready for `wit match`.
fn dataset(root: &Path, name: &str) -> std::path::PathBuf {
    let ds = root.join(name);
    let list = root.join(format!("{name}-queries.txt"));
    write_queries(&list);
    ok(&run(&[
        "queries",
        "import",
        list.to_str().unwrap(),
        "-d",
        ds.to_str().unwrap(),
    ]));
    write_candidates(&ds, PARTS, ROWS);
    ds
}

fn sidecars(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter(|e| {
            let n = e.as_ref().unwrap().file_name().into_string().unwrap();
            n.starts_with("_part-") && n.ends_with(".json")
        })
        .count()
    })
}

#[test]
fn sigkill_in_the_middle_then_rerun_gives_identical_output() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = dataset(tmp.path(), "reference");
    ok(&run(&[
        "match",
        "-d",
        reference.to_str().unwrap(),
        "--jobs",
        "2",
    ]));
    let want = data_files(&reference.join("matched"));
    assert_eq!(want.len(), PARTS as usize);

    let killed = dataset(tmp.path(), "killed");
    let out = killed.join("matched");
    // The last candidates part is a FIFO that nobody writes to: the worker
    // that takes it waits in open() until the test kills the run, so the run
    // cannot finish first, however the machine schedules it. The other parts
    // go on being matched, and the kill lands with parts in flight.
    let held = killed
        .join("candidates")
        .join(format!("part-{:05}.parquet", PARTS - 1));
    let real = held.with_extension("real");
    std::fs::rename(&held, &real).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&held)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {}", held.display());
    let mut child = wit()
        .args(["match", "-d", killed.to_str().unwrap(), "--jobs", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once a part is committed and the next one is under way.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = 0;
    while seen < 2 {
        if Instant::now() >= deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("wit match committed {seen} parts and then stopped, or took 120 s");
        }
        seen = sidecars(&out);
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let done_before = sidecars(&out);
    assert!(
        done_before < PARTS as usize && !out.join("_manifest.json").exists(),
        "{done_before} parts were committed with one part's input held back"
    );
    std::fs::remove_file(&held).unwrap();
    std::fs::rename(&real, &held).unwrap();

    let rerun = run(&["match", "-d", killed.to_str().unwrap(), "--jobs", "2"]);
    ok(&rerun);
    assert!(
        stderr(&rerun).contains(&format!("skipped {done_before} already complete")),
        "{}",
        stderr(&rerun)
    );
    assert_eq!(tmp_files(&out), Vec::<String>::new());
    let got = data_files(&out);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &want {
        assert!(got[name] == *bytes, "{name} differs after kill and rerun");
    }
    let (a, b) = (
        manifest(&reference, "matched"),
        manifest(&killed, "matched"),
    );
    assert_eq!(a["counts"], b["counts"]);
    assert_eq!(a["params_hash"], b["params_hash"]);
    let counts = &a["counts"];
    assert_eq!(counts["candidates"], u64::from(PARTS) * ROWS as u64);
    // Every candidate is matched, or dropped for one reason.
    let accounted: u64 = counts
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| {
            k.starts_with("dropped_")
                || *k == "duplicates_in_part"
                || *k == "no_match"
                || *k == "matched"
        })
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert_eq!(accounted, u64::from(PARTS) * ROWS as u64);
}

#[test]
fn three_processes_sharing_a_stage_equal_one() {
    let tmp = tempfile::tempdir().unwrap();
    let one = dataset(tmp.path(), "one");
    ok(&run(&["match", "-d", one.to_str().unwrap(), "--jobs", "1"]));

    let shared = dataset(tmp.path(), "shared");
    let children: Vec<_> = (0..3)
        .map(|i| {
            wit()
                .args([
                    "match",
                    "-d",
                    shared.to_str().unwrap(),
                    "--jobs",
                    "1",
                    "--parts",
                    "3",
                ])
                .args(["--part", &i.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        ok(&child.wait_with_output().unwrap());
    }
    assert_eq!(
        data_files(&shared.join("matched")),
        data_files(&one.join("matched"))
    );
    assert_eq!(
        manifest(&shared, "matched")["counts"],
        manifest(&one, "matched")["counts"]
    );
}

#[test]
fn rerun_with_other_parameters_is_refused_until_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = dataset(tmp.path(), "ds");
    let d = ds.to_str().unwrap();
    ok(&run(&["match", "-d", d]));
    let again = run(&["match", "-d", d, "--lowercase"]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("other parameters"),
        "{}",
        stderr(&again)
    );
    let forced = run(&["match", "-d", d, "--lowercase", "--force"]);
    ok(&forced);
    assert_eq!(manifest(&ds, "matched")["params"]["case"], "fold");
}
