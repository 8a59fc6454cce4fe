//! The `download` stage: balanced pairs in, WebDataset tar shards and Parquet
//! metadata out.
//!
//! # Brief overview
//! - [`resize`]: from downloaded bytes to the stored image (decode under a
//!   pixel limit, EXIF orientation, img2dataset's resize modes, JPEG/PNG/WebP).
//! - [`run_download`]: `wit download`, the plan (a seeded shuffle of pairs
//!   into shards), then each shard downloaded, resumable sample by sample, and
//!   written as img2dataset does (`NNNNN.tar`, `NNNNN.parquet`,
//!   `NNNNN_stats.json`).
#![deny(missing_docs)]

mod avif;
mod download;
mod jpeg;
mod plan;
pub mod resize;

pub use download::{
    DownloadOptions, PLAN_DIR, WORK_DIR, run_download, sample_key, shard_name, x_robots_opt_out,
};
pub use plan::SHUFFLE_DIR;
