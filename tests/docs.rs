//! The Python examples of docs/analysts.md, run as written against a dataset
//! made by the real stages, their results checked against our own counts.

use std::path::PathBuf;

use wit_contract::records::string_column;
use wit_contract::schema::{self, col};

use crate::stats::{batches, pipeline_balanced, pipeline_dataset};
use crate::util::*;

/// The ```python blocks of a Markdown file.
fn python_blocks(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in md.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```python") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => out.push(current.take().unwrap()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// Runs `script` with the venv's Python; its stdout, or a failure naming `what`.
fn python(py: &std::path::Path, script: &str, what: &str) -> String {
    let out = std::process::Command::new(py)
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "failed:\n{what}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_analysts_page_examples_run_and_agree() {
    let page = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/analysts.md");
    let blocks = python_blocks(&std::fs::read_to_string(&page).unwrap());
    assert_eq!(blocks.len(), 5, "examples on the page");
    let Some(py) = python_with(&["polars", "duckdb", "pyarrow"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ds, _server) = pipeline_dataset(dir.path());
    let mut results = Vec::new();
    for block in &blocks {
        let script = format!(
            "DATASET = {:?}\n{block}\nimport json\nprint('RESULT ' + json.dumps(result, default=int))\n",
            ds.display().to_string()
        );
        let stdout = python(&py, &script, block);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap();
        results.push(serde_json::from_str::<serde_json::Value>(line).unwrap());
    }

    // Our counts.
    let count = |dir: &str, schema: &arrow_schema::Schema| -> u64 {
        batches(&ds.join(dir), schema, |n| n.starts_with("part-"))
            .iter()
            .map(|b| b.num_rows() as u64)
            .sum()
    };
    let shards = batches(&ds.join("shards"), &schema::shard(), |n| {
        n.ends_with(".parquet") && n.starts_with(|c: char| c.is_ascii_digit())
    });
    let stored: u64 = shards
        .iter()
        .map(|b| {
            let st = string_column(b, col::STATUS);
            (0..b.num_rows())
                .filter(|&i| st.value(i) == "success")
                .count() as u64
        })
        .sum();
    let samples: u64 = shards.iter().map(|b| b.num_rows() as u64).sum();
    let manifest_b = manifest(&ds, "balanced");
    let alt: u64 = batches(&ds.join("matched"), &schema::matched(), |n| {
        n.starts_with("part-")
    })
    .iter()
    .map(|b| {
        let s = string_column(b, col::TEXT_SOURCE);
        (0..b.num_rows()).filter(|&i| s.value(i) == "alt").count() as u64
    })
    .sum();

    let top = &results[0];
    let stats: serde_json::Value = {
        ok(&run(&["stats", ds.to_str().unwrap()]));
        serde_json::from_slice(&std::fs::read(ds.join("stats/stats.json")).unwrap()).unwrap()
    };
    let mut after: Vec<(u64, &str)> = Vec::new();
    for q in stats["balance"]["top_queries"].as_array().unwrap() {
        after.push((q["after"].as_u64().unwrap(), q["query"].as_str().unwrap()));
    }
    after.sort_by_key(|a| std::cmp::Reverse(a.0));
    assert_eq!(top["top_pairs"].as_u64().unwrap(), after[0].0);
    assert_eq!(results[1]["samples"], samples);
    assert_eq!(samples, manifest_b["counts"]["kept"].as_u64().unwrap());
    assert_eq!(results[2]["stored"], stored);
    assert_eq!(
        results[3]["candidates"],
        count("candidates", &schema::candidates())
    );
    assert_eq!(results[3]["matched"], count("matched", &schema::matched()));
    assert_eq!(
        results[3]["balanced"],
        count("balanced", &schema::balanced())
    );
    assert_eq!(results[3]["stored"], stored);
    assert_eq!(results[4]["alt_rows"], alt);

    // The README's pyarrow calls, as written (data/wit: this dataset).
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap()
            .replace("\n", " ");
    let calls: Vec<&str> = readme
        .split('`')
        .filter(|s| s.starts_with("ds.dataset("))
        .collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for (call, want) in calls
        .iter()
        .zip([count("matched", &schema::matched()), samples])
    {
        let call = call.replace("data/wit", &ds.display().to_string());
        let script =
            format!("import glob\nimport pyarrow.dataset as ds\nprint({call}.count_rows())\n");
        let rows: u64 = python(&py, &script, &call).trim().parse().unwrap();
        assert_eq!(rows, want, "{call}");
    }
}

/// The `wit` commands of the README's ```sh block under `heading`, with
/// continuation lines joined and comments dropped.
fn readme_commands(heading: &str) -> Vec<String> {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let section = readme
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("no {heading}"));
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    let joined = block.replace("\\\n", " ");
    joined
        .lines()
        .map(|l| l.split(" #").next().unwrap().trim().to_string())
        .filter(|l| l.starts_with("wit "))
        .collect()
}

/// The README's download commands, in order, as a user runs them against
/// hosts on 127.0.0.1 (so with --allow-private, as the README says): the
/// download, the retry of its failures right after it, the plan.
#[test]
fn the_readme_download_commands_run_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, _server) = pipeline_balanced(dir.path());
    let commands = readme_commands("### 5. Download");
    assert_eq!(commands.len(), 3, "{commands:?}");
    assert!(commands[1].contains("--retry-failed"), "{commands:?}");
    let d = ds.display().to_string();
    let mut said = Vec::new();
    for command in &commands {
        let line = command.replace("data/wit", &d);
        let mut args: Vec<&str> = line.split_whitespace().skip(1).collect();
        args.push("--allow-private");
        let out = run(&args);
        assert!(out.status.success(), "{line}: {}", stderr(&out));
        said.push(stderr(&out));
    }
    // The retry took the first run's parameters (those that are not the
    // defaults are named).
    assert!(
        said[1].contains("parameters where not given: --resize-mode=center_crop"),
        "{}",
        said[1]
    );
    let m = manifest(&ds, "shards");
    assert_eq!(m["params"]["resize_mode"], "center_crop");
    assert_eq!(m["params"]["image_size"], 256);
    assert!(m["counts"]["success"].as_u64().unwrap() > 0, "{m}");
}
