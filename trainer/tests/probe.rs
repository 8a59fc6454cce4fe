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
}
