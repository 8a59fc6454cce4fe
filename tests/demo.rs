//! `make train`'s path, small: scripts/train.sh with the debug binary on a
//! 120-page demo web served on 127.0.0.1, every stage through evaluation,
//! then again to show that a second run reuses every stage.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::*;

/// scripts/train.sh with `DEMO_PORT=0`: the demo web is served on a port the
/// kernel picks, which the script reads from the server and keeps for reruns.
fn train_sh(run_dir: &Path) -> Output {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Command::new("bash")
        .arg(root.join("scripts/train.sh"))
        .env("WIT", env!("CARGO_BIN_EXE_wit"))
        .env("RUN_DIR", run_dir)
        .env("DEMO_PAGES", "120")
        .env("DEMO_EVAL_PER_CLASS", "4")
        .env("DEMO_PORT", "0")
        .env("DEMO_T", "20")
        .env("DEMO_STEPS", "12")
        .env("DEMO_BATCH", "32")
        .env_remove("WIT_CONFIG")
        .output()
        .expect("bash runs")
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn count(m: &serde_json::Value, key: &str) -> u64 {
    m["counts"][key].as_u64().unwrap_or(0)
}

#[test]
fn make_train_runs_every_stage_on_the_demo_web_and_reuses_them() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("demo");
    let first = train_sh(&run_dir);
    assert!(first.status.success(), "{}", show(&first));
    let out = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(out.contains("serving http://127.0.0.1:"), "{out}");

    let site: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("web/site.json")).unwrap()).unwrap();
    let site = &site["summary"];
    assert_eq!(site["pages"], 120);
    assert!(site["pages_disallowed"].as_u64().unwrap() > 0);
    assert!(site["pages_other_languages"].as_u64().unwrap() > 0);

    // Crawl: robots.txt kept /private/ out, the broken links were counted.
    let crawl = manifest(&run_dir, "candidates");
    assert!(count(&crawl, "fail_robots") > 0, "{crawl}");
    assert!(count(&crawl, "fail_http_4xx") > 0, "{crawl}");
    // Match: pages in other languages and file-name texts dropped.
    let matched = manifest(&run_dir, "matched");
    assert!(count(&matched, "dropped_language") > 0, "{matched}");
    // Balance with a small t drops pairs of the frequent queries.
    let balanced = manifest(&run_dir, "balanced");
    assert!(count(&balanced, "dropped_by_balance") > 0, "{balanced}");
    assert!(
        count(&balanced, "kept") < count(&balanced, "pairs"),
        "{balanced}"
    );
    // Download: the broken and truncated images are rows with a reason.
    let shards = manifest(&run_dir, "shards");
    assert!(count(&shards, "success") > 50, "{shards}");
    assert!(count(&shards, "failed_to_download") > 0, "{shards}");

    // Stats, training and evaluation outputs, and the summary naming them.
    for file in [
        "stats/report.html",
        "runs/demo/model.safetensors",
        "runs/demo/curves.png",
        "eval/eval.json",
    ] {
        assert!(run_dir.join(file).is_file(), "{file} missing\n{out}");
    }
    let eval: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("eval/eval.json")).unwrap()).unwrap();
    assert_eq!(eval["classes"].as_array().unwrap().len(), 18);
    assert_eq!(eval["zero_shot"]["single_prompt"]["n"], 72);
    assert!(eval["zero_shot"]["ensemble"]["top1"].as_f64().is_some());
    assert!(eval["linear_probe"]["test"]["top1"].as_f64().is_some());
    for needle in [
        "== summary",
        "zero-shot, one prompt",
        "linear probe",
        "chance",
    ] {
        assert!(out.contains(needle), "{needle} not in the summary\n{out}");
    }

    // A second run reuses every stage: same outputs, no new training.
    let model = std::fs::read(run_dir.join("runs/demo/model.safetensors")).unwrap();
    // The seed URL (with its port) is a parameter of the crawl: the rerun
    // names the same port, and serves nothing since no stage reads the web.
    let again = train_sh(&run_dir);
    assert!(again.status.success(), "{}", show(&again));
    let text = String::from_utf8_lossy(&again.stdout).into_owned()
        + &String::from_utf8_lossy(&again.stderr);
    assert!(text.contains("the demo web is not served"), "{text}");
    assert!(!text.contains("serving http"), "{text}");
    assert_eq!(
        std::fs::read(run_dir.join("runs/demo/model.safetensors")).unwrap(),
        model
    );
    assert_eq!(manifest(&run_dir, "shards")["counts"], shards["counts"]);
}
