//! The linear probe against scikit-learn's `LogisticRegression` on the same
//! fixed features (scikit-learn's digits; `scripts/probe-reference.py` made
//! the committed reference): test top-1 within one point.

use wit_trainer::eval::FeatureSet;
use wit_trainer::eval::probe::{ProbeOptions, linear_probe};

fn digits() -> FeatureSet {
    let text = include_str!("data/digits.csv");
    let mut set = FeatureSet {
        dim: 64,
        ..FeatureSet::default()
    };
    for line in text.lines() {
        let mut v = line.split(',').map(|t| t.parse::<f32>().unwrap());
        set.labels.push(v.next().unwrap() as usize);
        set.x.extend(v);
    }
    set
}

#[test]
fn the_probe_matches_scikit_learn_on_digits() {
    let all = digits();
    assert_eq!(all.len(), 1797);
    let idx = |r: std::ops::Range<usize>| -> Vec<usize> { r.collect() };
    let (train, val, test) = (
        all.select(&idx(0..1000)),
        all.select(&idx(1000..1300)),
        all.select(&idx(1300..1797)),
    );
    let report = linear_probe(&train, &val, &test, 10, &ProbeOptions::default());
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("data/probe_reference.json")).unwrap();
    let sklearn = reference["test_top1"].as_f64().unwrap();
    eprintln!(
        "wit probe: lambda {:e}, test top-1 {:.4}; scikit-learn: C {}, {sklearn:.4}",
        report.lambda, report.test.top1, reference["best_C"]
    );
    assert!(
        (report.test.top1 - sklearn).abs() <= 0.01,
        "wit {:.4} vs scikit-learn {sklearn:.4}",
        report.test.top1
    );
    assert_eq!(report.test.n, 497);
    assert_eq!(report.sweep.len(), ProbeOptions::default().lambdas.len());
    // Each strength of the sweep against scikit-learn's at the same C
    // (lambda = 1 / (C n), n = 1,000 training rows): validation top-1
    // within 3 of the 300 rows.
    let theirs: Vec<(f64, f64)> = reference["sweep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["C"].as_f64().unwrap(), p["val_top1"].as_f64().unwrap()))
        .collect();
    let (mut worst, mut compared) = (0f64, 0);
    for &(lambda, ours) in &report.sweep {
        let c = 1.0 / (lambda * 1000.0);
        // The sweeps overlap on C = 10^-3 .. 10^2 (wit's lambda = 10^-5 .. 1).
        let Some(&(_, want)) = theirs.iter().find(|(tc, _)| ((tc - c) / tc).abs() < 1e-6) else {
            continue;
        };
        eprintln!("C {c:.2e}: wit {ours:.4}, scikit-learn {want:.4}");
        worst = worst.max((ours - want).abs());
        compared += 1;
    }
    assert_eq!(compared, 11, "strengths both sweeps try");
    assert!(
        worst <= 3.0 / 300.0 + 1e-9,
        "validation top-1 off by {worst} at some C"
    );
    // The strength chosen is one whose validation top-1 is the sweep's best.
    let best = report.sweep.iter().map(|p| p.1).fold(0.0, f64::max);
    let chosen = report
        .sweep
        .iter()
        .find(|p| p.0 == report.lambda)
        .unwrap()
        .1;
    assert_eq!(chosen, best, "lambda {:e} chosen", report.lambda);
    // And it is scikit-learn's choice.
    let best_c = reference["best_C"].as_f64().unwrap();
    let c = 1.0 / (report.lambda * 1000.0);
    assert!(
        ((c - best_c) / best_c).abs() < 1e-6,
        "C {c} chosen, scikit-learn chose {best_c}"
    );
}
