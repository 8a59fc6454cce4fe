//! `wit download` run again on a stage that holds an earlier run's work (a
//! retry with `--retry-failed`, a resume after a kill, `--plan-only`) takes
//! that run's parameters (from its manifest, else a committed part's
//! sidecar) for every flag that the command line, the environment and the
//! config file left unset, so that it needs no more flags than the run it
//! continues; one that sets a parameter to another value is refused naming
//! it, and `--force` starts over with the flags as given.

use std::ffi::OsString;

use anyhow::{Result, anyhow};
use clap::{ArgMatches, Command, parser::ValueSource};
use wit_contract::{Dataset, Stage};

use crate::BadUsage;

/// The flag of a recorded `wit download` parameter (`DownloadOptions::params`),
/// and whether the flag says the opposite of the parameter; `None` for
/// parameters that are not flags.
fn download_flag(key: &str) -> Option<(String, bool)> {
    match key {
        "balanced_params_hash" => None,
        "min_side" => Some(("min-image-size".into(), false)),
        "opt_out" => Some(("disallowed-header-directives".into(), false)),
        "robots" => Some(("ignore-robots".into(), true)),
        other => Some((other.replace('_', "-"), false)),
    }
}

/// The flags to add to the command line parsed as `matches`: none unless it
/// runs `download` (without `--force`) on a stage that recorded its parameters.
/// Returns them with a line saying what was taken, for the log.
///
/// # Errors
/// [`BadUsage`] if the dataset cannot be read, or a recorded parameter has no
/// flag or a value the flag does not take.
pub fn flags(cli: &Command, matches: &ArgMatches) -> Result<(Vec<OsString>, Option<String>)> {
    let none = (Vec::new(), None);
    let Some(("download", m)) = matches.subcommand() else {
        return Ok(none);
    };
    if m.get_flag("force") {
        return Ok(none);
    }
    let cmd = cli
        .find_subcommand("download")
        .expect("download is a subcommand");
    let location = m
        .get_one::<std::path::PathBuf>("dataset")
        .expect("--dataset is required");
    let dataset = Dataset::open(&location.to_string_lossy())?;
    let Some(params) = wit_contract::recorded_params(&dataset.stage_dir(Stage::Shards))? else {
        return Ok(none);
    };
    let Some(params) = params.as_object() else {
        return Ok(none);
    };
    let bad = |msg: String| {
        anyhow!(BadUsage(format!(
            "download: the earlier run's parameters: {msg} (--force starts over)"
        )))
    };
    let mut extra = Vec::new();
    for (key, value) in params {
        let Some((flag, inverted)) = download_flag(key) else {
            continue;
        };
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()))
            .ok_or_else(|| {
                bad(format!(
                    "the earlier run recorded {key}, which this wit has no flag for"
                ))
            })?;
        if matches!(
            m.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let value = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::Bool(b) => toml::Value::Boolean(*b != inverted),
            other => toml::Value::try_from(other)
                .map_err(|e| bad(format!("the earlier run's {key} ({other}): {e}")))?,
        };
        let flags = crate::config::arg_flags(arg, &value)
            .map_err(|what| bad(format!("the earlier run's {key} is not {what}: {value}")))?;
        // A value the flag has by default needs no flag (and no mention).
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        let given: Vec<String> = flags
            .iter()
            .filter_map(|f| f.to_str()?.split_once('=').map(|(_, v)| v.to_string()))
            .collect();
        if !given.is_empty() && given.join(",") == defaults.join(",") {
            continue;
        }
        extra.extend(flags);
    }
    let said: Vec<String> = extra
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    let note = (!said.is_empty()).then(|| {
        format!(
            "shards: the earlier run's parameters where not given: {}",
            said.join(" ")
        )
    });
    Ok((extra, note))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every parameter a download records is a flag of `wit download`.
    #[test]
    fn every_recorded_download_parameter_has_its_flag() {
        let cli = crate::args::Cli::command();
        let cmd = cli.find_subcommand("download").unwrap();
        let params = wit_shards::DownloadOptions::default().params("h");
        let keys: Vec<&String> = params.as_object().unwrap().keys().collect();
        assert!(keys.len() > 10, "{keys:?}");
        for key in keys {
            let Some((flag, _)) = download_flag(key) else {
                continue;
            };
            assert!(
                cmd.get_arguments()
                    .any(|a| a.get_long() == Some(flag.as_str())),
                "{key}: no --{flag}"
            );
        }
    }
}
