//! The `train` and `eval` stages: the CLIP dual encoder in Candle.
//!
//! It will train a CLIP model (ViT or modified ResNet image encoder, text
//! Transformer, learned temperature, symmetric contrastive loss) on the shards
//! of `DATASET/shards/`, and evaluate checkpoints by zero-shot classification,
//! linear probes and retrieval. Nothing is implemented yet; `wit train` and
//! `wit eval` say so.
#![deny(missing_docs)]
