//! `wit status DATASET`: what each stage of a dataset directory has done,
//! read from the files themselves (manifests, part sidecars, training
//! metrics, evaluation reports), so it works on a finished run, a killed
//! one, or one still going on another machine.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use wit_contract::{Manifest, Stage};

use crate::BadUsage;

/// The report for `dataset`, as text.
pub fn report(location: &Path) -> Result<String> {
    let opened = wit_contract::Dataset::open(&location.to_string_lossy())?;
    // On a store: the stages' metadata, not their data.
    for stage in Stage::ALL {
        opened.pull_meta(stage.dir_name())?;
    }
    let dataset = opened.root();
    if !dataset.is_dir() {
        bail!(BadUsage(format!(
            "{}: not a dataset directory",
            dataset.display()
        )));
    }
    let mut out = String::new();
    let _ = writeln!(out, "{}", opened.location());
    let _ = writeln!(
        out,
        "  {:<11} {:<12} {:>7} {:>9}  counts",
        "stage", "state", "parts", "seconds"
    );
    for stage in Stage::ALL {
        let dir = dataset.join(stage.dir_name());
        if !dir.is_dir() {
            let _ = writeln!(out, "  {:<11} {:<12}", stage.dir_name(), "not run");
            continue;
        }
        match Manifest::read_local(dataset, stage) {
            Ok(m) => {
                let elapsed = span_seconds(&m.started, &m.finished)
                    .map_or_else(|| "?".into(), |s| format!("{s:.0}"));
                let _ = writeln!(
                    out,
                    "  {:<11} {:<12} {:>7} {:>9}  {}",
                    stage.dir_name(),
                    "complete",
                    format!("{}/{}", m.parts, m.parts),
                    elapsed,
                    counts_line(&m.counts)
                );
            }
            Err(_) => {
                let done = sidecars(&dir);
                let _ = writeln!(
                    out,
                    "  {:<11} {:<12} {:>7} {:>9}  (no manifest yet: rerun the stage to finish it)",
                    stage.dir_name(),
                    "in progress",
                    format!("{done}/?"),
                    "-"
                );
            }
        }
    }
    let stats = dataset.join("stats");
    if stats.join("report.html").is_file() {
        let _ = writeln!(
            out,
            "  stats report: {}",
            stats.join("report.html").display()
        );
    }
    for run in training_runs(dataset) {
        training(&mut out, &run);
    }
    for file in eval_reports(dataset) {
        evaluation(&mut out, &file);
    }
    Ok(out)
}

/// Seconds between two RFC 3339 times.
fn span_seconds(start: &str, end: &str) -> Option<f64> {
    let a = humantime::parse_rfc3339_weak(start).ok()?;
    let b = humantime::parse_rfc3339_weak(end).ok()?;
    Some(b.duration_since(a).ok()?.as_secs_f64())
}

fn counts_line(counts: &wit_contract::Counts) -> String {
    let mut parts: Vec<String> = counts
        .iter()
        .filter(|(k, _)| !k.starts_with("source_") || counts.len() < 12)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if parts.len() > 14 {
        let more = parts.len() - 14;
        parts.truncate(14);
        parts.push(format!("(+{more} more in _manifest.json)"));
    }
    parts.join(" ")
}

fn sidecars(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("_part-") && name.ends_with(".json")
            })
            .count()
    })
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// `DATASET/runs/*` with a `config.json` (`wit train`'s run directories).
fn training_runs(dataset: &Path) -> Vec<PathBuf> {
    sorted_dirs(&dataset.join("runs"))
        .into_iter()
        .filter(|d| d.join("config.json").is_file())
        .collect()
}

/// `eval.json` files in `DATASET/eval/` and beside each run's model.
fn eval_reports(dataset: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![dataset.join("eval")];
    dirs.extend(training_runs(dataset).into_iter().map(|r| r.join("eval")));
    dirs.into_iter()
        .map(|d| d.join("eval.json"))
        .filter(|f| f.is_file())
        .collect()
}

fn training(out: &mut String, run: &Path) {
    let config: serde_json::Value = std::fs::read(run.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    // One read of the metrics: the first and the last step.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default();
    let (first, last) = (lines.first(), lines.last());
    let model = config["model"].as_str().unwrap_or("?");
    let _ = writeln!(out, "  train {}: model {model}", run.display());
    if let (Some(first), Some(last)) = (first, last) {
        // Rates with three significant figures: a large model on a CPU
        // trains well under one sample a second.
        let mut rates: Vec<f64> = lines
            .iter()
            .filter_map(|l| l["samples_per_s"].as_f64())
            .collect();
        rates.sort_by(f64::total_cmp);
        let median = rates.get(rates.len() / 2).copied().unwrap_or(f64::NAN);
        let _ = writeln!(
            out,
            "    step {} of {}, {} samples, loss {:.3} (first step {:.3}), {} samples/s at the end, {} the median step",
            last["step"],
            config["steps"],
            last["samples"],
            last["loss"].as_f64().unwrap_or(f64::NAN),
            first["loss"].as_f64().unwrap_or(f64::NAN),
            crate::ui::rate_text(last["samples_per_s"].as_f64().unwrap_or(f64::NAN)),
            crate::ui::rate_text(median),
        );
    }
    for name in ["model.safetensors", "curves.png"] {
        let path = run.join(name);
        if path.is_file() {
            let _ = writeln!(out, "    {}", path.display());
        }
    }
}

fn evaluation(out: &mut String, file: &Path) {
    let Some(v) = std::fs::read(file)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    else {
        let _ = writeln!(out, "  eval {}: unreadable", file.display());
        return;
    };
    let classes = v["classes"].as_array().map_or(0, Vec::len);
    let chance = v["chance_top1"].as_f64().unwrap_or(f64::NAN);
    let _ = writeln!(
        out,
        "  eval {}: {classes} classes, chance {:.1}%",
        file.display(),
        100.0 * chance
    );
    let pct = |x: &serde_json::Value| {
        x.as_f64()
            .map_or_else(|| "-".into(), |x| format!("{:.1}%", 100.0 * x))
    };
    let zs = &v["zero_shot"];
    let templates = zs["templates"]
        .as_u64()
        .map_or_else(String::new, |n| format!(" ({n} templates)"));
    for (name, s) in [
        ("zero-shot, one prompt".to_string(), &zs["single_prompt"]),
        (format!("zero-shot, ensemble{templates}"), &zs["ensemble"]),
        ("linear probe".to_string(), &v["linear_probe"]["test"]),
    ] {
        if s.is_object() {
            let _ = writeln!(
                out,
                "    {name:<34} top-1 {:>6}  ({:.1}x chance)   top-5 {:>6}",
                pct(&s["top1"]),
                s["top1"].as_f64().unwrap_or(f64::NAN) / chance,
                pct(&s["top5"]),
            );
        }
    }
}
