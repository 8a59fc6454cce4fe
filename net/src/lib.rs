//! What the stages that fetch from the web share: the crawler (pages) and the
//! downloader (images) obey the same robots.txt rules and refuse the same
//! addresses. Not a stage: it holds no data contract, and both stage crates
//! may depend on it.
//!
//! # Brief overview
//! - [`robots`]: robots.txt parsing and matching (RFC 9309, Google's reading).
//! - [`addr`]: which resolved addresses may be fetched (SSRF protection).
//! - [`coding`]: `Content-Encoding` undone (gzip, deflate, br, zstd, stacked).
//! - [`http`]: one GET with the address policy, timeouts, size limits and
//!   failure reasons.
#![deny(missing_docs)]

pub mod addr;
pub mod coding;
pub mod http;

/// The product token wit answers to in robots.txt rules, robots meta tags
/// and `X-Robots-Tag` headers.
pub const ROBOTS_TOKEN: &str = "witbot";

/// wit's `User-Agent`: the `witbot` product token, the version, and where
/// site owners can reach whoever runs it (`--contact`).
pub fn user_agent(contact: Option<&str>) -> String {
    let version = env!("CARGO_PKG_VERSION");
    match contact {
        Some(c) => format!("{ROBOTS_TOKEN}/{version} (wit image-text crawler; +{c})"),
        None => format!("{ROBOTS_TOKEN}/{version} (wit image-text crawler)"),
    }
}
pub mod robots;
