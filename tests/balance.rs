//! `wit match` filters and `wit balance` on generated pools whose every figure
//! is known in advance.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt32Type, UInt64Type};
use wit_contract::pq;
use wit_contract::records::{Candidate, string_column};
use wit_contract::schema::{self, col};

use crate::util::*;

/// (uid, query ids) of every row of a stage, in part and row order.
fn rows_of(dir: &Path) -> Vec<(String, Vec<u32>)> {
    let mut out = Vec::new();
    for (_, path) in wit_contract::layout::list_parts(dir).unwrap() {
        for batch in pq::read_file(&path, &schema::matched()).unwrap() {
            let batch = batch.unwrap();
            let uids = string_column(&batch, col::UID);
            let lists = batch
                .column_by_name(col::QUERY_IDS)
                .unwrap()
                .as_list::<i32>();
            for i in 0..batch.num_rows() {
                let ids = lists.value(i);
                out.push((
                    uids.value(i).to_string(),
                    ids.as_primitive::<UInt32Type>().values().to_vec(),
                ));
            }
        }
    }
    out
}

fn sidecar_sum(dir: &Path) -> BTreeMap<String, u64> {
    manifest(
        dir.parent().unwrap(),
        dir.file_name().unwrap().to_str().unwrap(),
    )["counts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

#[test]
fn match_applies_each_text_filter_and_drops_repeats_in_a_part() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    let row = |url: &str, text: &str, lang: Option<&str>| {
        let mut c = Candidate::new(url, text, "alt", "http://page.example/");
        c.page_lang = lang.map(String::from);
        c
    };
    let part = vec![
        row("http://i/1.jpg", "a red car", Some("en")),
        row("http://i/1.jpg", "a red car", Some("en")), // repeat
        row("http://i/2.jpg", "car", None),             // too short
        row("http://i/3.jpg", "red_car.jpg", None),     // a file name
        row("http://i/4.jpg", "https://x.example/car", None),
        row("http://i/5.jpg", "une voiture red car", Some("fr-FR")),
        row(
            "http://i/6.jpg",
            &format!("red car {}", "x".repeat(60)),
            None,
        ), // too long
        row("http://i/7.jpg", "ein red car", Some("de")),
        row("http://i/8.jpg", "nothing to see", None),
    ];
    write_candidate_parts(&ds, &[part]);
    import_queries(&ds, &["red car".into(), "car".into()]);
    ok(&run(&[
        "match",
        "-d",
        ds.to_str().unwrap(),
        "--max-length",
        "50",
        "--lang",
        "en,de",
    ]));
    let counts = sidecar_sum(&ds.join("matched"));
    let want = [
        ("candidates", 9),
        ("duplicates_in_part", 1),
        ("dropped_too_short", 1),
        ("dropped_file_name_or_url", 2),
        ("dropped_language", 1),
        ("dropped_too_long", 1),
        ("no_match", 1),
        ("matched", 2),
        ("query_matches", 4),
    ];
    for (k, n) in want {
        assert_eq!(counts.get(k), Some(&n), "{k}: {counts:?}");
    }
    // The part's query counts sit beside it.
    let qc = ds.join("matched/_query_counts/part-00000.parquet");
    let mut got = Vec::new();
    for batch in pq::read_file(&qc, &schema::query_counts()).unwrap() {
        let batch = batch.unwrap();
        let ids = batch.column(0).as_primitive::<UInt32Type>();
        let n = batch.column(1).as_primitive::<UInt64Type>();
        got.extend(ids.values().iter().copied().zip(n.values().iter().copied()));
    }
    assert_eq!(got, vec![(0, 2), (1, 2)]);
}

/// A pool with Zipf-like query counts: query i has about 40,000 / (i + 1)
/// single-query pairs, in 4 parts; plus repeats across and within parts.
fn zipf_pool(ds: &Path) -> (Vec<String>, Vec<u64>, u64) {
    let queries: Vec<String> = (0..400).map(|i| format!("concept{i:03}")).collect();
    let mut parts: Vec<Vec<Candidate>> = vec![Vec::new(); 4];
    let mut rng = Lcg(7);
    let mut per_query = vec![0u64; queries.len()];
    let mut n = 0;
    for (i, q) in queries.iter().enumerate() {
        let count = 40_000 / (i as u64 + 1);
        for k in 0..count {
            let part = (rng.next() % 4) as usize;
            parts[part].push(Candidate::new(
                format!("http://img.example/{i}/{k}.jpg"),
                format!("a photo of {q}"),
                "alt",
                "http://page.example/",
            ));
            per_query[i] += 1;
            n += 1;
        }
    }
    // 300 repeats of existing pairs, in other parts and in the same part.
    let mut repeats = 0;
    for r in 0..300 {
        let i = r % 40;
        let c = Candidate::new(
            format!("http://img.example/{i}/{r}.jpg"),
            format!("a photo of {}", queries[i]),
            "alt",
            "http://page.example/",
        );
        parts[r % 4].push(c);
        repeats += 1;
    }
    write_candidate_parts(ds, &parts);
    import_queries(ds, &queries);
    assert_eq!(n, per_query.iter().sum::<u64>());
    (queries, per_query, repeats)
}

#[test]
fn balancing_keeps_min_count_t_per_query_and_any_process_split_gives_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    let (queries, per_query, repeats) = zipf_pool(&ds);
    ok(&run(&["match", "-d", ds.to_str().unwrap(), "--jobs", "2"]));
    // The repeats within a part were dropped by match, those across parts by balance.
    let match_counts = sidecar_sum(&ds.join("matched"));
    let in_part = match_counts["duplicates_in_part"];

    let copy = tmp.path().join("copy");
    copy_dir(&ds, &copy);
    let t = 500u64;
    let t_arg = t.to_string();
    let out = run(&["balance", "-d", ds.to_str().unwrap(), "-t", &t_arg]);
    ok(&out);
    // The log's two lines agree: the distinct pairs are what balancing keeps from.
    let log = stderr(&out);
    let distinct: u64 = log
        .split(", so ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        log.contains(&format!(" of the {distinct} distinct pairs (")),
        "{log}"
    );

    // Global counts: the reduce agrees with an independent count.
    let mut counts: HashMap<u32, (u64, u64, f64)> = HashMap::new();
    for batch in pq::read_file(
        &ds.join("balanced/_global/query_counts.parquet"),
        &schema::global_counts(),
    )
    .unwrap()
    {
        let batch = batch.unwrap();
        let ids = batch.column(0).as_primitive::<UInt32Type>();
        let texts = string_column(&batch, col::QUERY);
        let matched = batch.column(2).as_primitive::<UInt64Type>();
        let count = batch.column(3).as_primitive::<UInt64Type>();
        let p = batch
            .column(4)
            .as_primitive::<arrow_array::types::Float64Type>();
        for i in 0..batch.num_rows() {
            let id = ids.value(i);
            assert_eq!(texts.value(i), queries[id as usize]);
            counts.insert(id, (matched.value(i), count.value(i), p.value(i)));
        }
    }
    assert_eq!(counts.len(), queries.len());
    for (i, &n) in per_query.iter().enumerate() {
        let (_, count, p) = counts[&(i as u32)];
        assert_eq!(count, n, "query {i}: counted once per distinct pair");
        assert!((p - (t as f64 / n as f64).min(1.0)).abs() < 1e-12);
    }
    let matched_total: u64 = counts.values().map(|c| c.0).sum();
    let dups = rows_of(&ds.join("matched")).len() as u64 - per_query.iter().sum::<u64>();
    assert_eq!(matched_total - per_query.iter().sum::<u64>(), dups);
    assert_eq!(dups + in_part, repeats);

    // Kept per query: all of a query under t; about t (binomial) above it.
    let kept = rows_of(&ds.join("balanced"));
    let uids: HashSet<&String> = kept.iter().map(|r| &r.0).collect();
    assert_eq!(uids.len(), kept.len(), "no pair kept twice");
    let mut kept_per_query = vec![0u64; queries.len()];
    for (_, ids) in &kept {
        assert_eq!(ids.len(), 1);
        kept_per_query[ids[0] as usize] += 1;
    }
    let mut head_total = 0.0;
    let mut head_expected = 0.0;
    for (i, (&n, &k)) in per_query.iter().zip(&kept_per_query).enumerate() {
        if n <= t {
            assert_eq!(k, n, "query {i} is under t: every pair kept");
        } else {
            let p = t as f64 / n as f64;
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            assert!(
                (k as f64 - t as f64).abs() <= 5.0 * sd,
                "query {i}: kept {k} of {n}, expected {t} +- {sd:.1}"
            );
            head_total += k as f64;
            head_expected += t as f64;
        }
    }
    // Over all head queries the relative error is small.
    assert!(
        (head_total - head_expected).abs() / head_expected < 0.02,
        "{head_total} vs {head_expected}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ds.join("balanced/_global/summary.json")).unwrap())
            .unwrap();
    let over = per_query.iter().filter(|&&n| n >= t).count();
    assert_eq!(summary["queries_at_or_over_t"], over as u64);
    assert_eq!(summary["queries_matched"], queries.len() as u64);

    // The same stage as three independent processes: the same bytes.
    for part in 0..3 {
        ok(&run(&[
            "balance",
            "-d",
            copy.to_str().unwrap(),
            "-t",
            &t_arg,
            "--parts",
            "3",
            "--part",
            &part.to_string(),
            "--jobs",
            "1",
        ]));
    }
    assert_eq!(
        data_files(&ds.join("balanced")),
        data_files(&copy.join("balanced"))
    );
    assert_eq!(
        data_files(&ds.join("balanced/_global")),
        data_files(&copy.join("balanced/_global"))
    );
    assert_eq!(
        data_files(&ds.join("balanced/_global/duplicates")),
        data_files(&copy.join("balanced/_global/duplicates"))
    );
    assert_eq!(
        manifest(&ds, "balanced")["counts"],
        manifest(&copy, "balanced")["counts"]
    );
    // Another seed draws other pairs.
    ok(&run(&[
        "balance",
        "-d",
        copy.to_str().unwrap(),
        "-t",
        &t_arg,
        "--seed",
        "1",
        "--force",
    ]));
    assert_ne!(
        data_files(&ds.join("balanced")),
        data_files(&copy.join("balanced"))
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}
