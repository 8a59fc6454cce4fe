//! `wit stats` over a dataset made by the real stages, every figure checked
//! against counts made here independently (arrow readers, plain Rust).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use wit_contract::records::{Candidate, string_column};
use wit_contract::schema::{self, col};

use crate::server::{Reply, Server};
use crate::util::*;

fn png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x + seed) as u8, y as u8, seed as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Every row of a stage's parts (or of files matching `filter`), as batches.
pub fn batches(
    dir: &Path,
    schema: &arrow_schema::Schema,
    filter: impl Fn(&str) -> bool,
) -> Vec<arrow_array::RecordBatch> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| filter(&p.file_name().unwrap().to_string_lossy()))
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|p| {
            wit_contract::pq::read_file(p, schema)
                .unwrap()
                .map(|b| b.unwrap())
        })
        .collect()
}

fn query_counts(dir: &Path) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    for b in batches(dir, &schema::matched(), |n| n.starts_with("part-")) {
        let lists = b.column_by_name(col::QUERY_IDS).unwrap().as_list::<i32>();
        for i in 0..b.num_rows() {
            for q in lists.value(i).as_primitive::<UInt32Type>().values() {
                *out.entry(*q).or_default() += 1;
            }
        }
    }
    out
}

/// A dataset made by the real stages, from candidates to shards, served by
/// the returned server: 301 candidates (some filtered, one repeated), queries
/// red, car, dog and zebra, t = 40, images with 404s, 500s and two identical.
pub fn pipeline_dataset(dir: &Path) -> (std::path::PathBuf, Server) {
    let (ds, server) = pipeline_balanced(dir);
    ok(&run(&[
        "download",
        "-d",
        ds.to_str().unwrap(),
        "--allow-private",
        "--shard-size",
        "50",
        "--image-size",
        "32",
        "--retries",
        "0",
    ]));
    (ds, server)
}

/// The dataset of [`pipeline_dataset`], balanced but not downloaded.
pub fn pipeline_balanced(dir: &Path) -> (std::path::PathBuf, Server) {
    let server = Server::start(|path| {
        let n: u32 = path
            .trim_start_matches("/i/")
            .trim_end_matches(".png")
            .parse()
            .unwrap_or(0);
        match n {
            0 => Reply::status(404, &[]),
            // Two URLs with identical bytes.
            1 | 2 => Reply::with_type(200, "image/png", png(50, 40, 1)),
            n if n % 10 == 0 => Reply::status(500, &[]),
            n => Reply::with_type(200, "image/png", png(40 + n % 30, 30 + n % 20, n)),
        }
    });
    // Queries "red", "car", "dog" with skewed counts; some texts filtered.
    let words = ["red", "red car", "car", "dog", "red", "red", "red dog"];
    let mut rows = Vec::new();
    for i in 0..300u32 {
        let text = match i % 25 {
            0 => "pic".to_string(),                  // too short
            1 => format!("IMG_{i}.jpg"),             // file name
            2 => "nothing matches here".to_string(), // no match
            _ => format!("a {} number {i}", words[i as usize % words.len()]),
        };
        let mut c = Candidate::new(
            server.url(&format!("/i/{}.png", i % 120)),
            text,
            if i % 3 == 0 { "title" } else { "alt" },
            format!("http://page{}.example/p{i}", i % 4),
        );
        c.page_lang = Some("en".into());
        rows.push(c);
    }
    // A repeat across parts.
    rows.push(rows[10].clone());
    let ds = dir.join("ds");
    let half = rows.len() / 2;
    write_candidate_parts(&ds, &[rows[..half].to_vec(), rows[half..].to_vec()]);
    import_queries(
        &ds,
        &["red".into(), "car".into(), "dog".into(), "zebra".into()],
    );
    let d = ds.to_str().unwrap();
    ok(&run(&["match", "-d", d]));
    ok(&run(&["balance", "-d", d, "-t", "40"]));
    (ds, server)
}

#[test]
fn every_figure_matches_an_independent_count() {
    let dir = tempfile::tempdir().unwrap();
    let (ds, _server) = pipeline_dataset(dir.path());
    let d = ds.to_str().unwrap();
    let out = run(&["stats", d]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("Funnel") && text.contains("Balance"),
        "{text}"
    );
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ds.join("stats/stats.json")).unwrap()).unwrap();

    // The funnel.
    let cands = batches(&ds.join("candidates"), &schema::candidates(), |n| {
        n.starts_with("part-")
    });
    let n_cands: usize = cands.iter().map(|b| b.num_rows()).sum();
    let m = manifest(&ds, "matched");
    let dropped: u64 = m["counts"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("dropped_") || *k == "duplicates_in_part")
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    let n_matched: usize = batches(&ds.join("matched"), &schema::matched(), |n| {
        n.starts_with("part-")
    })
    .iter()
    .map(|b| b.num_rows())
    .sum();
    let n_balanced: usize = batches(&ds.join("balanced"), &schema::balanced(), |n| {
        n.starts_with("part-")
    })
    .iter()
    .map(|b| b.num_rows())
    .sum();
    let shard_rows = batches(&ds.join("shards"), &schema::shard(), |n| {
        n.ends_with(".parquet") && n.starts_with(|c: char| c.is_ascii_digit())
    });
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut shas = Vec::new();
    for b in &shard_rows {
        let st = string_column(b, col::STATUS);
        let re = string_column(b, col::ERROR_REASON);
        let sh = string_column(b, col::SHA256);
        for i in 0..b.num_rows() {
            *by_status.entry(st.value(i).to_string()).or_default() += 1;
            if st.value(i) != "success" {
                *reasons.entry(re.value(i).to_string()).or_default() += 1;
            } else {
                shas.push(sh.value(i).to_string());
            }
        }
    }
    let stored = by_status.get("success").copied().unwrap_or(0);
    let downloaded: u64 = by_status.values().sum();
    let funnel: Vec<(String, u64)> = stats["funnel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["stage"].as_str().unwrap().to_string(),
                f["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        funnel,
        vec![
            ("candidates".to_string(), n_cands as u64),
            ("after text filters".to_string(), n_cands as u64 - dropped),
            ("matched".to_string(), n_matched as u64),
            ("kept by balancing".to_string(), n_balanced as u64),
            ("downloaded".to_string(), downloaded),
            ("stored".to_string(), stored),
        ]
    );
    assert_eq!(downloaded, n_balanced as u64);
    // Which pairs balancing keeps depends on their uids, so on the port.
    assert!(stored > 0 && !reasons.is_empty(), "{reasons:?}");
    let got_reasons: BTreeMap<String, u64> =
        serde_json::from_value(stats["downloads"]["failures_by_reason"].clone()).unwrap();
    assert_eq!(got_reasons, reasons);

    // Balance.
    let before = query_counts(&ds.join("matched"));
    let after = query_counts(&ds.join("balanced"));
    let b = &stats["balance"];
    assert_eq!(b["t"], 40);
    assert_eq!(b["queries_in_list"], 4);
    assert_eq!(b["before"]["queries_matched"], before.len());
    assert_eq!(b["after"]["queries_matched"], after.len());
    assert_eq!(
        b["before"]["queries_at_or_over_t"],
        before.values().filter(|&&n| n >= 40).count()
    );
    assert_eq!(b["before"]["matches"], before.values().sum::<u64>());
    let head: u64 = before.values().filter(|&&n| n >= 40).sum();
    let share = head as f64 / before.values().sum::<u64>() as f64;
    assert!((b["before"]["head_share"].as_f64().unwrap() - share).abs() < 1e-12);
    assert!(
        (b["before"]["coverage_of_query_list"].as_f64().unwrap() - before.len() as f64 / 4.0).abs()
            < 1e-12
    );
    let top = &b["top_queries"][0];
    let (&top_id, &top_n) = before
        .iter()
        .max_by_key(|(q, n)| (**n, std::cmp::Reverse(**q)))
        .unwrap();
    assert_eq!(
        (
            top["query_id"].as_u64().unwrap(),
            top["before"].as_u64().unwrap()
        ),
        (u64::from(top_id), top_n)
    );
    assert_eq!(top["after"], after.get(&top_id).copied().unwrap_or(0));
    assert_eq!(
        top["query"],
        ["red", "car", "dog", "zebra"][top_id as usize]
    );

    // Content.
    let c = &stats["content"];
    let lens: Vec<f64> = cands
        .iter()
        .flat_map(|b| {
            let t = string_column(b, col::TEXT);
            (0..b.num_rows())
                .map(move |i| t.value(i).chars().count() as f64)
                .collect::<Vec<_>>()
        })
        .collect();
    let mean = lens.iter().sum::<f64>() / lens.len() as f64;
    assert!((c["caption_chars_candidates"]["mean"].as_f64().unwrap() - mean).abs() < 1e-9);
    assert_eq!(
        c["caption_chars_candidates"]["max"].as_f64().unwrap(),
        lens.iter().copied().fold(0.0, f64::max)
    );
    let mut sources: HashMap<String, u64> = HashMap::new();
    let mut pages: HashMap<String, u64> = HashMap::new();
    for b in &cands {
        let s = string_column(b, col::TEXT_SOURCE);
        let p = string_column(b, col::PAGE_URL);
        for i in 0..b.num_rows() {
            *sources.entry(s.value(i).to_string()).or_default() += 1;
            let host = p.value(i).split('/').nth(2).unwrap().to_string();
            *pages.entry(host).or_default() += 1;
        }
    }
    let text_sources = c["text_sources"].as_array().unwrap();
    assert_eq!(text_sources.len(), sources.len(), "{text_sources:?}");
    for e in text_sources {
        assert_eq!(
            e["count"].as_u64(),
            sources.get(e["value"].as_str().unwrap()).copied()
        );
    }
    let top_hosts = c["top_page_hosts"].as_array().unwrap();
    assert!(!top_hosts.is_empty() && !pages.is_empty());
    assert_eq!(
        top_hosts[0]["count"].as_u64(),
        pages.values().max().copied(),
        "the top host first"
    );
    for e in top_hosts {
        assert_eq!(
            e["count"].as_u64(),
            pages.get(e["value"].as_str().unwrap()).copied()
        );
    }
    assert_eq!(c["top_image_hosts"][0]["value"], "127.0.0.1");
    assert_eq!(c["top_image_hosts"][0]["count"], n_cands as u64);
    let distinct: HashSet<&String> = shas.iter().collect();
    assert_eq!(c["identical_images"]["stored"], stored);
    assert_eq!(c["identical_images"]["distinct_sha256"], distinct.len());
    assert_eq!(
        c["duplicate_pairs"]["across_parts"],
        manifest(&ds, "balanced")["counts"]["duplicates"]
    );
    let widths: Vec<f64> = shard_rows
        .iter()
        .flat_map(|b| {
            let st = string_column(b, col::STATUS);
            let w = b
                .column_by_name(col::ORIGINAL_WIDTH)
                .unwrap()
                .as_primitive::<UInt32Type>()
                .clone();
            (0..b.num_rows())
                .filter(|&i| st.value(i) == "success" && w.is_valid(i))
                .map(|i| f64::from(w.value(i)))
                .collect::<Vec<_>>()
        })
        .collect();
    let wmean = widths.iter().sum::<f64>() / widths.len() as f64;
    assert!((c["original_width"]["mean"].as_f64().unwrap() - wmean).abs() < 1e-9);
    assert_eq!(c["stored_width"]["max"].as_f64(), Some(32.0));

    // The report and its plots.
    let html = std::fs::read_to_string(ds.join("stats/report.html")).unwrap();
    assert_eq!(html.matches("data:image/png;base64,").count(), 3);
    for p in ["rank_count.png", "funnel.png", "caption_lengths.png"] {
        let img = image::open(ds.join("stats").join(p)).unwrap().to_rgb8();
        assert_eq!((img.width(), img.height()), (800, 500));
        // Not blank: axes, labels and data draw in several colours over a
        // good share of the canvas.
        let background = *img.get_pixel(0, 0);
        let drawn = img.pixels().filter(|px| **px != background).count();
        let colours: HashSet<[u8; 3]> = img.pixels().map(|px| px.0).collect();
        assert!(
            drawn > 5_000 && colours.len() > 3,
            "{p}: {drawn} drawn pixels, {} colours",
            colours.len()
        );
    }

    // SQL over the stage tables.
    let out = run(&[
        "stats",
        d,
        "--sql",
        "SELECT status, COUNT(*) AS n FROM shards GROUP BY status ORDER BY status",
        "--format",
        "json",
    ]);
    ok(&out);
    let got: BTreeMap<String, u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["status"].as_str().unwrap().to_string(),
                v["n"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, by_status);
    let out = run(&["stats", d, "--sql", "SELECT nope FROM shards"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// The HTML report opened in headless Chromium (Debian's `chromium`), as an
/// analyst's browser shows it: the screenshot holds the plots' red and blue
/// curves and green bars, so the inlined PNGs rendered.
#[test]
fn the_report_renders_in_headless_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        skip("no chromium here (Debian: apt-get install chromium; .ci/run installs it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ds, _server) = pipeline_dataset(dir.path());
    ok(&run(&["stats", ds.to_str().unwrap()]));
    let shot = dir.path().join("shot.png");
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg("--window-size=1000,2400")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", ds.join("stats/report.html").display()))
        .output()
        .unwrap();
    assert!(
        shot.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(&shot).unwrap().to_rgb8();
    let count = |f: &dyn Fn(&image::Rgb<u8>) -> bool| img.pixels().filter(|p| f(p)).count();
    let red = count(&|p| p[0] > 200 && p[1] < 80 && p[2] < 80);
    let blue = count(&|p| p[2] > 200 && p[0] < 80 && p[1] < 80);
    let green = count(&|p| p[1] > 140 && p[0] < 120 && p[2] < 120);
    assert!(
        red > 50 && blue > 50 && green > 500,
        "red {red}, blue {blue}, green {green}"
    );
    eprintln!(
        "screenshot {}: red {red}, blue {blue}, green {green}",
        shot.display()
    );
}
