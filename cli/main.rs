//! `wit`: the command-line front of the pipeline.
//!
//! This binary only wires the stage libraries together: it parses flags and
//! the config file (`args.rs`, `config.rs`), sets up logs and progress
//! (`ui.rs`), turns arguments into library calls (`commands.rs`), reports a
//! dataset directory's state (`status.rs`), and maps
//! errors to exit codes: 0 done, 1 failed, 2 bad usage or bad input. Every
//! error is printed on one line that names the input it is about.

mod args;
mod commands;
mod config;
mod earlier;
mod status;
mod ui;
mod verdict;

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches};

use crate::args::Cli;

/// An error in what the user gave (flags, config file, input paths): exit code 2.
#[derive(Debug)]
pub struct BadUsage(pub String);

impl fmt::Display for BadUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadUsage {}

fn main() -> ExitCode {
    let (cli, note) = match parse(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    ui::init_logging(cli.verbose, cli.quiet);
    if let Some(note) = note {
        tracing::info!("{note}");
    }
    let result = commands::run(cli);
    let code = match &result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A dataset on a store is named by its URL, not its working directory.
            eprintln!("error: {}", wit_contract::store::display(&message(e)));
            ExitCode::from(exit_code(e))
        }
    };
    wit_contract::store::release_mirrors();
    code
}

/// Parses the command line, applying the config file if one is given, then
/// (for `download` on a stage that holds earlier work) the earlier run's
/// parameters; returns a line to log about the latter.
fn parse(mut argv: Vec<OsString>) -> Result<(Cli, Option<String>), ExitCode> {
    let mut cmd = args::negative_numbers_are_values(Cli::command());
    cmd.build();
    let mut matches = cmd.clone().try_get_matches_from(&argv).map_err(clap_exit)?;
    let fail = |e: anyhow::Error| {
        eprintln!("error: {e:#}");
        ExitCode::from(exit_code(&e))
    };
    if let Some(path) = matches.get_one::<PathBuf>("config").cloned() {
        let extra = config::extra_args(&cmd, &matches, &path).map_err(fail)?;
        let store = config::store_options(&path).map_err(fail)?;
        wit_contract::store::set_options(store);
        if !extra.is_empty() {
            splice(&mut argv, extra);
            matches = cmd.clone().try_get_matches_from(&argv).map_err(|e| {
                eprintln!("error: config file {}: {}", path.display(), one_line(&e));
                ExitCode::from(2)
            })?;
        }
    }
    let (extra, note) = earlier::flags(&cmd, &matches).map_err(fail)?;
    if !extra.is_empty() {
        splice(&mut argv, extra);
        matches = cmd.try_get_matches_from(&argv).map_err(|e| {
            eprintln!(
                "error: download with the earlier run's parameters: {}",
                one_line(&e)
            );
            ExitCode::from(2)
        })?;
    }
    let cli = Cli::from_arg_matches(&matches).map_err(clap_exit)?;
    Ok((cli, note))
}

/// Adds `extra` flags to `argv`, before a `--` if there is one.
fn splice(argv: &mut Vec<OsString>, extra: Vec<OsString>) {
    let at = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    argv.splice(at..at, extra);
}

/// Prints a clap error (on one line) or the help it asks for, and picks the exit code.
fn clap_exit(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            eprintln!("error: {} (try --help)", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// A clap error's message without its usage block and tips, on one line.
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut parts = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if line.is_empty() || line.starts_with("tip:") {
            continue;
        }
        parts.push(line.strip_prefix("error: ").unwrap_or(line));
    }
    parts.join(" ")
}

/// The error and its causes on one line, leaving out causes that the
/// message already quotes (wrapped I/O errors do).
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace('\n', " ")
}

/// 2 for errors in what the user gave, 1 for failures of the run.
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.is::<BadUsage>() {
            return 2;
        }
        if let Some(w) = cause.downcast_ref::<wit_contract::Error>() {
            return if w.is_bad_input() { 2 } else { 1 };
        }
        if let Some(w) = cause.downcast_ref::<wit_sched::Error>() {
            return if w.is_bad_input() { 2 } else { 1 };
        }
        if let Some(w) = cause.downcast_ref::<wit_trainer::Error>() {
            return if w.is_bad_input() { 2 } else { 1 };
        }
    }
    1
}
