//! The pipeline description: which stages run over which dataset, with
//! what flags, how many tasks and what resources.
//!
//! ```toml
//! dataset = "s3://bucket/corpus"   # a path on a shared file system, or a store URL
//! wit = "/opt/wit/bin/wit"         # the binary on the compute nodes (default: this one)
//! logs = "wit-logs"                # one log per task (default: wit-logs)
//!
//! [resources]                      # defaults of every stage
//! cpus = 4                         # per task
//! mem = "8G"                       # per task, Slurm's units (K, M, G, T)
//! time = "04:00:00"
//! throttle = 64                    # tasks of one stage running at once (sbatch --array=...%C)
//! partition = "cpu"                # optional; also `account`
//!
//! [[stage]]
//! command = "extract"
//! args = ["--paths", "wat.paths.gz", "--base-url", "https://data.commoncrawl.org/"]
//! tasks = 100
//!
//! [[stage]]
//! command = "match"
//! args = ["--lang", "en"]
//! tasks = 20
//! mem = "16G"                      # overrides the default
//! ```
//!
//! Credentials are never written here: Slurm passes the submitting shell's
//! environment (`AWS_*`) to the tasks; Kubernetes takes them from a Secret.

use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result};

/// Commands that split into parts with `--parts N --part I`.
pub const PARTITIONED: &[&str] = &["extract", "match", "balance", "download"];

/// Commands a pipeline may run, and how each is given the dataset.
const COMMANDS: &[(&str, DatasetFlag)] = &[
    ("queries build", DatasetFlag::Option),
    ("queries import", DatasetFlag::Option),
    ("crawl", DatasetFlag::Option),
    ("extract", DatasetFlag::Option),
    ("match", DatasetFlag::Option),
    ("balance", DatasetFlag::Option),
    ("download", DatasetFlag::Option),
    ("stats", DatasetFlag::Positional),
    ("train", DatasetFlag::Option),
    ("eval", DatasetFlag::None),
    ("status", DatasetFlag::Positional),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DatasetFlag {
    Option,
    Positional,
    None,
}

/// Resources of one task; unset values fall back to the pipeline's defaults,
/// then to the scheduler's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU cores per task (`--cpus-per-task`; also the stage's `--jobs`).
    pub cpus: Option<u32>,
    /// Memory per task, in Slurm's units (`512M`, `8G`).
    pub mem: Option<String>,
    /// Time limit per task (`HH:MM:SS`, `D-HH:MM:SS` or minutes).
    pub time: Option<String>,
    /// At most this many tasks of the stage at once.
    pub throttle: Option<u32>,
    /// The Slurm partition.
    pub partition: Option<String>,
    /// The Slurm account.
    pub account: Option<String>,
}

impl Resources {
    /// `self`, with unset values taken from `defaults`.
    pub fn or(&self, defaults: &Resources) -> Resources {
        Resources {
            cpus: self.cpus.or(defaults.cpus),
            mem: self.mem.clone().or_else(|| defaults.mem.clone()),
            time: self.time.clone().or_else(|| defaults.time.clone()),
            throttle: self.throttle.or(defaults.throttle),
            partition: self
                .partition
                .clone()
                .or_else(|| defaults.partition.clone()),
            account: self.account.clone().or_else(|| defaults.account.clone()),
        }
    }
}

/// One stage of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageJob {
    /// The `wit` command: `match`, `queries import`, ...
    pub command: String,
    /// Its flags and arguments, without the dataset, `--parts` and `--part`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Tasks (`--parts`); more than one only for the partitioned commands.
    #[serde(default = "one")]
    pub tasks: u32,
    /// Resources over the pipeline's defaults.
    #[serde(flatten)]
    pub resources: Resources,
}

fn one() -> u32 {
    1
}

/// A pipeline: stages over one dataset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// The dataset every stage reads and writes (a path or a store URL).
    pub dataset: String,
    /// The `wit` binary on the compute nodes.
    pub wit: Option<String>,
    /// The directory of the tasks' logs.
    pub logs: Option<String>,
    /// The container image for Kubernetes.
    pub image: Option<String>,
    /// Defaults of every stage.
    #[serde(default)]
    pub resources: Resources,
    /// The stages, in the order they run.
    #[serde(rename = "stage", default)]
    pub stages: Vec<StageJob>,
}

impl Pipeline {
    /// Reads and checks a pipeline file.
    ///
    /// # Errors
    /// [`Error::Pipeline`] naming the file and what is wrong with it.
    pub fn read(path: &Path) -> Result<Pipeline> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Pipeline {
            path: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        Pipeline::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a pipeline from TOML text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`Error::Pipeline`].
    pub fn parse(text: &str, origin: &str) -> Result<Pipeline> {
        let bad = |message: String| Error::Pipeline {
            path: origin.to_string(),
            message,
        };
        let p: Pipeline = toml::from_str(text).map_err(|e| {
            bad(e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "))
        })?;
        if p.stages.is_empty() {
            return Err(bad("no [[stage]]: nothing to run".into()));
        }
        for (i, s) in p.stages.iter().enumerate() {
            let Some(kind) = dataset_flag(&s.command) else {
                let known: Vec<&str> = COMMANDS.iter().map(|c| c.0).collect();
                return Err(bad(format!(
                    "stage {}: unknown command `{}`; expected one of {}",
                    i + 1,
                    s.command,
                    known.join(", ")
                )));
            };
            if s.tasks == 0 {
                return Err(bad(format!(
                    "stage {} ({}): tasks must be at least 1",
                    i + 1,
                    s.command
                )));
            }
            if s.tasks > 1 && !PARTITIONED.contains(&s.command.as_str()) {
                return Err(bad(format!(
                    "stage {} ({}): runs as one task; only {} split into parts",
                    i + 1,
                    s.command,
                    PARTITIONED.join(", ")
                )));
            }
            let reserved: &[&str] = match kind {
                DatasetFlag::Option => &["--dataset", "-d", "--out", "--parts", "--part"],
                _ => &["--parts", "--part"],
            };
            if let Some(a) = s.args.iter().find(|a| {
                let flag = a.split('=').next().unwrap_or(a);
                reserved.contains(&flag)
            }) {
                return Err(bad(format!(
                    "stage {} ({}): `{a}` is set by the pipeline (dataset, tasks); leave it out of args",
                    i + 1,
                    s.command
                )));
            }
            if let Some(m) = &s.resources.mem.as_ref().or(p.resources.mem.as_ref())
                && slurm_mem_mib(m).is_none()
            {
                return Err(bad(format!(
                    "stage {} ({}): mem `{m}`: expected a number with K, M, G or T",
                    i + 1,
                    s.command
                )));
            }
        }
        Ok(p)
    }

    /// The resources of stage `i`, defaults applied.
    pub fn resources(&self, i: usize) -> Resources {
        self.stages[i].resources.or(&self.resources)
    }

    /// A short name for stage `i`, unique in the pipeline: `02-match`.
    pub fn stage_name(&self, i: usize) -> String {
        format!("{:02}-{}", i + 1, self.stages[i].command.replace(' ', "-"))
    }

    /// The `wit` command line of one task of stage `i`, without the binary;
    /// `part` is what the scheduler substitutes for the task's index (an
    /// environment variable reference), `jobs` likewise for its CPU count.
    pub fn task_args(&self, i: usize, part: &str, jobs: Option<&str>) -> Vec<String> {
        let s = &self.stages[i];
        let mut args: Vec<String> = s.command.split(' ').map(str::to_string).collect();
        args.extend(s.args.iter().cloned());
        match dataset_flag(&s.command) {
            Some(DatasetFlag::Option) => {
                args.push("--dataset".into());
                args.push(self.dataset.clone());
            }
            Some(DatasetFlag::Positional) => args.push(self.dataset.clone()),
            _ => {}
        }
        if PARTITIONED.contains(&s.command.as_str()) {
            args.extend([
                "--parts".into(),
                s.tasks.to_string(),
                "--part".into(),
                part.into(),
            ]);
            if let Some(j) = jobs
                && !s.args.iter().any(|a| a.starts_with("--jobs"))
            {
                args.extend(["--jobs".into(), j.into()]);
            }
        }
        args
    }
}

fn dataset_flag(command: &str) -> Option<DatasetFlag> {
    COMMANDS.iter().find(|c| c.0 == command).map(|c| c.1)
}

/// A Slurm memory size (`512M`, `8G`, a bare number of MiB) in MiB.
pub fn slurm_mem_mib(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => s.split_at(at),
        None => (s, "M"),
    };
    let n: u64 = num.parse().ok()?;
    let mult = match unit
        .trim_end_matches(['B', 'b'])
        .to_ascii_uppercase()
        .as_str()
    {
        "K" => return Some(n.div_ceil(1024)),
        "M" | "" => 1,
        "G" => 1024,
        "T" => 1024 * 1024,
        _ => return None,
    };
    Some(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
dataset = "s3://b/p"
[resources]
cpus = 2
mem = "4G"
[[stage]]
command = "queries import"
args = ["q.txt"]
[[stage]]
command = "match"
args = ["--lang", "en"]
tasks = 3
mem = "8G"
[[stage]]
command = "stats"
"#;

    #[test]
    fn parses_stages_with_defaults_and_builds_task_command_lines() {
        let p = Pipeline::parse(EXAMPLE, "p.toml").unwrap();
        assert_eq!(p.stages.len(), 3);
        assert_eq!(p.resources(1).mem.as_deref(), Some("8G"));
        assert_eq!(p.resources(1).cpus, Some(2));
        assert_eq!(p.stage_name(0), "01-queries-import");
        assert_eq!(
            p.task_args(1, "$I", Some("$C")).join(" "),
            "match --lang en --dataset s3://b/p --parts 3 --part $I --jobs $C"
        );
        assert_eq!(
            p.task_args(0, "$I", None).join(" "),
            "queries import q.txt --dataset s3://b/p"
        );
        assert_eq!(p.task_args(2, "$I", None).join(" "), "stats s3://b/p");
    }

    #[test]
    fn bad_pipelines_say_which_stage_and_why() {
        let cases = [
            ("dataset = \"d\"", "no [[stage]]"),
            (
                "dataset = \"d\"\n[[stage]]\ncommand = \"frobnicate\"",
                "unknown command `frobnicate`",
            ),
            (
                "dataset = \"d\"\n[[stage]]\ncommand = \"crawl\"\ntasks = 4",
                "runs as one task",
            ),
            (
                "dataset = \"d\"\n[[stage]]\ncommand = \"match\"\nargs = [\"--parts\", \"2\"]",
                "set by the pipeline",
            ),
            (
                "dataset = \"d\"\n[[stage]]\ncommand = \"match\"\nmem = \"lots\"",
                "mem `lots`",
            ),
            (
                "dataset = \"d\"\n[[stage]]\ncommand = \"match\"\ncpu = 2",
                "unknown field",
            ),
        ];
        for (text, want) in cases {
            let e = Pipeline::parse(text, "p.toml").unwrap_err().to_string();
            assert!(e.starts_with("p.toml: ") && e.contains(want), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(slurm_mem_mib("4G"), Some(4096));
        assert_eq!(slurm_mem_mib("512M"), Some(512));
        assert_eq!(slurm_mem_mib("2048"), Some(2048));
        assert_eq!(slurm_mem_mib("1T"), Some(1 << 20));
        assert_eq!(slurm_mem_mib("2GB"), Some(2048));
        assert_eq!(slurm_mem_mib("x"), None);
    }
}
