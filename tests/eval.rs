//! `wit eval` on a model `wit train` made: zero-shot (single prompt and
//! ensemble), a linear probe and retrieval, over a folder-per-class set and
//! WebDataset shards with `cls` (the vendored MNIST sample where it
//! exists); the table, eval.json and confusion.png.

use std::path::Path;

use crate::train::write_shards;
use crate::util::{ok, run};

fn square(path: &Path, rgb: [u8; 3], k: u32) {
    let img = image::RgbImage::from_fn(40, 40, |x, y| {
        let stripe = ((x / 5 + y / 5 + k) % 2) as u8;
        image::Rgb([
            rgb[0] / (1 + stripe),
            rgb[1] / (1 + stripe),
            rgb[2] / (1 + stripe),
        ])
    });
    img.save(path).unwrap();
}

#[test]
fn zero_shot_probe_and_retrieval_on_a_trained_model() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("d");
    write_shards(&dataset, 16, 40);
    let run_dir = dir.path().join("r");
    ok(&run(&[
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
        "2",
    ]));
    // Class folders: train/ and test/, three colours.
    let colours = [
        ("red", [220, 30, 30]),
        ("green", [30, 200, 30]),
        ("blue", [30, 30, 220]),
    ];
    for split in ["train", "test"] {
        for (name, rgb) in colours {
            let d = dir.path().join(split).join(name);
            std::fs::create_dir_all(&d).unwrap();
            for k in 0..6 {
                square(&d.join(format!("{k}.png")), rgb, k);
            }
        }
    }
    std::fs::write(dir.path().join("test/blue/broken.png"), b"not a png").unwrap();
    let out = dir.path().join("eval");
    let o = run(&[
        "eval",
        "--checkpoint",
        run_dir.join("model.safetensors").to_str().unwrap(),
        "--data",
        dir.path().join("test").to_str().unwrap(),
        "--train",
        dir.path().join("train").to_str().unwrap(),
        "--retrieval",
        dataset.join("shards/00000.tar").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(&o);
    let table = String::from_utf8_lossy(&o.stdout);
    for want in [
        "zero-shot, \"a photo of a {}.\"",
        "zero-shot, 80 templates",
        "linear probe",
        "chance (3 classes)",
        "33.33%",
        "R@10",
        // 8 pairs: a random ranking finds the match in the first 1, 5, 10
        // with 1/8, 5/8, 8/8.
        "retrieval, chance (8 pairs): R@1 12.50%  R@5 62.50%  R@10 100.00%",
        "3 sample(s) skipped",
    ] {
        assert!(table.contains(want), "{want} in\n{table}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(
        report["classes"],
        serde_json::json!(["blue", "green", "red"])
    );
    assert_eq!(report["zero_shot"]["ensemble"]["n"], 18);
    assert_eq!(report["zero_shot"]["templates"], 80);
    let probe = report["linear_probe"]["test"]["top1"].as_f64().unwrap();
    // Solid colours are separable on any features.
    assert!(probe > 0.9, "probe top-1 {probe}");
    assert_eq!(report["retrieval"]["n"], 8);
    assert_eq!(
        report["retrieval"]["chance_recall"],
        serde_json::json!([0.125, 0.625, 1.0])
    );
    let confusion = &report["zero_shot"]["ensemble"]["confusion"];
    let total: u64 = confusion
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 18);
    assert!(image::open(out.join("confusion.png")).unwrap().width() > 100);

    // WebDataset shards with cls: the MNIST sample written by the Python
    // webdataset library (tests/fixtures/webdataset).
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webdataset/sample.tgz");
    let names = dir.path().join("digits.txt");
    std::fs::write(
        &names,
        (0..10)
            .map(|d| format!("the number {d}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let o = run(&[
        "eval",
        "--checkpoint",
        run_dir.join("model.safetensors").to_str().unwrap(),
        "--data",
        mnist.to_str().unwrap(),
        "--classes",
        names.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(&o);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(report["zero_shot"]["single_prompt"]["n"], 90);
    assert_eq!(report["classes"].as_array().unwrap().len(), 10);
    // Without class names, shards are refused with a message.
    let o = run(&[
        "eval",
        "--checkpoint",
        run_dir.join("model.safetensors").to_str().unwrap(),
        "--data",
        mnist.to_str().unwrap(),
    ]);
    assert!(
        crate::util::stderr(&o).contains("class-names file"),
        "{}",
        crate::util::stderr(&o)
    );

    // Label sets meet by class name (issue 37: folder i of each set was
    // taken as class i, and a training set lacking a class gave a 33%
    // probe with exit 0).
    let checkpoint = run_dir.join("model.safetensors");
    let eval = |extra: &[&str]| {
        let mut a = vec!["eval", "--checkpoint", checkpoint.to_str().unwrap()];
        a.extend_from_slice(extra);
        a.extend(["--out", out.to_str().unwrap()]);
        run(&a)
    };
    let folders = |name: &str, classes: &[(&str, u32)]| {
        for (class, n) in classes {
            let d = dir.path().join(name).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for k in 0..*n {
                square(&d.join(format!("{k}.png")), [40 * k as u8, 90, 200], k);
            }
        }
        dir.path().join(name).to_str().unwrap().to_string()
    };
    let (test, train) = (dir.path().join("test"), dir.path().join("train"));
    let (test, train) = (test.to_str().unwrap(), train.to_str().unwrap());
    let lacking = folders("train-lacking", &[("green", 3), ("red", 3)]);
    let o = eval(&["--data", test, "--train", &lacking]);
    let err = crate::util::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no training images of 1 of the test set's classes: `blue`"),
        "{err}"
    );
    let extra = folders(
        "train-extra",
        &[("blue", 2), ("green", 2), ("purple", 2), ("red", 2)],
    );
    let o = eval(&["--data", test, "--train", &extra]);
    let err = crate::util::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("class folders that are not among the 3 classes: `purple`"),
        "{err}"
    );
    // --classes in another order than the folders (and one class with no
    // test images): each folder's images count under its own name.
    let uneven = folders("test-uneven", &[("blue", 2), ("green", 4), ("red", 6)]);
    let names = dir.path().join("rgb.txt");
    std::fs::write(&names, "red\ngreen\nblue\nyellow\n").unwrap();
    let o = eval(&[
        "--data",
        &uneven,
        "--classes",
        names.to_str().unwrap(),
        "--train",
        train,
    ]);
    ok(&o);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(
        report["classes"],
        serde_json::json!(["red", "green", "blue", "yellow"])
    );
    let rows: Vec<u64> = report["zero_shot"]["ensemble"]["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .sum()
        })
        .collect();
    assert_eq!(rows, [6, 4, 2, 0]);
    // A class folder the class list lacks is named.
    std::fs::write(&names, "red\ngreen\n").unwrap();
    let o = eval(&["--data", &uneven, "--classes", names.to_str().unwrap()]);
    let err = crate::util::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("not among the 2 classes: `blue`"), "{err}");
    // A template without its placeholder, and a class named twice.
    let templates = dir.path().join("t.txt");
    std::fs::write(&templates, "a photo of a {}.\na photo of a thing.\n").unwrap();
    let o = eval(&["--data", test, "--templates", templates.to_str().unwrap()]);
    let err = crate::util::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 2: the template `a photo of a thing.` has no {}"),
        "{err}"
    );
    std::fs::write(&names, "red\ngreen\nred\n").unwrap();
    let o = eval(&["--data", test, "--classes", names.to_str().unwrap()]);
    let err = crate::util::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 3 names the class `red` again (first on line 1)"),
        "{err}"
    );
}
