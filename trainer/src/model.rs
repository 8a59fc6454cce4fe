//! The CLIP dual encoder in Candle, trainable end to end: a ViT image
//! encoder and a text Transformer, with parameter names equal to open_clip's
//! state-dict keys (`visual.transformer.resblocks.0.attn.in_proj_weight`,
//! `token_embedding.weight`, `logit_scale`, ...).
//!
//! Candle 0.11's fused `LayerNorm`, `softmax_last_dim` and `rms_norm` have no
//! backward pass and silently cut gradients (../shared/references/training.md),
//! so layer norm, softmax and the activations here are composed from
//! differentiable primitives; a test checks that every parameter receives a
//! gradient.

use candle_core::{D, DType, Device, Module, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder, VarMap};

/// A Transformer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransformerConfig {
    /// Width of the residual stream.
    pub width: usize,
    /// Residual blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
}

/// The ViT image encoder's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisionConfig {
    /// Input side in pixels.
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Its Transformer.
    pub transformer: TransformerConfig,
}

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

/// A CLIP model's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipConfig {
    /// Dimension of the shared embedding space.
    pub embed_dim: usize,
    /// The image encoder.
    pub vision: VisionConfig,
    /// The text encoder.
    pub text: TextConfig,
}

impl ClipConfig {
    /// ViT-B/32 (CLIP paper, Tables 19 and 20): 224 px, patch 32, width 768,
    /// 12 layers, 12 heads; text width 512, 12 layers, 8 heads; embedding 512.
    pub fn vit_b_32() -> ClipConfig {
        ClipConfig {
            embed_dim: 512,
            vision: VisionConfig {
                image_size: 224,
                patch_size: 32,
                transformer: TransformerConfig {
                    width: 768,
                    layers: 12,
                    heads: 12,
                },
            },
            text: TextConfig {
                context: 77,
                vocab: 49_408,
                transformer: TransformerConfig {
                    width: 512,
                    layers: 12,
                    heads: 8,
                },
            },
        }
    }

    /// ViT-B/16: as ViT-B/32 with 16-pixel patches.
    pub fn vit_b_16() -> ClipConfig {
        let mut c = ClipConfig::vit_b_32();
        c.vision.patch_size = 16;
        c
    }

    /// A tiny model for tests: 32 px, patch 8, width 32, 2 layers.
    pub fn tiny() -> ClipConfig {
        ClipConfig {
            embed_dim: 16,
            vision: VisionConfig {
                image_size: 32,
                patch_size: 8,
                transformer: TransformerConfig {
                    width: 32,
                    layers: 2,
                    heads: 4,
                },
            },
            text: TextConfig {
                context: 77,
                vocab: 49_408,
                transformer: TransformerConfig {
                    width: 32,
                    layers: 2,
                    heads: 4,
                },
            },
        }
    }
}

/// Layer norm over the last dimension, differentiable.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
        normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Softmax over the last dimension, differentiable (the maximum subtracted
/// for stability is a constant).
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// QuickGELU, x · sigmoid(1.702 x), as OpenAI's CLIP uses.
fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    let s = ((x * -1.702)?.exp()? + 1.0)?.recip()?;
    x * s
}

fn linear(vb: &VarBuilder, inp: usize, out: usize, name: &str) -> Result<(Tensor, Tensor)> {
    let std = (inp as f64).powf(-0.5);
    let w = vb.get_with_hints(
        (out, inp),
        &format!("{name}.weight"),
        Init::Randn {
            mean: 0.0,
            stdev: std,
        },
    )?;
    let b = vb.get_with_hints(out, &format!("{name}.bias"), Init::Const(0.0))?;
    Ok((w, b))
}

fn apply_linear(x: &Tensor, (w, b): &(Tensor, Tensor)) -> Result<Tensor> {
    x.broadcast_matmul(&w.t()?)?.broadcast_add(b)
}

/// One pre-LN residual block.
#[derive(Debug, Clone)]
struct Block {
    ln_1: LayerNorm,
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: (Tensor, Tensor),
    ln_2: LayerNorm,
    c_fc: (Tensor, Tensor),
    c_proj: (Tensor, Tensor),
    heads: usize,
}

impl Block {
    fn new(c: TransformerConfig, vb: VarBuilder) -> Result<Self> {
        let w = c.width;
        let std = (w as f64).powf(-0.5);
        Ok(Block {
            ln_1: LayerNorm::new(w, vb.pp("ln_1"))?,
            in_proj_weight: vb.pp("attn").get_with_hints(
                (3 * w, w),
                "in_proj_weight",
                Init::Randn {
                    mean: 0.0,
                    stdev: std,
                },
            )?,
            in_proj_bias: vb
                .pp("attn")
                .get_with_hints(3 * w, "in_proj_bias", Init::Const(0.0))?,
            out_proj: linear(&vb.pp("attn"), w, w, "out_proj")?,
            ln_2: LayerNorm::new(w, vb.pp("ln_2"))?,
            c_fc: linear(&vb.pp("mlp"), w, 4 * w, "c_fc")?,
            c_proj: linear(&vb.pp("mlp"), 4 * w, w, "c_proj")?,
            heads: c.heads,
        })
    }

    /// `x`: batch x tokens x width; `mask`: tokens x tokens, added to scores.
    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, n, w) = x.dims3()?;
        let hd = w / self.heads;
        let h = self.ln_1.forward(x)?;
        let qkv = apply_linear(
            &h,
            &(self.in_proj_weight.clone(), self.in_proj_bias.clone()),
        )?;
        let split = |i: usize| -> Result<Tensor> {
            qkv.narrow(D::Minus1, i * w, w)?
                .reshape((b, n, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let mut scores = (q.matmul(&k.t()?.contiguous()?)? * (hd as f64).powf(-0.5))?;
        if let Some(m) = mask {
            scores = scores.broadcast_add(m)?;
        }
        let attn = softmax(&scores)?.matmul(&v)?;
        let attn = attn.transpose(1, 2)?.contiguous()?.reshape((b, n, w))?;
        let x = (x + apply_linear(&attn, &self.out_proj)?)?;
        let h = self.ln_2.forward(&x)?;
        let h = apply_linear(&quick_gelu(&apply_linear(&h, &self.c_fc)?)?, &self.c_proj)?;
        x + h
    }
}

#[derive(Debug, Clone)]
struct Transformer {
    blocks: Vec<Block>,
}

impl Transformer {
    fn new(c: TransformerConfig, vb: VarBuilder) -> Result<Self> {
        let blocks = (0..c.layers)
            .map(|i| Block::new(c, vb.pp(format!("resblocks.{i}"))))
            .collect::<Result<_>>()?;
        Ok(Transformer { blocks })
    }

    fn forward(&self, mut x: Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        for b in &self.blocks {
            x = b.forward(&x, mask)?;
        }
        Ok(x)
    }
}

/// The ViT image encoder (`visual.*`).
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
    fn new(c: VisionConfig, embed: usize, vb: VarBuilder) -> Result<Self> {
        let w = c.transformer.width;
        let scale = (w as f64).powf(-0.5);
        let grid = c.image_size / c.patch_size;
        Ok(VisionTransformer {
            conv1: vb.get_with_hints(
                (w, 3, c.patch_size, c.patch_size),
                "conv1.weight",
                Init::Randn {
                    mean: 0.0,
                    stdev: (3.0 * (c.patch_size * c.patch_size) as f64).powf(-0.5),
                },
            )?,
            class_embedding: vb.get_with_hints(
                w,
                "class_embedding",
                Init::Randn {
                    mean: 0.0,
                    stdev: scale,
                },
            )?,
            positional_embedding: vb.get_with_hints(
                (grid * grid + 1, w),
                "positional_embedding",
                Init::Randn {
                    mean: 0.0,
                    stdev: scale,
                },
            )?,
            ln_pre: LayerNorm::new(w, vb.pp("ln_pre"))?,
            transformer: Transformer::new(c.transformer, vb.pp("transformer"))?,
            ln_post: LayerNorm::new(w, vb.pp("ln_post"))?,
            proj: vb.get_with_hints(
                (w, embed),
                "proj",
                Init::Randn {
                    mean: 0.0,
                    stdev: scale,
                },
            )?,
            patch: c.patch_size,
        })
    }

    /// `images`: batch x 3 x size x size; returns batch x embed.
    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
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
        let cls = self.ln_post.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)?;
        cls.matmul(&self.proj)
    }
}

/// The text encoder (top-level `token_embedding`, `transformer`, ...).
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
    fn new(c: TextConfig, embed: usize, vb: VarBuilder) -> Result<Self> {
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
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
            positional_embedding: vb.get_with_hints(
                (c.context, w),
                "positional_embedding",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.01,
                },
            )?,
            transformer: Transformer::new(c.transformer, vb.pp("transformer"))?,
            ln_final: LayerNorm::new(w, vb.pp("ln_final"))?,
            text_projection: vb.get_with_hints(
                (w, embed),
                "text_projection",
                Init::Randn {
                    mean: 0.0,
                    stdev: (w as f64).powf(-0.5),
                },
            )?,
            mask: Tensor::from_vec(mask, (c.context, c.context), vb.device())?,
        })
    }

    /// `tokens`: batch x 77 ids (u32); pooled at each text's end token (its
    /// largest id); returns batch x embed.
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

/// The whole model.
#[derive(Debug, Clone)]
pub struct Clip {
    /// The image encoder.
    pub visual: VisionTransformer,
    /// The text encoder.
    pub text: TextTransformer,
    /// ln(logit scale), a trainable variable starting at ln(1/0.07).
    pub logit_scale: Tensor,
}

impl Clip {
    /// A model with fresh parameters in `vars` (names as open_clip's keys).
    ///
    /// # Errors
    /// Candle's errors.
    pub fn new(c: ClipConfig, vars: &VarMap, device: &Device) -> Result<Clip> {
        let vb = VarBuilder::from_varmap(vars, DType::F32, device);
        Ok(Clip {
            visual: VisionTransformer::new(c.vision, c.embed_dim, vb.pp("visual"))?,
            text: TextTransformer::new(c.text, c.embed_dim, vb.clone())?,
            logit_scale: vb.get_with_hints((), "logit_scale", Init::Const((1.0f64 / 0.07).ln()))?,
        })
    }

    /// The symmetric contrastive loss of a batch of matching images and texts.
    ///
    /// # Errors
    /// Candle's errors.
    pub fn loss(&self, images: &Tensor, tokens: &Tensor) -> Result<Tensor> {
        let norm = |x: Tensor| -> Result<Tensor> {
            let n = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
            x.broadcast_div(&n)
        };
        let im = norm(self.visual.forward(images)?)?;
        let tx = norm(self.text.forward(tokens)?)?;
        let scale = self.logit_scale.exp()?;
        let logits = im.matmul(&tx.t()?)?.broadcast_mul(&scale)?;
        let n = logits.dim(0)?;
        let labels = Tensor::arange(0u32, n as u32, logits.device())?;
        let ce = |l: &Tensor| -> Result<Tensor> {
            let logp = l.broadcast_sub(&log_sum_exp(l)?)?;
            let picked = logp.gather(&labels.reshape((n, 1))?, 1)?;
            picked.mean_all()?.neg()
        };
        (ce(&logits)? + ce(&logits.t()?.contiguous()?)?)? / 2.0
    }
}

fn log_sum_exp(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    x.broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        .broadcast_add(&max)
}

/// Every trainable variable of `vars` by name, sorted.
pub fn named_vars(vars: &VarMap) -> Vec<(String, Var)> {
    let data = vars.data().lock().expect("no panics under this lock");
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(device: &Device, n: usize) -> (Tensor, Tensor) {
        let c = ClipConfig::tiny();
        let s = c.vision.image_size;
        let images = Tensor::randn(0f32, 1f32, (n, 3, s, s), device).unwrap();
        let t = crate::tokenizer::Tokenizer::get();
        let rows: Vec<u32> = (0..n)
            .flat_map(|i| t.context(&format!("a photo of object number {i}")))
            .collect();
        let tokens = Tensor::from_vec(rows, (n, 77), device).unwrap();
        (images, tokens)
    }

    #[test]
    fn open_clip_names_and_every_parameter_gets_a_gradient() {
        let device = Device::Cpu;
        let vars = VarMap::new();
        let model = Clip::new(ClipConfig::tiny(), &vars, &device).unwrap();
        let names: Vec<String> = named_vars(&vars).into_iter().map(|v| v.0).collect();
        for want in [
            "logit_scale",
            "positional_embedding",
            "token_embedding.weight",
            "text_projection",
            "ln_final.weight",
            "transformer.resblocks.1.attn.in_proj_weight",
            "transformer.resblocks.0.mlp.c_fc.bias",
            "visual.class_embedding",
            "visual.conv1.weight",
            "visual.ln_pre.bias",
            "visual.proj",
            "visual.transformer.resblocks.1.attn.out_proj.weight",
        ] {
            assert!(names.contains(&want.to_string()), "{want} in {names:?}");
        }
        let (images, tokens) = batch(&device, 4);
        let loss = model.loss(&images, &tokens).unwrap();
        let grads = loss.backward().unwrap();
        let mut missing = Vec::new();
        for (name, var) in named_vars(&vars) {
            let g = grads.get(var.as_tensor());
            let norm = g.map(|g| {
                g.sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            });
            // The token embedding has rows for unused tokens; its gradient is sparse but not zero.
            if !norm.is_some_and(|n| n > 0.0 && n.is_finite()) {
                missing.push(name);
            }
        }
        assert!(missing.is_empty(), "no gradient for {missing:?}");
    }

    #[test]
    fn training_steps_lower_the_loss() {
        let device = Device::Cpu;
        let vars = VarMap::new();
        let model = Clip::new(ClipConfig::tiny(), &vars, &device).unwrap();
        let (images, tokens) = batch(&device, 8);
        let mut opt = crate::optim::AdamW::new(
            named_vars(&vars),
            crate::optim::AdamWConfig {
                lr: 1e-3,
                warmup: 1,
                total: 1000,
                clip_norm: Some(1.0),
                ..Default::default()
            },
        )
        .unwrap();
        let first = model
            .loss(&images, &tokens)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let mut last = first;
        for _ in 0..30 {
            let loss = model.loss(&images, &tokens).unwrap();
            last = loss.to_scalar::<f32>().unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        assert!(last < first * 0.5, "loss {first} -> {last}");
        // Random pairs of 8 start near ln 8.
        assert!((first - 8f32.ln()).abs() < 1.0, "{first}");
    }

    #[test]
    fn layer_norm_and_softmax_match_their_definitions() {
        let device = Device::Cpu;
        let x = Tensor::new(&[[1f32, 2., 3., 4.], [2., 2., 2., 6.]], &device).unwrap();
        let s = softmax(&x).unwrap().to_vec2::<f32>().unwrap();
        let e: Vec<f32> = [1f32, 2., 3., 4.].iter().map(|v| v.exp()).collect();
        let sum: f32 = e.iter().sum();
        for (a, b) in s[0].iter().zip(&e) {
            assert!((a - b / sum).abs() < 1e-6);
        }
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &device);
        let ln = LayerNorm::new(4, vb).unwrap();
        let y = ln.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        let mean = 2.5f32;
        let sd = (1.25f32 + 1e-5).sqrt();
        assert!((y[0][0] - (1.0 - mean) / sd).abs() < 1e-5);
    }
}
