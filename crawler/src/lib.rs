//! The `crawler` stage: web pages and web archives in, image-text candidates out.
//!
//! # Brief overview
//! - [`html::extract`]: the one extractor, from an HTML page to candidates
//!   (`<img>` alt and title, figure captions), with [`html::decode_html`] for
//!   legacy charsets.
//! - [`warc`]: WARC/WAT reading, gzip member by member, damage counted and skipped.
//! - [`run_extract`]: `wit extract`, one `candidates/` part per archive file.
//!
//! Crawling live pages (`wit crawl`) is the subject of a later change.
#![deny(missing_docs)]

mod extract;
pub mod frontier;
pub mod html;
pub mod urls;
pub mod warc;

pub use extract::{extract_archive, run_extract};
