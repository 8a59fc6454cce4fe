//! The `filter` stage: match candidate texts against the queries, clean,
//! deduplicate and balance.
//!
//! # Brief overview
//! - [`QueryMatcher`]: MetaCLIP's substring matching over the whole query list
//!   at once, with one table of queries and their word-boundary prefixes.
//! - [`run_match`]: `candidates/` to `matched/`, part by part, through the
//!   shared stage runner; [`match_lines`] for spot checks on stdin.
//!
//! - [`TextFilter`]: the text filters applied before matching.
//! - [`run_balance`]: `matched/` to `balanced/`: the global counts and
//!   cross-part duplicates (a reduce), then MetaCLIP's balancing part by part.
#![deny(missing_docs)]

mod balance;
pub mod matcher;
mod stage;
pub mod text;

pub use balance::{BalanceOptions, keep_probability, run_balance, uniform_draw};
pub use matcher::{Case, QueryMatcher};
pub use stage::{QUERY_COUNTS_DIR, match_lines, match_part, run_match};
pub use text::TextFilter;
