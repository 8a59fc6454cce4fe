//! End-to-end tests: the real `wit` binary on real files in temporary directories.
//! One test binary, modules by area (ripgrep's layout).

mod server;
mod util;

mod balance;
mod cli;
mod compat;
mod crawl;
mod demo;
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
