//! What the stages that fetch from the web share: the crawler (pages) and the
//! downloader (images) obey the same robots.txt rules and refuse the same
//! addresses. Not a stage: it holds no data contract, and both stage crates
//! may depend on it.
//!
//! # Brief overview
//! - [`robots`]: robots.txt parsing and matching (RFC 9309, Google's reading).
//! - [`addr`]: which resolved addresses may be fetched (SSRF protection).
//! - [`http`]: one GET with the address policy, timeouts, size limits and
//!   failure reasons.
#![deny(missing_docs)]

pub mod addr;
pub mod http;
pub mod robots;
