//! The text encoder (top-level keys `token_embedding`, `positional_embedding`,
//! `transformer`, `ln_final`, `text_projection`): a causal Transformer pooled
//! at each text's end token.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{Activation, LayerNorm, Transformer, TransformerConfig, normal};

/// The text encoder's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextConfig {
    /// Token ids per text (77).
    pub context: usize,
    /// Vocabulary size (49,408).
    pub vocab: usize,
    /// Its Transformer.
    pub transformer: TransformerConfig,
}

/// The text encoder.
#[derive(Debug, Clone)]
pub struct TextTransformer {
    token_embedding: Tensor,
    positional_embedding: Tensor,
    transformer: Transformer,
    ln_final: LayerNorm,
    text_projection: Tensor,
    mask: Tensor,
}

impl TextTransformer {
    pub(crate) fn new(
        c: TextConfig,
        embed: usize,
        act: Activation,
        vb: VarBuilder,
    ) -> Result<Self> {
        let w = c.transformer.width;
        let mut mask = vec![0f32; c.context * c.context];
        for i in 0..c.context {
            for j in i + 1..c.context {
                mask[i * c.context + j] = f32::NEG_INFINITY;
            }
        }
        Ok(TextTransformer {
            token_embedding: vb.get_with_hints(
                (c.vocab, w),
                "token_embedding.weight",
                normal(0.02),
            )?,
            positional_embedding: vb.get_with_hints(
                (c.context, w),
                "positional_embedding",
                normal(0.01),
            )?,
            transformer: Transformer::new(c.transformer, act, vb.pp("transformer"))?,
            ln_final: LayerNorm::new(w, vb.pp("ln_final"))?,
            text_projection: vb.get_with_hints(
                (w, embed),
                "text_projection",
                normal((w as f64).powf(-0.5)),
            )?,
            mask: Tensor::from_vec(mask, (c.context, c.context), vb.device())?
                .to_dtype(vb.dtype())?,
        })
    }

    /// `tokens`: batch x context ids (u32), each text pooled at its end
    /// token (its largest id); returns batch x embed.
    pub fn forward(&self, tokens: &Tensor) -> Result<Tensor> {
        let (b, n) = tokens.dims2()?;
        let x = self
            .token_embedding
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((b, n, ()))?
            .broadcast_add(&self.positional_embedding)?;
        let x = self.transformer.forward(x, Some(&self.mask))?;
        let x = self.ln_final.forward(&x)?;
        let end = tokens.argmax(D::Minus1)?; // b
        let w = x.dim(D::Minus1)?;
        let idx = end
            .reshape((b, 1, 1))?
            .broadcast_as((b, 1, w))?
            .contiguous()?;
        x.gather(&idx, 1)?.squeeze(1)?.matmul(&self.text_projection)
    }
}
