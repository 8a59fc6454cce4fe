//! End-to-end tests: the real `wit` binary on real files in temporary directories.
//! One test binary, modules by area (ripgrep's layout).

mod server;
mod util;

mod balance;
mod cli;
mod compat;
mod crawl;
mod demo;
// `make test` runs it with the mpi feature (scripts/test-mpi.sh).
#[cfg(feature = "mpi")]
mod dist;
mod docs;
mod download;
mod eval;
mod extract;
mod queries;
mod resume;
mod robots;
mod scale;
mod scale_out;
mod stats;
mod tokenize;
mod train;
mod wds;
