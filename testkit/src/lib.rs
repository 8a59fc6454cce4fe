//! What the workspace's test suites share (a dev-dependency only).
//!
//! A test that needs something this machine may lack (a Python package
//! from PyPI, a Debian package, Open MPI, Chromium, a service) calls
//! [`skip`] and returns when it is missing. Under `cargo test` a test that
//! returns early shows as passed, so a skip must be seen:
//!
//! - with `WIT_NO_SKIP=1` (`.ci/run` sets it) a skip is a failure naming the
//!   test and what was missing, so that a green CI means every check ran;
//! - otherwise it prints `SKIP: ...` and, where `WIT_SKIP_LOG` names a file
//!   (`make test` sets it), appends `TEST: WHY` to it; `make test` ends by
//!   counting those lines.

#![deny(missing_docs)]

use std::io::Write;
use std::process::Command;

/// The variable under which every skip fails.
pub const NO_SKIP: &str = "WIT_NO_SKIP";

/// Whether skips fail here (`WIT_NO_SKIP` set to anything but `0`).
pub fn skips_fail() -> bool {
    std::env::var_os(NO_SKIP).is_some_and(|v| v != "0")
}

/// Reports that the calling test cannot run here, because of `why` (what is
/// missing, and how to get it). The caller returns after it.
///
/// # Panics
/// Under `WIT_NO_SKIP=1`, always: the message names the test and `why`.
pub fn skip(why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    assert!(
        !skips_fail(),
        "{test} cannot run here ({NO_SKIP} is set, so that is a failure): {why}"
    );
    eprintln!("SKIP: {test}: {why}");
    if let Some(log) = std::env::var_os("WIT_SKIP_LOG") {
        // One short line per write: appends from parallel tests do not interleave.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = f.write_all(format!("{test}: {}\n", why.replace('\n', " ")).as_bytes());
        }
    }
}

/// `mpirun` if Open MPI is installed; otherwise [`skip`]s and gives `None`.
pub fn mpirun() -> Option<&'static str> {
    let found = Command::new("mpirun")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("mpirun");
    }
    skip("mpirun not found: install Open MPI (Debian: openmpi-bin libopenmpi-dev)");
    None
}
