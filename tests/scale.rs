//! Issue 18: the bucketed passes of `wit balance` (repeats) and of the
//! download plan (the global shuffle) on 200,000 generated candidates give
//! the bytes the in-memory algorithm gives, whatever the memory budget (1 or
//! 60 buckets), the number of processes, or a kill -9 in the middle.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt32Type, UInt64Type};
use wit_contract::pq;
use wit_contract::records::string_column;
use wit_contract::schema::{self, col};

use crate::util::*;

const T: &str = "20";
const SHARD_SIZE: &str = "1000";

/// 200,000 candidates in 10 parts, their queries imported and matched, made
/// once for the tests of this module.
fn corpus() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        ok(&run(&[
            "demo-candidates",
            "-d",
            d,
            "--rows",
            "200000",
            "--part-rows",
            "20000",
            "-q",
        ]));
        let queries = dir.path().join("queries.txt");
        ok(&run(&[
            "queries",
            "import",
            queries.to_str().unwrap(),
            "-d",
            d,
            "-q",
        ]));
        ok(&run(&["match", "-d", d, "-q"]));
        dir
    })
    .path()
}

/// A new dataset holding the corpus's `matched/` (and `queries/`).
fn copy_of_matched(dir: &Path) -> PathBuf {
    for stage in ["queries", "matched"] {
        let from = corpus().join(stage);
        let to = dir.join(stage);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(&from).unwrap() {
            let e = e.unwrap();
            if e.path().is_file() {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            } else {
                let sub = to.join(e.file_name());
                std::fs::create_dir_all(&sub).unwrap();
                for f in std::fs::read_dir(e.path()).unwrap() {
                    let f = f.unwrap();
                    std::fs::copy(f.path(), sub.join(f.file_name())).unwrap();
                }
            }
        }
    }
    dir.to_path_buf()
}

/// Output files (path in the dataset, bytes).
type Files = Vec<(String, Vec<u8>)>;

/// Every output file a later stage or a user reads, with its bytes.
fn outputs(ds: &Path) -> Files {
    let mut out = Vec::new();
    for sub in [
        "balanced",
        "balanced/_global",
        "balanced/_global/duplicates",
        "shards/_plan",
    ] {
        for (name, bytes) in data_files(&ds.join(sub)) {
            out.push((format!("{sub}/{name}"), bytes));
        }
    }
    out
}

fn names(files: &[(String, Vec<u8>)]) -> Vec<&str> {
    files.iter().map(|f| f.0.as_str()).collect()
}

fn balance_and_plan(ds: &Path, extra_balance: &[&str], extra_plan: &[&str]) {
    let d = ds.to_str().unwrap();
    let mut args = vec!["balance", "-d", d, "-t", T, "-q"];
    args.extend(extra_balance);
    ok(&run(&args));
    let mut args = vec![
        "download",
        "-d",
        d,
        "--plan-only",
        "--shard-size",
        SHARD_SIZE,
        "-q",
    ];
    args.extend(extra_plan);
    ok(&run(&args));
}

/// The reference: one process, the default budget (one bucket).
fn reference() -> &'static [(String, Vec<u8>)] {
    static REF: OnceLock<(tempfile::TempDir, Files)> = OnceLock::new();
    &REF.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ds = copy_of_matched(dir.path());
        balance_and_plan(&ds, &[], &[]);
        let files = outputs(&ds);
        (dir, files)
    })
    .1
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn prefix(uid: &str) -> u64 {
    u64::from_str_radix(&uid[..16], 16).unwrap()
}

#[test]
fn bucketed_passes_match_the_in_memory_algorithm_whatever_the_budget_and_split() {
    let reference = reference();
    let ref_dir = tempfile::tempdir().unwrap();
    let ds = copy_of_matched(ref_dir.path());
    balance_and_plan(&ds, &[], &[]);

    // The in-memory algorithm, written out here: repeats are the rows whose
    // uid prefix was seen earlier in part and row order.
    let mut seen = HashSet::new();
    let mut repeats: Vec<(u32, u64)> = Vec::new();
    for part in 0..10u32 {
        let path = ds.join(format!("matched/part-{part:05}.parquet"));
        let mut row = 0u64;
        for batch in pq::read_file(&path, &schema::matched()).unwrap() {
            let batch = batch.unwrap();
            for uid in string_column(&batch, col::UID).iter() {
                if !seen.insert(prefix(uid.unwrap())) {
                    repeats.push((part, row));
                }
                row += 1;
            }
        }
    }
    let mut found: Vec<(u32, u64)> = Vec::new();
    for part in 0..10u32 {
        let path = ds.join(format!(
            "balanced/_global/duplicates/part-{part:05}.parquet"
        ));
        for batch in pq::read_file(&path, &schema::duplicates()).unwrap() {
            let batch = batch.unwrap();
            let parts = batch.column(0).as_primitive::<UInt32Type>();
            let rows = batch.column(1).as_primitive::<UInt64Type>();
            found.extend(
                parts
                    .values()
                    .iter()
                    .copied()
                    .zip(rows.values().iter().copied()),
            );
        }
    }
    assert!(
        repeats.len() > 1000,
        "the corpus has repeats: {}",
        repeats.len()
    );
    assert_eq!(found, repeats);

    // The plan: balanced pairs sorted by (splitmix64(prefix ^ splitmix64(seed)), input index),
    // S to a shard, keys shard · 10^3 + index.
    let mut pairs: Vec<(u64, usize, String, String, String, Vec<u32>)> = Vec::new();
    for part in 0..10u32 {
        let path = ds.join(format!("balanced/part-{part:05}.parquet"));
        for batch in pq::read_file(&path, &schema::balanced()).unwrap() {
            let batch = batch.unwrap();
            let uids = string_column(&batch, col::UID);
            let urls = string_column(&batch, col::URL);
            let texts = string_column(&batch, col::TEXT);
            let ids = batch
                .column_by_name(col::QUERY_IDS)
                .unwrap()
                .as_list::<i32>();
            for i in 0..batch.num_rows() {
                let uid = uids.value(i);
                pairs.push((
                    splitmix64(prefix(uid) ^ splitmix64(0)),
                    pairs.len(),
                    uid.to_string(),
                    urls.value(i).to_string(),
                    texts.value(i).to_string(),
                    ids.value(i).as_primitive::<UInt32Type>().values().to_vec(),
                ));
            }
        }
    }
    pairs.sort_by_key(|p| (p.0, p.1));
    let mut planned = Vec::new();
    let mut shard = 0;
    loop {
        let path = ds.join(format!("shards/_plan/{shard:05}.parquet"));
        if !path.exists() {
            break;
        }
        for batch in pq::read_file(&path, &schema::plan()).unwrap() {
            let batch = batch.unwrap();
            let keys = string_column(&batch, col::KEY);
            let uids = string_column(&batch, col::UID);
            let urls = string_column(&batch, col::URL);
            let texts = string_column(&batch, col::TEXT);
            let ids = batch
                .column_by_name(col::QUERY_IDS)
                .unwrap()
                .as_list::<i32>();
            for i in 0..batch.num_rows() {
                planned.push((
                    keys.value(i).to_string(),
                    uids.value(i).to_string(),
                    urls.value(i).to_string(),
                    texts.value(i).to_string(),
                    ids.value(i).as_primitive::<UInt32Type>().values().to_vec(),
                ));
            }
        }
        shard += 1;
    }
    assert_eq!(planned.len(), pairs.len());
    for (n, (p, q)) in pairs.iter().zip(&planned).enumerate() {
        let key = wit_shards::sample_key((n / 1000) as u32, (n % 1000) as u32, 1000);
        assert_eq!(
            (&key, &p.2, &p.3, &p.4, &p.5),
            (&q.0, &q.1, &q.2, &q.3, &q.4),
            "place {n}"
        );
    }

    // 61 repeat buckets and 47 plan groups, three processes at once: the same bytes.
    let dir = tempfile::tempdir().unwrap();
    let split = copy_of_matched(dir.path());
    let d = split.to_str().unwrap();
    for step in [
        vec!["balance", "-d", d, "-t", T, "--memory-budget", "100K"],
        vec![
            "download",
            "-d",
            d,
            "--plan-only",
            "--shard-size",
            SHARD_SIZE,
            "--memory-budget",
            "1M",
        ],
    ] {
        let children: Vec<_> = (0..3)
            .map(|k| {
                wit()
                    .args(&step)
                    .args(["-q", "-j", "1", "--parts", "3", "--part", &k.to_string()])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            ok(&c.wait_with_output().unwrap());
        }
    }
    let buckets = manifest(&split, "balanced/_repeats")["parts"]
        .as_u64()
        .unwrap();
    let groups = manifest(&split, "shards/_plan")["parts"].as_u64().unwrap();
    assert!(groups > 40, "{groups} plan groups");
    assert!(buckets > 50, "{buckets} buckets");
    let got = outputs(&split);
    assert_eq!(names(&got), names(reference));
    assert!(got == reference, "the split run's outputs differ");
    assert_eq!(outputs(&ds), reference);
}

/// Runs `args` and kills it (SIGKILL) once `marker` exists; says whether it did.
fn kill_when(args: &[&str], marker: &Path) -> bool {
    let mut child = wit().args(args).spawn().unwrap();
    loop {
        if marker.exists() {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_reduce_killed_mid_way_reruns_to_the_same_bytes() {
    let reference = reference();
    let dir = tempfile::tempdir().unwrap();
    let ds = copy_of_matched(dir.path());
    let d = ds.to_str().unwrap();
    let balance = [
        "balance",
        "-d",
        d,
        "-t",
        T,
        "--memory-budget",
        "100K",
        "-j",
        "1",
        "-q",
    ];
    let killed = kill_when(&balance, &ds.join("balanced/_repeats/_part-00005.json"));
    assert!(killed, "balance finished before it could be killed");
    assert!(!ds.join("balanced/_repeats/_manifest.json").exists());
    ok(&run(&balance));
    let plan = [
        "download",
        "-d",
        d,
        "--plan-only",
        "--shard-size",
        SHARD_SIZE,
        "--memory-budget",
        "1M",
        "-j",
        "1",
        "-q",
    ];
    let killed = kill_when(&plan, &ds.join("shards/_plan/_part-00005.json"));
    assert!(killed, "the plan finished before it could be killed");
    assert!(!ds.join("shards/_plan/_manifest.json").exists());
    ok(&run(&plan));
    assert!(
        outputs(&ds) == reference,
        "the resumed run's outputs differ"
    );
}
