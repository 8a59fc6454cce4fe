//! Fused CPU kernels for the Transformer's hot spots, each a Candle custom
//! op with its own backward pass: linear, layer norm, bias + GELU,
//! multi-head attention and CLIP's contrastive loss.
//!
//! Composed from Candle's primitives (what [`super::layers`] does on other
//! devices and in half precision), each of these is 5 to 20 small ops, each
//! allocating a full tensor and each with its own backward; on a 2-core CPU
//! the demo model spent 4.7 times its forward time in backward, most of it
//! there. The fused versions make one pass over the data forward and one or
//! two backward, and recompute what the backward needs (the attention
//! probabilities, the normalised rows) instead of keeping it.
//!
//! Their loops are written to vectorise, and compiled for AVX2 and AVX-512
//! besides the build's baseline (x86-64's SSE2), the variant picked at run
//! time (the `multiversion` crate): at batch 64 the `demo` model trained at
//! 241 samples/s on SSE2 and 447 with the wider vectors. Attention's five
//! per-head products (n x n from n x head width, and back) go to `gemm`
//! straight from the packed input, with no transposed copies: 556.
//!
//! The op boundaries are the ones a GPU version fills with its own kernels
//! (`cuda_fwd`); today every op here is f32 on the CPU, and
//! [`enabled`] says when the model uses them. Each op is checked against
//! its composed reference and by finite differences (the tests below).

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, bail,
};
use multiversion::multiversion;
use rayon::prelude::*;

use super::layers::Activation;

/// Whether `x` is computed with the fused kernels: f32 on the CPU, unless
/// the environment sets `WIT_FUSED=0` (to compare with the composed ops).
pub fn enabled(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && !disabled()
}

fn disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var("WIT_FUSED").is_ok_and(|v| v == "0"))
}

/// The contiguous f32 values of a CPU storage under `layout`.
pub(crate) fn values<'a>(s: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    match (s, layout.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        (CpuStorage::F32(_), None) => bail!("{op}: input is not contiguous"),
        (other, _) => bail!("{op}: wants f32, got {:?}", other.dtype()),
    }
}

/// Runs `f` on the contiguous f32 values of each tensor (made contiguous
/// first), for the backward passes, which receive tensors.
pub(crate) fn with_values<R>(
    ts: &[&Tensor],
    op: &str,
    f: impl FnOnce(&[&[f32]]) -> Result<R>,
) -> Result<R> {
    let ts: Vec<Tensor> = ts.iter().map(|t| t.contiguous()).collect::<Result<_>>()?;
    let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(ts.len());
    for (s, l) in &guards {
        match &**s {
            candle_core::Storage::Cpu(c) => slices.push(values(c, l, op)?),
            _ => bail!("{op}: the fused kernels run on the CPU"),
        }
    }
    f(&slices)
}

fn tensor(v: Vec<f32>, shape: impl Into<Shape>, like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(v, shape, like.device())
}

/// a · b, in eight partial sums so that it vectorises.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `x` folded by `f` from `init` in eight interleaved lanes, then the
/// lanes folded: a reduction the compiler can vectorise (a plain fold over
/// f32 must keep its order). For sums and maxima.
#[inline(always)]
fn lanes(x: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder().iter().fold(init, |a, &b| f(a, b));
    for c in chunks {
        for k in 0..8 {
            acc[k] = f(acc[k], c[k]);
        }
    }
    acc.iter().fold(tail, |a, &b| f(a, b))
}

/// The sum of `g(v)` over `x`, in eight interleaved lanes (as [`lanes`]).
#[inline(always)]
fn sum_of(x: &[f32], g: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&v| g(v)).sum();
    for c in chunks {
        for k in 0..8 {
            acc[k] += g(c[k]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `n` zeros, written on rayon's threads. A fresh output buffer zeroed by
/// the calling thread alone leaves the other cores idle meanwhile: 4% of
/// the CPU time of the `ViT-S-32` preset's step (`perf record`), serial.
fn zeros(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    v.par_extend(rayon::iter::repeat_n(0f32, n));
    v
}

/// `rows` copies of `row` one after another, written on rayon's threads.
fn tiled(row: &[f32], rows: usize) -> Vec<f32> {
    let n = rows * row.len();
    let mut v = Vec::with_capacity(n);
    if n > 0 {
        let chunk = rows_per_task(rows, row.len()) * row.len();
        v.spare_capacity_mut()[..n]
            .par_chunks_mut(chunk)
            .for_each(|c| {
                for r in c.chunks_exact_mut(row.len()) {
                    for (d, s) in r.iter_mut().zip(row) {
                        d.write(*s);
                    }
                }
            });
    }
    // SAFETY: the loop above wrote each of the first n elements (the
    // chunks are whole rows, as n is).
    unsafe { v.set_len(n) };
    v
}

/// Rows per parallel task: enough work per task to pay for the split.
fn rows_per_task(rows: usize, width: usize) -> usize {
    (16_384 / width.max(1)).clamp(1, rows.max(1))
}

// -------------------------------------------------------------------- linear

/// `x · weightᵀ + bias` for `x` (..., in), `weight` (out x in) and `bias`
/// (out; zeros where `None`): one matrix product straight into the bias
/// rows, and two in the backward (`dx = dy · weight`, `dweight = dyᵀ · x`),
/// with no transposed copies and no per-node gradient buffers in between.
/// Returns (..., out).
///
/// # Errors
/// Mismatched shapes, or a tensor not f32 on the CPU.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let zero;
    let bias = match bias {
        Some(b) => b,
        None => {
            zero = Tensor::zeros(weight.dim(0)?, x.dtype(), x.device())?;
            &zero
        }
    };
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, bias, LinearOp)
}

struct LinearOp;

/// A matrix inside a slice: element (r, c) at `v[r * rs + c * cs]`.
#[derive(Clone, Copy)]
struct View<'a> {
    v: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    fn new(v: &'a [f32], rs: usize, cs: usize) -> View<'a> {
        View { v, rs, cs }
    }

    /// Whether an r x c matrix fits.
    fn holds(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || self.v.len() > (r - 1) * self.rs + (c - 1) * self.cs
    }
}

/// `dst = [dst +] scale · a · b`, where `a` is m x k, `b` is k x n and
/// `dst` m x n with rows `dst_rs` apart, by the `gemm` crate; on rayon's
/// threads when `threads` and the product is large enough to pay for it.
#[allow(clippy::too_many_arguments)]
fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: View,
    b: View,
    scale: f32,
    threads: bool,
) {
    assert!(m == 0 || n == 0 || dst.len() >= (m - 1) * dst_rs + n);
    assert!(a.holds(m, k) && b.holds(k, n));
    let t = rayon::current_num_threads();
    let parallelism = if threads && t > 1 && m * n * k > 32_768 {
        gemm::Parallelism::Rayon(t)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every index gemm reads or writes
    // inside the slices; dst does not alias a or b (a &mut borrow).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.v.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.v.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "wit-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (x, w, b) = (
            values(s1, l1, name)?,
            values(s2, l2, name)?,
            values(s3, l3, name)?,
        );
        let (&[out, inp], Some(&k)) = (l2.dims(), l1.dims().last()) else {
            bail!("{name}: x {:?}, weight {:?}", l1.dims(), l2.dims());
        };
        if k != inp || b.len() != out {
            bail!(
                "{name}: x {:?}, weight {:?}, bias {}",
                l1.dims(),
                l2.dims(),
                b.len()
            );
        }
        let m = x.len() / inp.max(1);
        let mut y = tiled(b, m);
        let (x, w) = (View::new(x, inp, 1), View::new(w, 1, inp));
        matmul((m, out, inp), &mut y, out, true, x, w, 1.0, true);
        let mut dims = l1.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = out;
        }
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (out, inp) = weight.dims2()?;
        let (dx, dw, db) = with_values(&[x, weight, grad], self.name(), |v| {
            let (x, w, g) = (v[0], v[1], v[2]);
            let m = x.len() / inp.max(1);
            let (gv, gt) = (View::new(g, out, 1), View::new(g, 1, out));
            let (w, x) = (View::new(w, inp, 1), View::new(x, inp, 1));
            // The two products have the same size (m · in · out): one
            // each on two threads beats splitting each across both. Each
            // thread zeroes its own output.
            let (dx, (dw, db)) = rayon::join(
                || {
                    let mut dx = vec![0f32; m * inp];
                    matmul((m, inp, out), &mut dx, inp, false, gv, w, 1.0, false);
                    dx
                },
                || {
                    let mut dw = vec![0f32; out * inp];
                    matmul((out, inp, m), &mut dw, inp, false, gt, x, 1.0, false);
                    let mut db = vec![0f32; out];
                    for row in g.chunks_exact(out) {
                        for (d, v) in db.iter_mut().zip(row) {
                            *d += v;
                        }
                    }
                    (dw, db)
                },
            );
            Ok((dx, dw, db))
        })?;
        Ok((
            Some(tensor(dx, x.shape(), x)?),
            Some(tensor(dw, weight.shape(), x)?),
            Some(tensor(db, bias.shape(), x)?),
        ))
    }
}

// ---------------------------------------------------------------- layer norm

/// Layer norm over the last dimension with `eps`: `(x - mean) / sqrt(var +
/// eps) * weight + bias`, the variance biased (PyTorch's `nn.LayerNorm`).
/// `x`: (..., d) f32; `weight`, `bias`: (d).
///
/// # Errors
/// Mismatched shapes, or a tensor not f32 on the CPU.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    x.contiguous()?.apply_op3(weight, bias, LayerNormOp { eps })
}

struct LayerNormOp {
    eps: f32,
}

/// Mean and 1/std of one row.
#[inline(always)]
fn row_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let d = x.len() as f32;
    let mean = lanes(x, 0.0, |s, v| s + v) / d;
    let var = sum_of(x, |v| (v - mean) * (v - mean)) / d;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "wit-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (x, w, b) = (
            values(s1, l1, name)?,
            values(s2, l2, name)?,
            values(s3, l3, name)?,
        );
        let d = w.len();
        if d == 0 || b.len() != d || l1.dims().last() != Some(&d) {
            bail!("{name}: x {:?}, weight {d}, bias {}", l1.dims(), b.len());
        }
        let mut y = zeros(x.len());
        let chunk = rows_per_task(x.len() / d, d) * d;
        y.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(y, x)| layer_norm_rows(y, x, w, b, self.eps));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = weight.elem_count();
        let (dx, dw, db) = with_values(&[x, weight, grad], self.name(), |v| {
            let (x, w, g) = (v[0], v[1], v[2]);
            let mut dx = zeros(x.len());
            let chunk = rows_per_task(x.len() / d, d) * d;
            // Each task's sums of dy * xhat and dy, added up after.
            let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
                .par_chunks_mut(chunk)
                .zip(x.par_chunks(chunk).zip(g.par_chunks(chunk)))
                .map(|(dx, (x, g))| layer_norm_rows_bwd(dx, x, g, w, self.eps))
                .collect();
            let (mut dw, mut db) = (vec![0f32; d], vec![0f32; d]);
            for (pw, pb) in partial {
                for i in 0..d {
                    dw[i] += pw[i];
                    db[i] += pb[i];
                }
            }
            Ok((dx, dw, db))
        })?;
        Ok((
            Some(tensor(dx, x.shape(), x)?),
            Some(tensor(dw, weight.shape(), x)?),
            Some(tensor(db, weight.shape(), x)?),
        ))
    }
}

// --------------------------------------------------------------- bias + act

/// `act(x + bias)`: the Transformer MLP's first layer after its matrix
/// product. `x`: (..., d) f32; `bias`: (d).
///
/// # Errors
/// Mismatched shapes, or a tensor not f32 on the CPU.
pub fn bias_act(x: &Tensor, bias: &Tensor, act: Activation) -> Result<Tensor> {
    x.contiguous()?.apply_op2(bias, BiasActOp { act })
}

struct BiasActOp {
    act: Activation,
}

/// The GELU's 1 / sqrt(2) and 1 / sqrt(2 pi).
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// erf(x) as a rational function of x², x clamped to [-4, 4] (where erf
/// is ±1 in f32): branch-free, so the loops around it vectorise, within
/// 5e-7 of libm's `erff` (the test below). The coefficients are Eigen's
/// `generic_fast_erf_float` (Eigen 3.3, `SpecialFunctionsImpl.h`).
#[inline(always)]
fn erf(x: f32) -> f32 {
    const ALPHA: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_600_2e-3,
        -1.609_603_3e-2,
    ];
    const BETA: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329_5e-3,
        -1.426_474e-2,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = ALPHA[0];
    for a in &ALPHA[1..] {
        p = p * x2 + a;
    }
    let mut q = BETA[0];
    for b in &BETA[1..] {
        q = q * x2 + b;
    }
    x * p / q
}

/// exp(x) for f32 without a libm call, so the loops around it vectorise:
/// x = n ln 2 + r with |r| <= ln 2 / 2 (Cody and Waite's two-part ln 2),
/// e^r by its Taylor series to r⁶ (truncation error below 7e-8 relative),
/// times 2^n built in the exponent bits. Within 3e-7 relative of libm's
/// `expf` (the test below); 0 below -87.3, where f32 loses normal range.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5 · 2^23: adding and subtracting it rounds to an integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.7);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // n itself sits in t's low mantissa bits (|n| < 2^22): an integer
    // subtraction, where `n as i32` would saturate lane by lane.
    let bits = (t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127)) << 23;
    let e = p * f32::from_bits(bits);
    if x <= -87.3 { 0.0 } else { e }
}

/// `act(z)` and its derivative.
#[inline(always)]
fn act_and_slope(act: Activation, z: f32) -> (f32, f32) {
    match act {
        // Phi(z) = (1 + erf(z / sqrt 2)) / 2; d/dz z Phi(z) = Phi + z phi.
        Activation::Gelu => {
            let cdf = 0.5 * (1.0 + erf(z * FRAC_1_SQRT_2));
            let pdf = FRAC_1_SQRT_2PI * exp(-0.5 * z * z);
            (z * cdf, cdf + z * pdf)
        }
        // z s(1.702 z); d/dz = s + 1.702 z s (1 - s).
        Activation::QuickGelu => {
            let s = 1.0 / (1.0 + exp(-1.702 * z));
            (z * s, s + 1.702 * z * s * (1.0 - s))
        }
    }
}

#[inline(always)]
fn act_value(act: Activation, z: f32) -> f32 {
    match act {
        Activation::Gelu => 0.5 * z * (1.0 + erf(z * FRAC_1_SQRT_2)),
        Activation::QuickGelu => z / (1.0 + exp(-1.702 * z)),
    }
}

impl CustomOp2 for BiasActOp {
    fn name(&self) -> &'static str {
        "wit-bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (x, b) = (values(s1, l1, name)?, values(s2, l2, name)?);
        let d = b.len();
        if d == 0 || l1.dims().last() != Some(&d) {
            bail!("{name}: x {:?}, bias {d}", l1.dims());
        }
        let mut y = zeros(x.len());
        let chunk = rows_per_task(x.len() / d, d) * d;
        y.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(y, x)| bias_act_rows(y, x, b, self.act));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = bias.elem_count();
        let (dx, db) = with_values(&[x, bias, grad], self.name(), |v| {
            let (x, b, g) = (v[0], v[1], v[2]);
            let mut dx = zeros(x.len());
            let chunk = rows_per_task(x.len() / d, d) * d;
            let partial: Vec<Vec<f32>> = dx
                .par_chunks_mut(chunk)
                .zip(x.par_chunks(chunk).zip(g.par_chunks(chunk)))
                .map(|(dx, (x, g))| bias_act_rows_bwd(dx, x, g, b, self.act))
                .collect();
            let mut db = vec![0f32; d];
            for p in partial {
                for i in 0..d {
                    db[i] += p[i];
                }
            }
            Ok((dx, db))
        })?;
        Ok((
            Some(tensor(dx, x.shape(), x)?),
            Some(tensor(db, bias.shape(), x)?),
        ))
    }
}

// ----------------------------------------------------------------- attention

/// Multi-head scaled dot-product attention straight from the packed input
/// projection, as open_clip's `nn.MultiheadAttention` computes it: `qkv`
/// (batch x n x 3w, queries then keys then values, head `h` at columns `h *
/// w / heads ..`) to batch x n x w, scores scaled by `(w / heads)^-0.5`,
/// with a causal mask (position i sees positions <= i) when `causal`.
///
/// The n x n probabilities live only in a per-task buffer: the backward
/// recomputes them from `qkv` (as flash attention does).
///
/// # Errors
/// A width not divisible by `heads`, or a tensor not f32 on the CPU.
pub fn attention(qkv: &Tensor, heads: usize, causal: bool) -> Result<Tensor> {
    qkv.contiguous()?.apply_op1(AttentionOp { heads, causal })
}

struct AttentionOp {
    heads: usize,
    causal: bool,
}

/// One (sample, head)'s shape within the packed rows.
#[derive(Clone, Copy)]
struct Head {
    n: usize,
    /// Width of the residual stream.
    w: usize,
    /// Head width.
    hd: usize,
    /// Column of this head's queries.
    col: usize,
    scale: f32,
    causal: bool,
}

impl Head {
    /// Keys position `i` attends to.
    #[inline(always)]
    fn keys(&self, i: usize) -> usize {
        if self.causal { i + 1 } else { self.n }
    }

    /// This head's queries in one sample's packed `qkv` (n x 3w): n x hd.
    fn queries<'a>(&self, qkv: &'a [f32]) -> View<'a> {
        View::new(&qkv[self.col..], 3 * self.w, 1)
    }

    /// This head's keys, transposed: hd x n.
    fn keys_t<'a>(&self, qkv: &'a [f32]) -> View<'a> {
        View::new(&qkv[self.w + self.col..], 1, 3 * self.w)
    }

    /// This head's keys: n x hd.
    fn keys_of<'a>(&self, qkv: &'a [f32]) -> View<'a> {
        View::new(&qkv[self.w + self.col..], 3 * self.w, 1)
    }

    /// This head's values, transposed: hd x n.
    fn values_t<'a>(&self, qkv: &'a [f32]) -> View<'a> {
        View::new(&qkv[2 * self.w + self.col..], 1, 3 * self.w)
    }

    /// This head's values: n x hd.
    fn values<'a>(&self, qkv: &'a [f32]) -> View<'a> {
        View::new(&qkv[2 * self.w + self.col..], 3 * self.w, 1)
    }

    /// The softmax probabilities `p` (n x n; zero past [`Head::keys`] in
    /// each row) of one sample's packed `qkv` (n x 3w).
    #[inline(always)]
    fn probabilities(&self, qkv: &[f32], p: &mut [f32]) {
        let n = self.n;
        let (q, kt) = (self.queries(qkv), self.keys_t(qkv));
        matmul((n, n, self.hd), p, n, false, q, kt, self.scale, false);
        for (i, row) in p.chunks_exact_mut(n).enumerate() {
            let (row, masked) = row.split_at_mut(self.keys(i));
            masked.fill(0.0);
            let max = lanes(row, f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
            for r in row.iter_mut() {
                *r = exp(*r - max);
            }
            let inv = 1.0 / lanes(row, 0.0, |a, b| a + b);
            for r in row.iter_mut() {
                *r *= inv;
            }
        }
    }
}

impl AttentionOp {
    fn heads_of(&self, dims: &[usize]) -> Result<(usize, usize, Vec<Head>)> {
        let &[b, n, w3] = dims else {
            bail!("wit-attention: qkv {dims:?}, want batch x n x 3 width");
        };
        let w = w3 / 3;
        if w3 % 3 != 0 || self.heads == 0 || w % self.heads != 0 {
            bail!("wit-attention: qkv {dims:?} with {} heads", self.heads);
        }
        let hd = w / self.heads;
        let heads = (0..self.heads)
            .map(|h| Head {
                n,
                w,
                hd,
                col: h * hd,
                scale: (hd as f32).powf(-0.5),
                causal: self.causal,
            })
            .collect();
        Ok((b, n, heads))
    }
}

impl CustomOp1 for AttentionOp {
    fn name(&self) -> &'static str {
        "wit-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = values(s, l, self.name())?;
        let (b, n, heads) = self.heads_of(l.dims())?;
        let w = heads[0].w;
        let mut out = zeros(b * n * w);
        out.par_chunks_mut(n * w)
            .zip(qkv.par_chunks(n * 3 * w))
            .for_each(|(out, qkv)| attention_sample(out, qkv, &heads));
        Ok((CpuStorage::F32(out), Shape::from((b, n, w))))
    }

    fn bwd(&self, qkv: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, n, heads) = self.heads_of(qkv.dims())?;
        let w = heads[0].w;
        let dqkv = with_values(&[qkv, res, grad], self.name(), |v| {
            let (qkv, out, g) = (v[0], v[1], v[2]);
            let mut dqkv = zeros(qkv.len());
            dqkv.par_chunks_mut(n * 3 * w)
                .zip(qkv.par_chunks(n * 3 * w))
                .zip(out.par_chunks(n * w).zip(g.par_chunks(n * w)))
                .for_each(|((dqkv, qkv), (out, g))| {
                    attention_sample_bwd(dqkv, qkv, out, g, &heads)
                });
            Ok(dqkv)
        })?;
        Ok(Some(tensor(dqkv, qkv.shape(), qkv)?))
    }
}

// ------------------------------------------------ vectorised per-task loops

/// Layer norm of the rows of `x` (each `w.len()` long) into `y`.
#[multiversion(targets = "simd")]
fn layer_norm_rows(y: &mut [f32], x: &[f32], w: &[f32], b: &[f32], eps: f32) {
    let d = w.len();
    for (y, x) in y.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        let (mean, rstd) = row_stats(x, eps);
        for i in 0..d {
            y[i] = (x[i] - mean) * rstd * w[i] + b[i];
        }
    }
}

/// The layer norm backward of the rows of `x` given the output gradient
/// `g`: `dx`, and these rows' sums of `dy * xhat` and `dy`.
#[multiversion(targets = "simd")]
fn layer_norm_rows_bwd(
    dx: &mut [f32],
    x: &[f32],
    g: &[f32],
    w: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let d = w.len();
    let (mut dw, mut db) = (vec![0f32; d], vec![0f32; d]);
    let (mut xhat, mut gh) = (vec![0f32; d], vec![0f32; d]);
    for ((dx, x), g) in dx
        .chunks_exact_mut(d)
        .zip(x.chunks_exact(d))
        .zip(g.chunks_exact(d))
    {
        let (mean, rstd) = row_stats(x, eps);
        for i in 0..d {
            xhat[i] = (x[i] - mean) * rstd;
            gh[i] = g[i] * w[i];
            dw[i] += g[i] * xhat[i];
            db[i] += g[i];
        }
        let a = lanes(&gh, 0.0, |s, v| s + v) / d as f32;
        let c = dot(&gh, &xhat) / d as f32;
        for i in 0..d {
            dx[i] = rstd * (gh[i] - a - xhat[i] * c);
        }
    }
    (dw, db)
}

/// `act(x + b)` of the rows of `x` (each `b.len()` long) into `y`.
#[multiversion(targets = "simd")]
fn bias_act_rows(y: &mut [f32], x: &[f32], b: &[f32], act: Activation) {
    let d = b.len();
    for (y, x) in y.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        for i in 0..d {
            y[i] = act_value(act, x[i] + b[i]);
        }
    }
}

/// The bias + activation backward of the rows of `x`: `dx`, and these
/// rows' sum of `dx` (the bias gradient).
#[multiversion(targets = "simd")]
fn bias_act_rows_bwd(dx: &mut [f32], x: &[f32], g: &[f32], b: &[f32], act: Activation) -> Vec<f32> {
    let d = b.len();
    let mut db = vec![0f32; d];
    for ((dx, x), g) in dx
        .chunks_exact_mut(d)
        .zip(x.chunks_exact(d))
        .zip(g.chunks_exact(d))
    {
        for i in 0..d {
            dx[i] = g[i] * act_and_slope(act, x[i] + b[i]).1;
            db[i] += dx[i];
        }
    }
    db
}

/// Attention of one sample: `qkv` (n x 3w) to `out` (n x w), every head.
#[multiversion(targets = "simd")]
fn attention_sample(out: &mut [f32], qkv: &[f32], heads: &[Head]) {
    let (n, w) = (heads[0].n, heads[0].w);
    let mut p = vec![0f32; n * n];
    for h in heads {
        h.probabilities(qkv, &mut p);
        // O = P V, into the head's columns.
        let pv = View::new(&p, n, 1);
        matmul(
            (n, h.hd, n),
            &mut out[h.col..],
            w,
            false,
            pv,
            h.values(qkv),
            1.0,
            false,
        );
    }
}

/// The attention backward of one sample: `dqkv` (n x 3w, every element
/// written) from `qkv`, the forward's `out` and its gradient `g` (n x w).
#[multiversion(targets = "simd")]
fn attention_sample_bwd(dqkv: &mut [f32], qkv: &[f32], out: &[f32], g: &[f32], heads: &[Head]) {
    let (n, w, hd) = (heads[0].n, heads[0].w, heads[0].hd);
    let w3 = 3 * w;
    let (mut p, mut ds) = (vec![0f32; n * n], vec![0f32; n * n]);
    for h in heads {
        h.probabilities(qkv, &mut p);
        let dout = View::new(&g[h.col..], w, 1);
        // dP = dO Vᵀ.
        let vt = h.values_t(qkv);
        matmul((n, n, hd), &mut ds, n, false, dout, vt, 1.0, false);
        // dV = Pᵀ dO.
        let pt = View::new(&p, 1, n);
        let dv = &mut dqkv[2 * w + h.col..];
        matmul((n, hd, n), dv, w3, false, pt, dout, 1.0, false);
        // dS_ij = P_ij (dP_ij - dO_i . O_i); the scale goes into dQ and dK.
        for (i, (ds, p)) in ds.chunks_exact_mut(n).zip(p.chunks_exact(n)).enumerate() {
            let di = dot(&g[i * w + h.col..][..hd], &out[i * w + h.col..][..hd]);
            for (s, &pij) in ds.iter_mut().zip(p) {
                *s = pij * (*s - di);
            }
        }
        // dQ = scale dS K; dK = scale dSᵀ Q.
        let (dsv, dst) = (View::new(&ds, n, 1), View::new(&ds, 1, n));
        let dq = &mut dqkv[h.col..];
        matmul(
            (n, hd, n),
            dq,
            w3,
            false,
            dsv,
            h.keys_of(qkv),
            h.scale,
            false,
        );
        let dk = &mut dqkv[w + h.col..];
        matmul(
            (n, hd, n),
            dk,
            w3,
            false,
            dst,
            h.queries(qkv),
            h.scale,
            false,
        );
    }
}

// ----------------------------------------------------------- contrastive loss

/// CLIP's symmetric contrastive loss of L2-normalised `images` and `texts`
/// (both n x d f32, row i of each a matching pair) at temperature
/// `exp(log_scale)` (a scalar): the mean of the image-to-text and
/// text-to-image cross-entropies of `exp(log_scale) · images · textsᵀ`
/// (Radford et al. 2021, Figure 3). Returns a scalar.
///
/// # Errors
/// Mismatched shapes, or a tensor not f32 on the CPU.
pub fn contrastive_loss(images: &Tensor, texts: &Tensor, log_scale: &Tensor) -> Result<Tensor> {
    images
        .contiguous()?
        .apply_op3(&texts.contiguous()?, &log_scale.reshape(())?, ContrastiveOp)
}

struct ContrastiveOp;

/// The logits (n x n, unscaled products and scaled) and the loss.
struct Logits {
    n: usize,
    /// images · textsᵀ, row-major.
    dots: Vec<f32>,
    scale: f32,
}

impl Logits {
    fn new(im: &[f32], tx: &[f32], d: usize, log_scale: f32) -> Logits {
        let n = im.len() / d;
        let mut dots = vec![0f32; n * n];
        dots.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            let a = &im[i * d..(i + 1) * d];
            for (j, r) in row.iter_mut().enumerate() {
                *r = a
                    .iter()
                    .zip(&tx[j * d..(j + 1) * d])
                    .map(|(x, y)| x * y)
                    .sum();
            }
        });
        Logits {
            n,
            dots,
            scale: log_scale.exp(),
        }
    }

    fn at(&self, i: usize, j: usize) -> f32 {
        self.scale * self.dots[i * self.n + j]
    }

    /// Softmax of row i (`by_row`) or column i, into `out`; returns its
    /// log-sum-exp.
    fn softmax(&self, i: usize, by_row: bool, out: &mut [f32]) -> f32 {
        let get = |j: usize| if by_row { self.at(i, j) } else { self.at(j, i) };
        let max = (0..self.n).map(get).fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for (j, o) in out.iter_mut().enumerate() {
            *o = (get(j) - max).exp();
            sum += *o;
        }
        for o in out.iter_mut() {
            *o /= sum;
        }
        max + sum.ln()
    }

    fn loss(&self) -> f32 {
        let mut scratch = vec![0f32; self.n];
        let mut total = 0f64;
        for i in 0..self.n {
            let diag = f64::from(self.at(i, i));
            total += f64::from(self.softmax(i, true, &mut scratch)) - diag;
            total += f64::from(self.softmax(i, false, &mut scratch)) - diag;
        }
        (total / (2 * self.n) as f64) as f32
    }
}

impl CustomOp3 for ContrastiveOp {
    fn name(&self) -> &'static str {
        "wit-contrastive-loss"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (im, tx, ls) = (
            values(s1, l1, name)?,
            values(s2, l2, name)?,
            values(s3, l3, name)?,
        );
        let (&[n, d], [log_scale]) = (l1.dims(), ls) else {
            bail!("{name}: images {:?}, log scale {:?}", l1.dims(), l3.dims());
        };
        if l2.dims() != [n, d] || n == 0 {
            bail!("{name}: images {:?}, texts {:?}", l1.dims(), l2.dims());
        }
        let loss = Logits::new(im, tx, d, *log_scale).loss();
        Ok((CpuStorage::F32(vec![loss]), Shape::from(())))
    }

    fn bwd(
        &self,
        images: &Tensor,
        texts: &Tensor,
        log_scale: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, d) = images.dims2()?;
        let (di, dt, dl) = with_values(&[images, texts, log_scale, grad], self.name(), |v| {
            let (im, tx, ls, g) = (v[0], v[1], v[2][0], v[3][0]);
            let lg = Logits::new(im, tx, d, ls);
            // dLoss/dlogit_ij = g / 2n (softmax_row_i(j) + softmax_col_j(i) - 2 [i = j]).
            let mut dz = vec![0f32; n * n];
            let mut scratch = vec![0f32; n];
            let k = g / (2 * n) as f32;
            for i in 0..n {
                lg.softmax(i, true, &mut scratch);
                for j in 0..n {
                    dz[i * n + j] += k * scratch[j];
                }
                lg.softmax(i, false, &mut scratch);
                for j in 0..n {
                    dz[j * n + i] += k * scratch[j];
                }
                dz[i * n + i] -= 2.0 * k;
            }
            // logits = s · dots: d/d(log s) = sum dz · logits; d images = s dz · texts.
            let dl: f64 = (0..n * n)
                .map(|ij| f64::from(dz[ij]) * f64::from(lg.scale * lg.dots[ij]))
                .sum();
            let s = lg.scale;
            let mut di = vec![0f32; n * d];
            di.par_chunks_mut(d).enumerate().for_each(|(i, row)| {
                for j in 0..n {
                    let z = s * dz[i * n + j];
                    for (r, t) in row.iter_mut().zip(&tx[j * d..(j + 1) * d]) {
                        *r += z * t;
                    }
                }
            });
            let mut dt = vec![0f32; n * d];
            dt.par_chunks_mut(d).enumerate().for_each(|(j, row)| {
                for i in 0..n {
                    let z = s * dz[i * n + j];
                    for (r, x) in row.iter_mut().zip(&im[i * d..(i + 1) * d]) {
                        *r += z * x;
                    }
                }
            });
            Ok((di, dt, dl as f32))
        })?;
        Ok((
            Some(tensor(di, (n, d), images)?),
            Some(tensor(dt, (n, d), images)?),
            Some(tensor(vec![dl], log_scale.shape(), images)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers;
    use candle_core::{Device, Var};

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = wit_contract::wds::SplitMix64::new(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                let u = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                let w = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * w).cos()) as f32
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn vals(t: &Tensor) -> Vec<f64> {
        t.flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// Max |a - b| / max |b|.
    fn rel(a: &Tensor, b: &Tensor) -> f64 {
        assert_eq!(a.dims(), b.dims());
        let (a, b) = (vals(a), vals(b));
        let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
        a.iter()
            .zip(&b)
            .fold(0f64, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    /// The fused op `f` against the composed `reference` on the same
    /// inputs: outputs, and the gradients of sum(out * r) for a random r
    /// with respect to every input, agree to `tol` relative; and the fused
    /// gradient agrees with central finite differences of the fused
    /// forward at a few coordinates.
    fn check(
        inputs: Vec<Tensor>,
        f: impl Fn(&[Tensor]) -> Tensor,
        reference: impl Fn(&[Tensor]) -> Tensor,
        tol: f64,
    ) {
        let vars: Vec<Var> = inputs
            .iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let (a, b) = (f(&ts), reference(&ts));
        assert!(rel(&a, &b) < tol, "forward: {}", rel(&a, &b));
        let r = randn(a.dims(), 99);
        let obj = |o: &Tensor| (o * &r).unwrap().sum_all().unwrap();
        let (ga, gb) = (obj(&a).backward().unwrap(), obj(&b).backward().unwrap());
        for (i, t) in ts.iter().enumerate() {
            let (x, y) = (ga.get(t).unwrap(), gb.get(t).unwrap());
            assert!(rel(x, y) < tol, "gradient of input {i}: {}", rel(x, y));
            // Finite differences on the fused forward, in f64 sums.
            let g = vals(x);
            let base = vals(t);
            let scale = g.iter().fold(0f64, |m, v| m.max(v.abs()));
            for k in (0..base.len()).step_by((base.len() / 5).max(1)) {
                let eps = 1e-2;
                let at = |delta: f64| {
                    let mut v = base.clone();
                    v[k] += delta;
                    let v: Vec<f32> = v.iter().map(|x| *x as f32).collect();
                    let mut moved = ts.clone();
                    moved[i] = Tensor::from_vec(v, t.shape(), &Device::Cpu).unwrap();
                    let o = vals(&f(&moved));
                    o.iter().zip(vals(&r)).map(|(o, r)| o * r).sum::<f64>()
                };
                let fd = (at(eps) - at(-eps)) / (2.0 * eps);
                assert!(
                    (fd - g[k]).abs() <= 1e-2 * scale.max(1.0),
                    "input {i} coordinate {k}: finite difference {fd}, gradient {}",
                    g[k]
                );
            }
        }
    }

    #[test]
    fn the_polynomial_exp_is_libms_to_3e_7() {
        let mut worst = 0f32;
        for i in -87_000..=88_000 {
            let x = i as f32 * 1e-3;
            let want = x.exp();
            worst = worst.max((exp(x) - want).abs() / want);
        }
        assert!(worst < 3e-7, "{worst}");
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn the_rational_erf_is_libms_to_5e_7() {
        let mut worst = 0f32;
        for i in -60_000..=60_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((erf(x) - libm::erff(x)).abs());
        }
        assert!(worst < 5e-7, "{worst}");
        assert!((erf(9.0) - 1.0).abs() < 5e-7 && (erf(-9.0) + 1.0).abs() < 5e-7);
    }

    #[test]
    fn linear_equals_the_composed_one() {
        let x = randn(&[3, 7, 24], 11);
        let w = randn(&[40, 24], 12);
        let b = randn(&[40], 13);
        check(
            vec![x, w, b],
            |t| linear(&t[0], &t[1], Some(&t[2])).unwrap(),
            |t| {
                t[0].broadcast_matmul(&t[1].t().unwrap())
                    .unwrap()
                    .broadcast_add(&t[2])
                    .unwrap()
            },
            1e-5,
        );
    }

    #[test]
    fn layer_norm_equals_the_composed_one() {
        let ln = |t: &[Tensor]| -> Tensor {
            let x = &t[0];
            let mean = x.mean_keepdim(candle_core::D::Minus1).unwrap();
            let c = x.broadcast_sub(&mean).unwrap();
            let var = c
                .sqr()
                .unwrap()
                .mean_keepdim(candle_core::D::Minus1)
                .unwrap();
            c.broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
                .unwrap()
                .broadcast_mul(&t[1])
                .unwrap()
                .broadcast_add(&t[2])
                .unwrap()
        };
        let x = randn(&[3, 37, 24], 1).affine(2.0, 0.5).unwrap();
        let w = randn(&[24], 2).affine(0.5, 1.0).unwrap();
        let b = randn(&[24], 3);
        check(
            vec![x, w, b],
            |t| layer_norm(&t[0], &t[1], &t[2], 1e-5).unwrap(),
            ln,
            1e-5,
        );
    }

    #[test]
    fn bias_act_equals_the_composed_one() {
        for act in [Activation::Gelu, Activation::QuickGelu] {
            let x = (randn(&[5, 7, 32], 4) * 2.0).unwrap();
            let b = randn(&[32], 5);
            check(
                vec![x, b],
                |t| bias_act(&t[0], &t[1], act).unwrap(),
                |t| act.apply(&t[0].broadcast_add(&t[1]).unwrap()).unwrap(),
                1e-5,
            );
        }
    }

    #[test]
    fn attention_equals_the_composed_one() {
        for (causal, n, w, heads) in [(false, 37, 32, 4), (true, 12, 24, 2), (false, 1, 8, 1)] {
            let mask = causal.then(|| {
                let m: Vec<f32> = (0..n * n)
                    .map(|k| {
                        if k % n > k / n {
                            f32::NEG_INFINITY
                        } else {
                            0.0
                        }
                    })
                    .collect();
                Tensor::from_vec(m, (n, n), &Device::Cpu).unwrap()
            });
            let qkv = randn(&[3, n, 3 * w], 6 + n as u64);
            check(
                vec![qkv],
                |t| attention(&t[0], heads, causal).unwrap(),
                |t| {
                    let part = |i: usize| t[0].narrow(2, i * w, w).unwrap();
                    layers::attention_composed(&part(0), &part(1), &part(2), heads, mask.as_ref())
                        .unwrap()
                },
                1e-5,
            );
        }
    }

    #[test]
    fn contrastive_loss_equals_the_composed_one() {
        let norm = |t: Tensor| crate::model::l2_normalize(&t).unwrap();
        let im = norm(randn(&[9, 16], 7));
        let tx = norm(randn(&[9, 16], 8));
        let ls = Tensor::new(2.3f32, &Device::Cpu).unwrap();
        check(
            vec![im, tx, ls],
            |t| contrastive_loss(&t[0], &t[1], &t[2]).unwrap(),
            |t| crate::model::contrastive_loss_composed(&t[0], &t[1], &t[2]).unwrap(),
            1e-5,
        );
    }
}
