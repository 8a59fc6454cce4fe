//! `wit train`: a real run on real shards, interrupted and resumed bit for
//! bit, the files a run leaves, and its export read by Python's safetensors.

use std::path::Path;

use wit_contract::wds::ShardWriter;

use crate::util::{ok, python_with, run, stderr};

/// Shards of `n` captioned images of `side` pixels in DATASET/shards/, plus
/// one sample with an undecodable image and one without a caption.
pub(crate) fn write_shards(dataset: &Path, n: u32, side: u32) {
    write_shards_with(dataset, n, side, true);
}

fn write_shards_with(dataset: &Path, n: u32, side: u32, damaged: bool) {
    let dir = dataset.join("shards");
    std::fs::create_dir_all(&dir).unwrap();
    let colours = ["red", "green", "blue", "yellow", "purple", "orange"];
    for s in 0..2u32 {
        let mut w = ShardWriter::new(Vec::new());
        for i in 0..n / 2 {
            let k = s * 1000 + i;
            let c = (k % 6) as usize;
            let rgb = [
                [220, 30, 30],
                [30, 200, 30],
                [30, 30, 220],
                [230, 230, 20],
                [140, 30, 160],
                [250, 140, 0],
            ][c];
            let img = image::RgbImage::from_fn(side, side, |x, y| {
                let stripe = ((x / 4 + y / 4 + k) % 2) as u8;
                image::Rgb([rgb[0] / (1 + stripe), rgb[1] / (1 + stripe), rgb[2]])
            });
            let mut png = std::io::Cursor::new(Vec::new());
            img.write_to(&mut png, image::ImageFormat::Png).unwrap();
            let caption = format!("a {} striped square, number {k}", colours[c]);
            w.write(
                &format!("{k:09}"),
                &[
                    ("png", png.get_ref().as_slice()),
                    ("txt", caption.as_bytes()),
                ],
            )
            .unwrap();
        }
        if s == 0 && damaged {
            w.write(
                "000000998",
                &[
                    ("jpg", b"not an image".as_slice()),
                    ("txt", b"broken".as_slice()),
                ],
            )
            .unwrap();
            w.write("000000999", &[("png", b"x".as_slice())]).unwrap();
        }
        std::fs::write(dir.join(format!("{s:05}.tar")), w.finish().unwrap()).unwrap();
    }
}

pub(crate) fn metrics(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            // Timing differs between runs; everything else must not.
            v.as_object_mut().unwrap().remove("samples_per_s");
            v
        })
        .collect()
}

pub(crate) fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, v.data().to_vec()))
        .collect();
    out.sort();
    out
}

fn train(dataset: &Path, run_dir: &Path, model: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "-d",
        dataset.to_str().unwrap(),
        "--run",
        run_dir.to_str().unwrap(),
        "--model",
        model,
        "--batch-size",
        "8",
        "--accum",
        "2",
        "--steps",
        "6",
        "--warmup",
        "2",
        "--lr",
        "2e-3",
        "--shuffle",
        "16",
        "--checkpoint-every",
        "2",
        "--workers",
        "2",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn an_interrupted_run_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("d");
    // 36 usable samples: 9 micro-batches of 4, 4 steps per epoch, so the
    // 6 steps cross an epoch boundary and drop a short tail.
    write_shards(&dataset, 36, 40);
    for model in ["tiny", "tiny-RN"] {
        let whole = dir.path().join(format!("whole-{model}"));
        let o = train(&dataset, &whole, model, &[]);
        ok(&o);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("6 step(s) now"), "{out}");
        assert!(out.contains("2 unusable sample(s) skipped"), "{out}");

        let parted = dir.path().join(format!("parted-{model}"));
        ok(&train(&dataset, &parted, model, &["--stop-at", "3"]));
        let m = metrics(&parted);
        assert_eq!(m.len(), 3);
        // Killed after logging step 4 but before its checkpoint: the line
        // goes when the run resumes from step 3.
        let mut extra = std::fs::read_to_string(parted.join("metrics.jsonl")).unwrap();
        extra.push_str("{\"step\":4,\"loss\":9.0}\n");
        std::fs::write(parted.join("metrics.jsonl"), extra).unwrap();

        let again = train(&dataset, &parted, model, &[]);
        assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
        assert!(stderr(&again).contains("--resume"), "{}", stderr(&again));
        let changed = train(&dataset, &parted, model, &["--resume", "--seed", "9"]);
        assert_eq!(changed.status.code(), Some(2), "{}", stderr(&changed));
        assert!(stderr(&changed).contains("seed"), "{}", stderr(&changed));

        ok(&train(&dataset, &parted, model, &["--resume"]));
        let (a, b) = (metrics(&whole), metrics(&parted));
        assert_eq!(a.len(), 6);
        assert_eq!(a, b, "{model}: the resumed run's curve differs");
        assert_eq!(a[5]["epoch"], 1, "crossed into the second epoch");
        assert_eq!(a[5]["samples"], 48);
        let first = a[0]["loss"].as_f64().unwrap();
        assert!(first.is_finite() && first > 0.0);
        assert_eq!(
            tensors(&whole.join("model.safetensors")),
            tensors(&parted.join("model.safetensors")),
            "{model}: final weights differ"
        );
        // Every file is a function of its inputs: the resumed run's model
        // and last checkpoint are the same bytes, metadata included (its
        // keys once came out of a HashMap in a random order).
        for file in ["model.safetensors", "checkpoints/step-00000006.safetensors"] {
            assert!(
                std::fs::read(whole.join(file)).unwrap()
                    == std::fs::read(parted.join(file)).unwrap(),
                "{model}: {file} differs between two runs of the same training"
            );
        }
        // Two checkpoints kept (steps 4 and 6), the curves drawn.
        let mut kept: Vec<String> = std::fs::read_dir(whole.join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            ["step-00000004.safetensors", "step-00000006.safetensors"]
        );
        let png = image::open(whole.join("curves.png")).unwrap();
        assert!(png.width() > 100);
    }
}

#[test]
fn the_export_has_open_clip_keys_and_loads_in_python() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("d");
    write_shards(&dataset, 8, 40);
    let run_dir = dir.path().join("r");
    let o = run(&[
        "train",
        "-d",
        dataset.to_str().unwrap(),
        "--run",
        run_dir.to_str().unwrap(),
        "--model",
        "tiny-RN",
        "--batch-size",
        "4",
        "--steps",
        "1",
    ]);
    ok(&o);
    let export = run_dir.join("model.safetensors");
    // What a CPU build cannot do, it says.
    let ds = dataset.to_str().unwrap();
    let other = dir.path().join("other");
    let other = other.to_str().unwrap();
    let o = run(&["train", "-d", ds, "--run", other, "--precision", "bf16"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("bf16 needs --device cuda"),
        "{}",
        stderr(&o)
    );
    let o = run(&["train", "-d", ds, "--run", other, "--device", "cuda"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("CUDA"), "{}", stderr(&o));
    let keys: Vec<String> = tensors(&export).into_iter().map(|t| t.0).collect();
    for k in [
        "logit_scale",
        "token_embedding.weight",
        "visual.attnpool.c_proj.weight",
        "visual.layer1.0.bn1.running_mean",
        "visual.layer1.0.bn1.num_batches_tracked",
        "visual.layer4.0.downsample.0.weight",
    ] {
        assert!(keys.contains(&k.to_string()), "{k}");
    }
    assert!(!keys.iter().any(|k| k.starts_with("optimizer.")));
    let Some(py) = python_with(&["safetensors", "numpy"]) else {
        return;
    };
    let script = r#"
import sys
from safetensors.numpy import load_file
from safetensors import safe_open
sd = load_file(sys.argv[1])
assert sd["visual.layer1.0.bn1.num_batches_tracked"].dtype.name == "int64", sd["visual.layer1.0.bn1.num_batches_tracked"].dtype
assert int(sd["visual.layer1.0.bn1.num_batches_tracked"]) == 1
assert sd["visual.conv1.weight"].shape == (4, 3, 3, 3), sd["visual.conv1.weight"].shape
assert sd["logit_scale"].shape == ()
with safe_open(sys.argv[1], "np") as f:
    meta = f.metadata()
assert meta["format"] == "pt" and meta["wit.model"] == "tiny-RN", meta
print(len(sd))
"#;
    let out = std::process::Command::new(py)
        .args(["-c", script])
        .arg(&export)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(n, keys.len());
}

/// `wit train` of `tiny` with batches of 8 for `steps` steps, then `extra`.
fn tiny_args(dataset: &Path, run_dir: &Path, steps: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "train",
        "-d",
        dataset.to_str().unwrap(),
        "--run",
        run_dir.to_str().unwrap(),
        "--model",
        "tiny",
        "--batch-size",
        "8",
        "--steps",
        steps,
        "--warmup",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// `wit` with `args`.
fn call(args: &[String]) -> std::process::Output {
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A checkpoint taken when the step used the epoch's last sample: the
/// resumed run finds nothing left in that epoch and goes on to the next.
#[test]
fn a_run_stopped_at_the_end_of_an_epoch_resumes_in_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("d");
    // 16 samples, batches of 8: two steps use the whole epoch.
    write_shards_with(&dataset, 16, 40, false);
    let args = |run_dir: &Path, extra: &[&str]| tiny_args(&dataset, run_dir, "3", extra);
    let whole = dir.path().join("whole");
    ok(&call(&args(&whole, &[])));
    let parted = dir.path().join("parted");
    ok(&call(&args(&parted, &["--stop-at", "2"])));
    let meta = std::fs::read(parted.join("checkpoints/step-00000002.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(meta[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&meta[8..8 + header_len]).unwrap();
    assert_eq!(
        header["__metadata__"]["wit.offset"], "16",
        "the whole epoch consumed"
    );
    ok(&call(&args(&parted, &["--resume"])));
    let m = metrics(&parted);
    assert_eq!(m.len(), 3);
    assert_eq!(m[2]["epoch"], 1);
    assert_eq!(metrics(&whole), m);
}

/// Rewrites DATASET/shards/*.tar member by member: `split` puts every
/// sample's `.txt` after all the images (members of a key apart, as a tar
/// made from a directory listing by type would be); `apple` adds a macOS
/// `._` resource-fork member before every member.
fn rewrite_shards(dataset: &Path, split: bool, apple: bool) {
    for entry in std::fs::read_dir(dataset.join("shards")).unwrap() {
        let path = entry.unwrap().path();
        let mut members: Vec<(String, Vec<u8>)> = Vec::new();
        let mut archive = tar::Archive::new(std::fs::File::open(&path).unwrap());
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
            members.push((name, bytes));
        }
        if split {
            members.sort_by_key(|(n, _)| n.ends_with(".txt"));
        }
        let mut b = tar::Builder::new(Vec::new());
        for (name, bytes) in &members {
            let mut put = |n: &str, data: &[u8]| {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                b.append_data(&mut h, n, data).unwrap();
            };
            if apple {
                put(
                    &format!("._{name}"),
                    b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X",
                );
            }
            put(name, bytes);
        }
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    }
}

#[test]
fn shards_from_other_tools_train_or_say_why_not() {
    let dir = tempfile::tempdir().unwrap();
    // A macOS tar: `._` members beside each one are skipped, as webdataset does.
    let apple = dir.path().join("apple");
    write_shards_with(&apple, 24, 32, false);
    rewrite_shards(&apple, false, true);
    let o = train(&apple, &dir.path().join("run-apple"), "tiny", &[]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 unusable sample(s) skipped"));

    // Members of a key apart: no usable sample, and the error says why and where.
    let split = dir.path().join("split");
    write_shards_with(&split, 24, 32, false);
    rewrite_shards(&split, true, false);
    let o = train(&split, &dir.path().join("run-split"), "tiny", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("gives no usable sample"), "{err}");
    assert!(err.contains("24 sample(s) without a .txt member"), "{err}");
    assert!(
        err.contains("24 sample(s) without an image member"),
        "{err}"
    );
    assert!(err.contains("(first: key \"0000"), "{err}");
    assert!(err.contains(".tar), its members apart in the tar"), "{err}");
    assert!(err.contains("not adjacent"), "{err}");
    assert!(
        !err.contains("lower --batch-size"),
        "a remedy that cannot work: {err}"
    );
}

/// `--train-num-samples` sets the epoch's length (OpenCLIP's ⌈N / global
/// batch⌉ steps), ending it early where the shards run out;
/// `--dataset-resampled` draws shards with replacement, so its epochs
/// have their full length; both resume exactly, from the middle of an
/// epoch and from the step that filled one.
#[test]
fn epochs_of_train_num_samples_and_resampled_shards_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("d");
    // 36 samples, batches of 8: a pass over the shards is 4 steps.
    write_shards_with(&dataset, 36, 40, false);
    let args = |run_dir: &Path, extra: &[&str]| {
        let mut all = vec!["--shuffle", "16", "--train-num-samples", "44"];
        all.extend(extra);
        tiny_args(&dataset, run_dir, "8", &all)
    };
    let epochs = |run_dir: &Path| -> Vec<u64> {
        metrics(run_dir)
            .iter()
            .map(|m| m["epoch"].as_u64().unwrap())
            .collect()
    };
    // 44 samples: 6 steps an epoch, but the shards give 4.
    let dealt = dir.path().join("dealt");
    let o = call(&args(&dealt, &[]));
    ok(&o);
    assert_eq!(epochs(&dealt), [0, 0, 0, 0, 1, 1, 1, 1]);
    assert!(
        stderr(&o).contains("ended after 4 of the 6 steps --train-num-samples asks for"),
        "{}",
        stderr(&o)
    );
    // Resampled: every epoch is 6 steps.
    let whole = dir.path().join("whole");
    ok(&call(&args(&whole, &["--dataset-resampled"])));
    assert_eq!(epochs(&whole), [0, 0, 0, 0, 0, 0, 1, 1]);
    let keys = |run_dir: &Path| -> Vec<String> {
        metrics(run_dir)
            .iter()
            .map(|m| m["samples"].to_string())
            .collect()
    };
    assert_eq!(keys(&whole).last().unwrap(), "64");
    // Stopped mid-epoch (step 3), then at the step that filled it (6).
    let parted = dir.path().join("parted");
    ok(&call(&args(
        &parted,
        &["--dataset-resampled", "--stop-at", "3"],
    )));
    ok(&call(&args(
        &parted,
        &["--dataset-resampled", "--resume", "--stop-at", "6"],
    )));
    ok(&call(&args(&parted, &["--dataset-resampled", "--resume"])));
    assert_eq!(metrics(&whole), metrics(&parted));
    assert_eq!(
        tensors(&whole.join("model.safetensors")),
        tensors(&parted.join("model.safetensors")),
        "the resumed run's weights differ"
    );
    // Drawn with replacement: not the dealt run's data.
    assert_ne!(metrics(&whole)[0]["loss"], metrics(&dealt)[0]["loss"]);
    // A resampled run needs the epoch's length.
    let mut a = args(&dir.path().join("endless"), &["--dataset-resampled"]);
    let at = a.iter().position(|s| s == "--train-num-samples").unwrap();
    a.drain(at..at + 2);
    let o = call(&a);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--train-num-samples"), "{}", stderr(&o));
}
