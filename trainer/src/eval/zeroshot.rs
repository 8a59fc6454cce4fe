//! Zero-shot classification (CLIP section 3.1.4): each class name is put
//! into each prompt template, embedded and normalised; the embeddings are
//! averaged over the templates and normalised again (the ensemble in
//! embedding space); logits are 100 · image · classifier.

use candle_core::{Device, Tensor};

use crate::Result;
use crate::model::{Clip, l2_normalize};
use crate::tokenizer::Tokenizer;

/// The single prompt of CLIP's prompt engineering.
pub const SINGLE_TEMPLATE: &str = "a photo of a {}.";

/// OpenAI's 80 ImageNet prompt templates (`{}` stands for the class name),
/// vendored in `trainer/assets/` with their licence.
pub fn openai_imagenet_templates() -> Vec<String> {
    include_str!("../../assets/openai_imagenet_templates.txt")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Texts embedded per forward pass.
const TEXT_BATCH: usize = 256;

/// Normalised embeddings of `texts` (`texts.len() x embed`, f32).
///
/// # Errors
/// Candle's errors.
pub fn embed_texts(model: &Clip, texts: &[String], device: &Device) -> Result<Tensor> {
    Ok(l2_normalize(&encode_texts(model, texts, device)?)?)
}

/// The text features of `texts` as the model gives them, not normalised
/// (`texts.len() x embed`, f32), [`TEXT_BATCH`] texts a forward pass.
///
/// # Errors
/// Candle's errors.
pub fn encode_texts(model: &Clip, texts: &[String], device: &Device) -> Result<Tensor> {
    let t = Tokenizer::get();
    let context = model.config.text.context;
    let mut parts = Vec::new();
    for chunk in texts.chunks(TEXT_BATCH) {
        let ids: Vec<u32> = chunk
            .iter()
            .flat_map(|s| t.context_of(s, context))
            .collect();
        let tokens = Tensor::from_vec(ids, (chunk.len(), context), device)?;
        parts.push(model.encode_text(&tokens)?.detach());
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// The zero-shot classifier of `classes` with `templates`: `classes.len() x
/// embed`, each row the renormalised mean of the class's normalised prompt
/// embeddings.
///
/// # Errors
/// Candle's errors.
pub fn classifier(
    model: &Clip,
    classes: &[String],
    templates: &[String],
    device: &Device,
) -> Result<Tensor> {
    classifier_of(classes, templates, |prompts| {
        encode_texts(model, prompts, device)
    })
}

/// [`classifier`] with the text encoder given: `encode(prompts)` returns
/// the text features of `prompts` (`prompts.len() x embed`, not
/// normalised). Each class's prompts are its name put into each template
/// (`{}`); their features are normalised, averaged, and the mean normalised
/// again (open_clip's `build_zero_shot_classifier`, transposed:
/// `classes.len() x embed`).
///
/// # Errors
/// Those of `encode`, and Candle's.
pub fn classifier_of(
    classes: &[String],
    templates: &[String],
    mut encode: impl FnMut(&[String]) -> Result<Tensor>,
) -> Result<Tensor> {
    let mut rows = Vec::with_capacity(classes.len());
    for name in classes {
        let prompts: Vec<String> = templates.iter().map(|t| t.replace("{}", name)).collect();
        let e = l2_normalize(&encode(&prompts)?)?;
        rows.push(e.mean_keepdim(0)?);
    }
    Ok(l2_normalize(&Tensor::cat(&rows, 0)?)?)
}

/// Zero-shot logits: 100 · `images` (normalised embeddings, n x embed) ·
/// `classifier`ᵀ, as a row-major `n x classes` vector.
///
/// # Errors
/// Candle's errors.
pub fn logits(images: &Tensor, classifier: &Tensor) -> Result<Vec<f32>> {
    let l = (images.matmul(&classifier.t()?)? * 100.0)?;
    Ok(l.flatten_all()?.to_vec1::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eighty_templates_each_with_one_slot() {
        let t = openai_imagenet_templates();
        assert_eq!(t.len(), 80);
        assert!(t.iter().all(|s| s.matches("{}").count() == 1), "{t:?}");
        assert_eq!(t[0], "a bad photo of a {}.");
    }
}
