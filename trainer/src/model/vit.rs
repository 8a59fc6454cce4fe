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
        let x = self.patches(images)?; // b, g*g, w
        let (b, _, w) = x.dims3()?;
        let cls = self
            .class_embedding
            .reshape((1, 1, w))?
            .broadcast_as((b, 1, w))?;
        let x = Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&self.positional_embedding)?;
        let x = self.ln_pre.forward(&x)?;
        let x = self.transformer.forward(x, None)?;
        self.ln_post.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)
    }

    /// The patch embedding: the same arithmetic as open_clip's stride-p
    /// convolution `conv1`, written as a reshape and one matrix product,
    /// because Candle's conv2d backward also computes the (unneeded) input
    /// gradient with a slow kernel (twice the step time of a ViT-B/32 on an
    /// H200, ../shared/references/gpu-baseline.md). Returns batch x patches
    /// x width, patches in row-major grid order.
    pub fn patches(&self, images: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = images.dims4()?;
        let p = self.patch;
        let (gh, gw) = (h / p, w / p);
        let width = self.conv1.dim(0)?;
        let x = images
            .narrow(2, 0, gh * p)?
            .narrow(3, 0, gw * p)?
            .reshape((b, c, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b, gh * gw, c * p * p))?;
        let kernel = self.conv1.reshape((width, c * p * p))?;
        super::layers::linear(&x, &kernel, None)
    }

    /// Projects [`VisionTransformer::features`] into the shared space.
    pub fn project(&self, features: &Tensor) -> Result<Tensor> {
        features.matmul(&self.proj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn the_patch_product_equals_the_strided_convolution() {
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
        let c = VitConfig {
            image_size: 28,
            patch_size: 7,
            transformer: TransformerConfig {
                width: 8,
                layers: 1,
                heads: 2,
            },
        };
        let v = VisionTransformer::new(c, 4, Activation::Gelu, vb).unwrap();
        let images = Tensor::randn(0f32, 1f32, (2, 3, 28, 28), &Device::Cpu).unwrap();
        let conv = images.conv2d(&v.conv1, 0, 7, 1, 1).unwrap(); // 2, 8, 4, 4
        let conv = conv.reshape((2, 8, 16)).unwrap().transpose(1, 2).unwrap();
        let diff = (v.patches(&images).unwrap() - conv)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "{diff}");
    }
}
