//! Evaluation of a CLIP model: zero-shot classification with prompt
//! ensembles ([`zeroshot`]), linear probes on frozen image features
//! ([`probe`]), image-text retrieval ([`retrieval`]), over the datasets of
//! [`data`]. The protocols are CLIP's and CLIP_benchmark's
//! (../shared/references/training.md, sections 2 and 5).

pub mod data;
pub mod probe;
pub mod retrieval;
pub mod zeroshot;

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use crate::error::{Error, Result};
use crate::model::{Clip, ClipConfig, load_state_dict};

/// Loads a checkpoint (a `wit train` checkpoint or export, or an open_clip
/// or OpenAI state dict converted to safetensors): the model is `model`, or
/// the one named in the file's `wit.model` metadata.
///
/// # Errors
/// An unreadable file, an unknown model, or tensors that do not fit it.
pub fn load_model(path: &Path, model: Option<&str>, device: &Device) -> Result<Clip> {
    let meta = crate::train::read_metadata(path)?;
    let name = match model
        .map(str::to_string)
        .or_else(|| meta.get("wit.model").cloned())
    {
        Some(n) => n.replace('/', "-"),
        None => {
            return Err(Error::Invalid(format!(
                "{}: no wit.model in its metadata; name the model with --model",
                path.display()
            )));
        }
    };
    let config = ClipConfig::preset(&name).ok_or_else(|| {
        Error::Invalid(format!(
            "unknown model {name:?}; the presets are {}",
            crate::model::PRESETS.join(", ")
        ))
    })?;
    let tensors = candle_core::safetensors::load(path, device)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    let vars = VarMap::new();
    let clip = Clip::fresh(config, &vars, device)?;
    load_state_dict(&vars, &tensors)
        .map_err(|e| Error::Invalid(format!("{} as {name}: {e}", path.display())))?;
    Ok(clip)
}

/// What to evaluate.
#[derive(Debug, Clone, Default)]
pub struct EvalSpec {
    /// The labelled test set (class folders or shards with `cls`): zero-shot
    /// classification, and the linear probe's test set.
    pub data: Vec<String>,
    /// Class names (a folder layout names its own).
    pub classes: Option<Vec<String>>,
    /// The linear probe's training set (a fifth of it validates).
    pub train: Option<Vec<String>>,
    /// Training samples per class for a few-shot probe.
    pub shots: Option<usize>,
    /// Held-out pairs (shards with `txt`) for retrieval.
    pub retrieval: Option<Vec<String>>,
    /// The ensemble's templates (`{}` for the class name).
    pub templates: Vec<String>,
    /// Preprocessing threads.
    pub workers: usize,
}

/// What an evaluation found.
#[derive(Debug, Clone)]
pub struct EvalReport {
    /// The class names.
    pub classes: Vec<String>,
    /// Zero-shot with the single prompt "a photo of a {}.".
    pub single: Option<ClassScores>,
    /// Zero-shot with the template ensemble.
    pub ensemble: Option<ClassScores>,
    /// Templates in the ensemble.
    pub templates: usize,
    /// The linear probe.
    pub probe: Option<probe::ProbeReport>,
    /// Retrieval recall@1, 5, 10.
    pub retrieval: Option<retrieval::Recall>,
    /// Samples skipped (unreadable, undecodable, or without a label).
    pub skipped: u64,
}

/// Recall@k of a uniform random ranking of `n` candidates with one match:
/// min(k, n) / n.
pub fn retrieval_chance(k: usize, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        k.min(n) as f64 / n as f64
    }
}

impl EvalReport {
    /// Top-1 accuracy of a uniform random guess: 1 / classes.
    pub fn chance(&self) -> f64 {
        1.0 / self.classes.len().max(1) as f64
    }

    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let scores = |s: &Option<ClassScores>| {
            s.as_ref().map(|s| {
                serde_json::json!({
                    "n": s.n, "top1": s.top1, "top5": s.top5,
                    "mean_per_class_recall": s.mean_per_class_recall,
                    "confusion": s.confusion,
                })
            })
        };
        serde_json::json!({
            "classes": self.classes,
            "chance_top1": self.chance(),
            "zero_shot": {
                "single_prompt": scores(&self.single),
                "ensemble": scores(&self.ensemble),
                "templates": self.templates,
            },
            "linear_probe": self.probe.as_ref().map(|p| serde_json::json!({
                "lambda": p.lambda,
                "sweep": p.sweep.iter().map(|(l, a)| serde_json::json!({"lambda": l, "val_top1": a})).collect::<Vec<_>>(),
                "test": scores(&Some(p.test.clone())),
            })),
            "retrieval": self.retrieval.as_ref().map(|r| serde_json::json!({
                "n": r.n, "k": r.ks, "image_to_text_recall": r.image_to_text, "text_to_image_recall": r.text_to_image,
                "chance_recall": r.ks.iter().map(|&k| retrieval_chance(k, r.n)).collect::<Vec<_>>(),
            })),
            "skipped": self.skipped,
        })
    }

    /// The report as an aligned text table.
    pub fn to_table(&self) -> String {
        let mut rows: Vec<[String; 4]> = vec![[
            "evaluation".into(),
            "top-1".into(),
            "top-5".into(),
            "mean per-class recall".into(),
        ]];
        let pct = |v: f64| format!("{:.2}%", 100.0 * v);
        let mut add = |name: String, s: &ClassScores| {
            rows.push([name, pct(s.top1), pct(s.top5), pct(s.mean_per_class_recall)]);
        };
        if let Some(s) = &self.single {
            add("zero-shot, \"a photo of a {}.\"".into(), s);
        }
        if let Some(s) = &self.ensemble {
            add(format!("zero-shot, {} templates", self.templates), s);
        }
        if let Some(p) = &self.probe {
            add(format!("linear probe (lambda {:.0e})", p.lambda), &p.test);
        }
        if !self.classes.is_empty() {
            rows.push([
                format!("chance ({} classes)", self.classes.len()),
                pct(self.chance()),
                pct((5.0 * self.chance()).min(1.0)),
                pct(self.chance()),
            ]);
        }
        let mut out = String::new();
        if rows.len() > 1 {
            let w: Vec<usize> = (0..4)
                .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
                .collect();
            for r in &rows {
                out.push_str(&format!(
                    "{:<a$}  {:>b$}  {:>c$}  {:>d$}\n",
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    a = w[0],
                    b = w[1],
                    c = w[2],
                    d = w[3]
                ));
            }
        }
        if let Some(r) = &self.retrieval {
            for (name, v) in [
                ("image to text", &r.image_to_text),
                ("text to image", &r.text_to_image),
            ] {
                let cells: Vec<String> =
                    r.ks.iter()
                        .zip(v)
                        .map(|(k, x)| format!("R@{k} {}", pct(*x)))
                        .collect();
                out.push_str(&format!(
                    "retrieval, {name} ({} pairs): {}\n",
                    r.n,
                    cells.join("  ")
                ));
            }
            let cells: Vec<String> =
                r.ks.iter()
                    .map(|&k| format!("R@{k} {}", pct(retrieval_chance(k, r.n))))
                    .collect();
            out.push_str(&format!(
                "retrieval, chance ({} pairs): {}\n",
                r.n,
                cells.join("  ")
            ));
        }
        if self.skipped > 0 {
            out.push_str(&format!(
                "{} sample(s) skipped (unreadable, undecodable or unlabelled)\n",
                self.skipped
            ));
        }
        out
    }
}

/// The labelled rows of `set` (class < `classes`), or an error naming the
/// first out-of-range label.
fn labelled(set: &FeatureSet, classes: usize, what: &str) -> Result<(FeatureSet, u64)> {
    let keep: Vec<usize> = (0..set.len())
        .filter(|&i| set.labels[i] != usize::MAX)
        .collect();
    if let Some(&bad) = set
        .labels
        .iter()
        .find(|&&l| l != usize::MAX && l >= classes)
    {
        return Err(Error::Invalid(format!(
            "{what}: class index {bad}, but there are {classes} class names"
        )));
    }
    Ok((set.select(&keep), (set.len() - keep.len()) as u64))
}

/// Relabels `set`, whose labels index `names` (a folder layout's classes;
/// empty for shards, whose labels already index the class list), to index
/// `classes`, joining them by name.
///
/// # Errors
/// [`Error::Invalid`] naming the folders that are not among `classes`.
fn join_by_name(
    set: &mut data::Encoded,
    names: &[String],
    classes: &[String],
    flag: &str,
    source: &[String],
) -> Result<()> {
    if names.is_empty() || names == classes {
        return Ok(());
    }
    let index: std::collections::HashMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let extra: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !index.contains_key(n))
        .collect();
    if !extra.is_empty() {
        return Err(Error::Invalid(format!(
            "{flag} {}: class folders that are not among the {} classes: {}",
            source.join(" "),
            classes.len(),
            name_list(&extra)
        )));
    }
    let map: Vec<usize> = names.iter().map(|n| index[n.as_str()]).collect();
    for labels in [&mut set.features.labels, &mut set.embeddings.labels] {
        for l in labels.iter_mut().filter(|l| **l != usize::MAX) {
            *l = map[*l];
        }
    }
    Ok(())
}

/// Refuses a probe whose training set has no sample of a class the test
/// set has: the probe could never predict it, and every test image of it
/// would count as an error of the features.
///
/// # Errors
/// [`Error::Invalid`] naming those classes.
fn untrained_classes(
    train: &FeatureSet,
    test: &FeatureSet,
    classes: &[String],
    source: &[String],
) -> Result<()> {
    let mut seen = vec![false; classes.len()];
    for &l in &train.labels {
        seen[l] = true;
    }
    let mut tested = vec![false; classes.len()];
    for &l in &test.labels {
        tested[l] = true;
    }
    let missing: Vec<&str> = (0..classes.len())
        .filter(|&c| tested[c] && !seen[c])
        .map(|c| classes[c].as_str())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "--train {}: no training images of {} of the test set's classes: {}; a linear probe \
         cannot learn a class it never sees (add them, or leave those classes out of --data)",
        source.join(" "),
        missing.len(),
        name_list(&missing)
    )))
}

/// Class names for an error line: the first ten, then how many more.
fn name_list(names: &[&str]) -> String {
    let shown: Vec<String> = names.iter().take(10).map(|n| format!("`{n}`")).collect();
    match names.len() {
        n if n > 10 => format!("{} and {} more", shown.join(", "), n - 10),
        _ => shown.join(", "),
    }
}

/// Runs the evaluations `spec` asks for.
///
/// # Errors
/// Unreadable data, missing class names, or Candle's errors.
pub fn evaluate(model: &Clip, spec: &EvalSpec, device: &Device) -> Result<EvalReport> {
    let size = model.config.vision.image_size();
    let mut report = EvalReport {
        classes: spec.classes.clone().unwrap_or_default(),
        single: None,
        ensemble: None,
        templates: spec.templates.len(),
        probe: None,
        retrieval: None,
        skipped: 0,
    };
    if !spec.data.is_empty() {
        let (mut enc, names) = data::encode(model, &spec.data, size, spec.workers, device)?;
        report.skipped += enc.skipped;
        if report.classes.is_empty() {
            report.classes = names.clone();
        }
        if report.classes.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: no class names; give a class-names file (one per line)",
                spec.data.join(" ")
            )));
        }
        // Folders name their classes: joined to the class list by name.
        join_by_name(&mut enc, &names, &report.classes, "--data", &spec.data)?;
        let c = report.classes.len();
        let (emb, unlabelled) = labelled(&enc.embeddings, c, &spec.data.join(" "))?;
        let (feat, _) = labelled(&enc.features, c, &spec.data.join(" "))?;
        report.skipped += unlabelled;
        let images = Tensor::from_slice(&emb.x, (emb.len(), emb.dim), device)?;
        let single = zeroshot::classifier(
            model,
            &report.classes,
            &[zeroshot::SINGLE_TEMPLATE.to_string()],
            device,
        )?;
        report.single = Some(scores(&zeroshot::logits(&images, &single)?, &emb.labels, c));
        if !spec.templates.is_empty() {
            let ens = zeroshot::classifier(model, &report.classes, &spec.templates, device)?;
            report.ensemble = Some(scores(&zeroshot::logits(&images, &ens)?, &emb.labels, c));
        }
        if let Some(train) = &spec.train {
            let (mut tr, train_names) = data::encode(model, train, size, spec.workers, device)?;
            report.skipped += tr.skipped;
            if train_names.is_empty() && spec.classes.is_none() {
                return Err(Error::Invalid(format!(
                    "--train {}: shards label their samples by class index, and nothing names \
                     those classes; give --classes (line i names class i) so that they join \
                     the test set's folders by name",
                    train.join(" ")
                )));
            }
            join_by_name(&mut tr, &train_names, &report.classes, "--train", train)?;
            let (tr, unlabelled) = labelled(&tr.features, c, &train.join(" "))?;
            report.skipped += unlabelled;
            untrained_classes(&tr, &emb, &report.classes, train)?;
            let (fit, val) = probe::split(&tr, c, 0.2, spec.shots, 0);
            report.probe = Some(probe::linear_probe(
                &fit,
                &val,
                &feat,
                c,
                &probe::ProbeOptions::default(),
            ));
        }
    }
    if let Some(pairs) = &spec.retrieval {
        let (enc, _) = data::encode(model, pairs, size, spec.workers, device)?;
        report.skipped += enc.skipped;
        let keep: Vec<usize> = (0..enc.texts.len())
            .filter(|&i| !enc.texts[i].is_empty())
            .collect();
        report.skipped += (enc.texts.len() - keep.len()) as u64;
        let images = enc.embeddings.select(&keep);
        let texts: Vec<String> = keep.iter().map(|&i| enc.texts[i].clone()).collect();
        let t = zeroshot::embed_texts(model, &texts, device)?;
        let t = t.flatten_all()?.to_vec1::<f32>()?;
        report.retrieval = Some(retrieval::recall(&images.x, &t, images.dim, &[1, 5, 10]));
    }
    Ok(report)
}

/// Image features (or embeddings) with class labels: `labels.len()` rows
/// of `dim` values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureSet {
    /// Row-major values.
    pub x: Vec<f32>,
    /// Values per row.
    pub dim: usize,
    /// Each row's class.
    pub labels: Vec<usize>,
}

impl FeatureSet {
    /// Rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> FeatureSet {
        FeatureSet {
            x: idx
                .iter()
                .flat_map(|&i| self.row(i).iter().copied())
                .collect(),
            dim: self.dim,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
        }
    }
}

/// Classification scores: CLIP_benchmark's acc1, acc5 and mean per-class
/// recall (balanced accuracy), and the confusion matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassScores {
    /// Samples scored.
    pub n: usize,
    /// Fraction whose top class is right.
    pub top1: f64,
    /// Fraction whose right class is among the top five.
    pub top5: f64,
    /// Mean over the classes present of the fraction of their samples
    /// classified right.
    pub mean_per_class_recall: f64,
    /// `confusion[truth][predicted]` counts.
    pub confusion: Vec<Vec<u32>>,
}

/// Scores `logits` (`labels.len()` rows of `classes` values, higher is
/// more likely).
pub fn scores(logits: &[f32], labels: &[usize], classes: usize) -> ClassScores {
    let mut confusion = vec![vec![0u32; classes]; classes];
    let (mut top1, mut top5) = (0usize, 0usize);
    for (i, &truth) in labels.iter().enumerate() {
        let row = &logits[i * classes..(i + 1) * classes];
        let mine = row[truth];
        // The rank of the right class: classes scoring higher, ties to the
        // lower index.
        let above = row
            .iter()
            .enumerate()
            .filter(|&(k, &v)| v > mine || (v == mine && k < truth))
            .count();
        let best = (0..classes)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
            .unwrap_or(0);
        confusion[truth][best] += 1;
        top1 += usize::from(above == 0);
        top5 += usize::from(above < 5);
    }
    let n = labels.len();
    let recalls: Vec<f64> = confusion
        .iter()
        .enumerate()
        .filter_map(|(k, row)| {
            let total: u32 = row.iter().sum();
            (total > 0).then(|| f64::from(row[k]) / f64::from(total))
        })
        .collect();
    let frac = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    ClassScores {
        n,
        top1: frac(top1),
        top5: frac(top5),
        mean_per_class_recall: if recalls.is_empty() {
            0.0
        } else {
            recalls.iter().sum::<f64>() / recalls.len() as f64
        },
        confusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_recall_and_confusion() {
        // Three classes; sample 0 right, 1 wrong (second best), 2 right,
        // 3 wrong (third).
        let logits = [
            0.9, 0.1, 0.0, //
            0.5, 0.2, 0.3, //
            0.0, 0.1, 0.8, //
            0.1, 0.2, 0.0,
        ];
        let s = scores(&logits, &[0, 2, 2, 2], 3);
        assert_eq!(s.n, 4);
        assert!((s.top1 - 0.5).abs() < 1e-12);
        assert!((s.top5 - 1.0).abs() < 1e-12);
        // Class 0: 1/1; class 2: 1/3.
        assert!((s.mean_per_class_recall - (1.0 + 1.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(s.confusion[2], vec![1, 1, 1]);
    }
}
