//! `wit demo-web`: the synthetic web that `make train` crawls.
//!
//! Real web data cannot be reached from CI or a fresh machine, so the demo
//! makes a small web that behaves like the real one where the pipeline
//! cares: a few thousand linked pages, some in other languages, some
//! disallowed by robots.txt, broken links and images, decorative images,
//! file names as alt texts, figures with captions. Its images are drawn
//! from compositional concepts (`concepts.rs`): shapes in colours, textures,
//! sizes, counts and backgrounds, described in noisy words. Some
//! colour-shape pairs never appear on the site; the evaluation images are
//! made of exactly those (`site.rs`). `serve.rs` serves the site on
//! 127.0.0.1. `scale.rs` writes candidates of realistic shape, without
//! images, in any number (`wit demo-candidates`, for `make bench-scale`).
//!
//! This crate is an input generator, not a stage: nothing in the pipeline
//! depends on it, and it writes no part of a dataset directory's contract.

pub mod concepts;
pub mod scale;
pub mod serve;
pub mod site;

pub use scale::{ScaleOptions, write_scale_corpus};
pub use serve::Server;
pub use site::{SiteOptions, SiteSummary, generate, site_dir};
