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
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (name, batch, steps) in [("tiny", 64, 20), ("ViT-S-32", 32, 3)] {
        let c = ClipConfig::preset(name).unwrap();
        let vars = VarMap::new();
        let model = Clip::seeded(c, &vars, &Device::Cpu, 0).unwrap();
        let mut opt = AdamW::new(named_vars(&vars), AdamWConfig::default()).unwrap();
        let s = c.vision.image_size();
        let images = Tensor::randn(0f32, 1f32, (batch, 3, s, s), &Device::Cpu).unwrap();
        let t = Tokenizer::get();
        let ids: Vec<u32> = (0..batch)
            .flat_map(|i| t.context(&format!("a photo of a striped object number {i}")))
            .collect();
        let tokens = Tensor::from_vec(ids, (batch, 77), &Device::Cpu).unwrap();
        let mut step = || {
            let loss = model.loss(&images, &tokens).unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
            loss.to_dtype(DType::F32)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        step();
        let t0 = Instant::now();
        for _ in 0..steps {
            step();
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "train {name} (f32, CPU, {threads} threads): batch {batch}, {steps} steps in {secs:.2} s: {:.1} samples/s ({:.2} s/step); {:.2}M parameters",
            (batch * steps) as f64 / secs,
            secs / steps as f64,
            c.parameter_count() as f64 / 1e6
        );
    }
}
