//! Evaluation data and the features a model gives it.
//!
//! - **A folder per class** (ImageNet's layout): `DIR/CLASS/IMAGE`, classes
//!   in sorted folder order; their names are the folder names with `_` as
//!   spaces, or the lines of a class-names file (line i names folder i).
//! - **WebDataset shards** (`.tar`, `.tar.gz`, `.tgz`): the image in `jpg`,
//!   `jpeg`, `png` or `webp`, the class index in `cls` (names from a file),
//!   the caption in `txt` (for retrieval).
//!
//! Images get the evaluation preprocessing (resize, centre crop, OpenAI
//! mean/std). An image that does not decode, or a sample without what the
//! evaluation needs, is counted and skipped.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::FeatureSet;
use crate::error::{Error, Result, io};
use crate::loader::{IMAGE_FIELDS, Mode, preprocess};
use crate::model::{Clip, l2_normalize};

/// One evaluation sample.
#[derive(Debug, Clone, Default)]
pub struct Item {
    /// Where it came from (a path, or shard and key).
    pub key: String,
    /// The encoded image.
    pub image: Vec<u8>,
    /// Its class index, if any.
    pub label: Option<usize>,
    /// Its caption, if any.
    pub text: Option<String>,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_FIELDS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The class folders of `root`, sorted, each with its images (sorted).
///
/// # Errors
/// An unreadable directory, or one without class folders.
pub fn class_folders(root: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).map_err(io(root))? {
        let p = e.map_err(io(root))?.path();
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&p)
                .map_err(io(&p))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| is_image(f))
                .collect();
            files.sort();
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            out.push((name, files));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    if out.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no class folders (DIR/CLASS/IMAGE)",
            root.display()
        )));
    }
    Ok(out)
}

/// Class names from a file, one per line (line i names class i; blank
/// lines ignored; read as every list file is, [`wit_contract::list_file`]).
///
/// # Errors
/// An unreadable file, one that is not UTF-8 text, holds no name or names
/// a class twice.
pub fn read_class_names(path: &Path) -> Result<Vec<String>> {
    let lines = wit_contract::list_file::read_numbered(path)?;
    let mut first: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (n, name) in &lines {
        if let Some(m) = first.insert(name.as_str(), *n) {
            return Err(Error::Invalid(format!(
                "{}: line {n} names the class `{name}` again (first on line {m})",
                path.display()
            )));
        }
    }
    Ok(lines.into_iter().map(|(_, l)| l).collect())
}

/// Prompt templates from a file, one per line, each holding `{}` where the
/// class name goes (as open_clip's templates do).
///
/// # Errors
/// As [`read_class_names`]'s file reading; a template without `{}`,
/// named by its line.
pub fn read_templates(path: &Path) -> Result<Vec<String>> {
    let lines = wit_contract::list_file::read_numbered(path)?;
    if let Some((n, t)) = lines.iter().find(|(_, t)| !t.contains("{}")) {
        return Err(Error::Invalid(format!(
            "{}: line {n}: the template `{t}` has no {{}} for the class name",
            path.display()
        )));
    }
    Ok(lines.into_iter().map(|(_, l)| l).collect())
}

/// Calls `each` with every sample of `source`: a directory of class
/// folders, or WebDataset shards. Returns the class names a folder layout
/// gives (empty for shards) and the samples that could not be read.
///
/// # Errors
/// An unreadable directory or shard.
pub fn for_each_item(source: &[String], mut each: impl FnMut(Item)) -> Result<(Vec<String>, u64)> {
    let mut damaged = 0u64;
    if let [one] = source
        && Path::new(one).is_dir()
    {
        let folders = class_folders(Path::new(one))?;
        let names = folders.iter().map(|f| f.0.replace('_', " ")).collect();
        for (label, (_, files)) in folders.into_iter().enumerate() {
            for f in files {
                match std::fs::read(&f) {
                    Ok(image) => each(Item {
                        key: f.display().to_string(),
                        image,
                        label: Some(label),
                        text: None,
                    }),
                    Err(_) => damaged += 1,
                }
            }
        }
        return Ok((names, damaged));
    }
    for shard in source {
        let path = Path::new(shard);
        // A path or a URL (s3://, https://, ...), streamed.
        let file = wit_contract::store::open_input(shard)?;
        let input =
            wit_contract::wds::maybe_gunzip(std::io::BufReader::new(file)).map_err(io(path))?;
        wit_contract::wds::ShardReader::new(input).for_each(|s| {
            let Ok(s) = s else {
                damaged += 1;
                return;
            };
            let Some(image) = IMAGE_FIELDS.iter().find_map(|k| s.fields.get(*k)) else {
                damaged += 1;
                return;
            };
            let label = s
                .fields
                .get("cls")
                .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok());
            let text = s
                .fields
                .get("txt")
                .map(|t| String::from_utf8_lossy(t).into_owned());
            each(Item {
                key: format!("{shard}:{}", s.key),
                image: image.clone(),
                label,
                text,
            });
        });
    }
    Ok((Vec::new(), damaged))
}

/// What a model makes of evaluation samples.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    /// Image features before the projection (what a linear probe reads),
    /// with labels (`usize::MAX` where a sample had none).
    pub features: FeatureSet,
    /// Normalised image embeddings, same rows and labels.
    pub embeddings: FeatureSet,
    /// Each row's caption (empty where a sample had none).
    pub texts: Vec<String>,
    /// Samples skipped: unreadable, or an image that does not decode.
    pub skipped: u64,
}

/// Images per forward pass.
const IMAGE_BATCH: usize = 64;

/// Encodes every sample of `source` with `model` at `size` pixels,
/// preprocessing on `workers` threads.
///
/// # Errors
/// An unreadable source, or Candle's errors.
pub fn encode(
    model: &Clip,
    source: &[String],
    size: usize,
    workers: usize,
    device: &Device,
) -> Result<(Encoded, Vec<String>)> {
    let mut out = Encoded::default();
    let mut pending: Vec<Item> = Vec::new();
    let mut failure: Option<Error> = None;
    let flush = |pending: &mut Vec<Item>, out: &mut Encoded| -> Result<()> {
        let items = std::mem::take(pending);
        let prepared = preprocess_all(&items, size, workers);
        let mut pixels = Vec::new();
        let mut kept = Vec::new();
        for (item, p) in items.into_iter().zip(prepared) {
            match p {
                Some(p) => {
                    pixels.extend_from_slice(&p);
                    kept.push(item);
                }
                None => out.skipped += 1,
            }
        }
        if kept.is_empty() {
            return Ok(());
        }
        let images = Tensor::from_vec(pixels, (kept.len(), 3, size, size), device)?;
        let features = model.image_features(&images, false)?;
        let embeddings = l2_normalize(&model.project_image(&features)?)?;
        out.features.dim = features.dim(1)?;
        out.embeddings.dim = embeddings.dim(1)?;
        out.features
            .x
            .extend(features.flatten_all()?.to_vec1::<f32>()?);
        out.embeddings
            .x
            .extend(embeddings.flatten_all()?.to_vec1::<f32>()?);
        for item in kept {
            let label = item.label.unwrap_or(usize::MAX);
            out.features.labels.push(label);
            out.embeddings.labels.push(label);
            out.texts.push(item.text.unwrap_or_default());
        }
        Ok(())
    };
    let (names, damaged) = for_each_item(source, |item| {
        if failure.is_some() {
            return;
        }
        pending.push(item);
        if pending.len() == IMAGE_BATCH
            && let Err(e) = flush(&mut pending, &mut out)
        {
            failure = Some(e);
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    flush(&mut pending, &mut out)?;
    out.skipped += damaged;
    Ok((out, names))
}

/// Evaluation preprocessing of `items` on `workers` threads; `None` for an
/// image that does not decode.
fn preprocess_all(items: &[Item], size: usize, workers: usize) -> Vec<Option<Vec<f32>>> {
    let chunk = items.len().div_ceil(workers.max(1)).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| {
                s.spawn(move || {
                    c.iter()
                        .map(|i| preprocess(&i.image, size as u32, Mode::Eval, 0).ok())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("preprocessing does not panic"))
            .collect()
    })
}
