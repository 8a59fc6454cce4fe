//! AdamW as CLIP trains with it, which Candle's `AdamW` cannot do (it has no
//! parameter groups, no schedule, no clipping and no saved state):
//!
//! - decoupled weight decay (0.2) on weights only: none on parameters with
//!   fewer than two dimensions or whose name holds `bn`, `ln`, `bias` or
//!   `logit_scale` (open_clip's rule);
//! - betas (0.9, 0.98), eps 1e-6;
//! - a linear warmup, then cosine decay to zero ([`lr_at`]);
//! - optional clipping of the global gradient norm;
//! - the logit scale clamped at ln(100) after each step;
//! - its moments and step count saved and restored as safetensors.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{
    CpuStorage, DType, InplaceOp2, InplaceOp3, Layout, Result, Tensor, Var, backprop::GradStore,
};
use multiversion::multiversion;
use rayon::prelude::*;

use crate::model::fused;

/// The optimiser's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Decoupled weight decay on weights.
    pub weight_decay: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
    /// Steps of linear warmup.
    pub warmup: u64,
    /// Total steps (the cosine reaches zero there).
    pub total: u64,
    /// Clip the global gradient norm to this, if set.
    pub clip_norm: Option<f64>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 5e-4,
            weight_decay: 0.2,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            warmup: 2000,
            total: 100_000,
            clip_norm: None,
        }
    }
}

/// The learning rate at step `step` (0-based): linear warmup to `lr` over
/// `warmup` steps, then cosine decay to zero at `total`.
pub fn lr_at(c: &AdamWConfig, step: u64) -> f64 {
    if step < c.warmup {
        return c.lr * (step + 1) as f64 / c.warmup as f64;
    }
    let span = c.total.saturating_sub(c.warmup).max(1) as f64;
    let done = ((step - c.warmup) as f64 / span).min(1.0);
    0.5 * c.lr * (1.0 + (std::f64::consts::PI * done).cos())
}

/// Whether open_clip decays the parameter `name` of `rank` dimensions.
pub fn decays(name: &str, rank: usize) -> bool {
    rank >= 2
        && !["bn", "ln", "bias", "logit_scale"]
            .iter()
            .any(|s| name.contains(s))
}

struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
    decay: bool,
}

/// Whether a parameter and its gradient take the fused in-place step: f32
/// on the CPU (other devices and types take the composed one).
fn in_place(var: &Tensor, g: &Tensor) -> bool {
    fused::enabled(var) && g.dtype() == DType::F32 && g.device().is_cpu()
}

/// The sum of squares of `g`, in f64.
fn squared_norm(g: &Tensor) -> Result<f64> {
    if in_place(g, g) {
        return fused::with_values(&[g], "AdamW", |v| {
            Ok(v[0]
                .par_chunks(1 << 16)
                .map(|c| c.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>())
                .sum())
        });
    }
    Ok(f64::from(
        g.sqr()?
            .sum_all()?
            .to_dtype(DType::F32)?
            .to_scalar::<f32>()?,
    ))
}

fn host_mut<'a>(s: &'a mut CpuStorage, l: &Layout, what: &str) -> Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("AdamW: {what} is not contiguous f32"),
    }
}

/// Elements per parallel task of the in-place passes.
const CHUNK: usize = 1 << 15;

/// A moment updated in place from the gradient `g`: `m = beta m + (1 -
/// beta) (scale g)` or, with `square`, `v = beta v + (1 - beta) (scale g)²`
/// (Loshchilov and Hutter 2019, Algorithm 2).
struct Moment {
    beta: f32,
    scale: f32,
    square: bool,
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "wit-adamw-moment"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (m, g) = (
            host_mut(s1, l1, "a moment")?,
            fused::values(s2, l2, "AdamW: a gradient")?,
        );
        if m.len() != g.len() {
            candle_core::bail!(
                "AdamW: moment of {} values, gradient of {}",
                m.len(),
                g.len()
            );
        }
        let (beta, scale, square) = (self.beta, self.scale, self.square);
        m.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .for_each(|(m, g)| moment_rows(m, g, beta, scale, square));
        Ok(())
    }
}

/// The weight updated in place from the moments: `theta = keep theta - lr
/// (m / bc1) / (sqrt(v / bc2) + eps)`, `keep` being 1 - lr · weight decay
/// (decoupled) or 1.
struct Update {
    keep: f32,
    lr: f32,
    bc1: f32,
    bc2: f32,
    eps: f32,
}

impl InplaceOp3 for Update {
    fn name(&self) -> &'static str {
        "wit-adamw-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let theta = host_mut(s1, l1, "a parameter")?;
        let (m, v) = (
            fused::values(s2, l2, "AdamW: a moment")?,
            fused::values(s3, l3, "AdamW: a moment")?,
        );
        if m.len() != theta.len() || v.len() != theta.len() {
            candle_core::bail!("AdamW: moments and parameter differ in size");
        }
        let u = self;
        theta
            .par_chunks_mut(CHUNK)
            .zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK)))
            .for_each(|(t, (m, v))| update_rows(t, m, v, u));
        Ok(())
    }
}

/// `m = beta m + (1 - beta) x` over a chunk, `x` the scaled gradient or its
/// square; built for AVX2/AVX-512 too, as the fused kernels' loops.
#[multiversion(targets = "simd")]
fn moment_rows(m: &mut [f32], g: &[f32], beta: f32, scale: f32, square: bool) {
    for (m, g) in m.iter_mut().zip(g) {
        let g = g * scale;
        let x = if square { g * g } else { g };
        *m = *m * beta + x * (1.0 - beta);
    }
}

/// [`Update`] over a chunk of a parameter and its moments.
#[multiversion(targets = "simd")]
fn update_rows(t: &mut [f32], m: &[f32], v: &[f32], u: &Update) {
    for ((t, m), v) in t.iter_mut().zip(m).zip(v) {
        let step = (m / u.bc1) / ((v / u.bc2).sqrt() + u.eps);
        *t = *t * u.keep - step * u.lr;
    }
}

/// AdamW over named variables.
pub struct AdamW {
    slots: Vec<Slot>,
    config: AdamWConfig,
    step: u64,
}

impl AdamW {
    /// An optimiser over `vars` (name, variable).
    ///
    /// # Errors
    /// Candle's errors.
    pub fn new(vars: Vec<(String, Var)>, config: AdamWConfig) -> Result<AdamW> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                // Two buffers: the fused step updates them in place.
                Ok(Slot {
                    decay: decays(&name, var.rank()),
                    name,
                    m: var.as_tensor().zeros_like()?,
                    v: var.as_tensor().zeros_like()?,
                    var,
                })
            })
            .collect::<Result<_>>()?;
        Ok(AdamW {
            slots,
            config,
            step: 0,
        })
    }

    /// Steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The names of the parameters that get weight decay.
    pub fn decayed(&self) -> Vec<&str> {
        self.slots
            .iter()
            .filter(|s| s.decay)
            .map(|s| s.name.as_str())
            .collect()
    }

    /// One step from `grads`; returns the gradient norm before clipping.
    ///
    /// # Errors
    /// Candle's errors.
    pub fn step(&mut self, grads: &GradStore) -> Result<f64> {
        self.step_with(grads, true)
    }

    /// [`AdamW::step`], in place where `allow_fused` and [`in_place`] allow,
    /// with Candle's tensor ops otherwise.
    fn step_with(&mut self, grads: &GradStore, allow_fused: bool) -> Result<f64> {
        let c = self.config;
        let mut sq = 0f64;
        for s in &self.slots {
            if let Some(g) = grads.get(s.var.as_tensor()) {
                sq += squared_norm(g)?;
            }
        }
        let norm = sq.sqrt();
        let clip = match c.clip_norm {
            Some(max) if norm > max => max / (norm + 1e-6),
            _ => 1.0,
        };
        let lr = lr_at(&c, self.step);
        self.step += 1;
        let t = self.step as i32;
        let (bc1, bc2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        for s in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            let decay = if s.decay { lr * c.weight_decay } else { 0.0 };
            if allow_fused && in_place(s.var.as_tensor(), g) {
                // Three passes in place, no buffers: m, v, then the weight.
                let g = g.contiguous()?;
                s.m.inplace_op2(
                    &g,
                    &Moment {
                        beta: c.beta1 as f32,
                        scale: clip as f32,
                        square: false,
                    },
                )?;
                s.v.inplace_op2(
                    &g,
                    &Moment {
                        beta: c.beta2 as f32,
                        scale: clip as f32,
                        square: true,
                    },
                )?;
                let update = Update {
                    keep: (1.0 - decay) as f32,
                    lr: lr as f32,
                    bc1: bc1 as f32,
                    bc2: bc2 as f32,
                    eps: c.eps as f32,
                };
                s.var.as_tensor().inplace_op3(&s.m, &s.v, &update)?;
            } else {
                // A variable's gradient still records the ops that made it
                // (and through them this step's forward graph): detached,
                // the moments do not chain every step's graph to the next
                // (a leak of the whole graph per step).
                let g = (g.detach() * clip)?;
                s.m = ((&s.m * c.beta1)? + (&g * (1.0 - c.beta1))?)?.detach();
                s.v = ((&s.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?.detach();
                let update = ((&s.m / bc1)? / ((&s.v / bc2)?.sqrt()? + c.eps)?)?;
                let mut theta = s.var.as_tensor().clone();
                if s.decay {
                    theta = (&theta * (1.0 - decay))?;
                }
                s.var.set(&(theta - (update * lr)?)?)?;
            }
            if s.name == "logit_scale" {
                let clamped = s.var.as_tensor().clamp(f32::NEG_INFINITY, 100f32.ln())?;
                s.var.set(&clamped)?;
            }
        }
        Ok(norm)
    }

    /// The moments by name (`m.NAME`, `v.NAME`), for a checkpoint; the
    /// step count is [`AdamW::step_count`].
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .flat_map(|s| {
                [
                    (format!("m.{}", s.name), s.m.clone()),
                    (format!("v.{}", s.name), s.v.clone()),
                ]
            })
            .collect()
    }

    /// Restores what [`AdamW::state`] gave, with `get` looking a name up,
    /// and the step count.
    ///
    /// # Errors
    /// A missing or misshapen moment.
    pub fn restore(&mut self, get: impl Fn(&str) -> Option<Tensor>, step: u64) -> Result<()> {
        for s in &mut self.slots {
            for (which, slot) in [("m", &mut s.m), ("v", &mut s.v)] {
                let key = format!("{which}.{}", s.name);
                let t = get(&key)
                    .ok_or_else(|| candle_core::Error::Msg(format!("no optimiser state {key}")))?;
                if t.shape() != s.var.shape() {
                    candle_core::bail!(
                        "optimiser state {key}: shape {:?}, want {:?}",
                        t.shape(),
                        s.var.shape()
                    );
                }
                // A copy of its own: the fused step writes it in place.
                *slot = t
                    .to_dtype(s.var.dtype())?
                    .to_device(s.var.device())?
                    .copy()?;
            }
        }
        self.step = step;
        Ok(())
    }

    /// Saves the moments and the step count to `path` (safetensors).
    ///
    /// # Errors
    /// Candle's errors.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map: HashMap<String, Tensor> = self.state().into_iter().collect();
        map.insert(
            "step".into(),
            Tensor::new(&[self.step as f32], &candle_core::Device::Cpu)?,
        );
        candle_core::safetensors::save(&map, path)
    }

    /// Restores what [`AdamW::save`] wrote.
    ///
    /// # Errors
    /// Candle's errors, or a missing tensor.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let map = candle_core::safetensors::load(path, &candle_core::Device::Cpu)?;
        let step = map
            .get("step")
            .ok_or_else(|| candle_core::Error::Msg(format!("{}: no step", path.display())))?
            .to_vec1::<f32>()?[0] as u64;
        self.restore(|k| map.get(k).cloned(), step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The moments hold values, not graphs: a gradient that records how it
    /// was made (here from w itself) must not chain step to step, or every
    /// step's forward graph stays alive (a run of the demo model grew by
    /// 300 MB/s before this).
    #[test]
    fn moments_keep_no_graph_from_step_to_step() {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::ones((3, 3), DType::F32, &dev).unwrap()).unwrap();
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], AdamWConfig::default()).unwrap();
        for _ in 0..3 {
            let loss = w.as_tensor().sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            assert!(grads.get(w.as_tensor()).unwrap().track_op());
            opt.step(&grads).unwrap();
            for s in &opt.slots {
                assert!(!s.m.track_op() && !s.v.track_op());
            }
        }
    }

    /// The in-place step equals the composed one (to f32 rounding) over
    /// several steps, with decay, clipping and bias correction at work.
    #[test]
    fn the_fused_step_equals_the_composed_one() {
        let dev = Device::Cpu;
        let make = || {
            let w = Var::from_tensor(
                &Tensor::arange(0f32, 70_000f32, &dev)
                    .unwrap()
                    .affine(1e-4, -3.0)
                    .unwrap()
                    .reshape((700, 100))
                    .unwrap(),
            )
            .unwrap();
            let b = Var::from_tensor(&Tensor::new(&[0.5f32, -0.25], &dev).unwrap()).unwrap();
            let cfg = AdamWConfig {
                lr: 0.01,
                warmup: 2,
                total: 10,
                clip_norm: Some(5.0),
                ..Default::default()
            };
            let opt = AdamW::new(
                vec![("w".into(), w.clone()), ("b.bias".into(), b.clone())],
                cfg,
            )
            .unwrap();
            (w, b, opt)
        };
        let (w1, b1, mut fused) = make();
        let (w2, b2, mut composed) = make();
        for _ in 0..4 {
            let loss = |w: &Var, b: &Var| {
                let t = (w.as_tensor().sin().unwrap().sum_all().unwrap()
                    + b.as_tensor().sqr().unwrap().sum_all().unwrap())
                .unwrap();
                t.backward().unwrap()
            };
            let n1 = fused.step_with(&loss(&w1, &b1), true).unwrap();
            let n2 = composed.step_with(&loss(&w2, &b2), false).unwrap();
            // The composed norm sums in f32.
            assert!((n1 - n2).abs() < 1e-6 * n2, "{n1} {n2}");
        }
        for (a, b) in [(&w1, &w2), (&b1, &b2)] {
            let d = (a.as_tensor() - b.as_tensor())
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            let d = d.to_scalar::<f32>().unwrap();
            assert!(d < 1e-6, "{d}");
        }
        for ((n1, t1), (_, t2)) in fused.state().iter().zip(composed.state().iter()) {
            let d = (t1 - t2)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d < 1e-6, "{n1}: {d}");
        }
    }

    #[test]
    fn schedule_warms_up_then_follows_a_cosine() {
        let c = AdamWConfig {
            lr: 1.0,
            warmup: 10,
            total: 110,
            ..Default::default()
        };
        assert!((lr_at(&c, 0) - 0.1).abs() < 1e-12);
        assert!((lr_at(&c, 9) - 1.0).abs() < 1e-12);
        assert!((lr_at(&c, 10) - 1.0).abs() < 1e-12);
        assert!((lr_at(&c, 60) - 0.5).abs() < 1e-12);
        assert!(lr_at(&c, 110).abs() < 1e-12);
        assert!(lr_at(&c, 500).abs() < 1e-12);
    }

    #[test]
    fn decay_groups_clipping_clamp_and_state() {
        assert!(decays("visual.proj", 2));
        assert!(decays("transformer.resblocks.0.attn.in_proj_weight", 2));
        assert!(!decays("transformer.resblocks.0.ln_1.weight", 1));
        assert!(!decays("visual.class_embedding", 1));
        assert!(!decays("transformer.resblocks.0.attn.in_proj_bias", 1));
        assert!(!decays("logit_scale", 0));

        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::ones((2, 2), DType::F32, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::ones(2, DType::F32, &dev).unwrap()).unwrap();
        let s = Var::from_tensor(&Tensor::new(4.5f32, &dev).unwrap()).unwrap();
        let cfg = AdamWConfig {
            lr: 0.1,
            warmup: 1,
            total: 1000,
            clip_norm: Some(1.0),
            ..Default::default()
        };
        let mut opt = AdamW::new(
            vec![
                ("w".into(), w.clone()),
                ("b.bias".into(), b.clone()),
                ("logit_scale".into(), s.clone()),
            ],
            cfg,
        )
        .unwrap();
        assert_eq!(opt.decayed(), ["w"]);
        // A loss whose gradient is zero (but present) for w and b: only
        // decay moves them.
        let zero = |v: &Var| {
            let t = v.as_tensor().sum_all().unwrap();
            (&t - &t).unwrap()
        };
        let loss = ((zero(&w) + zero(&b)).unwrap() - (s.as_tensor() * 100.0).unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        let norm = opt.step(&grads).unwrap();
        assert!((norm - 100.0).abs() < 1e-3, "{norm}");
        let wv = w.as_tensor().to_vec2::<f32>().unwrap();
        assert!((wv[0][0] - (1.0 - 0.1 * 0.2)).abs() < 1e-6, "{wv:?}");
        assert_eq!(b.as_tensor().to_vec1::<f32>().unwrap(), [1.0, 1.0]);
        // The scale rose by about lr, and never past ln 100.
        let sv = s.as_tensor().to_scalar::<f32>().unwrap();
        assert!(sv > 4.5 && sv <= 100f32.ln() + 1e-6, "{sv}");
        for _ in 0..20 {
            let loss = (s.as_tensor() * -100.0).unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        assert!((s.as_tensor().to_scalar::<f32>().unwrap() - 100f32.ln()).abs() < 1e-6);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opt.safetensors");
        opt.save(&path).unwrap();
        let mut again = AdamW::new(
            vec![
                ("w".into(), w),
                ("b.bias".into(), b),
                ("logit_scale".into(), s),
            ],
            cfg,
        )
        .unwrap();
        again.load(&path).unwrap();
        assert_eq!(again.step_count(), 21);
    }
}
