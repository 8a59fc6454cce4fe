//! `wit balance`: MetaCLIP's balancing (its Algorithm 1), as a reduce and a map.
//!
//! **Reduce** (once per dataset; any process that finds it missing does it,
//! and its output is a deterministic function of `matched/`): the per-part
//! query counts that `wit match` wrote are summed, and the `uid` column of
//! every matched part is scanned in part and row order to find the pairs
//! (image URL, text) that repeat an earlier one, in another part or the same
//! one; their queries are subtracted from the sums. The result goes to
//! `balanced/_global/`: `query_counts.parquet` (the counts balancing uses),
//! `duplicates.parquet` and `summary.json`, then `_reduce.json` as the done
//! marker. Memory: a hash set of 64-bit uid prefixes, about 10 bytes per
//! matched pair (4 GB at 400 million); two different pairs share a prefix with
//! probability n²/2⁶⁵, about 0.004 expected at 400 million, and the later one
//! is then dropped as a repeat.
//!
//! **Map** (part by part, through the stage runner, so `--parts/--part`
//! share it): a pair that is not a repeat is kept with probability
//! 1 − ∏(1 − min(1, t / count(q))) over its queries q, against a uniform
//! number drawn from its uid and the seed ([`uniform_draw`]). A part's result
//! depends only on that part and the global counts, never on which process
//! ran it or how many did.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt32Type, UInt64Type};
use arrow_array::{BooleanArray, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{Field, Schema};
use wit_contract::layout::part_file_name;
use wit_contract::manifest::{params_hash, write_atomic};
use wit_contract::query_list::{fingerprint, read_query_list};
use wit_contract::records::string_column;
use wit_contract::schema::{self, col};
use wit_contract::{
    Dataset, Error, IoContext, Manifest, Result, RunOptions, Stage, StageSpec, Summary,
    check_params, pq, run_stage,
};

use crate::stage::QUERY_COUNTS_DIR;

/// What `wit balance` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalanceOptions {
    /// t: the pairs a query keeps on average (CLIP and MetaCLIP: 20,000).
    pub t: u64,
    /// Seed of the per-pair draws.
    pub seed: u64,
}

impl Default for BalanceOptions {
    fn default() -> Self {
        BalanceOptions { t: 20_000, seed: 0 }
    }
}

/// The directory of the reduce's outputs, inside `balanced/`.
pub const GLOBAL_DIR: &str = "_global";

/// MetaCLIP's keep probability of a pair whose queries have `counts`:
/// 1 − ∏(1 − min(1, t / count)). A query with count 0 cannot occur (the pair
/// itself counts); it is treated as kept.
pub fn keep_probability(t: u64, counts: impl IntoIterator<Item = u64>) -> f64 {
    let mut drop_all = 1.0f64;
    for c in counts {
        let p = if c == 0 {
            1.0
        } else {
            (t as f64 / c as f64).min(1.0)
        };
        drop_all *= 1.0 - p;
    }
    1.0 - drop_all
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The first 64 bits of a uid (hex), or a hash of it if it is not hex.
fn uid_key(uid: &str) -> u64 {
    match uid.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok()) {
        Some(k) => k,
        None => wit_contract::wds::fnv1a(uid),
    }
}

/// A number in [0, 1) determined by `seed` and the pair's `uid`: the same on
/// every machine and in every run.
pub fn uniform_draw(seed: u64, uid: &str) -> f64 {
    let x = splitmix64(uid_key(uid) ^ splitmix64(seed));
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// What the reduce found.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Reduced {
    /// Matched pairs, before dropping repeats.
    pub pairs: u64,
    /// Pairs dropped as repeats.
    pub duplicates: u64,
    /// Queries in the list (the highest id seen plus one if the list is not at hand).
    pub queries: u64,
    /// Queries with at least one pair.
    pub queries_matched: u64,
    /// Queries with at least t pairs.
    pub queries_at_or_over_t: u64,
    /// t.
    pub t: u64,
}

/// The reduce's results, as the map needs them.
struct Global {
    counts: Vec<u64>,
    duplicates: HashMap<u32, HashSet<u64>>,
    reduced: Reduced,
}

/// Runs (or resumes) the balance stage. Returns the stage summary and what
/// the reduce found.
///
/// # Errors
/// [`Error::BadInput`] if `matched/` is missing or incomplete; as [`run_stage`].
pub fn run_balance(
    dataset: &Dataset,
    balance: &BalanceOptions,
    opts: &RunOptions<'_>,
) -> Result<(Summary, Reduced)> {
    let upstream = Manifest::read(dataset.root(), Stage::Matched)?;
    let matched_dir = dataset.stage_dir(Stage::Matched);
    let spec = StageSpec {
        stage: Stage::Balanced,
        dir: dataset.stage_dir(Stage::Balanced),
        parts: upstream.parts,
        inputs: vec![matched_dir.display().to_string()],
        params: serde_json::json!({
            "t": balance.t,
            "seed": balance.seed,
            "matched_params_hash": upstream.params_hash,
        }),
    };
    if opts.force {
        if opts.share.is_some() {
            return Err(Error::Usage(
                "--force cannot be combined with --parts/--part: other processes may be writing the same stage".into(),
            ));
        }
        if spec.dir.exists() {
            std::fs::remove_dir_all(&spec.dir).at(&spec.dir)?;
        }
    } else {
        check_params(&spec)?;
    }
    let global = reduce(&spec, &upstream, &matched_dir, balance, opts)?;
    let map_opts = RunOptions {
        share: opts.share,
        jobs: opts.jobs,
        force: false,
        progress: opts.progress,
    };
    let summary = run_stage(&spec, &map_opts, |ctx| {
        let part = ctx.part();
        let name = part_file_name(part);
        let output = ctx.output(&name);
        balance_part(&global, balance, part, &matched_dir.join(&name), &output)
    })?;
    Ok((summary, global.reduced))
}

fn reduce(
    spec: &StageSpec,
    upstream: &Manifest,
    matched_dir: &Path,
    balance: &BalanceOptions,
    opts: &RunOptions<'_>,
) -> Result<Global> {
    let dir = spec.dir.join(GLOBAL_DIR);
    let marker = dir.join("_reduce.json");
    let hash = params_hash(&spec.params, spec.parts);
    let counts_path = dir.join("query_counts.parquet");
    let dups_path = dir.join("duplicates.parquet");
    if let Ok(bytes) = std::fs::read(&marker)
        && let Ok(done) = serde_json::from_slice::<serde_json::Value>(&bytes)
        && done["params_hash"] == hash.as_str()
        && let Ok(reduced) = serde_json::from_value::<Reduced>(done["reduced"].clone())
    {
        tracing::info!("balanced: global counts already computed, reusing them");
        return load_global(&counts_path, &dups_path, reduced);
    }
    std::fs::create_dir_all(&dir).at(&dir)?;
    let parts = upstream.parts;
    opts.progress
        .start("balance: global counts", u64::from(parts), 0);

    // The per-part counts, summed.
    let mut matched: Vec<u64> = Vec::new();
    for part in 0..parts {
        let path = matched_dir
            .join(QUERY_COUNTS_DIR)
            .join(part_file_name(part));
        for batch in pq::read_file(&path, &schema::query_counts())? {
            let batch = batch?;
            let ids = batch.column(0).as_primitive::<UInt32Type>();
            let n = batch.column(1).as_primitive::<UInt64Type>();
            for (id, n) in ids.values().iter().zip(n.values()) {
                let id = *id as usize;
                if matched.len() <= id {
                    matched.resize(id + 1, 0);
                }
                matched[id] += n;
            }
        }
    }

    // Repeats, in part and row order, and their queries taken off.
    let mut counts = matched.clone();
    let projection = Schema::new(vec![
        Field::new(col::UID, arrow_schema::DataType::Utf8, false),
        Field::new(col::QUERY_IDS, schema::query_ids_type(), false),
    ]);
    let mut seen: HashSet<u64> = HashSet::new();
    let mut dups: Vec<(u32, u64, String)> = Vec::new();
    let mut pairs = 0u64;
    for part in 0..parts {
        let path = matched_dir.join(part_file_name(part));
        let mut row = 0u64;
        for batch in pq::read_file(&path, &projection)? {
            let batch = batch?;
            let uids = string_column(&batch, col::UID);
            let lists = batch.column(1).as_list::<i32>();
            for i in 0..batch.num_rows() {
                let uid = uids.value(i);
                if !seen.insert(uid_key(uid)) {
                    for id in lists.value(i).as_primitive::<UInt32Type>().values() {
                        let c = counts.get_mut(*id as usize).ok_or_else(|| {
                            Error::bad_input(&path, format!("query id {id} has no per-part count"))
                        })?;
                        *c = c.checked_sub(1).ok_or_else(|| {
                            Error::bad_input(&path, "per-part counts disagree with the rows")
                        })?;
                    }
                    dups.push((part, row, uid.to_string()));
                }
                row += 1;
                pairs += 1;
            }
        }
        opts.progress.advance(1);
    }
    opts.progress.finish();
    drop(seen);

    // Query texts, where the list the matches were made with is at hand.
    let texts: Option<Vec<String>> = upstream
        .inputs
        .get(1)
        .and_then(|p| wit_contract::store::fetch_input(p).ok())
        .and_then(|p| read_query_list(&p).ok())
        .filter(|q| {
            upstream
                .params
                .get("queries_fingerprint")
                .and_then(|f| f.as_str())
                == Some(fingerprint(q).as_str())
        });
    let reduced = Reduced {
        pairs,
        duplicates: dups.len() as u64,
        queries: texts
            .as_ref()
            .map_or(matched.len() as u64, |t| t.len() as u64),
        queries_matched: counts.iter().filter(|&&c| c > 0).count() as u64,
        queries_at_or_over_t: counts.iter().filter(|&&c| c > 0 && c >= balance.t).count() as u64,
        t: balance.t,
    };

    let present: Vec<u32> = (0..matched.len() as u32)
        .filter(|&q| matched[q as usize] > 0)
        .collect();
    let batch = RecordBatch::try_new(
        schema::global_counts(),
        vec![
            Arc::new(UInt32Array::from(present.clone())),
            Arc::new(StringArray::from_iter(present.iter().map(|&q| {
                texts
                    .as_ref()
                    .and_then(|t| t.get(q as usize))
                    .map(String::as_str)
            }))),
            Arc::new(UInt64Array::from_iter_values(
                present.iter().map(|&q| matched[q as usize]),
            )),
            Arc::new(UInt64Array::from_iter_values(
                present.iter().map(|&q| counts[q as usize]),
            )),
            Arc::new(Float64Array::from_iter_values(
                present
                    .iter()
                    .map(|&q| keep_probability(balance.t, [counts[q as usize]])),
            )),
        ],
    )
    .map_err(|e| Error::Write {
        path: counts_path.clone(),
        message: e.to_string(),
    })?;
    pq::write_file_atomic(&counts_path, schema::global_counts(), &[batch])?;
    let batch = RecordBatch::try_new(
        schema::duplicates(),
        vec![
            Arc::new(UInt32Array::from_iter_values(dups.iter().map(|d| d.0))),
            Arc::new(UInt64Array::from_iter_values(dups.iter().map(|d| d.1))),
            Arc::new(StringArray::from_iter_values(
                dups.iter().map(|d| d.2.as_str()),
            )),
        ],
    )
    .map_err(|e| Error::Write {
        path: dups_path.clone(),
        message: e.to_string(),
    })?;
    pq::write_file_atomic(&dups_path, schema::duplicates(), &[batch])?;
    let summary = serde_json::to_vec_pretty(&reduced).expect("serialisable");
    write_atomic(&dir.join("summary.json"), &summary)?;
    let done = serde_json::json!({ "params_hash": hash, "reduced": reduced });
    write_atomic(
        &marker,
        &serde_json::to_vec_pretty(&done).expect("serialisable"),
    )?;
    load_global(&counts_path, &dups_path, reduced)
}

/// Reads the reduce's outputs back (every process uses the files, so that all
/// see the same counts whoever computed them).
fn load_global(counts_path: &Path, dups_path: &Path, reduced: Reduced) -> Result<Global> {
    let mut counts = Vec::new();
    for batch in pq::read_file(counts_path, &schema::global_counts())? {
        let batch = batch?;
        let ids = batch
            .column_by_name(col::QUERY_ID)
            .expect("checked")
            .as_primitive::<UInt32Type>();
        let n = batch
            .column_by_name(col::COUNT)
            .expect("checked")
            .as_primitive::<UInt64Type>();
        for (id, n) in ids.values().iter().zip(n.values()) {
            let id = *id as usize;
            if counts.len() <= id {
                counts.resize(id + 1, 0);
            }
            counts[id] = *n;
        }
    }
    let mut duplicates: HashMap<u32, HashSet<u64>> = HashMap::new();
    for batch in pq::read_file(dups_path, &schema::duplicates())? {
        let batch = batch?;
        let parts = batch.column(0).as_primitive::<UInt32Type>();
        let rows = batch.column(1).as_primitive::<UInt64Type>();
        for (p, r) in parts.values().iter().zip(rows.values()) {
            duplicates.entry(*p).or_default().insert(*r);
        }
    }
    Ok(Global {
        counts,
        duplicates,
        reduced,
    })
}

fn balance_part(
    global: &Global,
    balance: &BalanceOptions,
    part: u32,
    input: &Path,
    output: &Path,
) -> Result<wit_contract::Counts> {
    let no_dups = HashSet::new();
    let dups = global.duplicates.get(&part).unwrap_or(&no_dups);
    let mut writer = pq::ParquetWriter::create(output, schema::balanced())?;
    let (mut row, mut duplicates) = (0u64, 0u64);
    for batch in pq::read_file(input, &schema::matched())? {
        let batch = batch?;
        let uids = string_column(&batch, col::UID);
        let lists = batch
            .column_by_name(col::QUERY_IDS)
            .expect("checked")
            .as_list::<i32>();
        let mut keep = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            if dups.contains(&row) {
                duplicates += 1;
                keep.push(false);
            } else {
                let ids = lists.value(i);
                let counts = ids
                    .as_primitive::<UInt32Type>()
                    .values()
                    .iter()
                    .map(|&q| global.counts.get(q as usize).copied().unwrap_or(0));
                let p = keep_probability(balance.t, counts);
                keep.push(uniform_draw(balance.seed, uids.value(i)) < p);
            }
            row += 1;
        }
        let kept = arrow_select::filter::filter_record_batch(&batch, &BooleanArray::from(keep))
            .map_err(|e| Error::bad_input(input, e.to_string()))?;
        writer.write(&kept)?;
    }
    let kept = writer.finish()?;
    Ok(wit_contract::Counts::from([
        ("pairs".to_string(), row),
        ("duplicates".to_string(), duplicates),
        ("kept".to_string(), kept),
        ("dropped_by_balance".to_string(), row - duplicates - kept),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_probability_is_metaclips() {
        assert_eq!(keep_probability(100, [50]), 1.0);
        assert!((keep_probability(100, [400]) - 0.25).abs() < 1e-12);
        // Two head queries: 1 - (1 - 0.25)(1 - 0.5).
        assert!((keep_probability(100, [400, 200]) - 0.625).abs() < 1e-12);
        // Any tail query keeps the pair.
        assert_eq!(keep_probability(100, [1_000_000, 3]), 1.0);
    }

    #[test]
    fn draws_are_uniform_seeded_and_stable() {
        let uid = "0123456789abcdef0123456789abcdef";
        assert_eq!(uniform_draw(7, uid), uniform_draw(7, uid));
        assert_ne!(uniform_draw(7, uid), uniform_draw(8, uid));
        let n = 100_000;
        let mut below = [0u32; 10];
        for i in 0..n {
            let uid = wit_contract::records::uid(&format!("http://x/{i}"), "t");
            let u = uniform_draw(0, &uid);
            assert!((0.0..1.0).contains(&u));
            below[(u * 10.0) as usize] += 1;
        }
        for b in below {
            // 10,000 expected per decile; sd 95.
            assert!((9_500..10_500).contains(&b), "{below:?}");
        }
    }
}
