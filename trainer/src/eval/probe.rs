//! Linear probes: multinomial logistic regression with L2 regularisation on
//! frozen features, fitted by L-BFGS, its strength swept on a validation
//! split and the model refitted on training plus validation (CLIP's
//! protocol, Appendix A.3; scikit-learn's `LogisticRegression` minimises
//! the same function with `C = 1 / (lambda n)`).
//!
//! The objective is the mean cross-entropy plus `lambda / 2 * |W|^2` (the
//! biases are not penalised); cost per evaluation is `n x dim x classes`
//! multiply-adds, in f64.

use std::collections::VecDeque;

use super::{ClassScores, FeatureSet, scores};

/// How probes are fitted.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOptions {
    /// Regularisation strengths tried on the validation split.
    pub lambdas: Vec<f64>,
    /// L-BFGS iterations at most per fit (scikit-learn's `max_iter`).
    pub max_iter: usize,
}

impl Default for ProbeOptions {
    /// lambda = 10^-7 .. 10^0 in half decades; 1,000 iterations.
    fn default() -> Self {
        ProbeOptions {
            lambdas: (0..=14)
                .map(|i| 10f64.powf(-7.0 + 0.5 * i as f64))
                .collect(),
            max_iter: 1000,
        }
    }
}

/// A fitted multinomial logistic regression.
#[derive(Debug, Clone, PartialEq)]
pub struct Softmax {
    dim: usize,
    classes: usize,
    /// `(dim + 1) x classes`, the biases in the last row.
    params: Vec<f64>,
}

impl Softmax {
    /// Logits of every row of `set` (`set.len() x classes`).
    pub fn logits(&self, set: &FeatureSet) -> Vec<f32> {
        let mut out = Vec::with_capacity(set.len() * self.classes);
        let mut row = vec![0f64; self.classes];
        for i in 0..set.len() {
            self.row_logits(set.row(i), &mut row);
            out.extend(row.iter().map(|&v| v as f32));
        }
        out
    }

    fn row_logits(&self, x: &[f32], out: &mut [f64]) {
        out.copy_from_slice(&self.params[self.dim * self.classes..]);
        for (j, &v) in x.iter().enumerate() {
            let v = f64::from(v);
            if v != 0.0 {
                let w = &self.params[j * self.classes..(j + 1) * self.classes];
                for (o, wk) in out.iter_mut().zip(w) {
                    *o += v * wk;
                }
            }
        }
    }
}

/// The objective at `m.params` and its gradient into `grad`.
fn objective(m: &Softmax, set: &FeatureSet, lambda: f64, grad: &mut [f64]) -> f64 {
    let (d, c) = (m.dim, m.classes);
    grad.iter_mut().for_each(|g| *g = 0.0);
    let n = set.len().max(1) as f64;
    let mut loss = 0.0;
    let mut p = vec![0f64; c];
    for i in 0..set.len() {
        let x = set.row(i);
        m.row_logits(x, &mut p);
        let max = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for v in p.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        let y = set.labels[i];
        loss += sum.ln() - (p[y].ln());
        for v in p.iter_mut() {
            *v /= sum;
        }
        p[y] -= 1.0;
        for (j, &xv) in x.iter().enumerate() {
            let xv = f64::from(xv);
            if xv != 0.0 {
                let g = &mut grad[j * c..(j + 1) * c];
                for (gk, pk) in g.iter_mut().zip(&p) {
                    *gk += xv * pk;
                }
            }
        }
        let gb = &mut grad[d * c..];
        for (gk, pk) in gb.iter_mut().zip(&p) {
            *gk += pk;
        }
    }
    loss /= n;
    grad.iter_mut().for_each(|g| *g /= n);
    let mut reg = 0.0;
    for (g, w) in grad[..d * c].iter_mut().zip(&m.params[..d * c]) {
        *g += lambda * w;
        reg += w * w;
    }
    loss + 0.5 * lambda * reg
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimises `f` (value, gradient into its second argument) from `x` by
/// L-BFGS with 10 corrections and a backtracking (Armijo) line search;
/// stops when the gradient's largest component is under 1e-6, when an
/// iteration improves the value by less than 1e-12 relative, or after
/// `max_iter` iterations. Returns the iterations done.
pub fn lbfgs(
    mut f: impl FnMut(&[f64], &mut [f64]) -> f64,
    x: &mut Vec<f64>,
    max_iter: usize,
) -> usize {
    let n = x.len();
    let mut g = vec![0f64; n];
    let mut fx = f(x, &mut g);
    let mut memory: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::new();
    let mut g_new = vec![0f64; n];
    let mut x_new = vec![0f64; n];
    for iter in 0..max_iter {
        if g.iter().fold(0f64, |a, v| a.max(v.abs())) < 1e-6 {
            return iter;
        }
        // Two-loop recursion: d = -H g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(memory.len());
        for (s, y, rho) in memory.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        let gamma = memory
            .back()
            .map_or(1.0 / dot(&g, &g).sqrt().max(1e-12), |(s, y, _)| {
                dot(s, y) / dot(y, y)
            });
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y, rho), a) in memory.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
        }
        let mut d: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            memory.clear();
            d = g.iter().map(|v| -v).collect();
            slope = -dot(&g, &g);
        }
        let mut step = 1.0;
        let f_new = loop {
            x_new
                .iter_mut()
                .zip(x.iter().zip(&d))
                .for_each(|(xn, (xi, di))| *xn = xi + step * di);
            let v = f(&x_new, &mut g_new);
            if v.is_finite() && v <= fx + 1e-4 * step * slope {
                break Some(v);
            }
            step *= 0.5;
            if step < 1e-20 {
                break None;
            }
        };
        let Some(f_new) = f_new else {
            return iter;
        };
        let s: Vec<f64> = x_new.iter().zip(x.iter()).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 {
            if memory.len() == 10 {
                memory.pop_front();
            }
            memory.push_back((s, y, 1.0 / sy));
        }
        std::mem::swap(x, &mut x_new);
        std::mem::swap(&mut g, &mut g_new);
        let improved = fx - f_new;
        fx = f_new;
        if improved <= 1e-12 * fx.abs().max(1.0) {
            return iter + 1;
        }
    }
    max_iter
}

/// Fits a probe with strength `lambda` on `set`, starting from `start`.
pub fn fit(
    set: &FeatureSet,
    classes: usize,
    lambda: f64,
    max_iter: usize,
    start: Option<&Softmax>,
) -> Softmax {
    let mut m = Softmax {
        dim: set.dim,
        classes,
        params: start.map_or_else(|| vec![0.0; (set.dim + 1) * classes], |s| s.params.clone()),
    };
    let mut params = std::mem::take(&mut m.params);
    let mut probe = m.clone();
    lbfgs(
        |p, g| {
            probe.params.clear();
            probe.params.extend_from_slice(p);
            objective(&probe, set, lambda, g)
        },
        &mut params,
        max_iter,
    );
    m.params = params;
    m
}

/// A probe's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    /// The strength chosen on the validation split.
    pub lambda: f64,
    /// Validation top-1 for each strength tried.
    pub sweep: Vec<(f64, f64)>,
    /// Scores on the test set of the model refitted on train + validation.
    pub test: ClassScores,
}

/// CLIP's probe: sweeps `opts.lambdas` fitting on `train` and scoring
/// top-1 on `val` (ties go to the stronger regularisation), refits on both
/// with the best, scores `test`.
pub fn linear_probe(
    train: &FeatureSet,
    val: &FeatureSet,
    test: &FeatureSet,
    classes: usize,
    opts: &ProbeOptions,
) -> ProbeReport {
    let mut sweep = Vec::new();
    let mut best = (f64::NAN, -1.0);
    // From strong to weak regularisation, each fit starting from the last.
    let mut lambdas = opts.lambdas.clone();
    lambdas.sort_by(|a, b| b.total_cmp(a));
    let mut last: Option<Softmax> = None;
    for &lambda in &lambdas {
        let m = fit(train, classes, lambda, opts.max_iter, last.as_ref());
        let acc = scores(&m.logits(val), &val.labels, classes).top1;
        sweep.push((lambda, acc));
        if acc > best.1 {
            best = (lambda, acc);
        }
        last = Some(m);
    }
    sweep.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut both = train.clone();
    both.x.extend_from_slice(&val.x);
    both.labels.extend_from_slice(&val.labels);
    let m = fit(&both, classes, best.0, opts.max_iter, None);
    ProbeReport {
        lambda: best.0,
        sweep,
        test: scores(&m.logits(test), &test.labels, classes),
    }
}

/// Splits `set` into (train, validation), `fraction` of each class's rows
/// to validation, chosen by a generator seeded with `seed`; with `shots`,
/// training keeps at most that many rows per class (few-shot probes).
pub fn split(
    set: &FeatureSet,
    classes: usize,
    fraction: f64,
    shots: Option<usize>,
    seed: u64,
) -> (FeatureSet, FeatureSet) {
    let mut rng = wit_contract::wds::SplitMix64::new(seed);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in set.labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for mut rows in by_class {
        // Fisher-Yates.
        for i in (1..rows.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            rows.swap(i, j);
        }
        let v = ((rows.len() as f64) * fraction).round() as usize;
        let v = v.min(rows.len().saturating_sub(1));
        val.extend_from_slice(&rows[..v]);
        let rest = &rows[v..];
        train.extend_from_slice(&rest[..shots.unwrap_or(rest.len()).min(rest.len())]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (set.select(&train), set.select(&val))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lbfgs_minimises_a_quadratic_and_the_gradient_is_right() {
        // f = sum (i+1) (x_i - i)^2.
        let mut x = vec![0.0; 5];
        lbfgs(
            |x, g| {
                let mut f = 0.0;
                for i in 0..x.len() {
                    let a = (i + 1) as f64;
                    f += a * (x[i] - i as f64).powi(2);
                    g[i] = 2.0 * a * (x[i] - i as f64);
                }
                f
            },
            &mut x,
            100,
        );
        for (i, v) in x.iter().enumerate() {
            assert!((v - i as f64).abs() < 1e-6, "{x:?}");
        }
        // The objective's gradient against finite differences.
        let set = FeatureSet {
            x: vec![1.0, 2.0, -1.0, 0.5, 0.0, 3.0],
            dim: 2,
            labels: vec![0, 2, 1],
        };
        let m = Softmax {
            dim: 2,
            classes: 3,
            params: vec![0.1, -0.2, 0.3, 0.05, 0.0, -0.1, 0.2, 0.1, -0.3],
        };
        let mut g = vec![0.0; 9];
        objective(&m, &set, 0.1, &mut g);
        for (k, gk) in g.iter().enumerate() {
            let mut a = m.clone();
            let mut b = m.clone();
            a.params[k] += 1e-6;
            b.params[k] -= 1e-6;
            let mut scratch = vec![0.0; 9];
            let numeric = (objective(&a, &set, 0.1, &mut scratch)
                - objective(&b, &set, 0.1, &mut scratch))
                / 2e-6;
            assert!((numeric - gk).abs() < 1e-7, "{k}: {numeric} vs {gk}");
        }
    }

    #[test]
    fn splits_are_stratified_and_few_shot() {
        let set = FeatureSet {
            x: (0..40).map(|i| i as f32).collect(),
            dim: 1,
            labels: (0..40).map(|i| i % 2).collect(),
        };
        let (t, v) = split(&set, 2, 0.25, None, 1);
        assert_eq!((t.len(), v.len()), (30, 10));
        assert_eq!(v.labels.iter().filter(|&&l| l == 0).count(), 5);
        let (t, _) = split(&set, 2, 0.25, Some(3), 1);
        assert_eq!(t.len(), 6);
    }
}
