//! The benches' Python venvs under ~/.cache/wit, made once from the
//! registry.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The venv `~/.cache/wit/NAME` where `import IMPORTS` succeeds, with
/// `packages` installed by pip the first time; `None` where it cannot be
/// made (no registry), the reason printed.
pub fn python(name: &str, imports: &str, packages: &[&str]) -> Option<PathBuf> {
    let venv = PathBuf::from(std::env::var_os("HOME")?)
        .join(".cache/wit")
        .join(name);
    let py = venv.join("bin/python");
    let ready = |py: &Path| {
        Command::new(py)
            .args(["-c", &format!("import {imports}")])
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready(&py) {
        return Some(py);
    }
    let made = py.exists()
        || Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
    let installed = made
        && Command::new(&py)
            .args(["-m", "pip", "install", "--quiet"])
            .args(packages)
            .status()
            .is_ok_and(|s| s.success());
    if !(installed && ready(&py)) {
        println!(
            "{}: could not install {packages:?} from the registry",
            venv.display()
        );
        return None;
    }
    Some(py)
}

/// Runs `benches/SCRIPT` under `py` with `args` and returns its stdout;
/// `None` where it failed, its stderr printed after `what`.
pub fn run<S: AsRef<std::ffi::OsStr>>(
    py: &Path,
    script: &str,
    args: impl IntoIterator<Item = S>,
    what: &str,
) -> Option<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches")
        .join(script);
    let out = Command::new(py).arg(script).args(args).output().unwrap();
    if !out.status.success() {
        println!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}
