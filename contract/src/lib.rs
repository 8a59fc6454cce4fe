//! The data contract between wit's stages.
//!
//! Stage crates depend on this crate and never on each other: what one stage
//! hands to the next is a set of files whose names, schemas and completion
//! rules are defined here once.
//!
//! # Brief overview
//! - [`layout`]: the dataset directory, its stage subdirectories ([`Stage`]) and part naming.
//! - [`schema`]: the Arrow schema of every Parquet file, and [`records`] for typed rows.
//! - [`pq`]: deterministic Parquet writing and schema-checked reading.
//! - [`manifest`]: `_manifest.json` and the per-part sidecars.
//! - [`runner`]: [`run_stage`], the resumable, shardable stage runner every stage uses.
//! - [`query_list`]: the `queries.json` format; [`list_file`]: hand-written files of one entry a line.
//! - [`text`]: caption rules more than one stage applies (file names, URLs).
//! - [`wds`]: WebDataset tar shards: writing, reading, brace patterns, shuffles.
//! - [`store`]: datasets and inputs on object storage (`s3://`, `gs://`, `az://`, `http(s)://`).
//! - [`Progress`]: how library code reports progress.
//! - [`Error`]: typed errors that name the input they are about.
#![deny(missing_docs)]

pub mod error;
pub mod layout;
pub mod list_file;
pub mod manifest;
pub mod pq;
pub mod progress;
pub mod query_list;
pub mod records;
pub mod runner;
pub mod schema;
pub mod store;
pub mod text;
pub mod wds;

pub use error::{Error, IoContext, Result};
pub use layout::{Dataset, Stage};
pub use manifest::{Counts, Manifest};
pub use progress::{NoProgress, Progress};
pub use runner::{
    OpenStage, PartContext, RunOptions, Share, StageSpec, Summary, check_params, params_diff,
    recorded_params, run_stage, run_stage_to_end, stage_complete, start_over,
};
