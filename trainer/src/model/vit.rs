//! The ViT image encoder (`visual.*`): patch convolution, class token,
//! positional embedding, `ln_pre`, pre-LN residual blocks, `ln_post` on the
//! class token, linear projection.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{Activation, LayerNorm, Transformer, TransformerConfig, normal};

/// The ViT image encoder's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VitConfig {
    /// Input side in pixels.
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Its Transformer (heads = width / 64 in CLIP's models).
    pub transformer: TransformerConfig,
}

/// The ViT image encoder.
#[derive(Debug, Clone)]
pub struct VisionTransformer {
    conv1: Tensor,
    class_embedding: Tensor,
    positional_embedding: Tensor,
    ln_pre: LayerNorm,
    transformer: Transformer,
    ln_post: LayerNorm,
    proj: Tensor,
    patch: usize,
}

impl VisionTransformer {
    pub(crate) fn new(c: VitConfig, embed: usize, act: Activation, vb: VarBuilder) -> Result<Self> {
        let w = c.transformer.width;
        let scale = (w as f64).powf(-0.5);
        let grid = c.image_size / c.patch_size;
        let fan_in = 3 * c.patch_size * c.patch_size;
        Ok(VisionTransformer {
            conv1: vb.get_with_hints(
                (w, 3, c.patch_size, c.patch_size),
                "conv1.weight",
                normal((fan_in as f64).powf(-0.5)),
            )?,
            class_embedding: vb.get_with_hints(w, "class_embedding", normal(scale))?,
            positional_embedding: vb.get_with_hints(
                (grid * grid + 1, w),
                "positional_embedding",
                normal(scale),
            )?,
            ln_pre: LayerNorm::new(w, vb.pp("ln_pre"))?,
            transformer: Transformer::new(c.transformer, act, vb.pp("transformer"))?,
            ln_post: LayerNorm::new(w, vb.pp("ln_post"))?,
            proj: vb.get_with_hints((w, embed), "proj", normal(scale))?,
            patch: c.patch_size,
        })
    }

    /// The class token after `ln_post`, before the projection: batch x
    /// width (the features a linear probe reads).
    pub fn features(&self, images: &Tensor) -> Result<Tensor> {
        let x = images.conv2d(&self.conv1, 0, self.patch, 1, 1)?; // b, w, g, g
        let (b, w, g, _) = x.dims4()?;
        let x = x.reshape((b, w, g * g))?.transpose(1, 2)?; // b, g*g, w
        let cls = self
            .class_embedding
            .reshape((1, 1, w))?
            .broadcast_as((b, 1, w))?;
        let x = Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&self.positional_embedding)?;
        let x = self.ln_pre.forward(&x)?;
        let x = self.transformer.forward(x, None)?;
        self.ln_post.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)
    }

    /// Projects [`VisionTransformer::features`] into the shared space.
    pub fn project(&self, features: &Tensor) -> Result<Tensor> {
        features.matmul(&self.proj)
    }
}
