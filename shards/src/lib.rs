//! The `download` stage: balanced pairs in, WebDataset tar shards and Parquet
//! metadata out.
//!
//! # Brief overview
//! - [`resize`]: from downloaded bytes to the stored image (decode under a
//!   pixel limit, EXIF orientation, img2dataset's resize modes, JPEG/PNG/WebP).
//!
//! Downloading and shard writing are the subject of the next change; `wit
//! download` says so.
#![deny(missing_docs)]

pub mod resize;
