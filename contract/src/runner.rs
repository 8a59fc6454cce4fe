//! The one stage runner that every stage uses.
//!
//! A stage's work is split into numbered parts. [`run_stage`] runs the parts
//! that are not yet complete on a pool of worker threads, or only the share of
//! them that `--parts N --part I` gives to this process, so that N processes on
//! N machines can share a stage over a common file system. Each part writes its
//! files under temporary names; when the part's work returns, the files are
//! renamed into place and the part's sidecar (`_part-NNNNN.json`) is written
//! last. A rerun skips parts whose sidecar exists and redoes the others, after
//! removing their temporary leftovers. The process that completes the last part
//! writes `_manifest.json`.
//!
//! The runner does not decide what a part contains: the stage does, as a
//! deterministic function of the part number, the inputs and the parameters.
//! Together these rules make a stage safe to kill at any moment and rerun to
//! the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, IoContext, Result};
use crate::layout::{MANIFEST_NAME, Stage, part_stats_name, part_tmp_prefix};
use crate::manifest::{
    Counts, Manifest, PartStats, add_counts, params_hash, read_part_stats, rfc3339, sync_dir,
    to_json_bytes, tool, write_local_atomic,
};
use crate::progress::Progress;

/// What a stage is about to produce.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// The stage.
    pub stage: Stage,
    /// The stage's directory (`DATASET/STAGE`).
    pub dir: PathBuf,
    /// How many parts the stage has in all.
    pub parts: u32,
    /// The inputs, for the manifest.
    pub inputs: Vec<String>,
    /// Every parameter that affects the output, as a JSON object. Parts made
    /// with other parameters are refused.
    pub params: serde_json::Value,
}

/// One process's share of a stage: the parts whose number is `index` modulo `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    count: u32,
    index: u32,
}

impl Share {
    /// Share `index` (0-based) of `count`.
    ///
    /// # Errors
    /// [`Error::Usage`] unless `count > 0` and `index < count`.
    pub fn new(count: u32, index: u32) -> Result<Share> {
        if count == 0 || index >= count {
            return Err(Error::Usage(format!(
                "--part {index} is out of range for --parts {count}: expected 0 <= part < parts"
            )));
        }
        Ok(Share { count, index })
    }

    /// Whether part `part` belongs to this share.
    pub fn contains(&self, part: u32) -> bool {
        part % self.count == self.index
    }
}

/// How to run a stage.
pub struct RunOptions<'a> {
    /// Run only this share of the parts; `None` runs them all.
    pub share: Option<Share>,
    /// Worker threads.
    pub jobs: usize,
    /// Remove the stage's earlier output first (refused together with `share`,
    /// since other processes may be writing there).
    pub force: bool,
    /// Progress reporting.
    pub progress: &'a dyn Progress,
}

/// Deletes a stage's earlier output (`--force`), here and, where the
/// dataset lives on a store, on the store: the one place every stage starts
/// over, those that run passes before [`run_stage`] included.
///
/// # Errors
/// [`Error::Usage`] with a `share` (other processes may be writing the
/// stage); [`Error::Io`] or a store error naming what could not be deleted.
pub fn start_over(dir: &Path, share: Option<Share>) -> Result<()> {
    if share.is_some() {
        return Err(Error::Usage(
            "--force cannot be combined with --parts/--part: other processes may be writing the same stage".into(),
        ));
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).at(dir)?;
    }
    crate::store::delete_stage(dir)
}

/// What one call of [`run_stage`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Parts of the stage in all.
    pub parts: u32,
    /// Parts in this process's share.
    pub in_share: u32,
    /// Parts run now.
    pub ran: u32,
    /// Parts skipped because an earlier run completed them.
    pub skipped: u32,
    /// Counters of the parts in this share, run now or before.
    pub counts: Counts,
    /// Whether every part of the stage is now complete (and the manifest written).
    pub complete: bool,
    /// Wall time of this call.
    pub elapsed: Duration,
}

/// The place where a part writes its files.
pub struct PartContext<'a> {
    dir: &'a Path,
    part: u32,
    nonce: String,
    outputs: Vec<(PathBuf, String)>,
    /// Streams uploaded to a store as written, completed at commit.
    uploads: Vec<(String, crate::store::UploadHandle)>,
}

impl PartContext<'_> {
    /// The part's number.
    pub fn part(&self) -> u32 {
        self.part
    }

    /// The path to write output file `name` (relative to the stage directory) to.
    /// It is a temporary name; the runner renames it to `name` when the part's
    /// work returns successfully, in the order the outputs were asked for.
    /// `name` may lie in a subdirectory whose name starts with `_` (created
    /// here): `_query_counts/part-00000.parquet`.
    ///
    /// # Panics
    /// If `name` lies in a subdirectory not starting with `_`, or deeper.
    pub fn output(&mut self, name: &str) -> PathBuf {
        let (sub, base) = match name.split_once('/') {
            Some((sub, base)) => {
                assert!(
                    sub.starts_with('_') && !base.contains('/'),
                    "part outputs live in the stage directory or one `_` subdirectory: {name}"
                );
                (Some(sub), base)
            }
            None => (None, name),
        };
        let dir = match sub {
            Some(sub) => {
                let d = self.dir.join(sub);
                // An error here shows when the file is written.
                let _ = std::fs::create_dir_all(&d);
                d
            }
            None => self.dir.to_path_buf(),
        };
        let tmp = dir.join(format!(
            "{}{}-{base}",
            part_tmp_prefix(self.part),
            self.nonce
        ));
        self.outputs.push((tmp.clone(), name.to_string()));
        tmp
    }

    /// Output file `name` as a stream to write and then
    /// [`close`](crate::store::OutputStream::close): a temporary file renamed
    /// at commit, as [`PartContext::output`] gives, or, in a dataset on a
    /// store, a multipart upload fed as it is written and completed at
    /// commit (large outputs, such as shards, need no local copy). `name`
    /// lies in the stage directory.
    ///
    /// # Errors
    /// [`Error::Io`] if the temporary file cannot be created.
    pub fn output_stream(&mut self, name: &str) -> Result<crate::store::OutputStream> {
        assert!(
            !name.contains('/'),
            "streamed outputs live in the stage directory: {name}"
        );
        let path = self.dir.join(name);
        if crate::store::mirror_of(&path).is_none() {
            let tmp = self.output(name);
            return crate::store::OutputStream::file(&tmp);
        }
        let tmp = self.dir.join(format!(
            "{}{}-{name}",
            part_tmp_prefix(self.part),
            self.nonce
        ));
        let (stream, handle) = crate::store::output_stream(&path, &tmp)?;
        if let Some(h) = handle {
            self.uploads.push((name.to_string(), h));
        }
        Ok(stream)
    }
}

/// Runs the incomplete parts of a stage that belong to this process's share.
///
/// `work` is called once per part to run, from several threads at once. It
/// must be a deterministic function of the part number, the inputs and the
/// parameters, and write its files only through [`PartContext::output`].
/// A failing part does not stop the others: they are committed, and the
/// failures returned together as [`Error::PartsFailed`].
///
/// # Errors
/// [`Error::Conflict`] if the directory holds parts made with other
/// parameters; [`Error::Usage`] for `force` with a share; [`Error::Io`] if the
/// directory cannot be prepared; [`Error::PartsFailed`] if any part failed.
pub fn run_stage<F>(spec: &StageSpec, opts: &RunOptions<'_>, work: F) -> Result<Summary>
where
    F: Fn(&mut PartContext<'_>) -> Result<Counts> + Sync,
{
    let start = Instant::now();
    let hash = params_hash(&spec.params, spec.parts);
    if opts.force {
        start_over(&spec.dir, opts.share)?;
    }
    std::fs::create_dir_all(&spec.dir).at(&spec.dir)?;
    crate::store::pull_stage_meta(&spec.dir)?;
    check_no_foreign_parts(spec, &hash)?;
    if opts.share.is_none() {
        remove_tmp_files(&spec.dir, ".tmp-")?;
    }

    let in_share: Vec<u32> = (0..spec.parts)
        .filter(|p| opts.share.is_none_or(|s| s.contains(*p)))
        .collect();
    let mut done: Vec<PartStats> = Vec::new();
    let mut pending: Vec<u32> = Vec::new();
    for &part in &in_share {
        match complete_part(&spec.dir, part, &hash) {
            Some(stats) => done.push(stats),
            None => pending.push(part),
        }
    }
    let skipped = done.len() as u32;
    if skipped > 0 {
        tracing::info!(
            "{}: {skipped} of {} parts already complete, skipping them",
            label(spec),
            in_share.len()
        );
    }

    opts.progress.start(
        &format!("{} parts", label(spec)),
        in_share.len() as u64,
        skipped as u64,
    );
    let (finished, mut failures) = run_parts(spec, &hash, &pending, opts, true, &work);
    opts.progress.finish();

    let ran = finished.len() as u32;
    done.extend(finished);
    let mut counts = Counts::new();
    for s in &done {
        add_counts(&mut counts, &s.counts);
    }
    if !failures.is_empty() {
        failures.sort_by_key(|f| f.0);
        return Err(Error::PartsFailed {
            failures,
            total: in_share.len() as u32,
        });
    }
    let complete = write_manifest_if_complete(spec, &hash)?;
    Ok(Summary {
        parts: spec.parts,
        in_share: in_share.len() as u32,
        ran,
        skipped,
        counts,
        complete,
        elapsed: start.elapsed(),
    })
}

/// Runs `parts` on `opts.jobs` threads; returns the parts committed and the
/// failures. `clean`: remove a part's temporary leftovers first (not for
/// backup attempts, which may run beside the part's owner).
fn run_parts<F>(
    spec: &StageSpec,
    hash: &str,
    parts: &[u32],
    opts: &RunOptions<'_>,
    clean: bool,
    work: &F,
) -> (Vec<PartStats>, Vec<(u32, Error)>)
where
    F: Fn(&mut PartContext<'_>) -> Result<Counts> + Sync,
{
    let next = AtomicUsize::new(0);
    let finished: Mutex<Vec<PartStats>> = Mutex::new(Vec::new());
    let failures: Mutex<Vec<(u32, Error)>> = Mutex::new(Vec::new());
    let threads = opts.jobs.max(1).min(parts.len());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(&part) = parts.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let made = Made {
                        hash,
                        params: &spec.params,
                    };
                    match run_part(&spec.dir, made, part, clean, SystemTime::now(), work) {
                        Ok(stats) => {
                            tracing::debug!("{}: part {part} done {:?}", label(spec), stats.counts);
                            finished
                                .lock()
                                .expect("no panics hold this lock")
                                .push(stats);
                        }
                        Err(e) => {
                            if clean {
                                tracing::error!("{}: part {part} failed: {e}", label(spec));
                            }
                            failures
                                .lock()
                                .expect("no panics hold this lock")
                                .push((part, e));
                        }
                    }
                    opts.progress.advance(1);
                }
            });
        }
    });
    (
        finished.into_inner().expect("threads joined"),
        failures.into_inner().expect("threads joined"),
    )
}

/// Runs a stage to its end: this process's share, as [`run_stage`] does,
/// then, as backup tasks (MapReduce's term), every part of the other shares
/// that is still incomplete, in an order that starts at a different place in
/// each share. For the steps of a stage that must all finish before the next
/// begins (the bucketed passes of balancing and of the download plan): no
/// process waits for another, a dead or slow process's parts are done by the
/// others, and since parts are deterministic and committed atomically, a part
/// committed twice has the same bytes. A backup attempt that fails while the
/// part's owner commits it is not an error. The summary's counts are the
/// whole stage's (its manifest's), not only this process's parts'.
///
/// # Errors
/// As [`run_stage`]; [`Error::PartsFailed`] if a part is still incomplete
/// after its backup attempt failed.
pub fn run_stage_to_end<F>(spec: &StageSpec, opts: &RunOptions<'_>, work: F) -> Result<Summary>
where
    F: Fn(&mut PartContext<'_>) -> Result<Counts> + Sync,
{
    let mut summary = run_stage(spec, opts, &work)?;
    let Some(share) = opts.share else {
        return Ok(summary);
    };
    let hash = params_hash(&spec.params, spec.parts);
    for round in 0..3 {
        if summary.complete {
            break;
        }
        crate::store::pull_stage_meta(&spec.dir)?;
        let mut missing: Vec<u32> = (0..spec.parts)
            .filter(|&p| complete_part(&spec.dir, p, &hash).is_none())
            .collect();
        if !missing.is_empty() {
            let start = (share.index as usize * missing.len()) / share.count as usize;
            missing.rotate_left(start);
            tracing::info!(
                "{}: {} parts of other processes not yet complete; running them as backups",
                label(spec),
                missing.len()
            );
            opts.progress
                .start(&format!("{} backups", label(spec)), missing.len() as u64, 0);
            let (finished, failures) = run_parts(spec, &hash, &missing, opts, false, &work);
            opts.progress.finish();
            summary.ran += finished.len() as u32;
            let mut failures: Vec<(u32, Error)> = failures
                .into_iter()
                .filter(|(p, _)| complete_part(&spec.dir, *p, &hash).is_none())
                .collect();
            if !failures.is_empty() && round == 2 {
                failures.sort_by_key(|f| f.0);
                return Err(Error::PartsFailed {
                    failures,
                    total: spec.parts,
                });
            }
        }
        summary.complete = write_manifest_if_complete(spec, &hash)?;
    }
    if !summary.complete {
        return Err(Error::bad_input(
            &spec.dir,
            "parts are still incomplete after their backup attempts",
        ));
    }
    // The counts of the whole stage, whoever ran its parts.
    let path = spec.dir.join(MANIFEST_NAME);
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(&path).at(&path)?)
        .map_err(|e| Error::bad_input(&path, format!("unreadable manifest: {e}")))?;
    summary.counts = manifest.counts;
    Ok(summary)
}

/// The stage's name in logs and progress bars: `balanced`, or for a step
/// inside a stage's directory, `balanced/_buckets`.
fn label(spec: &StageSpec) -> String {
    let stage = spec.stage.dir_name();
    match spec.dir.file_name().and_then(|n| n.to_str()) {
        Some(name) if name.starts_with('_') => format!("{stage}/{name}"),
        _ => stage.to_string(),
    }
}

/// Whether the stage is already complete with these parameters (its manifest
/// exists and records the same parameter hash). Stages whose expensive work
/// happens before [`run_stage`] (counting a corpus, say) check this first.
pub fn stage_complete(spec: &StageSpec) -> bool {
    if crate::store::pull_stage_meta(&spec.dir).is_err() {
        return false;
    }
    let hash = params_hash(&spec.params, spec.parts);
    std::fs::read(spec.dir.join(MANIFEST_NAME))
        .ok()
        .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
        .is_some_and(|m| m.params_hash == hash)
}

/// A string unique to this process and moment, for temporary file names.
pub(crate) fn nonce() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// Checks, before any work, that the stage directory holds no parts or
/// manifest made with other parameters. Stages whose expensive work happens
/// before [`run_stage`] call it first; [`run_stage`] checks it again.
///
/// # Errors
/// [`Error::Conflict`] naming the directory; [`Error::Io`] if it cannot be read.
pub fn check_params(spec: &StageSpec) -> Result<()> {
    crate::store::pull_stage_meta(&spec.dir)?;
    if !spec.dir.is_dir() {
        return Ok(());
    }
    check_no_foreign_parts(spec, &params_hash(&spec.params, spec.parts))
}

/// The parameters the stage in `dir` was made with: its manifest's, else
/// those a committed part records; `None` where neither exists.
///
/// # Errors
/// [`Error::Io`] if the directory (or its store) cannot be read.
pub fn recorded_params(dir: &Path) -> Result<Option<serde_json::Value>> {
    crate::store::pull_stage_meta(dir)?;
    if let Ok(bytes) = std::fs::read(dir.join(MANIFEST_NAME))
        && let Ok(m) = serde_json::from_slice::<Manifest>(&bytes)
    {
        return Ok(Some(m.params));
    }
    if !dir.is_dir() {
        return Ok(None);
    }
    Ok(sidecars(dir)?
        .into_iter()
        .filter_map(|(_, stats)| (!stats.params.is_null()).then_some(stats.params))
        .next())
}

/// The readable part sidecars (`_part-NNNNN.json`) in `dir`, by file name.
fn sidecars(dir: &Path) -> Result<Vec<(String, PartStats)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("_part-")
            && name.ends_with(".json")
            && let Some(stats) = read_part_stats(&entry.path())
        {
            out.push((name.to_string(), stats));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Refuses a directory holding parts or a manifest made with other parameters.
fn check_no_foreign_parts(spec: &StageSpec, hash: &str) -> Result<()> {
    let manifest = spec.dir.join(MANIFEST_NAME);
    if let Ok(bytes) = std::fs::read(&manifest)
        && let Ok(m) = serde_json::from_slice::<Manifest>(&bytes)
        && m.params_hash != hash
    {
        return Err(conflict(spec, &m.params, m.parts));
    }
    for (name, stats) in sidecars(&spec.dir)? {
        if stats.params_hash != hash {
            let differ = if stats.params.is_null() {
                "the part does not record them".to_string()
            } else {
                params_diff(&stats.params, &spec.params)
            };
            return Err(Error::Conflict {
                path: spec.dir.clone(),
                message: format!(
                    "holds {name}, made with other parameters or another part count than this run ({differ}); \
                     rerun with the same ones, use --force to start this stage over, or choose another dataset directory"
                ),
            });
        }
    }
    Ok(())
}

fn conflict(spec: &StageSpec, old_params: &serde_json::Value, old_parts: u32) -> Error {
    let mut differ = params_diff(old_params, &spec.params);
    if old_parts != spec.parts {
        let parts = format!("parts {old_parts} (this run: {})", spec.parts);
        differ = if differ.is_empty() {
            parts
        } else {
            format!("{parts}, {differ}")
        };
    }
    Error::Conflict {
        path: spec.dir.clone(),
        message: format!(
            "was made with other parameters than this run: {differ}; \
             use --force to start this stage over, or choose another dataset directory"
        ),
    }
}

/// The parameters that differ between `old` and `new`, on one line:
/// `key OLD (this run: NEW)`, comma-separated, keys of nested objects as
/// dotted paths, `none` for a key one side lacks.
pub fn params_diff(old: &serde_json::Value, new: &serde_json::Value) -> String {
    fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten("", old, &mut a);
    flatten("", new, &mut b);
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let none = "none".to_string();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(k).unwrap_or(&none), b.get(k).unwrap_or(&none));
            (x != y).then(|| format!("{k} {x} (this run: {y})"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The part's sidecar if the part is complete: present, made with these
/// parameters, and every file it lists exists.
fn complete_part(dir: &Path, part: u32, hash: &str) -> Option<PartStats> {
    let stats = read_part_stats(&dir.join(part_stats_name(part)))?;
    (stats.part == part
        && stats.params_hash == hash
        && stats.files.iter().all(|f| crate::store::exists(dir, f)))
    .then_some(stats)
}

/// Removes the files (and directories) starting with `prefix` in `dir` and
/// in its `_` subdirectories, where parts write their side outputs.
fn remove_tmp_files(dir: &Path, prefix: &str) -> Result<()> {
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let name = name.to_str().unwrap_or("");
        if name.starts_with('_') && entry.file_type().at(dir)?.is_dir() {
            remove_tmp_files(&entry.path(), prefix)?;
            continue;
        }
        if name.starts_with(prefix) {
            let path = entry.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).at(&path)?;
            } else {
                std::fs::remove_file(&path).at(&path)?;
            }
        }
    }
    Ok(())
}

/// The parameters a part is made with: their hash and the values.
#[derive(Clone, Copy)]
struct Made<'a> {
    hash: &'a str,
    params: &'a serde_json::Value,
}

/// Runs and commits one part. `started_at`: when work on it began (now, but
/// for a crawl's part, whose pages were fetched before the commit).
fn run_part<F>(
    dir: &Path,
    made: Made<'_>,
    part: u32,
    clean: bool,
    started_at: SystemTime,
    work: F,
) -> Result<PartStats>
where
    F: FnOnce(&mut PartContext<'_>) -> Result<Counts>,
{
    if clean {
        remove_tmp_files(dir, &part_tmp_prefix(part))?;
    }
    // Temporary names are unique to this attempt, so that two processes that
    // run the same part by mistake never commit each other's half-written files.
    let mut ctx = PartContext {
        dir,
        part,
        nonce: nonce(),
        outputs: Vec::new(),
        uploads: Vec::new(),
    };
    let counts = match work(&mut ctx) {
        Ok(c) => c,
        Err(e) => {
            // Leave no half-written files behind a failed part.
            let _ = remove_tmp_files(dir, &format!("{}{}-", part_tmp_prefix(part), ctx.nonce));
            return Err(e);
        }
    };
    let mut files = Vec::with_capacity(ctx.outputs.len());
    for (tmp, name) in &ctx.outputs {
        // On disk before the sidecar can say the part is complete.
        std::fs::File::open(tmp)
            .and_then(|f| f.sync_all())
            .at(tmp)?;
        let dest = dir.join(name);
        std::fs::rename(tmp, &dest).at(&dest)?;
        // On a store: the object under its final name, whole or not at all.
        crate::store::push(&dest)?;
        files.push(name.clone());
    }
    // Streamed uploads: the objects appear now, before the sidecar.
    for (name, handle) in &ctx.uploads {
        handle.complete(&dir.join(name))?;
        files.push(name.clone());
    }
    let finished_at = SystemTime::now();
    let stats = PartStats {
        part,
        params_hash: made.hash.to_string(),
        params: made.params.clone(),
        files,
        counts,
        started: rfc3339(started_at),
        finished: rfc3339(finished_at),
        seconds: finished_at
            .duration_since(started_at)
            .unwrap_or_default()
            .as_secs_f64(),
    };
    let name = part_stats_name(part);
    let final_path = dir.join(&name);
    let tmp = dir.join(format!("{}{}-{name}", part_tmp_prefix(part), ctx.nonce));
    std::fs::write(&tmp, to_json_bytes(&stats, &final_path)?).at(&tmp)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .at(&tmp)?;
    std::fs::rename(&tmp, &final_path).at(&final_path)?;
    sync_dir(dir);
    // On a store the sidecar goes up last: it marks the part complete there.
    if let Err(e) = crate::store::push(&final_path) {
        let _ = std::fs::remove_file(&final_path);
        return Err(e);
    }
    Ok(stats)
}

/// Writes the manifest if every part of the stage is complete; says whether it did.
fn write_manifest_if_complete(spec: &StageSpec, hash: &str) -> Result<bool> {
    // On a store, other processes may have committed parts since this one began.
    crate::store::pull_stage_meta(&spec.dir)?;
    let mut all = Vec::with_capacity(spec.parts as usize);
    for part in 0..spec.parts {
        match complete_part(&spec.dir, part, hash) {
            Some(s) => all.push(s),
            None => return Ok(false),
        }
    }
    let mut counts = Counts::new();
    for s in &all {
        add_counts(&mut counts, &s.counts);
    }
    let manifest = Manifest {
        stage: spec.stage.dir_name().to_string(),
        tool: tool(),
        // A mirror's working directory is named by its URL.
        inputs: spec
            .inputs
            .iter()
            .map(|i| crate::store::display(i))
            .collect(),
        params: spec.params.clone(),
        params_hash: hash.to_string(),
        parts: spec.parts,
        counts,
        started: all
            .iter()
            .map(|s| s.started.clone())
            .min()
            .unwrap_or_default(),
        finished: all
            .iter()
            .map(|s| s.finished.clone())
            .max()
            .unwrap_or_default(),
        part_seconds: all.iter().map(|s| s.seconds).sum(),
    };
    let path = spec.dir.join(MANIFEST_NAME);
    let bytes = to_json_bytes(&manifest, &path)?;
    // On a store, created only if absent (If-None-Match: *): of two processes
    // finishing together, one writes it; the other's is the same but for times.
    crate::store::push_create(&path, &bytes)?;
    write_local_atomic(&path, &bytes)?;
    Ok(true)
}

/// A stage whose number of parts is not known in advance: a crawl commits a
/// part every N pages until the frontier runs dry. Parts are committed one
/// at a time, in order, by one process, with the same temporary-name, rename
/// and sidecar rules as [`run_stage`]; [`OpenStage::finish`] writes the
/// manifest once the stage knows it is done. The parameter hash does not
/// include a part count.
#[derive(Debug)]
pub struct OpenStage {
    spec: StageSpec,
    hash: String,
}

impl OpenStage {
    /// Prepares the stage directory: refuses parts made with other parameters,
    /// removes temporary leftovers of a killed run (`force`: starts over).
    ///
    /// # Errors
    /// [`Error::Conflict`] for foreign parts; [`Error::Io`] naming the directory.
    pub fn open(spec: StageSpec, force: bool) -> Result<OpenStage> {
        let hash = params_hash(&spec.params, 0);
        if force {
            start_over(&spec.dir, None)?;
        }
        std::fs::create_dir_all(&spec.dir).at(&spec.dir)?;
        crate::store::pull_stage_meta(&spec.dir)?;
        check_no_foreign_parts(&spec, &hash)?;
        remove_tmp_files(&spec.dir, ".tmp-")?;
        Ok(OpenStage { spec, hash })
    }

    /// The stage directory.
    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }

    /// Whether the manifest says the stage is finished with these parameters.
    pub fn finished(&self) -> bool {
        std::fs::read(self.spec.dir.join(MANIFEST_NAME))
            .ok()
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
            .is_some_and(|m| m.params_hash == self.hash)
    }

    /// The complete parts `0..k`, in order, up to the first incomplete one.
    pub fn committed(&self) -> Vec<PartStats> {
        let mut out = Vec::new();
        while let Some(s) = complete_part(&self.spec.dir, out.len() as u32, &self.hash) {
            out.push(s);
        }
        out
    }

    /// Commits part `part`, whose work began at `started` (the sidecar's
    /// `started` and `seconds`): `work` writes its files through
    /// [`PartContext::output`]; they are renamed into place and the sidecar
    /// is written last.
    ///
    /// # Errors
    /// What `work` returns; [`Error::Io`] if committing fails.
    pub fn commit<F>(&self, part: u32, started: SystemTime, work: F) -> Result<PartStats>
    where
        F: FnOnce(&mut PartContext<'_>) -> Result<Counts>,
    {
        let made = Made {
            hash: &self.hash,
            params: &self.spec.params,
        };
        run_part(&self.spec.dir, made, part, true, started, work)
    }

    /// Writes the manifest for parts `0..parts`, all of which must be complete.
    ///
    /// # Errors
    /// [`Error::BadInput`] if a part is incomplete; [`Error::Io`] if writing fails.
    pub fn finish(&self, parts: u32) -> Result<()> {
        let spec = StageSpec {
            parts,
            ..self.spec.clone()
        };
        if write_manifest_if_complete(&spec, &self.hash)? {
            Ok(())
        } else {
            Err(Error::bad_input(
                &self.spec.dir,
                format!("cannot finish: not all of parts 0..{parts} are complete"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    fn spec(dir: &Path, parts: u32, params: serde_json::Value) -> StageSpec {
        StageSpec {
            stage: Stage::Matched,
            dir: dir.to_path_buf(),
            parts,
            inputs: vec!["in".into()],
            params,
        }
    }

    fn opts(share: Option<Share>) -> RunOptions<'static> {
        RunOptions {
            share,
            jobs: 3,
            force: false,
            progress: &NoProgress,
        }
    }

    /// Writes "part N" into part-N.txt, failing for the parts in `fail`.
    fn work(fail: &'static [u32]) -> impl Fn(&mut PartContext<'_>) -> Result<Counts> + Sync {
        move |ctx| {
            let part = ctx.part();
            let path = ctx.output(&format!("part-{part:05}.txt"));
            std::fs::write(&path, format!("part {part}")).unwrap();
            if fail.contains(&part) {
                return Err(Error::bad_input(format!("input-{part}"), "broken"));
            }
            Ok(Counts::from([("rows".to_string(), u64::from(part))]))
        }
    }

    #[test]
    fn runs_every_part_then_writes_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(dir.path(), 5, serde_json::json!({"k": 1}));
        let sum = run_stage(&s, &opts(None), work(&[])).unwrap();
        assert_eq!((sum.ran, sum.skipped, sum.complete), (5, 0, true));
        assert_eq!(sum.counts["rows"], 10);
        let m = Manifest::read(dir.path().parent().unwrap(), Stage::Matched);
        // The temp dir is not named "matched": read the manifest directly.
        assert!(m.is_err());
        let m: Manifest =
            serde_json::from_slice(&std::fs::read(dir.path().join(MANIFEST_NAME)).unwrap())
                .unwrap();
        assert_eq!((m.parts, m.counts["rows"]), (5, 10));
        // A rerun does nothing.
        let again = run_stage(&s, &opts(None), work(&[])).unwrap();
        assert_eq!((again.ran, again.skipped, again.complete), (0, 5, true));
    }

    #[test]
    fn shares_split_the_parts_and_the_last_one_writes_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(dir.path(), 7, serde_json::json!({}));
        let a = run_stage(&s, &opts(Some(Share::new(2, 0).unwrap())), work(&[])).unwrap();
        assert_eq!((a.in_share, a.ran, a.complete), (4, 4, false));
        assert!(!dir.path().join(MANIFEST_NAME).exists());
        let b = run_stage(&s, &opts(Some(Share::new(2, 1).unwrap())), work(&[])).unwrap();
        assert_eq!((b.in_share, b.ran, b.complete), (3, 3, true));
        assert!(dir.path().join(MANIFEST_NAME).exists());
        assert!(Share::new(2, 2).is_err());
        assert!(Share::new(0, 0).is_err());
    }

    #[test]
    fn to_the_end_runs_the_other_shares_parts_as_backups() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(dir.path(), 7, serde_json::json!({}));
        // Share 1 of 2 never runs: share 0 does its parts, then share 1's.
        let a = run_stage_to_end(&s, &opts(Some(Share::new(2, 0).unwrap())), work(&[])).unwrap();
        assert_eq!((a.in_share, a.ran, a.complete), (4, 7, true));
        assert_eq!(a.counts["rows"], 21);
        assert!(dir.path().join(MANIFEST_NAME).exists());
        // Share 1, started late, finds everything done.
        let b = run_stage_to_end(&s, &opts(Some(Share::new(2, 1).unwrap())), work(&[])).unwrap();
        assert_eq!((b.ran, b.skipped, b.complete), (0, 3, true));
        // A part that fails in its backup attempt too is an error.
        let dir = tempfile::tempdir().unwrap();
        let s = spec(dir.path(), 4, serde_json::json!({}));
        match run_stage_to_end(&s, &opts(Some(Share::new(2, 0).unwrap())), work(&[3])) {
            Err(Error::PartsFailed { failures, .. }) => assert_eq!(failures[0].0, 3),
            other => panic!("{other:?}"),
        }
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.starts_with(".tmp")), "{names:?}");
    }

    #[test]
    fn failed_parts_leave_nothing_and_are_redone_on_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(dir.path(), 4, serde_json::json!({}));
        let err = run_stage(&s, &opts(None), work(&[1, 3])).unwrap_err();
        match &err {
            Error::PartsFailed { failures, total } => {
                assert_eq!(*total, 4);
                assert_eq!(failures.iter().map(|f| f.0).collect::<Vec<_>>(), vec![1, 3]);
            }
            other => panic!("{other}"),
        }
        assert!(err.is_bad_input());
        assert!(err.to_string().contains("input-1"), "{err}");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with(".tmp") || n.contains("00001")),
            "{names:?}"
        );
        let sum = run_stage(&s, &opts(None), work(&[])).unwrap();
        assert_eq!((sum.ran, sum.skipped, sum.complete), (2, 2, true));
    }

    #[test]
    fn params_diff_names_each_differing_key_with_both_values() {
        let old = serde_json::json!({"mode": "center_crop", "size": 64, "same": true,
            "image": {"q": 95}, "gone": 1});
        let new = serde_json::json!({"mode": "border", "size": 256, "same": true,
            "image": {"q": 90}, "added": [1, 2]});
        assert_eq!(
            params_diff(&old, &new),
            "added none (this run: [1,2]), gone 1 (this run: none), image.q 95 (this run: 90), \
             mode \"center_crop\" (this run: \"border\"), size 64 (this run: 256)"
        );
        assert_eq!(params_diff(&old, &old), "");
    }

    #[test]
    fn other_parameters_are_refused_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        run_stage(
            &spec(dir.path(), 3, serde_json::json!({"t": 1})),
            &opts(None),
            work(&[]),
        )
        .unwrap();
        let other = spec(dir.path(), 3, serde_json::json!({"t": 2}));
        let err = run_stage(&other, &opts(None), work(&[])).unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
        // One line naming what differs, both values.
        let text = err.to_string();
        assert!(
            text.contains("other parameters than this run: t 1 (this run: 2);"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "{text}");
        // A stage in progress (no manifest): the sidecars name them too.
        std::fs::remove_file(dir.path().join(MANIFEST_NAME)).unwrap();
        let text = run_stage(&other, &opts(None), work(&[]))
            .unwrap_err()
            .to_string();
        assert!(text.contains("(t 1 (this run: 2))"), "{text}");
        let forced = RunOptions {
            force: true,
            ..opts(None)
        };
        assert_eq!(run_stage(&other, &forced, work(&[])).unwrap().ran, 3);
    }

    #[test]
    fn leftover_temporary_files_of_a_killed_run_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(dir.path(), 2, serde_json::json!({}));
        std::fs::create_dir_all(dir.path()).unwrap();
        std::fs::write(dir.path().join(".tmp-part-00001-part-00001.txt"), "half").unwrap();
        std::fs::write(dir.path().join(".tmp-4242-_manifest.json"), "half").unwrap();
        run_stage(&s, &opts(None), work(&[])).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.starts_with(".tmp")), "{names:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("part-00001.txt")).unwrap(),
            "part 1"
        );
    }

    #[test]
    fn open_stage_commits_in_order_finishes_and_refuses_other_params() {
        let dir = tempfile::tempdir().unwrap();
        let sp = |p: u32| spec(dir.path(), 0, serde_json::json!({ "p": p }));
        let stage = OpenStage::open(sp(1), false).unwrap();
        for part in 0..2u32 {
            stage
                .commit(part, SystemTime::now(), |ctx| {
                    std::fs::write(ctx.output(&format!("part-{part:05}.txt")), "x").unwrap();
                    Ok(Counts::from([("urls".to_string(), 5)]))
                })
                .unwrap();
        }
        // A half-written third part, as a kill leaves it.
        std::fs::write(dir.path().join(".tmp-part-00002-part-00002.txt"), "half").unwrap();
        let stage = OpenStage::open(sp(1), false).unwrap();
        assert_eq!(stage.committed().len(), 2);
        assert!(!dir.path().join(".tmp-part-00002-part-00002.txt").exists());
        assert!(!stage.finished());
        assert!(stage.finish(3).is_err(), "part 2 is not complete");
        stage.finish(2).unwrap();
        assert!(stage.finished());
        let m: Manifest =
            serde_json::from_slice(&std::fs::read(dir.path().join(MANIFEST_NAME)).unwrap())
                .unwrap();
        assert_eq!((m.parts, m.counts["urls"]), (2, 10));
        assert!(matches!(
            OpenStage::open(sp(2), false),
            Err(Error::Conflict { .. })
        ));
        assert!(OpenStage::open(sp(2), true).unwrap().committed().is_empty());
    }
}
