//! The `filter` stage: match candidate texts against the queries, clean,
//! deduplicate and balance.
//!
//! # Brief overview
//! - [`QueryMatcher`]: MetaCLIP's substring matching over the whole query list
//!   at once, with one Aho-Corasick automaton.
//! - [`run_match`]: `candidates/` to `matched/`, part by part, through the
//!   shared stage runner; [`match_lines`] for spot checks on stdin.
//!
//! Text filters, deduplication and balancing are the subject of later changes.
#![deny(missing_docs)]

pub mod matcher;
mod stage;

pub use matcher::{Case, QueryMatcher};
pub use stage::{match_lines, match_part, run_match};
