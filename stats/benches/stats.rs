//! `wit stats` over a generated metadata set of 10 million candidates
//! (`WIT_BENCH_ROWS`), with 5 million matched, 2 million balanced and 2
//! million shard rows, in 100 parts each: wall time and peak memory of the
//! report, measured in a child process so that generating the data does not
//! count, next to the size of the data on disk.
//!
//! Run: `cargo bench -p wit-stats --bench stats` (part of `make bench`).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{ListBuilder, UInt32Builder};
use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt32Array, UInt64Array};
use wit_contract::{
    Counts, Dataset, NoProgress, RunOptions, Stage, StageSpec, pq, run_stage, schema,
};

const PARTS: u32 = 100;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const WORDS: &[&str] = &[
    "a", "photo", "of", "the", "red", "car", "dog", "on", "beach", "in", "city", "old", "house",
    "with", "tree", "blue", "sky", "night", "small", "bird",
];

fn text(i: u64) -> String {
    let r = splitmix(i);
    let n = 3 + (r % 12) as usize;
    (0..n)
        .map(|k| WORDS[(splitmix(r ^ k as u64) % WORDS.len() as u64) as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

fn candidate_columns(start: u64, n: u64) -> Vec<ArrayRef> {
    let idx: Vec<u64> = (start..start + n).collect();
    let uid = StringArray::from_iter_values(idx.iter().map(|i| format!("{:032x}", splitmix(*i))));
    let url = StringArray::from_iter_values(
        idx.iter()
            .map(|i| format!("https://img{}.example/{i}.jpg", splitmix(*i) % 5000)),
    );
    let texts = StringArray::from_iter_values(idx.iter().map(|i| text(*i)));
    let source = StringArray::from_iter_values(
        idx.iter()
            .map(|i| ["alt", "title", "figcaption"][(i % 3) as usize]),
    );
    let page = StringArray::from_iter_values(
        idx.iter()
            .map(|i| format!("https://site{}.example/p/{i}", splitmix(i ^ 7) % 20000)),
    );
    let none = StringArray::from(vec![None::<&str>; n as usize]);
    let lang = StringArray::from_iter_values(idx.iter().map(|_| "en"));
    let dims = UInt32Array::from(vec![None::<u32>; n as usize]);
    let origin = StringArray::from_iter_values(idx.iter().map(|_| "crawl"));
    let offset = UInt64Array::from(vec![None::<u64>; n as usize]);
    let time = arrow_array::TimestampMillisecondArray::from(vec![None::<i64>; n as usize])
        .with_timezone("UTC");
    vec![
        Arc::new(uid),
        Arc::new(url),
        Arc::new(texts),
        Arc::new(source),
        Arc::new(page),
        Arc::new(none),
        Arc::new(lang),
        Arc::new(dims.clone()),
        Arc::new(dims),
        Arc::new(origin),
        Arc::new(offset),
        Arc::new(time),
    ]
}

fn query_ids(start: u64, n: u64) -> ArrayRef {
    let field = match schema::query_ids_type() {
        arrow_schema::DataType::List(f) => f,
        _ => unreachable!(),
    };
    let mut b = ListBuilder::new(UInt32Builder::new()).with_field(field);
    for i in start..start + n {
        let r = splitmix(i ^ 99);
        // Zipf-like query ids over 500,000 queries.
        let q = ((500_000f64).powf((r % 10_000) as f64 / 10_000.0) as u32).saturating_sub(1);
        b.values().append_value(q);
        if r.is_multiple_of(3) {
            b.values().append_value(q / 2 + 1);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn write_stage(
    root: &Path,
    stage: Stage,
    rows: u64,
    schema: arrow_schema::SchemaRef,
    extra: impl Fn(u64, u64) -> Vec<ArrayRef> + Sync,
) {
    let spec = StageSpec {
        stage,
        dir: Dataset::new(root).stage_dir(stage),
        parts: PARTS,
        inputs: vec!["generated".into()],
        params: serde_json::json!({ "rows": rows, "t": 20000 }),
    };
    let per = rows / u64::from(PARTS);
    let opts = RunOptions {
        share: None,
        jobs: 2,
        force: false,
        progress: &NoProgress,
    };
    run_stage(&spec, &opts, |ctx| {
        let start = u64::from(ctx.part()) * per;
        let mut cols = candidate_columns(start, per);
        cols.extend(extra(start, per));
        let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
        pq::write_file(
            &ctx.output(&format!("part-{:05}.parquet", ctx.part())),
            schema.clone(),
            &[batch],
        )?;
        Ok(Counts::from([
            ("kept".to_string(), per),
            ("pairs".to_string(), per),
        ]))
    })
    .unwrap();
}

fn write_shards(root: &Path, rows: u64) {
    let dir = root.join("shards");
    std::fs::create_dir_all(&dir).unwrap();
    let per = rows / u64::from(PARTS);
    for s in 0..u64::from(PARTS) {
        let start = s * per;
        let idx: Vec<u64> = (start..start + per).collect();
        let ok: Vec<bool> = idx.iter().map(|i| splitmix(i ^ 5) % 10 < 7).collect();
        let opt_u32 = |f: &dyn Fn(u64) -> u32| -> ArrayRef {
            Arc::new(UInt32Array::from(
                idx.iter()
                    .zip(&ok)
                    .map(|(i, o)| o.then(|| f(*i)))
                    .collect::<Vec<_>>(),
            ))
        };
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                idx.iter().map(|i| format!("{i:09}")),
            )),
            Arc::new(StringArray::from_iter_values(
                ok.iter()
                    .map(|o| if *o { "success" } else { "failed_to_download" }),
            )),
            Arc::new(StringArray::from(
                ok.iter()
                    .map(|o| (!o).then_some("HTTP status 404"))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                ok.iter()
                    .map(|o| (!o).then_some("http_4xx"))
                    .collect::<Vec<_>>(),
            )),
            opt_u32(&|_| 256),
            opt_u32(&|_| 256),
            opt_u32(&|i| 200 + (splitmix(i) % 2000) as u32),
            opt_u32(&|i| 150 + (splitmix(i ^ 3) % 1500) as u32),
            Arc::new(StringArray::from(
                idx.iter()
                    .zip(&ok)
                    .map(|(i, o)| o.then(|| format!("{:064x}", splitmix(*i))))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from_iter_values(idx.iter().map(|i| {
                format!("https://img{}.example/{i}.jpg", splitmix(*i) % 5000)
            }))),
            Arc::new(StringArray::from_iter_values(idx.iter().map(|i| text(*i)))),
            Arc::new(StringArray::from_iter_values(
                idx.iter().map(|i| format!("{:032x}", splitmix(*i))),
            )),
            query_ids(start, per),
        ];
        let batch = RecordBatch::try_new(schema::shard(), cols).unwrap();
        pq::write_file(
            &dir.join(format!("{s:05}.parquet")),
            schema::shard(),
            &[batch],
        )
        .unwrap();
    }
}

fn du(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        du(&p)
                    } else {
                        e.metadata().map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--measure") {
        let root = Path::new(&args[i + 1]);
        let t = Instant::now();
        let report = wit_stats::report(root).unwrap();
        wit_stats::write_report(&report, &root.join("stats")).unwrap();
        println!("{} {}", t.elapsed().as_secs_f64(), peak_rss_mib());
        return;
    }
    let rows: u64 = std::env::var("WIT_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let t = Instant::now();
    write_stage(
        root,
        Stage::Candidates,
        rows,
        schema::candidates(),
        |_, _| Vec::new(),
    );
    write_stage(root, Stage::Matched, rows / 2, schema::matched(), |s, n| {
        vec![query_ids(s, n)]
    });
    write_stage(
        root,
        Stage::Balanced,
        rows / 5,
        schema::balanced(),
        |s, n| vec![query_ids(s, n)],
    );
    write_shards(root, rows / 5);
    let total = rows + rows / 2 + rows / 5 + rows / 5;
    println!(
        "generated {total} rows ({rows} candidates) in {PARTS} parts per stage, {:.0} MB of Parquet, in {:.0} s",
        du(root) as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--measure")
        .arg(root)
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut it = line.split_whitespace();
    let (secs, mib): (f64, f64) = (
        it.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN),
        it.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN),
    );
    if !out.status.success() {
        println!("report failed: {}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    println!("wit stats (report, JSON, plots, HTML): {secs:.1} s wall, peak memory {mib:.0} MiB");
}
