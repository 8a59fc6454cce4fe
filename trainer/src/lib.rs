//! The `train` and `eval` stages: the CLIP dual encoder in Candle.
//!
//! It will train a CLIP model (ViT or modified ResNet image encoder, text
//! Transformer, learned temperature, symmetric contrastive loss) on the shards
//! of `DATASET/shards/`, and evaluate checkpoints by zero-shot classification,
//! linear probes and retrieval. Built so far: [`tokenizer`], CLIP's BPE
//! tokenizer (`wit tokenize`); [`loader`], the deterministic multi-thread
//! data loader over shards; [`model`], the trainable CLIP models (ViT and
//! modified ResNet, the paper's presets) with open_clip's parameter names
//! and differentiable layer norm, batch norm and softmax; and [`optim`], CLIP's AdamW (weight-decay groups, warmup and cosine,
//! clipping, logit-scale clamp, saved state).
//! `wit train` and `wit eval` say they are not built yet.
#![deny(missing_docs)]

pub use error::{Error, Result};

pub mod clean;
mod error;
pub mod eval;
pub mod loader;
pub mod model;
pub mod optim;
pub mod tokenizer;
pub mod train;
