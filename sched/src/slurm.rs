//! A pipeline as Slurm job arrays: one `sbatch` script per stage, submitted
//! in order with each stage depending on the one before (`afterok`, and
//! `--kill-on-invalid-dep=yes` so that a stage behind a failed one is
//! cancelled rather than left pending for ever), then followed until every
//! task has ended.
//!
//! A stage of more tasks than the cluster's `MaxArraySize` allows in one
//! array (slurm.conf(5): array indices run from 0 to `MaxArraySize` - 1;
//! Slurm's default is 1001) is split into several arrays, its chunks, each
//! adding its first part index to `SLURM_ARRAY_TASK_ID`. Every chunk of a
//! stage depends on every chunk of the stage before; the chunks of a
//! throttled stage also run one after another (`afterany`), so that the
//! throttle still bounds the stage's running tasks.
//!
//! Resubmitting a pipeline after a failure or a kill runs every task again,
//! and each task finds its complete parts already committed and skips them:
//! only the missing parts do any work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::pipeline::slurm_mem_mib;
use crate::{Error, Pipeline, Result, shell_quote, write_file};

/// The limits of a cluster that shape a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `MaxArraySize`: one array's task indices must be below it, so one
    /// array holds at most this many tasks; 0 disables arrays.
    pub max_array_size: u32,
}

impl Limits {
    /// Slurm's defaults (slurm.conf(5): `MaxArraySize=1001`), for writing
    /// scripts where no cluster can be asked.
    pub const DEFAULT: Limits = Limits {
        max_array_size: 1001,
    };

    /// The limits of the cluster this machine submits to, from
    /// `scontrol show config`; Slurm's defaults for any it does not list.
    ///
    /// # Errors
    /// [`Error::Scheduler`] if `scontrol` cannot be run or fails.
    pub fn query() -> Result<Limits> {
        let out = run(Command::new("scontrol").args(["show", "config"]))?;
        Ok(Limits::parse(&out))
    }

    /// The limits in `scontrol show config`'s output (`MaxArraySize = 1001`).
    pub fn parse(config: &str) -> Limits {
        let mut limits = Limits::DEFAULT;
        for line in config.lines() {
            if let Some((key, value)) = line.split_once('=')
                && key.trim() == "MaxArraySize"
                && let Ok(n) = value.trim().parse()
            {
                limits.max_array_size = n;
            }
        }
        limits
    }
}

/// One batch script: a whole stage, or one chunk of a stage too large for
/// one array.
#[derive(Debug, Clone)]
pub struct Script {
    /// The stage's name in the pipeline (`02-match`).
    pub stage: String,
    /// The script's own name: the stage's where it is the whole stage,
    /// else `02-match.1` for its second chunk.
    pub name: String,
    /// The stage's position in the pipeline (0-based).
    pub stage_index: usize,
    /// The part index of its first task (0 for a whole stage).
    pub first: u32,
    /// Its number of array tasks.
    pub tasks: u32,
    /// Whether it waits for the chunk of its stage before it (a throttled stage).
    pub after_previous_chunk: bool,
    /// The script text.
    pub text: String,
    /// Where each task's log goes, with `%a` for the array index.
    pub log_pattern: PathBuf,
}

impl Script {
    /// The log file of array task `index` (part `first + index`).
    pub fn log(&self, index: u32) -> PathBuf {
        log_path(&self.log_pattern, index)
    }
}

fn log_path(pattern: &Path, index: u32) -> PathBuf {
    PathBuf::from(pattern.to_string_lossy().replace("%a", &index.to_string()))
}

/// The batch scripts of every stage, each stage split into chunks of at most
/// `limits.max_array_size` tasks. `wit` is the binary the tasks run,
/// `workdir` the directory they run in (relative paths in the pipeline are
/// relative to it), `logs` the directory of their logs (absolute).
///
/// # Errors
/// [`Error::Scheduler`] where the cluster disables arrays (`MaxArraySize=0`).
pub fn scripts(
    p: &Pipeline,
    wit: &str,
    workdir: &Path,
    logs: &Path,
    limits: Limits,
) -> Result<Vec<Script>> {
    let chunk = limits.max_array_size;
    if chunk == 0 {
        return Err(Error::Scheduler {
            command: "scontrol show config".into(),
            message:
                "the cluster disables job arrays (MaxArraySize = 0), and wit runs each stage as one"
                    .into(),
        });
    }
    let mut out = Vec::new();
    for i in 0..p.stages.len() {
        let stage = &p.stages[i];
        let chunks = stage.tasks.div_ceil(chunk);
        for c in 0..chunks {
            let first = c * chunk;
            let tasks = chunk.min(stage.tasks - first);
            out.push(chunk_script(
                p,
                i,
                wit,
                workdir,
                logs,
                (c, chunks, chunk),
                first,
                tasks,
            ));
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn chunk_script(
    p: &Pipeline,
    i: usize,
    wit: &str,
    workdir: &Path,
    logs: &Path,
    (c, chunks, chunk): (u32, u32, u32),
    first: u32,
    tasks: u32,
) -> Script {
    let stage_name = p.stage_name(i);
    let name = if chunks == 1 {
        stage_name.clone()
    } else {
        format!("{stage_name}.{c}")
    };
    let stage = &p.stages[i];
    let r = p.resources(i);
    let log_pattern = logs.join(format!("{name}-%a.log"));
    let mut t = String::new();
    t.push_str("#!/bin/bash\n");
    t.push_str(&format!(
        "# Generated by `wit slurm`: stage {} of {} of the pipeline over {}, `wit {}`, {} task(s).\n",
        i + 1,
        p.stages.len(),
        p.dataset,
        stage.command,
        stage.tasks
    ));
    if chunks > 1 {
        t.push_str(&format!(
            "# Chunk {} of {}: parts {first}-{} (the cluster's MaxArraySize allows {chunk} tasks an array).\n",
            c + 1,
            chunks,
            first + tasks - 1,
        ));
    }
    let sb = |t: &mut String, s: String| {
        t.push_str("#SBATCH ");
        t.push_str(&s);
        t.push('\n');
    };
    sb(&mut t, format!("--job-name=wit-{name}"));
    let throttle = r.throttle.map(|c| format!("%{c}")).unwrap_or_default();
    sb(&mut t, format!("--array=0-{}{throttle}", tasks - 1));
    sb(&mut t, "--ntasks=1".into());
    if let Some(c) = r.cpus {
        sb(&mut t, format!("--cpus-per-task={c}"));
    }
    if let Some(m) = &r.mem {
        sb(&mut t, format!("--mem={}M", slurm_mem_mib(m).unwrap_or(0)));
    }
    if let Some(time) = &r.time {
        sb(&mut t, format!("--time={time}"));
    }
    if let Some(part) = &r.partition {
        sb(&mut t, format!("--partition={part}"));
    }
    if let Some(acct) = &r.account {
        sb(&mut t, format!("--account={acct}"));
    }
    sb(&mut t, format!("--chdir={}", workdir.display()));
    sb(&mut t, format!("--output={}", log_pattern.display()));
    sb(&mut t, "--kill-on-invalid-dep=yes".into());
    t.push_str("set -euo pipefail\n");
    let part = if first == 0 {
        "\"$SLURM_ARRAY_TASK_ID\"".to_string()
    } else {
        format!("\"$((SLURM_ARRAY_TASK_ID + {first}))\"")
    };
    // `exec` below: the PID logged is wit's own.
    t.push_str(&format!(
        "echo \"wit-slurm: $SLURM_JOB_NAME task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT (part {}) on $(hostname) at $(date -u +%FT%TZ), pid $$\"\n",
        part.trim_matches('"')
    ));
    let args = p.task_args(i, &part, Some("\"${SLURM_CPUS_PER_TASK:-1}\""));
    let mut line = format!("exec {}", shell_quote(wit));
    for a in &args {
        line.push(' ');
        // The variable references stay unquoted-by-us (they carry their own quotes).
        if a.starts_with("\"$") {
            line.push_str(a);
        } else {
            line.push_str(&shell_quote(a));
        }
    }
    t.push_str(&line);
    t.push('\n');
    Script {
        stage: stage_name,
        name,
        stage_index: i,
        first,
        tasks,
        after_previous_chunk: c > 0 && r.throttle.is_some(),
        text: t,
        log_pattern,
    }
}

/// Writes the scripts into `dir` as `NAME.sbatch`; returns their paths.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn write_scripts(scripts: &[Script], dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut out = Vec::new();
    for s in scripts {
        let path = dir.join(format!("{}.sbatch", s.name));
        write_file(&path, &s.text)?;
        out.push(path);
    }
    Ok(out)
}

/// A submitted array: a whole stage or one chunk of it.
#[derive(Debug, Clone)]
pub struct Job {
    /// The stage's name (`02-match`).
    pub stage: String,
    /// The script's name (`02-match`, or `02-match.1` for a chunk).
    pub name: String,
    /// Slurm's job id of the array.
    pub id: String,
    /// The part index of its first task.
    pub first: u32,
    /// Its tasks.
    pub tasks: u32,
    /// Its tasks' logs, `%a` for the array index.
    pub log_pattern: PathBuf,
}

fn run(cmd: &mut Command) -> Result<String> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| Error::Scheduler {
        command: name.clone(),
        message: format!("cannot run it ({e}): is Slurm installed and on PATH?"),
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<String> = err
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.is_empty())
            .map(|l| own_words(&name, &l).to_string())
            .collect();
        return Err(Error::Scheduler {
            message: lines.join("; "),
            command: name,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A Slurm command's error line without the `sbatch: error: ` it starts
/// with, which the error's own `sbatch: ` prefix would repeat.
fn own_words<'a>(command: &str, line: &'a str) -> &'a str {
    let line = line
        .strip_prefix(command)
        .and_then(|l| l.strip_prefix(": "))
        .unwrap_or(line);
    line.strip_prefix("error: ").unwrap_or(line)
}

/// Submits the scripts in order: each chunk of a stage depends on every
/// chunk of the stage before (`afterok`), and a throttled stage's chunk on
/// the chunk before it (`afterany`); returns the jobs.
///
/// # Errors
/// [`Error::Scheduler`] with `sbatch`'s message, where a script is refused:
/// the jobs already submitted are cancelled (`scancel`) and named.
pub fn submit(scripts: &[Script], paths: &[PathBuf]) -> Result<Vec<Job>> {
    let mut jobs: Vec<Job> = Vec::new();
    for (s, path) in scripts.iter().zip(paths) {
        match submit_one(s, path, &jobs, scripts) {
            Ok(job) => jobs.push(job),
            Err(e) => return Err(withdraw(&s.name, e, &jobs)),
        }
    }
    Ok(jobs)
}

fn submit_one(s: &Script, path: &Path, earlier: &[Job], scripts: &[Script]) -> Result<Job> {
    let mut deps = Vec::new();
    if s.stage_index > 0 {
        let before: Vec<&str> = earlier
            .iter()
            .zip(scripts)
            .filter(|(_, sc)| sc.stage_index + 1 == s.stage_index)
            .map(|(j, _)| j.id.as_str())
            .collect();
        deps.push(format!("afterok:{}", before.join(":")));
    }
    if s.after_previous_chunk
        && let Some(prev) = earlier.last()
    {
        deps.push(format!("afterany:{}", prev.id));
    }
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable");
    if !deps.is_empty() {
        cmd.arg(format!("--dependency={}", deps.join(",")));
    }
    cmd.arg(path);
    let out = run(&mut cmd)?;
    // `--parsable` prints `ID` or `ID;CLUSTER`.
    let id = out.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Scheduler {
            command: "sbatch".into(),
            message: format!("unexpected answer `{}`", out.trim()),
        });
    }
    tracing::info!(
        "slurm: submitted {} as job {id} (parts {}-{})",
        s.name,
        s.first,
        s.first + s.tasks - 1
    );
    Ok(Job {
        stage: s.stage.clone(),
        name: s.name.clone(),
        id,
        first: s.first,
        tasks: s.tasks,
        log_pattern: s.log_pattern.clone(),
    })
}

/// The error of a refused submission, after cancelling what was submitted
/// before it: nothing of a half-submitted pipeline is left running unnamed.
fn withdraw(refused: &str, e: Error, submitted: &[Job]) -> Error {
    let (command, message) = match e {
        Error::Scheduler { command, message } => (command, message),
        other => ("sbatch".to_string(), other.to_string()),
    };
    let mut message = format!("{refused} was refused: {message}");
    if !submitted.is_empty() {
        let ids: Vec<&str> = submitted.iter().map(|j| j.id.as_str()).collect();
        let names: Vec<String> = submitted
            .iter()
            .map(|j| format!("{} (job {})", j.name, j.id))
            .collect();
        match run(Command::new("scancel").args(&ids)) {
            Ok(_) => message.push_str(&format!(
                ". Cancelled what was already submitted: {}",
                names.join(", ")
            )),
            Err(c) => message.push_str(&format!(
                ". These were already submitted and could not be cancelled ({c}): {}",
                names.join(", ")
            )),
        }
    }
    if message.contains("MaxSubmit") || message.contains("submit limit") {
        message.push_str(
            " (the cluster limits how many tasks you may queue: give the stages fewer tasks, or submit the later stages as a second pipeline once the first ends)",
        );
    }
    Error::Scheduler { command, message }
}

/// The end state of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEnd {
    /// The stage.
    pub stage: String,
    /// The task's part index (its share of the stage).
    pub task: u32,
    /// Slurm's state: `COMPLETED`, `FAILED`, `CANCELLED`, `TIMEOUT`, `OUT_OF_MEMORY`, ...
    pub state: String,
    /// Slurm's `ExitCode` (`2:0`: exit status 2, no signal).
    pub exit_code: String,
    /// The task's log.
    pub log: PathBuf,
}

/// Waits until none of `jobs` is pending or running (polling `squeue` every
/// `poll`), calling `progress` with a one-line state whenever it changes;
/// then returns every task's end state from `scontrol show job`.
///
/// # Errors
/// [`Error::Scheduler`] if `squeue` or `scontrol` fail.
pub fn follow(
    jobs: &[Job],
    poll: Duration,
    mut progress: impl FnMut(&str),
) -> Result<Vec<TaskEnd>> {
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    let mut last = String::new();
    loop {
        let out =
            run(Command::new("squeue").args(["-h", "-r", "-o", "%i %T", "-j", &ids.join(",")]))?;
        let mut by_state: BTreeMap<String, u32> = BTreeMap::new();
        for line in out.lines() {
            if let Some((_, state)) = line.split_once(' ') {
                *by_state.entry(state.trim().to_string()).or_default() += 1;
            }
        }
        if by_state.is_empty() {
            break;
        }
        let line: Vec<String> = by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
        let line = format!("slurm: tasks {}", line.join(", "));
        if line != last {
            progress(&line);
            last = line;
        }
        std::thread::sleep(poll);
    }
    let mut ends = Vec::new();
    for job in jobs {
        let out = run(Command::new("scontrol").args(["show", "job", "-o", &job.id]))?;
        let mut seen: BTreeMap<u32, TaskEnd> = BTreeMap::new();
        for record in out.lines().filter(|l| !l.trim().is_empty()) {
            let field = |key: &str| {
                record
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                    .unwrap_or("")
                    .to_string()
            };
            let state = field("JobState");
            let exit_code = field("ExitCode");
            for index in task_ids(&field("ArrayTaskId"), job.tasks) {
                seen.insert(
                    index,
                    TaskEnd {
                        stage: job.stage.clone(),
                        task: job.first + index,
                        state: state.clone(),
                        exit_code: exit_code.clone(),
                        log: log_path(&job.log_pattern, index),
                    },
                );
            }
        }
        for index in 0..job.tasks {
            ends.push(seen.remove(&index).unwrap_or(TaskEnd {
                stage: job.stage.clone(),
                task: job.first + index,
                // Purged from the controller (MinJobAge) before it was read.
                state: "UNKNOWN".into(),
                exit_code: String::new(),
                log: log_path(&job.log_pattern, index),
            }));
        }
    }
    Ok(ends)
}

/// The task indices of an `ArrayTaskId` value: `3`, `0-2`, `0-7%2`, `1,4-5`.
fn task_ids(s: &str, tasks: u32) -> Vec<u32> {
    let s = s.split('%').next().unwrap_or("");
    let mut out = Vec::new();
    for piece in s.split(',').filter(|p| !p.is_empty()) {
        match piece.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b.min(tasks.saturating_sub(1)));
                }
            }
            None => out.extend(piece.parse::<u32>().ok()),
        }
    }
    out
}

/// The last non-empty line of a task's log (where `wit` prints its one-line error).
pub fn last_log_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::to_string)
}

/// Says what failed: each task that did not complete, by stage and number,
/// with its state, exit code and the last line of its log.
///
/// # Errors
/// [`Error::TasksFailed`] if any task did not complete.
pub fn check(ends: &[TaskEnd]) -> Result<()> {
    let failed: Vec<&TaskEnd> = ends.iter().filter(|e| e.state != "COMPLETED").collect();
    if failed.is_empty() {
        return Ok(());
    }
    let mut lines = Vec::new();
    for e in &failed {
        let why = match e.state.as_str() {
            "CANCELLED" if !e.log.exists() => "never started: a stage before it failed".to_string(),
            _ => last_log_line(&e.log).unwrap_or_else(|| "no log".into()),
        };
        lines.push(format!(
            "{} task {} {} (exit {}): {why} [{}]",
            e.stage,
            e.task,
            e.state,
            e.exit_code,
            e.log.display()
        ));
    }
    Err(Error::TasksFailed(format!(
        "{} of {} tasks did not complete (resubmit the pipeline to run only what is missing): {}",
        failed.len(),
        ends.len(),
        lines.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_task_ids() {
        assert_eq!(task_ids("3", 5), vec![3]);
        assert_eq!(task_ids("0-2", 5), vec![0, 1, 2]);
        assert_eq!(task_ids("0-7%2", 3), vec![0, 1, 2]);
        assert_eq!(task_ids("1,3-4", 5), vec![1, 3, 4]);
        assert!(task_ids("", 3).is_empty());
    }

    #[test]
    fn scripts_chain_arrays_with_throttle_resources_and_the_part_index() {
        let p = Pipeline::parse(
            r#"
dataset = "s3://b/my data"
[resources]
cpus = 2
mem = "4G"
time = "01:00:00"
throttle = 2
[[stage]]
command = "match"
args = ["--lang", "en"]
tasks = 3
"#,
            "p.toml",
        )
        .unwrap();
        let s = &scripts(
            &p,
            "/opt/wit",
            Path::new("/work"),
            Path::new("/logs"),
            Limits::DEFAULT,
        )
        .unwrap()[0];
        for want in [
            "#SBATCH --array=0-2%2",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --mem=4096M",
            "#SBATCH --time=01:00:00",
            "#SBATCH --output=/logs/01-match-%a.log",
            "#SBATCH --kill-on-invalid-dep=yes",
            "#SBATCH --chdir=/work",
            "exec /opt/wit match --lang en --dataset 's3://b/my data' --parts 3 --part \"$SLURM_ARRAY_TASK_ID\" --jobs \"${SLURM_CPUS_PER_TASK:-1}\"",
        ] {
            assert!(s.text.contains(want), "{want} not in\n{}", s.text);
        }
        // The script is valid bash.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sh");
        std::fs::write(&path, &s.text).unwrap();
        let ok = Command::new("bash").arg("-n").arg(&path).status().unwrap();
        assert!(ok.success());
    }

    #[test]
    fn a_stage_larger_than_max_array_size_is_split_into_chunks_that_cover_its_parts() {
        let p = Pipeline::parse(
            r#"
dataset = "ds"
wit = "echo"
[[stage]]
command = "match"
tasks = 5
[[stage]]
command = "balance"
tasks = 2
throttle = 1
"#,
            "p.toml",
        )
        .unwrap();
        let limits = Limits::parse(
            "Configuration data as of x\nMaxArraySize            = 2\nMaxJobCount = 10000\n",
        );
        assert_eq!(limits, Limits { max_array_size: 2 });
        let all = scripts(&p, "echo", Path::new("/work"), Path::new("/logs"), limits).unwrap();
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["01-match.0", "01-match.1", "01-match.2", "02-balance"]
        );
        let spans: Vec<(u32, u32)> = all.iter().map(|s| (s.first, s.tasks)).collect();
        assert_eq!(spans, [(0, 2), (2, 2), (4, 1), (0, 2)]);
        assert!(all.iter().all(|s| !s.after_previous_chunk));
        assert!(
            all[2].text.contains("#SBATCH --array=0-0\n"),
            "{}",
            all[2].text
        );
        // Each array index runs its own part, as bash expands it.
        let dir = tempfile::tempdir().unwrap();
        let mut parts = Vec::new();
        for s in &all[..3] {
            let path = dir.path().join(&s.name);
            std::fs::write(&path, &s.text).unwrap();
            for index in 0..s.tasks {
                let out = Command::new("bash")
                    .arg(&path)
                    .env("SLURM_ARRAY_TASK_ID", index.to_string())
                    .env("SLURM_ARRAY_TASK_COUNT", s.tasks.to_string())
                    .env("SLURM_JOB_NAME", &s.name)
                    .output()
                    .unwrap();
                assert!(out.status.success());
                let line = String::from_utf8(out.stdout).unwrap();
                let part = line
                    .lines()
                    .last()
                    .unwrap()
                    .split("--part ")
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_string();
                parts.push(part.parse::<u32>().unwrap());
                assert_eq!(
                    s.log(index),
                    PathBuf::from(format!("/logs/{}-{index}.log", s.name))
                );
            }
        }
        assert_eq!(parts, [0, 1, 2, 3, 4]);
        // A throttled stage's chunks run one after another.
        let one = Limits { max_array_size: 1 };
        let all = scripts(&p, "echo", Path::new("/w"), Path::new("/l"), one).unwrap();
        let chained: Vec<bool> = all.iter().map(|s| s.after_previous_chunk).collect();
        assert_eq!(chained, [false, false, false, false, false, false, true]);
        assert!(
            scripts(
                &p,
                "echo",
                Path::new("/w"),
                Path::new("/l"),
                Limits { max_array_size: 0 }
            )
            .is_err()
        );
    }

    #[test]
    fn a_slurm_error_line_is_not_prefixed_twice() {
        let e = Error::Scheduler {
            command: "sbatch".into(),
            message: own_words(
                "sbatch",
                "sbatch: error: Batch job submission failed: Invalid job array specification",
            )
            .into(),
        };
        assert_eq!(
            e.to_string(),
            "sbatch: Batch job submission failed: Invalid job array specification"
        );
        assert_eq!(
            own_words("squeue", "slurm_load_jobs error: x"),
            "slurm_load_jobs error: x"
        );
    }
}
