//! Training throughput on the CPU: forward, backward and AdamW step of the
//! `tiny` and `ViT-S-32` presets in f32 on random images and real token
//! ids, samples per second after one warm-up step.
//!
//! Run: `cargo bench -p wit-trainer --bench train` (part of `make bench`).
//! PyTorch is not installed on these machines (CI needs no torch), so no
//! reference runs beside it; the GPU comparison with open_clip is issue 11's.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use wit_trainer::model::{Clip, ClipConfig, named_vars};
use wit_trainer::optim::{AdamW, AdamWConfig};
use wit_trainer::tokenizer::Tokenizer;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var("WIT_MALLOPT").is_ok() {
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let models =
        std::env::var("WIT_TRAIN_BENCH").unwrap_or("demo:64:10 tiny:64:20 ViT-S-32:32:3".into());
    for m in models.split_whitespace() {
        let mut it = m.split(':');
        let name = it.next().unwrap();
        let batch: usize = it.next().unwrap().parse().unwrap();
        let steps: usize = it.next().unwrap().parse().unwrap();
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
        println!(
            "train {name} (f32, CPU, {threads} threads): batch {batch}, {steps} steps in {secs:.2} s: {:.1} samples/s ({:.2} s/step); {:.2}M parameters",
            (batch * steps) as f64 / secs,
            secs / steps as f64,
            c.parameter_count() as f64 / 1e6
        );
        println!(
            "  per step: forward {:.1} ms, backward {:.1} ms, optimiser {:.1} ms",
            phases[0] * 1e3 / steps as f64,
            phases[1] * 1e3 / steps as f64,
            phases[2] * 1e3 / steps as f64
        );
    }
}
