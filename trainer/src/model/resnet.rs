//! The modified ResNet image encoder of CLIP (`visual.*`), as open_clip's
//! `ModifiedResNet`: a stem of three 3x3 convolutions (the first strided)
//! and an average pool instead of one 7x7 convolution and a max pool;
//! anti-aliased downsampling (an average pool before the stride-1
//! convolution, in the main path and the shortcut); and a multi-head QKV
//! attention pool over the final feature map, queried by its mean, instead
//! of global average pooling.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{BatchNorm, Linear, attention_composed, normal};

/// The modified ResNet's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Input side in pixels (a multiple of 32).
    pub image_size: usize,
    /// Bottleneck blocks in each of the four stages.
    pub layers: [usize; 4],
    /// Stem width; the final feature map has 32 x width channels.
    pub width: usize,
    /// Heads of the attention pool (CLIP: 32 x width / 64).
    pub heads: usize,
}

fn conv(vb: &VarBuilder, out: usize, inp: usize, k: usize, name: &str) -> Result<Tensor> {
    let fan_in = (inp * k * k) as f64;
    vb.get_with_hints(
        (out, inp, k, k),
        &format!("{name}.weight"),
        normal(fan_in.powf(-0.5)),
    )
}

/// A conv (no bias) then a batch norm.
#[derive(Debug, Clone)]
struct ConvBn {
    conv: Tensor,
    bn: BatchNorm,
    padding: usize,
    stride: usize,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    fn new(
        vb: &VarBuilder,
        inp: usize,
        out: usize,
        k: usize,
        stride: usize,
        (conv_name, bn_name): (&str, &str),
        bn_weight: f64,
    ) -> Result<Self> {
        Ok(ConvBn {
            conv: conv(vb, out, inp, k, conv_name)?,
            bn: BatchNorm::new(out, bn_weight, vb.pp(bn_name))?,
            padding: k / 2,
            stride,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = x.conv2d(&self.conv, self.padding, self.stride, 1, 1)?;
        self.bn.forward(&y, train)
    }
}

/// The bottleneck block: 1x1, 3x3, (average pool), 1x1 (x4 channels).
#[derive(Debug, Clone)]
struct Bottleneck {
    c1: ConvBn,
    c2: ConvBn,
    c3: ConvBn,
    downsample: Option<ConvBn>,
    stride: usize,
}

impl Bottleneck {
    fn new(vb: VarBuilder, inplanes: usize, planes: usize, stride: usize) -> Result<Self> {
        let out = planes * 4;
        let downsample = if stride > 1 || inplanes != out {
            let d = vb.pp("downsample");
            Some(ConvBn::new(&d, inplanes, out, 1, 1, ("0", "1"), 1.0)?)
        } else {
            None
        };
        Ok(Bottleneck {
            c1: ConvBn::new(&vb, inplanes, planes, 1, 1, ("conv1", "bn1"), 1.0)?,
            c2: ConvBn::new(&vb, planes, planes, 3, 1, ("conv2", "bn2"), 1.0)?,
            // open_clip starts each residual branch at zero (bn3's gain 0).
            c3: ConvBn::new(&vb, planes, out, 1, 1, ("conv3", "bn3"), 0.0)?,
            downsample,
            stride,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let out = self.c1.forward(x, train)?.relu()?;
        let mut out = self.c2.forward(&out, train)?.relu()?;
        if self.stride > 1 {
            out = out.avg_pool2d(self.stride)?;
        }
        let out = self.c3.forward(&out, train)?;
        let identity = match &self.downsample {
            Some(d) => {
                let x = if self.stride > 1 {
                    x.avg_pool2d(self.stride)?
                } else {
                    x.clone()
                };
                d.forward(&x, train)?
            }
            None => x.clone(),
        };
        (out + identity)?.relu()
    }
}

/// The attention pool: the feature map's mean, then its positions, as
/// tokens with a positional embedding; the mean token's attention output,
/// projected.
#[derive(Debug, Clone)]
struct AttentionPool {
    positional_embedding: Tensor,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    c_proj: Linear,
    heads: usize,
}

impl AttentionPool {
    fn new(vb: VarBuilder, spatial: usize, dim: usize, heads: usize, out: usize) -> Result<Self> {
        let std = (dim as f64).powf(-0.5);
        Ok(AttentionPool {
            positional_embedding: vb.get_with_hints(
                (spatial * spatial + 1, dim),
                "positional_embedding",
                normal(std),
            )?,
            q_proj: Linear::new(&vb, dim, dim, std, "q_proj")?,
            k_proj: Linear::new(&vb, dim, dim, std, "k_proj")?,
            v_proj: Linear::new(&vb, dim, dim, std, "v_proj")?,
            c_proj: Linear::new(&vb, dim, out, std, "c_proj")?,
            heads,
        })
    }

    /// `x`: batch x channels x h x w; returns the pooled token before
    /// `c_proj`.
    fn pool(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let x = x.reshape((b, c, h * w))?.transpose(1, 2)?; // b, hw, c
        let x = Tensor::cat(&[&x.mean_keepdim(1)?, &x], 1)?
            .broadcast_add(&self.positional_embedding)?;
        // Only the first token's output is kept, so only it is a query.
        let q = self.q_proj.forward(&x.narrow(1, 0, 1)?)?;
        let k = self.k_proj.forward(&x)?;
        let v = self.v_proj.forward(&x)?;
        attention_composed(&q, &k, &v, self.heads, None)?.squeeze(1)
    }
}

/// The modified ResNet.
#[derive(Debug, Clone)]
pub struct ModifiedResNet {
    stem: [ConvBn; 3],
    stages: Vec<Vec<Bottleneck>>,
    attnpool: AttentionPool,
}

impl ModifiedResNet {
    pub(crate) fn new(c: ResNetConfig, embed: usize, vb: VarBuilder) -> Result<Self> {
        let w = c.width;
        let stem = [
            ConvBn::new(&vb, 3, w / 2, 3, 2, ("conv1", "bn1"), 1.0)?,
            ConvBn::new(&vb, w / 2, w / 2, 3, 1, ("conv2", "bn2"), 1.0)?,
            ConvBn::new(&vb, w / 2, w, 3, 1, ("conv3", "bn3"), 1.0)?,
        ];
        let mut inplanes = w;
        let mut stages = Vec::new();
        for (i, &blocks) in c.layers.iter().enumerate() {
            let planes = w << i;
            let stage = vb.pp(format!("layer{}", i + 1));
            let mut v = Vec::new();
            for j in 0..blocks {
                let stride = if i > 0 && j == 0 { 2 } else { 1 };
                v.push(Bottleneck::new(stage.pp(j), inplanes, planes, stride)?);
                inplanes = planes * 4;
            }
            stages.push(v);
        }
        let attnpool =
            AttentionPool::new(vb.pp("attnpool"), c.image_size / 32, w * 32, c.heads, embed)?;
        Ok(ModifiedResNet {
            stem,
            stages,
            attnpool,
        })
    }

    /// The attention pool's output before `c_proj`: batch x 32·width (the
    /// features a linear probe reads). Batch norms use batch statistics and
    /// update their running ones when `train`.
    pub fn features(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        let mut x = images.clone();
        for s in &self.stem {
            x = s.forward(&x, train)?.relu()?;
        }
        x = x.avg_pool2d(2)?;
        for stage in &self.stages {
            for b in stage {
                x = b.forward(&x, train)?;
            }
        }
        self.attnpool.pool(&x)
    }

    /// Projects [`ModifiedResNet::features`] into the shared space.
    pub fn project(&self, features: &Tensor) -> Result<Tensor> {
        self.attnpool.c_proj.forward(features)
    }
}
