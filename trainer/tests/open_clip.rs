//! Numerical equivalence with open_clip: the same random weights and inputs
//! (made by `scripts/open-clip-reference.py` with PyTorch and open_clip
//! 3.3.0, committed as safetensors) give the same image and text embeddings
//! within 1e-4 relative error, the same contrastive loss, and the same
//! gradient for every parameter, for a ViT and a modified ResNet; and the
//! same zero-shot classifier and logits as open_clip's own
//! `build_zero_shot_classifier` (`scripts/zero-shot-reference.py`).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use wit_trainer::eval::zeroshot;
use wit_trainer::model::{
    Activation, Clip, ClipConfig, ResNetConfig, TextConfig, TransformerConfig, VisionConfig,
    VitConfig, l2_normalize, load_state_dict, named_vars,
};

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = format!(
        "{}/tests/data/open_clip_tiny_{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap()
}

fn config(vision: VisionConfig) -> ClipConfig {
    ClipConfig {
        embed_dim: 16,
        vision,
        text: TextConfig {
            context: 77,
            vocab: 512,
            transformer: TransformerConfig {
                width: 32,
                layers: 2,
                heads: 4,
            },
        },
        activation: Activation::Gelu,
    }
}

/// max |a - b| / max |b| over the tensor (|b| floored at 1e-5: the key
/// bias of attention has a zero gradient in exact arithmetic, as softmax
/// ignores a constant added to all of a query's scores, and both sides
/// give rounding noise there).
fn relative_error(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap();
    let b = b.to_dtype(DType::F64).unwrap();
    let scalar = |t: Tensor| t.to_scalar::<f64>().unwrap();
    let diff = scalar(
        (&a - &b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap(),
    );
    let size = scalar(b.abs().unwrap().flatten_all().unwrap().max(0).unwrap());
    diff / size.max(1e-5)
}

fn check(name: &str, vision: VisionConfig) {
    let f = fixture(name);
    let weights: HashMap<String, Tensor> = f
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("model.")?.to_string(), v.clone())))
        .collect();
    let vars = VarMap::new();
    let model = Clip::fresh(config(vision), &vars, &Device::Cpu).unwrap();
    load_state_dict(&vars, &weights).unwrap();
    let images = &f["input.images"];
    let tokens = f["input.tokens"].to_dtype(DType::U32).unwrap();

    let image = model.encode_image(images).unwrap();
    let e = relative_error(&image, &f["output.image"]);
    eprintln!("{name}: image embeddings, relative error {e:.1e}");
    assert!(e < 1e-4, "{name}: image embeddings differ by {e:e}");
    let text = model.encode_text(&tokens).unwrap();
    let e = relative_error(&text, &f["output.text"]);
    eprintln!("{name}: text embeddings, relative error {e:.1e}");
    assert!(e < 1e-4, "{name}: text embeddings differ by {e:e}");

    let loss = model.loss(images, &tokens).unwrap();
    let e = relative_error(&loss, &f["output.loss"]);
    eprintln!("{name}: loss, relative error {e:.1e}");
    assert!(e < 1e-5, "{name}: loss differs by {e:e}");
    let grads = loss.backward().unwrap();
    let mut compared = 0;
    let mut worst = 0f64;
    for (key, var) in named_vars(&vars) {
        let want = &f[&format!("grad.{key}")];
        let got = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient for {key}"));
        let e = relative_error(got, want);
        assert!(e < 1e-3, "{name}: gradient of {key} differs by {e:e}");
        worst = worst.max(e);
        compared += 1;
    }
    eprintln!("{name}: {compared} gradients, worst relative error {worst:.1e}");
    let expected = f.keys().filter(|k| k.starts_with("grad.")).count();
    assert_eq!(compared, expected, "{name}: every parameter open_clip has");
}

fn tiny_vit() -> VisionConfig {
    VisionConfig::Vit(VitConfig {
        image_size: 32,
        patch_size: 8,
        transformer: TransformerConfig {
            width: 32,
            layers: 2,
            heads: 4,
        },
    })
}

#[test]
fn a_vit_matches_open_clip() {
    check("vit", tiny_vit());
}

#[test]
fn a_modified_resnet_matches_open_clip() {
    check(
        "rn",
        VisionConfig::ResNet(ResNetConfig {
            image_size: 64,
            layers: [1, 1, 1, 1],
            width: 4,
            heads: 2,
        }),
    );
}

/// wit's token ids mapped into the tiny model's vocabulary of 512 as
/// `scripts/zero-shot-reference.py` maps open_clip's: padding stays 0, the
/// start token is 510, the end token 511, any other id i is 1 + i % 500.
fn tiny_ids(id: u32) -> u32 {
    match id {
        0 => 0,
        49406 => 510,
        49407 => 511,
        i => 1 + i % 500,
    }
}

#[test]
fn the_zero_shot_classifier_and_logits_match_open_clips() {
    let f = fixture("vit");
    let weights: HashMap<String, Tensor> = f
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("model.")?.to_string(), v.clone())))
        .collect();
    let vars = VarMap::new();
    let model = Clip::fresh(config(tiny_vit()), &vars, &Device::Cpu).unwrap();
    load_state_dict(&vars, &weights).unwrap();
    let path = format!(
        "{}/tests/data/open_clip_zero_shot.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let reference = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    let list = |k: &str| -> Vec<String> { serde_json::from_str(&meta[k]).unwrap() };
    let (classes, templates) = (list("classes"), list("templates"));

    let tokenizer = wit_trainer::tokenizer::Tokenizer::get();
    let classifier = zeroshot::classifier_of(&classes, &templates, |prompts| {
        let ids: Vec<u32> = prompts
            .iter()
            .flat_map(|p| tokenizer.context_of(p, 77))
            .map(tiny_ids)
            .collect();
        let tokens = Tensor::from_vec(ids, (prompts.len(), 77), &Device::Cpu)?;
        Ok(model.encode_text(&tokens)?)
    })
    .unwrap();
    let e = relative_error(&classifier, &reference["classifier"]);
    eprintln!(
        "zero-shot classifier ({classes:?} x {} templates): relative error {e:.1e}",
        templates.len()
    );
    assert!(e < 1e-5, "the classifier differs by {e:e}");
    let images = l2_normalize(&model.encode_image(&f["input.images"]).unwrap()).unwrap();
    let logits = zeroshot::logits(&images, &classifier).unwrap();
    let want: Vec<f32> = reference["logits"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let worst = logits
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("zero-shot logits: worst absolute difference {worst:.1e}");
    assert!(worst < 1e-4, "logits differ by {worst}");
}
