//! The `train` and `eval` stages: the CLIP dual encoder in Candle.
//!
//! It trains a CLIP model (ViT or modified ResNet image encoder, text
//! Transformer, learned temperature, symmetric contrastive loss) on the
//! shards of `DATASET/shards/` ([`train`]), and evaluates checkpoints by
//! zero-shot classification, linear probes and retrieval ([`eval`]). The
//! parts: [`tokenizer`] and [`clean`], CLIP's BPE tokenizer and open_clip's
//! caption cleaning; [`loader`], the deterministic multi-thread data loader
//! over shards; [`model`], the trainable CLIP models (ViT and modified
//! ResNet, the paper's presets) with open_clip's parameter names, their
//! fused CPU kernels in [`model::fused`]; [`optim`], CLIP's AdamW
//! (weight-decay groups, warmup and cosine, clipping, logit-scale clamp,
//! saved state); [`dist`], data parallelism over many processes (the loss over
//! the global batch); [`runtime`], the process settings for training on the CPU.
#![deny(missing_docs)]

pub use error::{Error, Result};

pub mod clean;
pub mod dist;
mod error;
pub mod eval;
pub mod loader;
pub mod model;
pub mod optim;
pub mod runtime;
pub mod tokenizer;
pub mod train;
