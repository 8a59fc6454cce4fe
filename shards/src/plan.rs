//! The download plan: which balanced pair goes to which shard, under which
//! key, made in memory that does not grow with the dataset.
//!
//! Every balanced pair gets a place in a seeded global shuffle: pairs sorted
//! by h = splitmix64(k ⊕ splitmix64(seed)), k the first 64 bits of the uid
//! (its index in the input if the uid is not hex), ties by the pair's index
//! in the input (part by part, row by row). Shard `s` takes places
//! `s·S .. (s+1)·S` (S = shard size), so each shard is a random mix of
//! queries and hosts. The sort is a bucketed external one, in two steps
//! that are parts of their own, run through the stage runner (atomic
//! commits, resume, `--parts/--part`, backup tasks: [`run_stage_to_end`]):
//!
//! - *Scatter* (`shards/_shuffle/`, one part per balanced part): each pair,
//!   with h and its input index, by bucket (B ranges of equal width of h),
//!   one record batch per bucket, in bucket order, in an Arrow IPC file
//!   (zstd): `_shuffle/part-PPPPP.arrow`. IPC, not Parquet: a task opens
//!   every scatter file for its one bucket, and an IPC file's footer is a
//!   list of batch offsets read without decoding, where a Parquet footer of
//!   B row groups is decoded whole each time (B tasks x P files x B row
//!   groups: a cost that grew with the square of the pairs).
//! - *Plan* (`shards/_plan/`, one part per group of K consecutive shards):
//!   the buckets that hold the group's places (their sizes, summed from the
//!   scatter's sidecars, give each bucket's first place) are read one at a
//!   time and sorted, and the group's shards written: `_plan/NNNNN.parquet`.
//!
//! K·S is the number of pairs `memory_budget` holds (about 256 bytes a pair),
//! and B the number of groups, so a bucket holds about one group's pairs and
//! a task holds one bucket. The plan does not depend on B or K.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder, UInt32Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow_ipc::CompressionType;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use wit_contract::layout::{part_file_name, part_stats_name};
use wit_contract::manifest::read_part_stats;
use wit_contract::pq::write_error;
use wit_contract::records::string_column;
use wit_contract::schema::{self, col};
use wit_contract::{
    Counts, Error, Manifest, Result, RunOptions, Stage, StageSpec, Summary, pq, run_stage_to_end,
};

use crate::download::{PLAN_DIR, sample_key, shard_name, splitmix64};

/// The scatter step's parts, inside `shards/`.
pub const SHUFFLE_DIR: &str = "_shuffle";
/// Bytes a pair costs while its bucket is sorted (its Arrow data, its sort
/// entry and its share of the shard being built).
const BYTES_PER_PAIR: u64 = 256;

/// What the plan needs.
pub(crate) struct PlanSpec<'a> {
    /// `shards/`.
    pub dir: &'a Path,
    /// `balanced/` and its manifest.
    pub balanced_dir: &'a Path,
    pub upstream: &'a Manifest,
    pub shard_size: u32,
    pub seed: u64,
    pub memory_budget: u64,
}

/// The rows of a scatter part, bucket by bucket, a record batch each.
fn scattered() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("h", DataType::UInt64, false),
        Field::new("index", DataType::UInt64, false),
        Field::new(col::UID, DataType::Utf8, false),
        Field::new(col::URL, DataType::Utf8, false),
        Field::new(col::TEXT, DataType::Utf8, false),
        Field::new(col::QUERY_IDS, schema::query_ids_type(), false),
    ]))
}

/// Makes the plan (or finds it made): `shards/_plan/NNNNN.parquet` for
/// every shard. Returns the plan step's summary.
///
/// # Errors
/// [`Error::BadInput`] if `balanced/` disagrees with its manifest; as
/// [`run_stage_to_end`].
pub(crate) fn make_plan(p: &PlanSpec<'_>, run: &RunOptions<'_>) -> Result<Summary> {
    let upstream = p.upstream;
    // A plan made before, with any memory budget, is the same plan.
    let manifest = p.dir.join(PLAN_DIR).join("_manifest.json");
    wit_contract::store::local(&manifest)?;
    if let Ok(bytes) = std::fs::read(&manifest)
        && let Ok(m) = serde_json::from_slice::<Manifest>(&bytes)
        && m.params["balanced_params_hash"] == upstream.params_hash.as_str()
        && m.params["seed"] == p.seed
        && m.params["shard_size"] == p.shard_size
    {
        return Ok(Summary {
            parts: m.parts,
            in_share: 0,
            ran: 0,
            skipped: m.parts,
            counts: m.counts,
            complete: true,
            elapsed: std::time::Duration::ZERO,
        });
    }
    let pairs = upstream.counts.get("kept").copied().unwrap_or(0);
    let size = u64::from(p.shard_size);
    let shards = pairs.div_ceil(size) as u32;
    let per_group = (p.memory_budget / BYTES_PER_PAIR / size).max(1) as u32;
    let groups = shards.div_ceil(per_group);
    let buckets = groups.max(1);

    // Where each balanced part's pairs start in the input order.
    let mut offsets = Vec::with_capacity(upstream.parts as usize);
    let mut total = 0u64;
    for part in 0..upstream.parts {
        let path = p.balanced_dir.join(part_stats_name(part));
        let stats = read_part_stats(&path)
            .ok_or_else(|| Error::bad_input(&path, "missing or unreadable part sidecar"))?;
        offsets.push(total);
        total += stats.counts.get("kept").copied().unwrap_or(0);
    }
    if total != pairs {
        return Err(Error::bad_input(
            p.balanced_dir,
            format!("its parts hold {total} pairs, its manifest says {pairs}"),
        ));
    }

    let seed = splitmix64(p.seed);
    let scatter = StageSpec {
        stage: Stage::Shards,
        dir: p.dir.join(SHUFFLE_DIR),
        parts: upstream.parts,
        inputs: vec![p.balanced_dir.display().to_string()],
        params: serde_json::json!({
            "balanced_params_hash": upstream.params_hash,
            "seed": p.seed,
            "buckets": buckets,
            "format": "arrow_ipc",
        }),
    };
    let shuffled = run_stage_to_end(&scatter, run, |ctx| {
        let part = ctx.part();
        let input = p.balanced_dir.join(part_file_name(part));
        let n = buckets as usize;
        let mut rows: Vec<Vec<(u64, u64, usize, usize)>> = vec![Vec::new(); n];
        let mut batches = Vec::new();
        let mut index = offsets[part as usize];
        for batch in pq::read_file(&input, &schema::balanced())? {
            let batch = batch?;
            let uids = string_column(&batch, col::UID);
            for i in 0..batch.num_rows() {
                let key = uids
                    .value(i)
                    .get(..16)
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .unwrap_or(index);
                let h = splitmix64(key ^ seed);
                let b = pq::bucket_of(h, buckets) as usize;
                rows[b].push((h, index, batches.len(), i));
                index += 1;
            }
            batches.push(batch);
        }
        let mut counts = Counts::from([("pairs".to_string(), index - offsets[part as usize])]);
        let output = ctx.output(&scatter_name(part));
        let file = std::fs::File::create(&output).map_err(|e| Error::io(&output, e))?;
        let options = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::ZSTD))
            .map_err(|e| write_error(&output, e))?;
        let mut writer =
            FileWriter::try_new_with_options(std::io::BufWriter::new(file), &scattered(), options)
                .map_err(|e| write_error(&output, e))?;
        // One batch per bucket, empty ones too: batch b is bucket b.
        for (b, rows) in rows.iter().enumerate() {
            counts.insert(format!("bucket_{b:05}"), rows.len() as u64);
            let batch = scatter_batch(&batches, rows).map_err(|e| write_error(&output, e))?;
            writer.write(&batch).map_err(|e| write_error(&output, e))?;
        }
        writer.finish().map_err(|e| write_error(&output, e))?;
        let file = writer
            .into_inner()
            .map_err(|e| write_error(&output, e))?
            .into_inner()
            .map_err(|e| Error::io(&output, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&output, e))?;
        Ok(counts)
    })?;

    // Each bucket's first place.
    let mut starts = Vec::with_capacity(buckets as usize + 1);
    let mut at = 0u64;
    for b in 0..buckets {
        starts.push(at);
        at += shuffled
            .counts
            .get(&format!("bucket_{b:05}"))
            .copied()
            .unwrap_or(0);
    }
    starts.push(at);

    let plan = StageSpec {
        stage: Stage::Shards,
        dir: p.dir.join(PLAN_DIR),
        parts: groups,
        inputs: vec![scatter.dir.display().to_string()],
        params: serde_json::json!({
            "balanced_params_hash": upstream.params_hash,
            "seed": p.seed,
            "shard_size": p.shard_size,
            "shards_per_group": per_group,
        }),
    };
    run_stage_to_end(&plan, run, |ctx| {
        let g = u64::from(ctx.part());
        let first_shard = g * u64::from(per_group);
        let last_shard = (first_shard + u64::from(per_group)).min(u64::from(shards));
        let (begin, end) = (first_shard * size, (last_shard * size).min(pairs));
        let mut shard = ShardBuilder::new(first_shard as u32, p.shard_size);
        for b in 0..buckets as usize {
            let (lo, hi) = (starts[b], starts[b + 1]);
            if hi <= begin || lo >= end {
                continue;
            }
            // The bucket, sorted by (h, input index).
            let mut batches = Vec::new();
            let mut order: Vec<(u64, u64, usize, usize)> = Vec::with_capacity((hi - lo) as usize);
            for part in 0..upstream.parts {
                let path = scatter.dir.join(scatter_name(part));
                let batch = read_bucket(&path, b as u32, buckets)?;
                let h = batch.column(0).as_primitive::<UInt64Type>();
                let index = batch.column(1).as_primitive::<UInt64Type>();
                for i in 0..batch.num_rows() {
                    order.push((h.value(i), index.value(i), batches.len(), i));
                }
                batches.push(batch);
            }
            if order.len() as u64 != hi - lo {
                return Err(Error::bad_input(
                    &scatter.dir,
                    format!(
                        "bucket {b} holds {} pairs, the parts' sidecars say {}",
                        order.len(),
                        hi - lo
                    ),
                ));
            }
            order.sort_unstable();
            let from = begin.max(lo) - lo;
            let to = end.min(hi) - lo;
            for &(_, _, batch, row) in &order[from as usize..to as usize] {
                shard.push(&batches[batch], row);
                if shard.is_full() {
                    shard.write(ctx)?;
                }
            }
        }
        if shard.len() > 0 {
            shard.write(ctx)?;
        }
        Ok(Counts::from([
            ("pairs".to_string(), end - begin),
            ("shards".to_string(), last_shard - first_shard),
        ]))
    })
}

/// The scatter file of balanced part `part`.
fn scatter_name(part: u32) -> String {
    format!("part-{part:05}.arrow")
}

/// Bucket `bucket` of a scatter file: its batch of that index, the file's
/// other batches left unread.
///
/// # Errors
/// [`Error::BadInput`] naming the file if it is not a scatter file of
/// `buckets` buckets.
fn read_bucket(path: &Path, bucket: u32, buckets: u32) -> Result<RecordBatch> {
    wit_contract::store::local(path)?;
    let bad = |m: String| Error::bad_input(path, m);
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = FileReader::try_new_buffered(file, None)
        .map_err(|e| bad(format!("not a readable Arrow IPC file: {e}")))?;
    if reader.schema() != scattered() {
        return Err(bad(format!(
            "not a scatter file: schema {}",
            reader.schema()
        )));
    }
    if reader.num_batches() != buckets as usize {
        return Err(bad(format!(
            "holds {} buckets, the plan has {buckets}",
            reader.num_batches()
        )));
    }
    reader
        .set_index(bucket as usize)
        .map_err(|e| bad(format!("bucket {bucket}: {e}")))?;
    let batch = reader
        .next()
        .ok_or_else(|| bad(format!("bucket {bucket} is missing")))?
        .map_err(|e| bad(format!("bucket {bucket} is corrupt: {e}")))?;
    // What the reader decompressed, not a buffer it grew.
    let (schema, mut columns, rows) = batch.into_parts();
    for c in &mut columns {
        c.shrink_to_fit();
    }
    RecordBatch::try_new_with_options(
        schema,
        columns,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| bad(e.to_string()))
}

/// A scatter part's rows of one bucket: (h, index, batch, row) in input order.
fn scatter_batch(
    batches: &[RecordBatch],
    rows: &[(u64, u64, usize, usize)],
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    if rows.is_empty() {
        return Ok(RecordBatch::new_empty(scattered()));
    }
    let pick = |name: &str| -> std::result::Result<ArrayRef, arrow_schema::ArrowError> {
        let arrays: Vec<&dyn Array> = batches
            .iter()
            .map(|b| b.column_by_name(name).expect("checked").as_ref())
            .collect();
        let at: Vec<(usize, usize)> = rows.iter().map(|r| (r.2, r.3)).collect();
        arrow_select::interleave::interleave(&arrays, &at)
    };
    // Lists are rebuilt with the contract's item field.
    let mut lists = ListBuilder::new(UInt32Builder::new()).with_field(schema::query_ids_item());
    for &(_, _, b, i) in rows {
        let l = batches[b]
            .column_by_name(col::QUERY_IDS)
            .expect("checked")
            .as_list::<i32>()
            .value(i);
        lists
            .values()
            .append_slice(l.as_primitive::<arrow_array::types::UInt32Type>().values());
        lists.append(true);
    }
    RecordBatch::try_new(
        scattered(),
        vec![
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1))),
            pick(col::UID)?,
            pick(col::URL)?,
            pick(col::TEXT)?,
            Arc::new(lists.finish()),
        ],
    )
}

/// The plan of one shard, built row by row.
struct ShardBuilder {
    shard: u32,
    size: u32,
    keys: StringBuilder,
    uids: StringBuilder,
    urls: StringBuilder,
    texts: StringBuilder,
    lists: ListBuilder<UInt32Builder>,
    len: u32,
}

impl ShardBuilder {
    fn new(shard: u32, size: u32) -> ShardBuilder {
        ShardBuilder {
            shard,
            size,
            keys: StringBuilder::new(),
            uids: StringBuilder::new(),
            urls: StringBuilder::new(),
            texts: StringBuilder::new(),
            lists: ListBuilder::new(UInt32Builder::new()).with_field(schema::query_ids_item()),
            len: 0,
        }
    }

    fn len(&self) -> u32 {
        self.len
    }

    fn is_full(&self) -> bool {
        self.len == self.size
    }

    /// Appends row `i` of a scattered batch as the shard's next sample.
    fn push(&mut self, batch: &RecordBatch, i: usize) {
        let s = |c: usize| -> &StringArray { batch.column(c).as_string::<i32>() };
        self.keys
            .append_value(sample_key(self.shard, self.len, self.size));
        self.uids.append_value(s(2).value(i));
        self.urls.append_value(s(3).value(i));
        self.texts.append_value(s(4).value(i));
        let l = batch.column(5).as_list::<i32>().value(i);
        self.lists
            .values()
            .append_slice(l.as_primitive::<arrow_array::types::UInt32Type>().values());
        self.lists.append(true);
        self.len += 1;
    }

    /// Writes the shard's plan and starts the next shard.
    fn write(&mut self, ctx: &mut wit_contract::PartContext<'_>) -> Result<()> {
        let path = ctx.output(&format!("{}.parquet", shard_name(self.shard)));
        let batch = RecordBatch::try_new(
            schema::plan(),
            vec![
                Arc::new(self.keys.finish()),
                Arc::new(self.uids.finish()),
                Arc::new(self.urls.finish()),
                Arc::new(self.texts.finish()),
                Arc::new(self.lists.finish()),
            ],
        )
        .map_err(|e| write_error(&path, e))?;
        pq::write_file(&path, schema::plan(), &[batch])?;
        self.shard += 1;
        self.len = 0;
        Ok(())
    }
}
