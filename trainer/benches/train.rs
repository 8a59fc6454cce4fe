//! Training throughput on the CPU: forward, backward and AdamW step of the
//! `demo`, `tiny` and `ViT-S-32` presets in f32 on random images and real
//! token ids, samples per second after one warm-up step, and the time of
//! each phase.
//!
//! Beside it, in the same run: open_clip's own step on PyTorch (from PyPI,
//! on the CPU) for the same shapes (`train_reference.py`, in the venv
//! ~/.cache/wit/bench-venv, made from the registry the first time), with
//! the same threads, each model's right after wit's so that both see the
//! same load. Peak resident memory is the process's high-water mark after
//! the model (VmHWM): open_clip's per model (a process each), wit's over
//! the list so far (one process; the list goes from small to large).
//!
//! Run: `cargo bench -p wit-trainer --bench train` (part of `make bench`);
//! `WIT_TRAIN_BENCH="demo:64:10 ViT-S-32:32:3"` picks models, batches and
//! timed steps, `WIT_TRAIN_BENCH_ROUNDS` how many pairs of measurements per
//! model (3; the table gives medians and each round's ratio);
//! `WIT_TRAIN_BENCH_REFERENCE=0` leaves open_clip out (to profile wit
//! alone).

use std::time::Instant;

#[path = "venv.rs"]
mod venv;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use wit_trainer::model::{Clip, ClipConfig, named_vars};
use wit_trainer::optim::{AdamW, AdamWConfig};
use wit_trainer::tokenizer::Tokenizer;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // As `wit train` does.
    wit_trainer::runtime::prepare_cpu_training();
    let models =
        std::env::var("WIT_TRAIN_BENCH").unwrap_or("demo:64:30 tiny:64:60 ViT-S-32:32:5".into());
    let rounds: usize = std::env::var("WIT_TRAIN_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let py = reference_python();
    // Each model's reference runs right after wit's on it, so that the two
    // figures of a pair see the same load on a noisy machine; `rounds`
    // pairs per model, and the table gives medians.
    let mut rows = Vec::new();
    for spec in models.split_whitespace() {
        let mut it = spec.split(':');
        let name = it.next().unwrap();
        let batch: usize = it.next().unwrap().parse().unwrap();
        let steps: usize = it.next().unwrap().parse().unwrap();
        let mut pairs = Vec::new();
        let (mut rss, mut theirs_rss, mut versions) = (0f64, f64::NAN, None);
        for _ in 0..rounds {
            let (rate, peak) = measure(name, batch, steps);
            rss = rss.max(peak);
            let theirs = py.as_ref().and_then(|py| {
                let text = venv::run(py, "train_reference.py", [spec], "open_clip reference")?;
                serde_json::from_str::<serde_json::Value>(text.lines().next()?).ok()
            });
            let theirs_rate = theirs.as_ref().and_then(|r| r["samples_per_s"].as_f64());
            if let Some(r) = &theirs {
                theirs_rss = r["peak_rss_mib"].as_f64().unwrap_or(f64::NAN);
                versions = Some(format!(
                    "open_clip {} on torch {}, {} threads",
                    r["open_clip"], r["torch"], r["threads"]
                ));
            }
            pairs.push((rate, theirs_rate.unwrap_or(f64::NAN)));
        }
        rows.push((name.to_string(), batch, pairs, rss, theirs_rss, versions));
    }
    if py.is_none() {
        return;
    }
    println!(
        "| model | batch | wit samples/s | open_clip samples/s | wit / open_clip (median; each round) | wit peak RSS MiB | open_clip peak RSS MiB |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (name, batch, pairs, rss, theirs_rss, _) in &rows {
        let ours = median(pairs.iter().map(|p| p.0));
        let theirs = median(pairs.iter().map(|p| p.1));
        let ratios: Vec<String> = pairs.iter().map(|(a, b)| format!("{:.2}", a / b)).collect();
        println!(
            "| {name} | {batch} | {ours:.1} | {theirs:.1} | {:.2}x; {} | {rss:.0} | {theirs_rss:.0} |",
            median(pairs.iter().map(|(a, b)| a / b)),
            ratios.join(" ")
        );
    }
    if let Some(v) = rows.iter().find_map(|r| r.5.as_ref()) {
        println!(
            "{v}; {rounds} rounds, each wit's figure and then open_clip's (its own process) on the same model"
        );
    }
}

/// The median of `xs` (NaN for none).
fn median(xs: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// wit's training step on `name` at `batch`: samples/s over `steps` timed
/// steps after one warm-up, printed with the time of each phase, and the
/// process's peak memory (MiB) so far.
fn measure(name: &str, batch: usize, steps: usize) -> (f64, f64) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let c = ClipConfig::preset(name).unwrap();
    let vars = VarMap::new();
    let model = Clip::seeded(c, &vars, &Device::Cpu, 0).unwrap();
    let mut opt = AdamW::new(named_vars(&vars), AdamWConfig::default()).unwrap();
    let s = c.vision.image_size();
    let images = Tensor::randn(0f32, 1f32, (batch, 3, s, s), &Device::Cpu).unwrap();
    let t = Tokenizer::get();
    let ids: Vec<u32> = (0..batch)
        .flat_map(|i| {
            t.context_of(
                &format!("a photo of a striped object number {i}"),
                c.text.context,
            )
        })
        .collect();
    let tokens = Tensor::from_vec(ids, (batch, c.text.context), &Device::Cpu).unwrap();
    // Seconds spent in forward (with the loss), backward and the
    // optimiser over the timed steps.
    let mut phases = [0f64; 3];
    let mut step = |phases: &mut [f64; 3]| {
        let t0 = Instant::now();
        let loss = model.loss(&images, &tokens).unwrap();
        let t1 = Instant::now();
        let grads = loss.backward().unwrap();
        let t2 = Instant::now();
        opt.step(&grads).unwrap();
        let t3 = Instant::now();
        phases[0] += (t1 - t0).as_secs_f64();
        phases[1] += (t2 - t1).as_secs_f64();
        phases[2] += (t3 - t2).as_secs_f64();
        loss.to_dtype(DType::F32)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    step(&mut [0f64; 3]);
    let t0 = Instant::now();
    for _ in 0..steps {
        step(&mut phases);
    }
    let secs = t0.elapsed().as_secs_f64();
    let rate = (batch * steps) as f64 / secs;
    println!(
        "train {name} (f32, CPU, {threads} threads): batch {batch}, {steps} steps in {secs:.2} s: {rate:.1} samples/s ({:.2} s/step); {:.2}M parameters",
        secs / steps as f64,
        c.parameter_count() as f64 / 1e6
    );
    let rss = peak_rss_mib();
    println!(
        "  per step: forward {:.1} ms, backward {:.1} ms, optimiser {:.1} ms",
        phases[0] * 1e3 / steps as f64,
        phases[1] * 1e3 / steps as f64,
        phases[2] * 1e3 / steps as f64
    );
    (rate, rss)
}

/// The process's peak resident memory so far, MiB (VmHWM, as the
/// reference reads its own).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// The bench venv's Python with torch and open_clip, or `None` where the
/// reference is left out (`WIT_TRAIN_BENCH_REFERENCE=0`) or cannot be had
/// (the reason printed).
fn reference_python() -> Option<std::path::PathBuf> {
    if std::env::var("WIT_TRAIN_BENCH_REFERENCE").is_ok_and(|v| v == "0") {
        println!("open_clip reference: left out (WIT_TRAIN_BENCH_REFERENCE=0)");
        return None;
    }
    let py = venv::python(
        "bench-venv",
        "torch, open_clip",
        &["torch", "open_clip_torch"],
    );
    if py.is_none() {
        println!("open_clip reference: skipped (no venv with torch and open_clip)");
    }
    py
}
