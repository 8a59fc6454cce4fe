//! `wit download`: `balanced/` in, WebDataset shards out, in img2dataset's layout.
//!
//! - **Plan** (once per dataset, deterministic; `plan.rs`): every balanced
//!   pair is given a place in a seeded global shuffle (sorted by a hash of
//!   the seed and its uid), and shard `s` takes places `s·S .. (s+1)·S`
//!   (S = shard size, 10,000): each shard is a random mix of queries and
//!   hosts. The plan is written to `shards/_plan/NNNNN.parquet` by a
//!   bucketed external sort whose tasks stay within a memory budget.
//! - **Shards** run through the stage runner (one part per shard, so
//!   `--parts/--part` share them between processes), one shard at a time per
//!   process with `concurrency` downloads in flight.
//! - **Resuming sample by sample**: each finished sample (its row and its
//!   stored image) is appended to `shards/_work/NNNNN.journal`; a rerun reads
//!   the journal back (a torn last record is ignored) and fetches only the
//!   samples not in it. The shard's tar, Parquet and stats are written from
//!   the complete set in key order, so a killed and resumed shard has the same
//!   bytes as one that ran straight through (for the same server answers).
//! - **Fetching** (`wit_net::http`): the address policy, timeouts and size
//!   limit of the crawler; `X-Robots-Tag` opt-outs checked from the headers
//!   before the body is read; robots.txt of each image host obeyed;
//!   per-host concurrency and delay; `429`/`503` back the whole host off for
//!   `Retry-After` (or 1, 2, 4 s... with jitter) and are retried, as are
//!   timeouts, connection errors and `5xx`, `retries` times.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arrow_array::builder::{ListBuilder, UInt32Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use sha2::{Digest, Sha256};
use tokio::sync::{OnceCell, Semaphore};
use url::Url;
use wit_contract::manifest::rfc3339;
use wit_contract::records::string_column;
use wit_contract::schema::{self, col};
use wit_contract::store::OutputStream;
use wit_contract::wds::ShardWriter;
use wit_contract::{
    Counts, Dataset, Error, IoContext, Manifest, Progress, Result, RunOptions, Stage, StageSpec,
    Summary, check_params, pq, run_stage,
};
use wit_net::addr::AddressPolicy;
use wit_net::http::{Client, ClientOptions, Failure, Head};
use wit_net::robots::{Fetched, Robots, Rules};

use crate::resize::{ImageOptions, process};

/// What `wit download` does.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Decoding, resizing and encoding.
    pub image: ImageOptions,
    /// Samples per shard.
    pub shard_size: u32,
    /// Seed of the shuffle that assigns pairs to shards.
    pub seed: u64,
    /// Downloads in flight.
    pub concurrency: usize,
    /// Downloads in flight per host.
    pub per_host: usize,
    /// Minimum time between the starts of two requests to one host.
    pub host_delay: Duration,
    /// Retries of a failed download (timeouts, connection errors, 429, 5xx).
    pub retries: u32,
    /// Longest redirect chain followed to an image (0: none). Every hop is
    /// checked as the first request is: scheme, address policy, the new
    /// origin's robots.txt, `X-Robots-Tag`.
    pub max_redirects: u32,
    /// The longest `Retry-After` waited for.
    pub max_retry_after: Duration,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for a whole download.
    pub timeout: Duration,
    /// Largest image downloaded.
    pub max_bytes: u64,
    /// The `User-Agent`.
    pub user_agent: String,
    /// Which addresses may be fetched.
    pub policy: AddressPolicy,
    /// Obey the image hosts' robots.txt.
    pub robots: bool,
    /// `X-Robots-Tag` directives that opt an image out (lowercase).
    pub opt_out: Vec<String>,
    /// Worker threads for downloads and image work.
    pub threads: usize,
    /// Fetch again the samples that failed to download in finished shards
    /// (and only those), then rewrite those shards.
    pub retry_failed: bool,
    /// Bytes a task of the plan's external sort may use (sets its number of
    /// buckets, not the plan). Default 1 GiB.
    pub memory_budget: u64,
    /// Make the plan and stop.
    pub plan_only: bool,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            image: ImageOptions::default(),
            shard_size: 10_000,
            seed: 0,
            concurrency: 64,
            per_host: 8,
            host_delay: Duration::ZERO,
            retries: 2,
            max_redirects: 5,
            max_retry_after: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(20),
            max_bytes: 32 << 20,
            user_agent: wit_net::user_agent(None),
            policy: AddressPolicy::default(),
            robots: true,
            opt_out: ["noai", "noimageai", "noindex", "noimageindex"]
                .map(String::from)
                .to_vec(),
            threads: 2,
            retry_failed: false,
            memory_budget: 1 << 30,
            plan_only: false,
        }
    }
}

impl DownloadOptions {
    /// What decides the output: a rerun with other values is refused. Rates,
    /// timeouts, retries, concurrency and the address policy may change
    /// between runs (`--retry-failed` with `--allow-private`, say).
    pub fn params(&self, balanced_hash: &str) -> serde_json::Value {
        let i = &self.image;
        serde_json::json!({
            "balanced_params_hash": balanced_hash,
            "shard_size": self.shard_size,
            "seed": self.seed,
            "image_size": i.size,
            "resize_mode": i.mode.name(),
            "resize_only_if_bigger": i.only_if_bigger,
            "encode_format": i.encoding.extension(),
            "encode_quality": match i.encoding { crate::resize::Encoding::Jpeg(q) => Some(q), _ => None },
            "max_pixels": i.max_pixels,
            "min_side": i.min_side,
            "max_aspect_ratio": if i.max_aspect_ratio.is_finite() { Some(i.max_aspect_ratio) } else { None },
            "max_bytes": self.max_bytes,
            "max_redirects": self.max_redirects,
            "robots": self.robots,
            "opt_out": self.opt_out,
        })
    }
}

/// The directory of the plan, inside `shards/`.
pub const PLAN_DIR: &str = "_plan";
/// The directory of the per-shard journals, inside `shards/`.
pub const WORK_DIR: &str = "_work";

/// The file name stem of shard `s`: five digits, more past 99,999.
pub fn shard_name(s: u32) -> String {
    format!("{s:05}")
}

/// Digits of the within-shard index: ceil(log10(shard size)).
fn index_digits(shard_size: u32) -> u32 {
    let mut d = 0;
    let mut p: u64 = 1;
    while p < u64::from(shard_size) {
        p *= 10;
        d += 1;
    }
    d
}

/// img2dataset's key: `shard · 10^digits + index`, zero-padded to 5 + digits.
pub fn sample_key(shard: u32, index: u32, shard_size: u32) -> String {
    let d = index_digits(shard_size);
    let v = u64::from(shard) * 10u64.pow(d) + u64::from(index);
    format!("{v:0width$}", width = (5 + d) as usize)
}

/// SplitMix64 (Steele, Lea and Flood 2014): the plan's seeded shuffle hash and the retry jitter.
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A pair to download.
#[derive(Debug, Clone)]
struct Pair {
    uid: String,
    url: String,
    text: String,
    query_ids: Vec<u32>,
}

/// Runs (or resumes) the download stage.
///
/// # Errors
/// [`Error::BadInput`] if `balanced/` is missing or incomplete; as [`run_stage`].
pub fn run_download(
    dataset: &Dataset,
    opts: &DownloadOptions,
    run: &RunOptions<'_>,
) -> Result<Summary> {
    if opts.shard_size == 0 || opts.concurrency == 0 || opts.per_host == 0 {
        return Err(Error::Usage(
            "shard size, concurrency and per-host concurrency must be at least 1".into(),
        ));
    }
    let started = Instant::now();
    let upstream = Manifest::read(dataset.root(), Stage::Balanced)?;
    let balanced_dir = dataset.stage_dir(Stage::Balanced);
    let dir = dataset.stage_dir(Stage::Shards);
    let params = opts.params(&upstream.params_hash);
    let pairs_total = upstream.counts.get("kept").copied().unwrap_or(0);
    let shards = pairs_total.div_ceil(u64::from(opts.shard_size)) as u32;
    let spec = StageSpec {
        stage: Stage::Shards,
        dir: dir.clone(),
        parts: shards,
        inputs: vec![balanced_dir.display().to_string()],
        params,
    };
    if run.force {
        wit_contract::start_over(&dir, run.share)?;
    } else {
        check_params(&spec)?;
    }
    crate::plan::make_plan(
        &crate::plan::PlanSpec {
            dir: &dir,
            balanced_dir: &balanced_dir,
            upstream: &upstream,
            shard_size: opts.shard_size,
            seed: opts.seed,
            memory_budget: opts.memory_budget,
        },
        &RunOptions {
            share: run.share,
            jobs: run.jobs,
            force: false,
            progress: run.progress,
        },
    )?;
    if opts.plan_only {
        return Ok(Summary {
            parts: shards,
            in_share: 0,
            ran: 0,
            skipped: 0,
            counts: Counts::from([("planned".to_string(), pairs_total)]),
            complete: false,
            elapsed: started.elapsed(),
        });
    }
    std::fs::create_dir_all(dir.join(WORK_DIR)).at(&dir)?;
    if opts.retry_failed {
        let mut reopened = 0;
        for s in (0..shards).filter(|s| run.share.is_none_or(|sh| sh.contains(*s))) {
            if reopen_failed(&dir, s, opts)? {
                reopened += 1;
            }
        }
        tracing::info!("shards: {reopened} finished shards have failed downloads to retry");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| Error::io(&dir, e))?;
    let client = Client::new(&ClientOptions {
        user_agent: opts.user_agent.clone(),
        policy: opts.policy,
        connect_timeout: opts.connect_timeout,
        timeout: opts.timeout,
    })
    .map_err(Error::Usage)?;
    let shared = Arc::new(Shared {
        client,
        hosts: Mutex::new(HashMap::new()),
        global: Arc::new(Semaphore::new(opts.concurrency)),
        opts: opts.clone(),
    });
    // Progress by image, the unit a user waits on: the shards of this share
    // that are committed count as done.
    let size_of = |s: u32| {
        (pairs_total - u64::from(s) * u64::from(opts.shard_size)).min(u64::from(opts.shard_size))
    };
    let (mut total, mut before) = (0, 0);
    for s in (0..shards).filter(|s| run.share.is_none_or(|sh| sh.contains(*s))) {
        total += size_of(s);
        if dir.join(wit_contract::layout::part_stats_name(s)).is_file() {
            before += size_of(s);
        }
    }
    run.progress.start("shards: images", total, before);
    // Shards one at a time: each already runs `concurrency` downloads.
    let map_run = RunOptions {
        share: run.share,
        jobs: 1,
        force: false,
        progress: &wit_contract::NoProgress,
    };
    let summary = run_stage(&spec, &map_run, |ctx| {
        let s = ctx.part();
        let name = shard_name(s);
        let plan = read_plan(&dir.join(PLAN_DIR).join(format!("{name}.parquet")))?;
        let journal = dir.join(WORK_DIR).join(format!("{name}.journal"));
        // The tar streams (to a store, as it is written); the small files are files.
        let tar = ctx.output_stream(&format!("{name}.tar"))?;
        let parquet = ctx.output(&format!("{name}.parquet"));
        let stats = ctx.output(&format!("{name}_stats.json"));
        let counts = runtime.block_on(download_shard(
            shared.clone(),
            &plan,
            &journal,
            ShardOutput {
                tar,
                parquet: &parquet,
                stats: &stats,
            },
            run.progress,
        ))?;
        // The journal has served its purpose once the part is committed; a
        // leftover one is removed by the next run (the part is complete).
        let _ = std::fs::remove_file(&journal);
        Ok(counts)
    });
    run.progress.finish();
    summary
}

/// Where one shard is written.
struct ShardOutput<'a> {
    tar: OutputStream,
    parquet: &'a Path,
    stats: &'a Path,
}

/// If shard `s` is finished and has samples that failed to download, turns
/// everything else it holds into its journal and marks it unfinished, so
/// that the run fetches only those samples. Says whether it did.
fn reopen_failed(dir: &Path, s: u32, opts: &DownloadOptions) -> Result<bool> {
    let name = shard_name(s);
    let sidecar = dir.join(wit_contract::layout::part_stats_name(s));
    let parquet = dir.join(format!("{name}.parquet"));
    if !sidecar.is_file() || !parquet.is_file() {
        return Ok(false);
    }
    let mut kept: Vec<Outcome> = Vec::new();
    let mut retry = 0;
    for batch in pq::read_file(&parquet, &schema::shard())? {
        let b = batch?;
        let text = |n: &str, i: usize| {
            let c = string_column(&b, n);
            c.is_valid(i).then(|| c.value(i).to_string())
        };
        let num = |n: &str, i: usize| {
            let c = b
                .column_by_name(n)
                .expect("checked")
                .as_primitive::<UInt32Type>();
            c.is_valid(i).then(|| c.value(i))
        };
        for i in 0..b.num_rows() {
            let status = text(col::STATUS, i).unwrap_or_default();
            if status == "failed_to_download" {
                retry += 1;
                continue;
            }
            kept.push(Outcome {
                key: text(col::KEY, i).unwrap_or_default(),
                status,
                reason: text(col::ERROR_REASON, i),
                error_cause: text(col::ERROR_CAUSE, i),
                error_message: text(col::ERROR_MESSAGE, i),
                final_url: text(col::FINAL_URL, i),
                width: num(col::WIDTH, i),
                height: num(col::HEIGHT, i),
                original_width: num(col::ORIGINAL_WIDTH, i),
                original_height: num(col::ORIGINAL_HEIGHT, i),
                sha256: text(col::SHA256, i),
                image_len: 0,
            });
        }
    }
    if retry == 0 {
        return Ok(false);
    }
    // The stored images, from the tar.
    let tar = dir.join(format!("{name}.tar"));
    let mut images: HashMap<String, Vec<u8>> = HashMap::new();
    let ext = opts.image.encoding.extension();
    let mut damage = None;
    wit_contract::wds::ShardReader::new(std::fs::File::open(&tar).at(&tar)?).for_each(
        |r| match r {
            Ok(mut sample) => {
                if let Some(img) = sample.fields.remove(ext) {
                    images.insert(sample.key, img);
                }
            }
            Err(e) => damage = Some(e.to_string()),
        },
    );
    if let Some(e) = damage {
        return Err(Error::bad_input(&tar, e));
    }
    let journal = dir.join(WORK_DIR).join(format!("{name}.journal"));
    let tmp = journal.with_extension("tmp");
    let mut w = BufWriter::new(std::fs::File::create(&tmp).at(&tmp)?);
    for mut o in kept {
        let img = if o.status == "success" {
            images.remove(&o.key).ok_or_else(|| {
                Error::bad_input(&tar, format!("lacks the image of sample {}", o.key))
            })?
        } else {
            Vec::new()
        };
        o.image_len = img.len() as u64;
        write_record(&mut w, &o, &img).at(&tmp)?;
    }
    w.into_inner()
        .map_err(|e| Error::io(&tmp, e.into_error()))?
        .sync_all()
        .at(&tmp)?;
    std::fs::rename(&tmp, &journal).at(&journal)?;
    // Unfinished again: the run redoes the part from its journal.
    std::fs::remove_file(&sidecar).at(&sidecar)?;
    let manifest = dir.join(wit_contract::layout::MANIFEST_NAME);
    if manifest.exists() {
        std::fs::remove_file(&manifest).at(&manifest)?;
    }
    Ok(true)
}

/// The pairs of a checked batch with `uid`, `url`, `text` and `query_ids`.
fn pairs_of(batch: &RecordBatch) -> Vec<Pair> {
    let uids = string_column(batch, col::UID);
    let urls = string_column(batch, col::URL);
    let texts = string_column(batch, col::TEXT);
    let lists = batch
        .column_by_name(col::QUERY_IDS)
        .expect("checked")
        .as_list::<i32>();
    (0..batch.num_rows())
        .map(|i| Pair {
            uid: uids.value(i).to_string(),
            url: urls.value(i).to_string(),
            text: texts.value(i).to_string(),
            query_ids: lists
                .value(i)
                .as_primitive::<UInt32Type>()
                .values()
                .to_vec(),
        })
        .collect()
}

/// A planned sample.
#[derive(Debug, Clone)]
struct Planned {
    key: String,
    pair: Pair,
}

fn read_plan(path: &Path) -> Result<Vec<Planned>> {
    let mut out = Vec::new();
    for batch in pq::read_file(path, &schema::plan())? {
        let batch = batch?;
        let keys = string_column(&batch, col::KEY);
        out.extend(
            pairs_of(&batch)
                .into_iter()
                .enumerate()
                .map(|(i, pair)| Planned {
                    key: keys.value(i).to_string(),
                    pair,
                }),
        );
    }
    Ok(out)
}

/// The outcome of one sample, as the journal and the shard record it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Outcome {
    key: String,
    status: String,
    /// Counter name of the failure.
    reason: Option<String>,
    /// The failure under `reason` where it wraps one (`robots_unreachable`:
    /// why robots.txt could not be read).
    #[serde(default)]
    error_cause: Option<String>,
    error_message: Option<String>,
    /// The last URL of the redirect chain: where the image came from, or
    /// where it failed (none: no redirect).
    #[serde(default)]
    final_url: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    original_width: Option<u32>,
    original_height: Option<u32>,
    sha256: Option<String>,
    /// Length of the stored image that follows the record in the journal.
    image_len: u64,
}

/// Per-process state shared by all shards.
struct Shared {
    client: Client,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    global: Arc<Semaphore>,
    opts: DownloadOptions,
}

/// Per-origin state.
struct Host {
    slots: Semaphore,
    /// No request starts before this.
    next_at: tokio::sync::Mutex<Instant>,
    /// The origin's rules, or why its robots.txt was unreachable.
    robots: OnceCell<std::result::Result<Rules, Failure>>,
}

impl Shared {
    fn host(&self, origin: &str) -> Arc<Host> {
        self.hosts
            .lock()
            .expect("no panics under this lock")
            .entry(origin.to_string())
            .or_insert_with(|| {
                Arc::new(Host {
                    slots: Semaphore::new(self.opts.per_host),
                    next_at: tokio::sync::Mutex::new(Instant::now()),
                    robots: OnceCell::new(),
                })
            })
            .clone()
    }
}

async fn download_shard(
    shared: Arc<Shared>,
    plan: &[Planned],
    journal: &Path,
    out: ShardOutput<'_>,
    progress: &dyn Progress,
) -> Result<Counts> {
    let ShardOutput {
        tar,
        parquet,
        stats,
    } = out;
    let started = SystemTime::now();
    let clock = Instant::now();
    let mut done = read_journal(journal)?;
    let resumed = done.len();
    // Rewrite the journal with the records that were whole, then append.
    let mut writer = BufWriter::new(std::fs::File::create(journal).at(journal)?);
    for (o, img) in done.values() {
        write_record(&mut writer, o, img).at(journal)?;
    }
    writer.flush().at(journal)?;
    progress.advance(done.len() as u64);
    let todo: Vec<&Planned> = plan.iter().filter(|p| !done.contains_key(&p.key)).collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Outcome, Vec<u8>)>();
    for p in todo {
        let (shared, tx, p) = (shared.clone(), tx.clone(), p.clone());
        tokio::spawn(async move {
            let permit = shared.global.clone().acquire_owned().await;
            let result = fetch_sample(&shared, &p).await;
            drop(permit);
            let _ = tx.send(result);
        });
    }
    drop(tx);
    let mut since_sync = 0;
    while let Some((o, img)) = rx.recv().await {
        write_record(&mut writer, &o, &img).at(journal)?;
        since_sync += 1;
        if since_sync >= 64 {
            writer.flush().at(journal)?;
            writer.get_ref().sync_data().at(journal)?;
            since_sync = 0;
        }
        done.insert(o.key.clone(), (o, img));
        progress.advance(1);
    }
    writer.flush().at(journal)?;
    writer.get_ref().sync_data().at(journal)?;
    drop(writer);
    if done.len() != plan.len() {
        return Err(Error::io(
            journal,
            std::io::Error::other(format!("{} of {} samples finished", done.len(), plan.len())),
        ));
    }

    // The shard, in key order.
    let mut counts = Counts::new();
    let mut bump = |k: &str| *counts.entry(k.to_string()).or_default() += 1;
    let mut status_dict: BTreeMap<String, u64> = BTreeMap::new();
    let tar_path = tar.path().to_path_buf();
    let tar_path = tar_path.as_path();
    let mut w = ShardWriter::new(tar);
    for p in plan {
        let (o, img) = &done[&p.key];
        bump("samples");
        bump(&o.status);
        if let Some(r) = &o.reason {
            bump(&format!("error_{r}"));
            if let Some(c) = &o.error_cause {
                bump(&format!("error_{r}_{c}"));
            }
        }
        if let Some(m) = &o.error_message {
            *status_dict.entry(m.clone()).or_default() += 1;
        }
        if o.status == "success" {
            let meta = serde_json::json!({
                "key": o.key, "url": p.pair.url, "final_url": o.final_url,
                "caption": p.pair.text, "uid": p.pair.uid,
                "query_ids": p.pair.query_ids, "status": o.status,
                "width": o.width, "height": o.height,
                "original_width": o.original_width, "original_height": o.original_height,
                "sha256": o.sha256,
            });
            let meta = serde_json::to_vec_pretty(&meta).expect("serialisable");
            w.write(
                &o.key,
                &[
                    (shared.opts.image.encoding.extension(), img.as_slice()),
                    ("txt", p.pair.text.as_bytes()),
                    ("json", &meta),
                ],
            )
            .at(tar_path)?;
        }
    }
    w.finish().at(tar_path)?.close()?;
    write_shard_parquet(parquet, plan, &done)?;
    let stats_json = serde_json::json!({
        "count": plan.len(),
        "successes": counts.get("success").copied().unwrap_or(0),
        "failed_to_download": counts.get("failed_to_download").copied().unwrap_or(0),
        "failed_to_resize": counts.get("failed_to_resize").copied().unwrap_or(0),
        "resumed_from_journal": resumed,
        "duration": clock.elapsed().as_secs_f64(),
        "start_time": rfc3339(started),
        "end_time": rfc3339(SystemTime::now()),
        "status_dict": status_dict,
    });
    std::fs::write(
        stats,
        serde_json::to_vec_pretty(&stats_json).expect("serialisable"),
    )
    .at(stats)?;
    Ok(counts)
}

fn write_shard_parquet(
    path: &Path,
    plan: &[Planned],
    done: &HashMap<String, (Outcome, Vec<u8>)>,
) -> Result<()> {
    let rows: Vec<(&Planned, &Outcome)> = plan.iter().map(|p| (p, &done[&p.key].0)).collect();
    let u32s = |f: fn(&Outcome) -> Option<u32>| -> ArrayRef {
        Arc::new(UInt32Array::from_iter(rows.iter().map(|(_, o)| f(o))))
    };
    let mut lists = ListBuilder::new(UInt32Builder::new()).with_field(schema::query_ids_item());
    for (p, _) in &rows {
        lists.values().append_slice(&p.pair.query_ids);
        lists.append(true);
    }
    let batch = RecordBatch::try_new(
        schema::shard(),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(p, _)| p.key.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(_, o)| o.status.as_str()),
            )),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|(_, o)| o.error_message.as_deref()),
            )),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|(_, o)| o.reason.as_deref()),
            )),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|(_, o)| o.error_cause.as_deref()),
            )),
            u32s(|o| o.width),
            u32s(|o| o.height),
            u32s(|o| o.original_width),
            u32s(|o| o.original_height),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|(_, o)| o.sha256.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(p, _)| p.pair.url.as_str()),
            )),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|(_, o)| o.final_url.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(p, _)| p.pair.text.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(p, _)| p.pair.uid.as_str()),
            )),
            Arc::new(lists.finish()),
        ],
    )
    .map_err(|e| Error::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    debug_assert_eq!(batch.column(0).len(), plan.len());
    pq::write_file(path, schema::shard(), &[batch])?;
    Ok(())
}

/// Journal records: a JSON line, then the stored image's bytes.
fn write_record(w: &mut impl Write, o: &Outcome, img: &[u8]) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, o)?;
    w.write_all(b"\n")?;
    w.write_all(img)
}

/// The whole records of a journal; a torn or garbled tail is dropped.
fn read_journal(path: &Path) -> Result<HashMap<String, (Outcome, Vec<u8>)>> {
    let mut out = HashMap::new();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut rest = &bytes[..];
    while let Some(nl) = memchr::memchr(b'\n', rest) {
        let Ok(o) = serde_json::from_slice::<Outcome>(&rest[..nl]) else {
            break;
        };
        let start = nl + 1;
        let Some(end) = start
            .checked_add(o.image_len as usize)
            .filter(|&e| e <= rest.len())
        else {
            break;
        };
        let img = rest[start..end].to_vec();
        rest = &rest[end..];
        out.insert(o.key.clone(), (o, img));
    }
    Ok(out)
}

/// A `failed_to_download` outcome for fetch failure `f`.
fn download_failed(key: &str, f: &Failure) -> (Outcome, Vec<u8>) {
    failed(key, "failed_to_download", f.key(), f.to_string(), None)
}

fn failed(
    key: &str,
    status: &str,
    reason: &str,
    message: String,
    sha: Option<String>,
) -> (Outcome, Vec<u8>) {
    (
        Outcome {
            key: key.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            error_message: Some(message),
            sha256: sha,
            ..Outcome::default()
        },
        Vec::new(),
    )
}

/// Directives that carry a value after a colon, so that a colon after them
/// does not name a user agent.
const VALUED_DIRECTIVES: &[&str] = &[
    "unavailable_after",
    "max-snippet",
    "max-image-preview",
    "max-video-preview",
];

/// Whether `X-Robots-Tag` values opt the image out for `witbot`: every
/// header, comma-separated directives, and the `agent: directives` form
/// (applied when the agent is `witbot` or `*`). Returns the directive.
pub fn x_robots_opt_out<'a>(
    values: impl IntoIterator<Item = &'a str>,
    opt_out: &[String],
) -> Option<String> {
    for value in values {
        let (agent, directives) = match value.split_once(':') {
            Some((a, rest))
                if !a.trim().is_empty()
                    && !a.trim().contains([',', ' ', '\t'])
                    && !VALUED_DIRECTIVES.contains(&a.trim().to_ascii_lowercase().as_str()) =>
            {
                (Some(a.trim().to_ascii_lowercase()), rest)
            }
            _ => (None, value),
        };
        if agent
            .as_deref()
            .is_some_and(|a| a != wit_net::ROBOTS_TOKEN && a != "*")
        {
            continue; // another crawler's directives
        }
        for d in directives.split(',') {
            let d = d.trim().to_ascii_lowercase();
            if opt_out.contains(&d) {
                return Some(d);
            }
        }
    }
    None
}

async fn robots_rules(
    shared: &Shared,
    host: &Host,
    url: &Url,
) -> std::result::Result<Rules, Failure> {
    host.robots
        .get_or_init(|| async {
            match wit_net::robots::fetch(&shared.client, url).await {
                Fetched::Found { body, .. } => {
                    Ok(Robots::parse(&body).rules_for(wit_net::ROBOTS_TOKEN))
                }
                // No robots.txt: everything allowed.
                Fetched::Unavailable => Ok(Rules::default()),
                // 429, 5xx, no answer: nothing allowed (RFC 9309).
                Fetched::Unreachable(f) => Err(f),
            }
        })
        .await
        .clone()
}

/// Downloads one planned image, following redirects, and decodes, resizes
/// and encodes it: the sample's outcome and stored bytes.
async fn fetch_sample(shared: &Shared, p: &Planned) -> (Outcome, Vec<u8>) {
    let key = p.key.as_str();
    let Ok(mut url) = Url::parse(&p.pair.url) else {
        return failed(
            key,
            "failed_to_download",
            "bad_url",
            "not a URL".into(),
            None,
        );
    };
    let mut hops = 0u32;
    let (mut outcome, img) = loop {
        let resp = match fetch_once(shared, key, &url).await {
            Ok(resp) => resp,
            Err(failure) => break failure,
        };
        if (300..400).contains(&resp.status) {
            let Some(to) = resp.location(&url) else {
                break failed(
                    key,
                    "failed_to_download",
                    "bad_redirect",
                    format!("HTTP {} redirect without a usable Location", resp.status),
                    None,
                );
            };
            if hops >= shared.opts.max_redirects {
                break failed(
                    key,
                    "failed_to_download",
                    "too_many_redirects",
                    format!(
                        "HTTP {} redirect past the limit of {} (--max-redirects)",
                        resp.status, shared.opts.max_redirects
                    ),
                    None,
                );
            }
            hops += 1;
            url = to;
            continue;
        }
        let sha = hex_sha256(&resp.body);
        break match process(&resp.body, &shared.opts.image) {
            Ok(img) => (
                Outcome {
                    key: key.to_string(),
                    status: "success".into(),
                    width: Some(img.width),
                    height: Some(img.height),
                    original_width: Some(img.original_width),
                    original_height: Some(img.original_height),
                    sha256: Some(sha),
                    image_len: img.bytes.len() as u64,
                    ..Outcome::default()
                },
                img.bytes,
            ),
            Err(e) => failed(key, "failed_to_resize", e.key(), e.to_string(), Some(sha)),
        };
    };
    if hops > 0 {
        outcome.final_url = Some(url.to_string());
    }
    (outcome, img)
}

/// One request for `url` (one hop of a redirect chain), checked as every
/// hop is: the scheme and the address policy (by the client), the origin's
/// robots.txt, `X-Robots-Tag`; retried on timeouts, connection errors, 429
/// and 5xx. A `2xx` or `3xx` answer, or the sample's failure.
async fn fetch_once(
    shared: &Shared,
    key: &str,
    url: &Url,
) -> std::result::Result<wit_net::http::Response, (Outcome, Vec<u8>)> {
    let opts = &shared.opts;
    let host = shared.host(&url.origin().ascii_serialization());
    if opts.robots && matches!(url.scheme(), "http" | "https") {
        match robots_rules(shared, &host, url).await {
            // The host cannot be fetched at all: that, not robots.txt, is
            // the reason (as the crawl counts it).
            Err(cause @ (Failure::RefusedAddress(_) | Failure::Dns)) => {
                return Err(download_failed(key, &cause));
            }
            Err(cause) => {
                let (mut o, img) = failed(
                    key,
                    "failed_to_download",
                    "robots_unreachable",
                    format!("the host's robots.txt could not be read ({cause}): all disallowed"),
                    None,
                );
                o.error_cause = Some(cause.key().to_string());
                return Err((o, img));
            }
            Ok(rules) => {
                let path = match url.query() {
                    Some(q) => format!("{}?{q}", url.path()),
                    None => url.path().to_string(),
                };
                if !rules.allowed(&path) {
                    return Err(failed(
                        key,
                        "failed_to_download",
                        "robots",
                        "disallowed by robots.txt".into(),
                        None,
                    ));
                }
            }
        }
    }
    let mut attempt = 0u32;
    loop {
        let _slot = host.slots.acquire().await.expect("never closed");
        {
            let mut next = host.next_at.lock().await;
            let now = Instant::now();
            if *next > now {
                tokio::time::sleep_until((*next).into()).await;
            }
            *next = Instant::now().max(*next) + opts.host_delay;
        }
        let opted_out: Mutex<Option<String>> = Mutex::new(None);
        let accept = |head: &Head<'_>| {
            if let Some(d) = x_robots_opt_out(
                head.headers
                    .get_all("x-robots-tag")
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
                &opts.opt_out,
            ) {
                *opted_out.lock().expect("no panics") = Some(d);
                return Err(Failure::WrongType);
            }
            Ok(())
        };
        let result = shared.client.get(url, opts.max_bytes, accept).await;
        if let Some(d) = opted_out.into_inner().expect("no panics") {
            return Err(failed(
                key,
                "failed_to_download",
                "opt_out",
                format!("use of image disallowed by X-Robots-Tag: {d}"),
                None,
            ));
        }
        let (retry_after, why) = match result {
            Ok(resp) if (200..400).contains(&resp.status) => return Ok(resp),
            Ok(resp) if resp.status == 429 || resp.status >= 500 => (
                resp.retry_after(),
                Failure::from_status(resp.status).unwrap_or(Failure::Http5xx(resp.status)),
            ),
            Ok(resp) => {
                let f = Failure::from_status(resp.status).unwrap_or(Failure::Http4xx(resp.status));
                return Err(download_failed(key, &f));
            }
            Err(
                f @ (Failure::Timeout | Failure::Connect | Failure::Network | Failure::Truncated),
            ) => (None, f),
            Err(f) => return Err(download_failed(key, &f)),
        };
        if attempt >= opts.retries {
            return Err(download_failed(key, &why));
        }
        // Back off: Retry-After, else 1, 2, 4 s... plus up to 50% jitter; the
        // whole host waits.
        let base = Duration::from_secs(1 << attempt.min(6));
        let noise = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let jitter =
            base.mul_f64((splitmix64(u64::from(noise) ^ key.len() as u64) % 1000) as f64 / 2000.0);
        let wait = retry_after
            .unwrap_or(base + jitter)
            .min(opts.max_retry_after);
        {
            let mut next = host.next_at.lock().await;
            *next = (*next).max(Instant::now() + wait);
        }
        attempt += 1;
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    wit_contract::records::hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_img2dataset() {
        assert_eq!(sample_key(1, 5, 10_000), "000010005");
        assert_eq!(sample_key(0, 0, 10_000), "000000000");
        assert_eq!(sample_key(12, 7, 100), "0001207");
        assert_eq!(sample_key(3, 0, 1), "00003");
    }

    #[test]
    fn x_robots_tag_every_form() {
        let o: Vec<String> = ["noai", "noimageai", "noindex", "noimageindex"]
            .map(String::from)
            .to_vec();
        let check = |v: &[&str]| x_robots_opt_out(v.iter().copied(), &o);
        assert_eq!(check(&["noai"]).as_deref(), Some("noai"));
        assert_eq!(
            check(&["nofollow, NoImageIndex"]).as_deref(),
            Some("noimageindex")
        );
        assert_eq!(check(&["all", "noindex"]).as_deref(), Some("noindex"));
        assert_eq!(check(&["witbot: noai"]).as_deref(), Some("noai"));
        assert_eq!(check(&["otherbot: noai, noimageai"]), None);
        assert_eq!(
            check(&["unavailable_after: 25 Jun 2010 15:00:00 PST"]),
            None
        );
        assert_eq!(check(&["nofollow", "noarchive"]), None);
        assert_eq!(check(&[]), None);
    }

    #[test]
    fn journal_drops_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (a, img) = failed("000000000", "failed_to_download", "dns", "x".into(), None);
        let mut ok = a.clone();
        ok.key = "000000001".into();
        ok.status = "success".into();
        ok.image_len = 5;
        let mut bytes = Vec::new();
        write_record(&mut bytes, &a, &img).unwrap();
        write_record(&mut bytes, &ok, b"12345").unwrap();
        let whole = bytes.len();
        let mut third = ok.clone();
        third.key = "000000002".into();
        write_record(&mut bytes, &third, b"12345").unwrap();
        for cut in [whole, whole + 3, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let got = read_journal(&path).unwrap();
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert_eq!(got["000000001"].1, b"12345");
        }
    }
}
