//! The `crawler` stage: web pages and web archives in, image-text candidates out.
//!
//! # Brief overview
//! - [`html::extract`]: the one extractor, from an HTML page to candidates
//!   (`<img>` alt and title, figure captions), with [`html::decode_html`] for
//!   legacy charsets.
//! - [`warc`]: WARC/WAT reading, gzip member by member, damage counted and skipped.
//! - [`run_extract`]: `wit extract`, one `candidates/` part per archive file.
//! - [`run_crawl`]: `wit crawl`, polite and resumable, a `candidates/` part
//!   every N URLs; [`frontier`] holds what is left to fetch.
#![deny(missing_docs)]

mod crawl;
mod extract;
pub mod frontier;
pub mod html;
pub mod urls;
pub mod warc;

pub use crawl::{CrawlOptions, PARKED_PER_SLOT, STATE_DIR, Scope, run_crawl};
pub use extract::{extract_archive, extract_archive_at, read_paths_listing, run_extract};
