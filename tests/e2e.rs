//! End-to-end tests: the real `wit` binary on real files in temporary directories.
//! One test binary, modules by area (ripgrep's layout).

mod util;

mod cli;
mod compat;
mod extract;
mod queries;
mod resume;
mod robots;
