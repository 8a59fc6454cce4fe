//! The `download` stage: balanced pairs in, WebDataset tar shards and Parquet metadata out.
//!
//! It will download the images of `DATASET/balanced/`, decode, resize and
//! re-encode them, and write `DATASET/shards/` as WebDataset tars with one
//! Parquet row per input pair (failures included, with their reason), then
//! corpus statistics with Polars. Nothing is implemented yet; `wit download`
//! and `wit stats` say so.
#![deny(missing_docs)]
