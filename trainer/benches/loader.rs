//! Loader throughput: 256 x 256 JPEG shards (as `wit download` writes them)
//! to 224 x 224 training tensors, with 1 and 2 worker threads; the rate a
//! GPU step must not outrun (open_clip's ViT-B/32 on an H200 takes 3,417
//! samples/s, ../shared/references/gpu-baseline.md).
//!
//! Beside it, in the same run: open_clip's pipeline (webdataset, Pillow,
//! RandomResizedCrop, normalisation) on the same shards in one Python
//! process (`loader_reference.py`, in the venv the tests make under
//! ~/.cache/wit/python-venv; skipped with a message where it cannot be made).
//!
//! Run: `cargo bench -p wit-trainer --bench loader` (part of `make bench`).

use std::time::Instant;

#[path = "venv.rs"]
mod venv;

use wit_contract::wds::{LocalOpener, ShardWriter};
use wit_trainer::loader::{LoaderOptions, Mode, epoch};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = 2000u32;
    let dir = tempfile::tempdir().unwrap();
    let mut shards = Vec::new();
    for s in 0..4u32 {
        let mut w = ShardWriter::new(Vec::new());
        for i in 0..n / 4 {
            let k = s * 1000 + i;
            let img = image::RgbImage::from_fn(256, 256, |x, y| {
                image::Rgb([
                    ((x * 3 + k) % 256) as u8,
                    ((y * 5 + x / 7 + k) % 256) as u8,
                    ((x ^ y ^ k) % 256) as u8,
                ])
            });
            let mut jpg = std::io::Cursor::new(Vec::new());
            img.write_to(&mut jpg, image::ImageFormat::Jpeg).unwrap();
            let txt = format!("a photo of a striped object number {k} on a plain background");
            w.write(
                &format!("{k:09}"),
                &[("jpg", jpg.get_ref().as_slice()), ("txt", txt.as_bytes())],
            )
            .unwrap();
        }
        let path = dir.path().join(format!("{s:05}.tar"));
        std::fs::write(&path, w.finish().unwrap()).unwrap();
        shards.push(path.display().to_string());
    }
    let mut per_core = 0.0;
    for workers in [1, 2] {
        let opts = LoaderOptions {
            size: 224,
            batch_size: 256,
            mode: Mode::train(),
            workers,
            ..LoaderOptions::default()
        };
        let t = Instant::now();
        let counts = epoch(&shards, &LocalOpener, &opts, 0, |_| true);
        let secs = t.elapsed().as_secs_f64();
        let rate = counts.samples as f64 / secs;
        if workers == 1 {
            per_core = rate;
        }
        println!(
            "loader, {workers} worker(s): {} samples in {secs:.2} s: {rate:.0} samples/s",
            counts.samples
        );
    }
    let Some(py) = venv::python(
        "python-venv",
        "webdataset, PIL, numpy",
        &["webdataset", "pillow", "numpy"],
    ) else {
        println!("python reference: skipped (no venv with webdataset, Pillow and numpy)");
        return;
    };
    let Some(text) = venv::run(&py, "loader_reference.py", &shards, "python reference") else {
        return;
    };
    let mut f = text
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
    let (n, secs) = (f.next().unwrap_or(f64::NAN), f.next().unwrap_or(f64::NAN));
    println!(
        "python webdataset + Pillow, 1 process: {n} samples in {secs:.2} s: {:.0} samples/s; wit's loader per core: {:.2}x",
        n / secs,
        per_core / (n / secs)
    );
}
