//! Building blocks shared by the encoders, each differentiable: Candle 0.11's
//! fused `LayerNorm`, `softmax_last_dim` and `rms_norm` have no backward pass
//! and silently cut gradients (../shared/references/training.md), so layer
//! norm, batch norm, softmax and the activations are composed from
//! primitives that have one.

use candle_core::{D, DType, Module, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use super::fused;

/// The activation inside Transformer MLPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// x · sigmoid(1.702 x), as OpenAI's CLIP weights were trained with
    /// (open_clip's `-quickgelu` models).
    QuickGelu,
    /// The exact (erf) GELU, open_clip's default (`nn.GELU`).
    Gelu,
}

impl Activation {
    pub(crate) fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::QuickGelu => {
                let s = ((x * -1.702)?.exp()? + 1.0)?.recip()?;
                x * s
            }
            Activation::Gelu => x.gelu_erf(),
        }
    }
}

/// The type half-precision values are widened to for reductions (f32);
/// other types are kept.
pub fn wide(dtype: DType) -> DType {
    match dtype {
        DType::F16 | DType::BF16 => DType::F32,
        other => other,
    }
}

/// Layer norm over the last dimension (eps 1e-5), differentiable.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    pub(crate) fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
        })
    }
}

impl Module for LayerNorm {
    /// Half precision is computed in f32 (as autocast does), then cast back.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if fused::enabled(x) {
            return fused::layer_norm(x, &self.weight, &self.bias, 1e-5);
        }
        let dtype = x.dtype();
        let x = x.to_dtype(wide(dtype))?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
        normed
            .broadcast_mul(&self.weight.to_dtype(wide(dtype))?)?
            .broadcast_add(&self.bias.to_dtype(wide(dtype))?)?
            .to_dtype(dtype)
    }
}

/// Whether the state-dict key `name` is a batch-norm running statistic (a
/// buffer: saved, not trained).
pub fn is_buffer(name: &str) -> bool {
    name.ends_with(".running_mean")
        || name.ends_with(".running_var")
        || name.ends_with(".num_batches_tracked")
}

/// 2-D batch norm (eps 1e-5, momentum 0.1) as PyTorch's `BatchNorm2d`: in
/// training, batch statistics normalise and the running ones (biased mean,
/// unbiased variance) are updated; in evaluation the running ones normalise.
/// On many ranks, inside [`crate::dist::with_synchronised_batch_norm`], the
/// batch statistics are the global batch's (`SyncBatchNorm`).
#[derive(Debug, Clone)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    tracked: Tensor,
}

impl BatchNorm {
    pub(crate) fn new(dim: usize, weight: f64, vb: VarBuilder) -> Result<Self> {
        Ok(BatchNorm {
            weight: vb.get_with_hints(dim, "weight", Init::Const(weight))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            running_mean: vb.get_with_hints(dim, "running_mean", Init::Const(0.0))?,
            running_var: vb.get_with_hints(dim, "running_var", Init::Const(1.0))?,
            tracked: vb.get_with_hints((), "num_batches_tracked", Init::Const(0.0))?,
        })
    }

    /// `x`: batch x channels x height x width.
    /// Half precision is computed in f32, then cast back.
    pub(crate) fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = &x.to_dtype(wide(dtype))?;
        let c = x.dim(1)?;
        let per_channel = |t: &Tensor| t.to_dtype(wide(dtype))?.reshape((1, c, 1, 1));
        let (mean, var) = if let (true, Some(sync)) = (train, crate::dist::batch_norm_sync()) {
            // Over every rank's rows: sums all-reduced, two passes.
            let n = x.elem_count() / c * sync.world();
            let sum =
                |t: &Tensor| crate::dist::all_reduce_with_grad(&t.sum_keepdim((0, 2, 3))?, &sync);
            let mean = (sum(x)? / n as f64)?;
            let var = (sum(&x.broadcast_sub(&mean)?.sqr()?)? / n as f64)?;
            self.update(&mean, &var, n)?;
            (mean, var)
        } else if train {
            let mean = x.mean_keepdim((0, 2, 3))?;
            let var = x.broadcast_sub(&mean)?.sqr()?.mean_keepdim((0, 2, 3))?;
            self.update(&mean, &var, x.elem_count() / c)?;
            (mean, var)
        } else {
            (
                per_channel(&self.running_mean)?,
                per_channel(&self.running_var)?,
            )
        };
        x.broadcast_sub(&mean)?
            .broadcast_div(&(var + 1e-5)?.sqrt()?)?
            .broadcast_mul(&per_channel(&self.weight)?)?
            .broadcast_add(&per_channel(&self.bias)?)?
            .to_dtype(dtype)
    }

    /// Folds a batch's statistics into the running ones (only when they are
    /// variables, not when the model was built to count parameters).
    fn update(&self, mean: &Tensor, var: &Tensor, n: usize) -> Result<()> {
        if !self.running_mean.is_variable() {
            return Ok(());
        }
        let unbiased = n as f64 / (n.max(2) - 1) as f64;
        let m = 0.1;
        let set = |t: &Tensor, batch: &Tensor| -> Result<()> {
            let batch = batch.detach().flatten_all()?.to_dtype(t.dtype())?;
            let new = ((t * (1.0 - m))? + (batch * m)?)?;
            Var::from_tensor(t)?.set(&new)
        };
        set(&self.running_mean, mean)?;
        set(&self.running_var, &(var * unbiased)?)?;
        Var::from_tensor(&self.tracked)?.set(&(&self.tracked + 1.0)?)
    }
}

/// Softmax over the last dimension, differentiable (the maximum subtracted
/// for stability is a constant), half precision computed in f32 and cast
/// back.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(wide(dtype))?;
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?.to_dtype(dtype)
}

/// log(sum(exp(x))) over the last dimension, kept.
pub fn log_sum_exp(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    x.broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        .broadcast_add(&max)
}

/// A dense layer `name.weight` (out x in) and `name.bias`, the weight drawn
/// with standard deviation `std`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    pub(crate) fn new(
        vb: &VarBuilder,
        inp: usize,
        out: usize,
        std: f64,
        name: &str,
    ) -> Result<Self> {
        let vb = vb.pp(name);
        Ok(Linear {
            weight: vb.get_with_hints((out, inp), "weight", normal(std))?,
            bias: vb.get_with_hints(out, "bias", Init::Const(0.0))?,
        })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        linear(x, &self.weight, Some(&self.bias))
    }
}

impl Linear {
    /// `act(x · weightᵀ + bias)`, the bias and activation fused where
    /// [`fused::enabled`].
    fn forward_act(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        if fused::enabled(x) {
            let y = fused::linear(x, &self.weight, None)?;
            return fused::bias_act(&y, &self.bias, act);
        }
        act.apply(&linear(x, &self.weight, Some(&self.bias))?)
    }
}

/// `x · weightᵀ + bias` for `x` of shape (..., in) and `weight` (out x
/// in), as one 2-D matrix product over all leading dimensions: a batched
/// product against a broadcast weight would make the backward pass compute
/// one weight gradient per batch row and then sum them.
///
/// # Errors
/// Candle's errors, such as mismatched widths.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if fused::enabled(x) {
        return fused::linear(x, weight, bias);
    }
    let dims = x.dims();
    let inp = *dims.last().unwrap_or(&1);
    let rows = x.elem_count() / inp.max(1);
    let mut y = x.reshape((rows, inp))?.matmul(&weight.t()?)?;
    if let Some(b) = bias {
        y = y.broadcast_add(b)?;
    }
    let mut out = dims.to_vec();
    if let Some(last) = out.last_mut() {
        *last = weight.dim(0)?;
    }
    y.reshape(out)
}

/// A normal initialiser with mean 0.
pub(crate) fn normal(stdev: f64) -> Init {
    Init::Randn { mean: 0.0, stdev }
}

/// Multi-head attention of queries `q` (batch x m x width) over keys `k` and
/// values `v` (batch x n x width), with `mask` (m x n) added to the scores,
/// composed from Candle's differentiable primitives (the reference the
/// fused [`fused::attention`] is tested against).
pub(crate) fn attention_composed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let (b, m, w) = q.dims3()?;
    let n = k.dim(1)?;
    let hd = w / heads;
    let split = |t: &Tensor, len: usize| -> Result<Tensor> {
        t.reshape((b, len, heads, hd))?
            .transpose(1, 2)?
            .contiguous()
    };
    let (q, k, v) = (split(q, m)?, split(k, n)?, split(v, n)?);
    let mut scores = (q.matmul(&k.t()?.contiguous()?)? * (hd as f64).powf(-0.5))?;
    if let Some(mask) = mask {
        scores = scores.broadcast_add(mask)?;
    }
    let out = softmax(&scores)?.matmul(&v)?;
    out.transpose(1, 2)?.contiguous()?.reshape((b, m, w))
}

/// The shape of a Transformer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransformerConfig {
    /// Width of the residual stream.
    pub width: usize,
    /// Residual blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
}

/// One pre-LN residual block (`ln_1`, `attn`, `ln_2`, `mlp`), as open_clip's
/// `ResidualAttentionBlock`.
#[derive(Debug, Clone)]
struct Block {
    ln_1: LayerNorm,
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    c_proj: Linear,
    heads: usize,
    act: Activation,
}

impl Block {
    fn new(c: TransformerConfig, act: Activation, vb: VarBuilder) -> Result<Self> {
        let w = c.width;
        // open_clip's initialisation for a Transformer of this width and depth.
        let proj_std = (w as f64).powf(-0.5) * ((2 * c.layers) as f64).powf(-0.5);
        let attn_std = (w as f64).powf(-0.5);
        let fc_std = ((2 * w) as f64).powf(-0.5);
        let attn = vb.pp("attn");
        Ok(Block {
            ln_1: LayerNorm::new(w, vb.pp("ln_1"))?,
            in_proj_weight: attn.get_with_hints((3 * w, w), "in_proj_weight", normal(attn_std))?,
            in_proj_bias: attn.get_with_hints(3 * w, "in_proj_bias", Init::Const(0.0))?,
            out_proj: Linear::new(&attn, w, w, proj_std, "out_proj")?,
            ln_2: LayerNorm::new(w, vb.pp("ln_2"))?,
            c_fc: Linear::new(&vb.pp("mlp"), w, 4 * w, fc_std, "c_fc")?,
            c_proj: Linear::new(&vb.pp("mlp"), 4 * w, w, proj_std, "c_proj")?,
            heads: c.heads,
            act,
        })
    }

    /// `x`: batch x tokens x width; `mask`: the causal mask (tokens x
    /// tokens, -inf above the diagonal), added to the scores.
    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let w = x.dim(D::Minus1)?;
        let h = self.ln_1.forward(x)?;
        let qkv = linear(&h, &self.in_proj_weight, Some(&self.in_proj_bias))?;
        let attn = if fused::enabled(&qkv) {
            fused::attention(&qkv, self.heads, mask.is_some())?
        } else {
            let part = |i: usize| qkv.narrow(D::Minus1, i * w, w);
            attention_composed(&part(0)?, &part(1)?, &part(2)?, self.heads, mask)?
        };
        let x = (x + self.out_proj.forward(&attn)?)?;
        let h = self.ln_2.forward(&x)?;
        let h = self.c_proj.forward(&self.c_fc.forward_act(&h, self.act)?)?;
        x + h
    }
}

/// A stack of residual blocks (`resblocks.N`).
#[derive(Debug, Clone)]
pub struct Transformer {
    blocks: Vec<Block>,
}

impl Transformer {
    pub(crate) fn new(c: TransformerConfig, act: Activation, vb: VarBuilder) -> Result<Self> {
        let blocks = (0..c.layers)
            .map(|i| Block::new(c, act, vb.pp(format!("resblocks.{i}"))))
            .collect::<Result<_>>()?;
        Ok(Transformer { blocks })
    }

    pub(crate) fn forward(&self, mut x: Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        for b in &self.blocks {
            x = b.forward(&x, mask)?;
        }
        Ok(x)
    }
}
