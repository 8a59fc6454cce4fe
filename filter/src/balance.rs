//! `wit balance`: MetaCLIP's balancing (its Algorithm 1), as bucketed
//! reduces and a map, every step in memory that does not grow with the
//! dataset.
//!
//! **Repeats** (a pair, image URL and text, seen in an earlier part or row
//! is dropped; the first is kept): found by a bucketed external pass, as
//! MapReduce does it. Both steps are parts of their own, run through the
//! stage runner: they commit atomically, resume, and `--parts/--part` share
//! them; a process that has done its share runs the parts other processes
//! have not finished as backup tasks ([`run_stage_to_end`]), so no process
//! waits for another.
//! - *Scatter* (`balanced/_buckets/`, one part per matched part): each row's
//!   bucket (B ranges of equal width of the 64-bit uid prefix), prefix,
//!   part, row, uid and query ids, sorted by bucket, one row group per
//!   bucket: `_buckets/part-PPPPP.parquet`. A reduce task reads its bucket's
//!   row groups only (by their statistics), so the files are one per part,
//!   whatever B.
//! - *Reduce* (`balanced/_repeats/`, one part per bucket): a bucket's rows,
//!   in part and row order, through a hash set of uid prefixes; a prefix seen
//!   before marks a repeat: `_repeats/bucket-BBBBB.parquet` (part, row, uid)
//!   and `_repeats/_counts/bucket-BBBBB.parquet` (the repeats' query counts).
//!   B is the fewest buckets whose hash sets fit `memory_budget`
//!   ([`BalanceOptions::memory_budget`], about 32 bytes a row), so a
//!   process's memory is bounded whatever the number of pairs. Every pair's
//!   repeats lie in one bucket, so the repeats do not depend on B.
//!
//! **Global counts** (`balanced/_global/`; any process that finds them
//! missing makes them, a deterministic function of the parts above): the
//! per-part query counts that `wit match` wrote are summed and the repeats'
//! subtracted: `query_counts.parquet`; the repeats merged per matched part:
//! `duplicates/part-PPPPP.parquet`; `summary.json`; then `_reduce.json` as
//! the done marker. Memory: one count per query. Two different pairs share a
//! 64-bit prefix with probability n²/2⁶⁵, about 0.004 expected at 400
//! million; the later one is then dropped as a repeat.
//!
//! **Map** (part by part, through the stage runner, so `--parts/--part`
//! share it): a pair that is not a repeat is kept with probability
//! 1 − ∏(1 − min(1, t / count(q))) over its queries q, against a uniform
//! number drawn from its uid and the seed ([`uniform_draw`]). A part's result
//! depends only on that part and the global counts, never on which process
//! ran it, how many did, or the memory budget.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder, UInt32Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{UInt32Type, UInt64Type};
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use wit_contract::layout::part_file_name;
use wit_contract::manifest::{params_hash, write_atomic};
use wit_contract::pq::write_error;
use wit_contract::query_list::{fingerprint, read_query_list};
use wit_contract::records::string_column;
use wit_contract::schema::{self, col};
use wit_contract::{
    Counts, Dataset, Error, IoContext, Manifest, Result, RunOptions, Stage, StageSpec, Summary,
    check_params, pq, run_stage, run_stage_to_end,
};

use crate::stage::QUERY_COUNTS_DIR;

/// What `wit balance` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalanceOptions {
    /// t: the pairs a query keeps on average (CLIP and MetaCLIP: 20,000).
    pub t: u64,
    /// Seed of the per-pair draws.
    pub seed: u64,
    /// Bytes a reduce task may use for its hash set (it sets the number of
    /// buckets; the output does not depend on it). Default 1 GiB.
    pub memory_budget: u64,
}

impl Default for BalanceOptions {
    fn default() -> Self {
        BalanceOptions {
            t: 20_000,
            seed: 0,
            memory_budget: 1 << 30,
        }
    }
}

/// The directory of the global counts, inside `balanced/`.
pub const GLOBAL_DIR: &str = "_global";
/// The scatter step's parts, inside `balanced/`.
pub const BUCKETS_DIR: &str = "_buckets";
/// The reduce step's parts, inside `balanced/`.
pub const REPEATS_DIR: &str = "_repeats";
/// Rows per batch of each bucket's stream in the merge of the repeats, which
/// holds one batch of every bucket at once.
const MERGE_BATCH_ROWS: usize = 1024;
/// Bytes a row costs in a reduce task's hash set (a u64 in a hash set at its
/// worst load, after growing, with slack for the batch being read).
const BYTES_PER_ROW: u64 = 32;

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

/// The global counts, as the map needs them.
struct Global {
    counts: Vec<u64>,
    reduced: Reduced,
}

/// The number of buckets whose hash sets fit `memory_budget` for `pairs` rows.
fn bucket_count(pairs: u64, memory_budget: u64) -> u32 {
    let rows_per_bucket = (memory_budget / BYTES_PER_ROW).max(1);
    pairs.div_ceil(rows_per_bucket).clamp(1, 65_536) as u32
}

/// The rows of a scatter part, bucket by bucket, a row group each.
fn scattered() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("bucket", DataType::UInt32, false),
        Field::new("key", DataType::UInt64, false),
        Field::new(col::PART, DataType::UInt32, false),
        Field::new(col::ROW, DataType::UInt64, false),
        Field::new(col::UID, DataType::Utf8, false),
        Field::new(col::QUERY_IDS, schema::query_ids_type(), false),
    ]))
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
        wit_contract::start_over(&spec.dir, opts.share)?;
    } else {
        check_params(&spec)?;
    }
    let step_opts = RunOptions {
        share: opts.share,
        jobs: opts.jobs,
        force: false,
        progress: opts.progress,
    };
    let global = match load_done(&spec)? {
        Some(global) => global,
        None => {
            let pairs = upstream.counts.get("matched").copied().unwrap_or(0);
            let buckets = bucket_count(pairs, balance.memory_budget);
            let repeats = find_repeats(&spec, &upstream, &matched_dir, buckets, &step_opts)?;
            global_counts(&spec, &upstream, &matched_dir, &repeats, buckets, balance)?
        }
    };
    let summary = run_stage(&spec, &step_opts, |ctx| {
        let part = ctx.part();
        let name = part_file_name(part);
        let output = ctx.output(&name);
        let dups = spec.dir.join(GLOBAL_DIR).join("duplicates").join(&name);
        balance_part(&global, balance, &dups, &matched_dir.join(&name), &output)
    })?;
    Ok((summary, global.reduced))
}

/// The scatter and reduce steps; returns the reduce step's directory.
fn find_repeats(
    spec: &StageSpec,
    upstream: &Manifest,
    matched_dir: &Path,
    buckets: u32,
    opts: &RunOptions<'_>,
) -> Result<PathBuf> {
    let scatter = StageSpec {
        stage: Stage::Balanced,
        dir: spec.dir.join(BUCKETS_DIR),
        parts: upstream.parts,
        inputs: vec![matched_dir.display().to_string()],
        params: serde_json::json!({
            "buckets": buckets,
            "matched_params_hash": upstream.params_hash,
        }),
    };
    let projection = Schema::new(vec![
        Field::new(col::UID, DataType::Utf8, false),
        Field::new(col::QUERY_IDS, schema::query_ids_type(), false),
    ]);
    run_stage_to_end(&scatter, opts, |ctx| {
        let part = ctx.part();
        let input = matched_dir.join(part_file_name(part));
        let n = buckets as usize;
        let mut keys: Vec<Vec<u64>> = vec![Vec::new(); n];
        let mut rows: Vec<Vec<u64>> = vec![Vec::new(); n];
        let mut uids: Vec<StringBuilder> = (0..n).map(|_| StringBuilder::new()).collect();
        let mut lists: Vec<ListBuilder<UInt32Builder>> = (0..n)
            .map(|_| ListBuilder::new(UInt32Builder::new()).with_field(schema::query_ids_item()))
            .collect();
        let mut row = 0u64;
        for batch in pq::read_file(&input, &projection)? {
            let batch = batch?;
            let uid = string_column(&batch, col::UID);
            let ids = batch.column(1).as_list::<i32>();
            for i in 0..batch.num_rows() {
                let key = uid_key(uid.value(i));
                let b = pq::bucket_of(key, buckets) as usize;
                keys[b].push(key);
                rows[b].push(row);
                uids[b].append_value(uid.value(i));
                lists[b]
                    .values()
                    .append_slice(ids.value(i).as_primitive::<UInt32Type>().values());
                lists[b].append(true);
                row += 1;
            }
        }
        let output = ctx.output(&part_file_name(part));
        let mut writer = pq::ParquetWriter::create_bucketed(&output, scattered(), "bucket")?;
        for b in 0..n {
            let len = keys[b].len();
            if len == 0 {
                continue;
            }
            let columns: Vec<ArrayRef> = vec![
                Arc::new(UInt32Array::from(vec![b as u32; len])),
                Arc::new(UInt64Array::from(std::mem::take(&mut keys[b]))),
                Arc::new(UInt32Array::from(vec![part; len])),
                Arc::new(UInt64Array::from(std::mem::take(&mut rows[b]))),
                Arc::new(uids[b].finish()),
                Arc::new(lists[b].finish()),
            ];
            let batch =
                RecordBatch::try_new(scattered(), columns).map_err(|e| write_error(&output, e))?;
            writer.write(&batch)?;
            writer.flush()?;
        }
        writer.finish()?;
        Ok(Counts::from([("rows".to_string(), row)]))
    })?;

    let reduce = StageSpec {
        stage: Stage::Balanced,
        dir: spec.dir.join(REPEATS_DIR),
        parts: buckets,
        inputs: vec![scatter.dir.display().to_string()],
        params: scatter.params.clone(),
    };
    run_stage_to_end(&reduce, opts, |ctx| {
        let b = ctx.part();
        let name = format!("bucket-{b:05}.parquet");
        // Read back by the merge, one stream per bucket at once: small pages.
        let mut repeats =
            pq::ParquetWriter::create_streamed(&ctx.output(&name), schema::duplicates())?;
        let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
        let mut seen: HashSet<u64> = HashSet::new();
        let mut pairs = 0u64;
        for part in 0..upstream.parts {
            let path = scatter.dir.join(part_file_name(part));
            for batch in pq::read_row_groups_where(&path, &scattered(), "bucket", b)? {
                let batch = batch?;
                let keys = batch.column(1).as_primitive::<UInt64Type>();
                let ids = batch.column(5).as_list::<i32>();
                let mut repeat = Vec::with_capacity(batch.num_rows());
                for (i, key) in keys.values().iter().enumerate() {
                    let again = !seen.insert(*key);
                    if again {
                        for id in ids.value(i).as_primitive::<UInt32Type>().values() {
                            *counts.entry(*id).or_default() += 1;
                        }
                    }
                    repeat.push(again);
                }
                pairs += batch.num_rows() as u64;
                let columns = batch
                    .project(&[2, 3, 4])
                    .map_err(|e| write_error(&path, e))?;
                let kept = arrow_select::filter::filter_record_batch(
                    &columns,
                    &BooleanArray::from(repeat),
                )
                .map_err(|e| write_error(&path, e))?;
                repeats.write(
                    &RecordBatch::try_new(schema::duplicates(), kept.columns().to_vec())
                        .map_err(|e| write_error(&path, e))?,
                )?;
            }
        }
        let duplicates = repeats.finish()?;
        let output = ctx.output(&format!("_counts/{name}"));
        let batch = RecordBatch::try_new(
            schema::query_counts(),
            vec![
                Arc::new(UInt32Array::from_iter_values(counts.keys().copied())),
                Arc::new(UInt64Array::from_iter_values(counts.values().copied())),
            ],
        )
        .map_err(|e| write_error(&output, e))?;
        pq::write_file(&output, schema::query_counts(), &[batch])?;
        Ok(Counts::from([
            ("pairs".to_string(), pairs),
            ("duplicates".to_string(), duplicates),
        ]))
    })?;
    Ok(reduce.dir)
}

/// The global counts if a process has made them with these parameters.
fn load_done(spec: &StageSpec) -> Result<Option<Global>> {
    let dir = spec.dir.join(GLOBAL_DIR);
    wit_contract::store::local(&dir.join("_reduce.json"))?;
    let hash = params_hash(&spec.params, spec.parts);
    if let Ok(bytes) = std::fs::read(dir.join("_reduce.json"))
        && let Ok(done) = serde_json::from_slice::<serde_json::Value>(&bytes)
        && done["params_hash"] == hash.as_str()
        && let Ok(reduced) = serde_json::from_value::<Reduced>(done["reduced"].clone())
    {
        tracing::info!("balanced: global counts already computed, reusing them");
        return Ok(Some(Global {
            counts: load_counts(&dir.join("query_counts.parquet"))?,
            reduced,
        }));
    }
    Ok(None)
}

/// Sums the query counts in `files` (each a [`schema::query_counts`] table),
/// indexed by query id.
fn sum_counts(files: impl IntoIterator<Item = PathBuf>) -> Result<Vec<u64>> {
    let mut sum: Vec<u64> = Vec::new();
    for path in files {
        for batch in pq::read_file(&path, &schema::query_counts())? {
            let batch = batch?;
            let ids = batch.column(0).as_primitive::<UInt32Type>();
            let n = batch.column(1).as_primitive::<UInt64Type>();
            for (id, n) in ids.values().iter().zip(n.values()) {
                let id = *id as usize;
                if sum.len() <= id {
                    sum.resize(id + 1, 0);
                }
                sum[id] += n;
            }
        }
    }
    Ok(sum)
}

/// Sums the per-part counts, takes the repeats off, merges the repeats per
/// matched part and writes `_global/`.
fn global_counts(
    spec: &StageSpec,
    upstream: &Manifest,
    matched_dir: &Path,
    repeats_dir: &Path,
    buckets: u32,
    balance: &BalanceOptions,
) -> Result<Global> {
    let dir = spec.dir.join(GLOBAL_DIR);
    let dups_dir = dir.join("duplicates");
    std::fs::create_dir_all(&dups_dir).at(&dups_dir)?;
    let matched = sum_counts(
        (0..upstream.parts).map(|p| matched_dir.join(QUERY_COUNTS_DIR).join(part_file_name(p))),
    )?;
    let repeated = sum_counts((0..buckets).map(|b| {
        repeats_dir
            .join("_counts")
            .join(format!("bucket-{b:05}.parquet"))
    }))?;
    let mut counts = matched.clone();
    for (id, n) in repeated.iter().enumerate() {
        if *n == 0 {
            continue;
        }
        let c = counts.get_mut(id).ok_or_else(|| {
            Error::bad_input(repeats_dir, format!("query id {id} has no per-part count"))
        })?;
        *c = c.checked_sub(*n).ok_or_else(|| {
            Error::bad_input(repeats_dir, "per-part counts disagree with the rows")
        })?;
    }

    // The repeats, bucket by bucket (each in part and row order), merged into
    // one file per matched part, in row order.
    let mut streams = Vec::with_capacity(buckets as usize);
    for b in 0..buckets {
        let path = repeats_dir.join(format!("bucket-{b:05}.parquet"));
        streams.push(pq::read_file_in_batches(
            &path,
            &schema::duplicates(),
            MERGE_BATCH_ROWS,
        )?);
    }
    let mut heads: Vec<Option<(RecordBatch, usize)>> = vec![None; streams.len()];
    let mut duplicates = 0u64;
    for part in 0..upstream.parts {
        let mut rows: Vec<(u64, String)> = Vec::new();
        for (s, stream) in streams.iter_mut().enumerate() {
            loop {
                if heads[s].is_none() {
                    match stream.next() {
                        Some(batch) => heads[s] = Some((batch?, 0)),
                        None => break,
                    }
                }
                let (batch, at) = heads[s].as_mut().expect("set above");
                let parts = batch.column(0).as_primitive::<UInt32Type>();
                let row = batch.column(1).as_primitive::<UInt64Type>();
                let uid = string_column(batch, col::UID);
                while *at < batch.num_rows() && parts.value(*at) == part {
                    rows.push((row.value(*at), uid.value(*at).to_string()));
                    *at += 1;
                }
                if *at < batch.num_rows() {
                    break;
                }
                heads[s] = None;
            }
        }
        rows.sort_unstable();
        duplicates += rows.len() as u64;
        let path = dups_dir.join(part_file_name(part));
        let batch = RecordBatch::try_new(
            schema::duplicates(),
            vec![
                Arc::new(UInt32Array::from(vec![part; rows.len()])),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.1.as_str()),
                )),
            ],
        )
        .map_err(|e| write_error(&path, e))?;
        pq::write_file_atomic(&path, schema::duplicates(), &[batch])?;
    }

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
        pairs: upstream.counts.get("matched").copied().unwrap_or(0),
        duplicates,
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
    let counts_path = dir.join("query_counts.parquet");
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
    .map_err(|e| write_error(&counts_path, e))?;
    pq::write_file_atomic(&counts_path, schema::global_counts(), &[batch])?;
    let summary = serde_json::to_vec_pretty(&reduced).expect("serialisable");
    write_atomic(&dir.join("summary.json"), &summary)?;
    let hash = params_hash(&spec.params, spec.parts);
    let done = serde_json::json!({ "params_hash": hash, "reduced": reduced });
    write_atomic(
        &dir.join("_reduce.json"),
        &serde_json::to_vec_pretty(&done).expect("serialisable"),
    )?;
    Ok(Global {
        counts: load_counts(&counts_path)?,
        reduced,
    })
}

/// Reads `query_counts.parquet` back (every process uses the file, so that
/// all see the same counts whoever computed them).
fn load_counts(counts_path: &Path) -> Result<Vec<u64>> {
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
    Ok(counts)
}

fn balance_part(
    global: &Global,
    balance: &BalanceOptions,
    dups_path: &Path,
    input: &Path,
    output: &Path,
) -> Result<Counts> {
    let mut dups: HashSet<u64> = HashSet::new();
    for batch in pq::read_file(dups_path, &schema::duplicates())? {
        dups.extend(batch?.column(1).as_primitive::<UInt64Type>().values());
    }
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
    Ok(Counts::from([
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
        // SplitMix64 as published (Vigna's splitmix64.c): from state 0 the
        // outputs are these three.
        let golden = 0x9e37_79b9_7f4a_7c15u64;
        assert_eq!(
            [0, golden, golden.wrapping_mul(2)].map(splitmix64),
            [
                0xe220_a839_7b1d_cdaf,
                0x6e78_9e6a_a1b9_65f4,
                0x06c4_5d18_8009_454f
            ]
        );
        // Draws pinned to values computed outside this code (Python, the
        // same formula: splitmix64(first 64 bits of the uid ^
        // splitmix64(seed)) >> 11, over 2^53), the same on every machine.
        let uid = "0123456789abcdef0123456789abcdef";
        assert_eq!(uniform_draw(7, uid), 0.4999267412994265);
        assert_eq!(uniform_draw(8, uid), 0.8143374341805506);
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
