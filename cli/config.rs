//! The TOML config file: keys mirror the long flags, flags win.
//!
//! ```toml
//! dataset = "runs/demo"      # top level: every command that has --dataset
//! jobs = 4
//!
//! [match]                    # one command
//! lowercase = true
//!
//! [queries.import]           # a nested command
//! force = true
//! ```
//!
//! The file is applied by turning its entries into flags for the arguments
//! that the command line left unset, and parsing again, so that config values
//! go through exactly the same validation as flags. Keys may be written with
//! `-` or `_`. Relative paths are taken from the current directory, as on the
//! command line. Unknown tables and keys are errors, so typos do not pass
//! silently.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Result, anyhow};
use clap::{ArgAction, ArgMatches, Command, parser::ValueSource};

use crate::BadUsage;

/// The `[store]` table of the config file at `path`: options of the object
/// stores (`aws_endpoint = "https://..."`, `aws_region`, `aws_allow_http`,
/// credentials), which override the environment's. Read after
/// [`extra_args`], which has checked the file.
///
/// # Errors
/// [`BadUsage`] naming the file if it cannot be read or parsed.
pub fn store_options(path: &Path) -> Result<Vec<(String, String)>> {
    let bad = |msg: String| anyhow!(BadUsage(format!("config file {}: {msg}", path.display())));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
    let Some(store) = table.get("store").and_then(toml::Value::as_table) else {
        return Ok(Vec::new());
    };
    Ok(store
        .iter()
        .map(|(k, v)| {
            let v = match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect())
}

/// The flags that the config file at `path` adds to the command line whose
/// parse is `matches`: one for each key that applies to the command being run
/// and whose argument the command line (or the environment) did not set.
///
/// # Errors
/// [`BadUsage`] naming the file if it cannot be read or parsed, or holds an
/// unknown command, an unknown key or a value of the wrong kind.
pub fn extra_args(cli: &Command, matches: &ArgMatches, path: &Path) -> Result<Vec<OsString>> {
    let bad = |msg: String| anyhow!(BadUsage(format!("config file {}: {msg}", path.display())));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
    validate(cli, &table, "").map_err(bad)?;

    // Follow the subcommands given on the command line down to the one that runs.
    let (mut leaf, mut leaf_m, mut node) = (cli, matches, Some(&table));
    let mut names = Vec::new();
    while let Some((sub, sub_m)) = leaf_m.subcommand() {
        leaf = leaf
            .find_subcommand(sub)
            .ok_or_else(|| anyhow!("clap returned an unknown subcommand {sub}"))?;
        leaf_m = sub_m;
        node = node
            .and_then(|t| t.get(sub))
            .and_then(toml::Value::as_table);
        names.push(sub);
    }
    // Top-level keys first, then the command's own table, which wins for the
    // same flag (keyed by argument id, so `jobs` and `[match] jobs` give one flag).
    let top = table
        .iter()
        .filter(|(k, v)| !v.is_table() && has_flag(leaf, k));
    let own = node
        .filter(|_| !names.is_empty())
        .into_iter()
        .flat_map(|t| t.iter().filter(|(_, v)| !v.is_table()));
    let mut chosen: Vec<(&clap::Arg, &String, &toml::Value)> = Vec::new();
    for (key, value) in top.chain(own) {
        let arg = leaf
            .get_arguments()
            .find(|a| flag_is(a, key))
            .expect("validated above");
        chosen.retain(|(a, _, _)| a.get_id() != arg.get_id());
        chosen.push((arg, key, value));
    }

    let given = |a: &clap::Arg| {
        matches!(
            leaf_m.value_source(a.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let mut extra = Vec::new();
    for (arg, key, value) in chosen {
        // Flags and environment variables win, over the same argument and over
        // arguments it conflicts with (`verbose = 1` in the file, `-q` given).
        if given(arg) || leaf.get_arg_conflicts_with(arg).into_iter().any(given) {
            continue;
        }
        let flags = arg_flags(arg, value)
            .map_err(|what| bad(format!("`{key}` takes {what}, not {value}")))?;
        extra.extend(flags);
    }
    Ok(extra)
}

/// The flags that give `arg` the value `value`: none for `false`, the flag
/// alone for `true`, the flag once per item of an array (once with an empty
/// value for an empty array: "none"), `--flag=value` otherwise.
///
/// # Errors
/// What `arg` takes instead, where `value` is of another kind.
pub fn arg_flags(
    arg: &clap::Arg,
    value: &toml::Value,
) -> std::result::Result<Vec<OsString>, &'static str> {
    let long = arg.get_long().expect("config keys name long flags");
    let mut extra = Vec::new();
    match (arg.get_action(), value) {
        (ArgAction::SetTrue, toml::Value::Boolean(b)) => {
            if *b {
                extra.push(format!("--{long}").into());
            }
        }
        (ArgAction::SetTrue, _) => return Err("true or false"),
        (ArgAction::Count, toml::Value::Integer(n)) if *n >= 0 => {
            extra.extend((0..*n).map(|_| OsString::from(format!("--{long}"))));
        }
        (ArgAction::Count, _) => return Err("a count"),
        (ArgAction::Append, toml::Value::Array(items)) => {
            for item in items {
                let item = scalar(item).ok_or("an array of strings or numbers")?;
                extra.push(format!("--{long}={item}").into());
            }
            if items.is_empty() {
                extra.push(format!("--{long}=").into());
            }
        }
        (_, v) => {
            let v = scalar(v).ok_or("a string or a number")?;
            extra.push(format!("--{long}={v}").into());
        }
    }
    Ok(extra)
}

/// Checks every table and key of `table` against the commands and flags of
/// `cmd` (named `name`), so that typos are caught even for commands not run now.
fn validate(cmd: &Command, table: &toml::Table, name: &str) -> std::result::Result<(), String> {
    for (key, value) in table {
        let full = if name.is_empty() {
            key.clone()
        } else {
            format!("{name}.{key}")
        };
        match value {
            // Store options (credentials, endpoint), not flags: `store_options`.
            toml::Value::Table(sub) if name.is_empty() && key == "store" => {
                for (k, v) in sub {
                    if !wit_contract::store::known_option(k) {
                        return Err(format!(
                            "[store] has an unknown key `{k}`: expected an object_store option such as aws_endpoint, aws_region, aws_allow_http, aws_access_key_id"
                        ));
                    }
                    if !matches!(v, toml::Value::String(_) | toml::Value::Boolean(_)) {
                        return Err(format!("[store] {k}: expected a string or true/false"));
                    }
                }
            }
            toml::Value::Table(sub) => {
                let sub_cmd = cmd
                    .find_subcommand(key)
                    .ok_or_else(|| format!("[{full}] is not a wit command"))?;
                validate(sub_cmd, sub, &full)?;
            }
            _ if name.is_empty() => {
                if !any_command_has(cmd, key) {
                    return Err(format!(
                        "unknown key `{key}`: no wit command has --{}",
                        dashes(key)
                    ));
                }
            }
            _ => {
                if !has_flag(cmd, key) {
                    return Err(format!(
                        "[{name}] has an unknown key `{key}`: wit {} has no --{}",
                        name.replace('.', " "),
                        dashes(key)
                    ));
                }
            }
        }
    }
    Ok(())
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

fn dashes(key: &str) -> String {
    key.replace('_', "-")
}

fn flag_is(arg: &clap::Arg, key: &str) -> bool {
    let key = dashes(key);
    key != "config"
        && (arg.get_long() == Some(key.as_str())
            || arg
                .get_visible_aliases()
                .is_some_and(|a| a.contains(&key.as_str())))
}

fn has_flag(cmd: &Command, key: &str) -> bool {
    cmd.get_arguments().any(|a| flag_is(a, key))
}

fn any_command_has(cmd: &Command, key: &str) -> bool {
    has_flag(cmd, key) || cmd.get_subcommands().any(|s| any_command_has(s, key))
}
