"""Reference zero-shot classifier and logits made by open_clip's own code
(`open_clip.zero_shot_classifier.build_zero_shot_classifier`), which wit's
`eval::zeroshot` must reproduce (trainer/tests/data/open_clip_zero_shot.safetensors).

The model is the tiny ViT of scripts/open-clip-reference.py (its weights read
from trainer/tests/data/open_clip_tiny_vit.safetensors), whose vocabulary
has 512 ids. Texts are tokenized with open_clip's tokenizer (the CLIP BPE)
and each id mapped into that vocabulary: padding 0 stays 0, the start token
becomes 510, the end token 511 (the largest, where the text is pooled),
any other id i becomes 1 + i % 500. The Rust test maps wit's tokens the
same way.

It saves `classifier` (classes x embed, the transpose of open_clip's), and
`logits` (images x classes: 100 * normalised image embeddings @ classifier)
for the fixture's `input.images`, with `classes` and `templates` in the
metadata.

Usage: python scripts/zero-shot-reference.py trainer/tests/data
Needs torch and open_clip_torch (~/.cache/wit/bench-venv has them); CI reads
the committed file and needs neither.
"""
import json
import sys

import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from open_clip.zero_shot_classifier import build_zero_shot_classifier
from safetensors.torch import load_file, save_file

TEXT = {"context_length": 77, "vocab_size": 512, "width": 32, "heads": 4, "layers": 2}
VISION = {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 8}
CLASSES = ["cat", "dog", "red car", "golden retriever", "sunflower"]
TEMPLATES = ["a photo of a {}.", "a blurry drawing of the {}.", "{} in the wild", "itap of a {}."]


def mapped(tokens):
    out = torch.where(tokens == 0, 0, 1 + tokens % 500)
    out = torch.where(tokens == 49406, 510, out)
    return torch.where(tokens == 49407, 511, out)


def main(out_dir):
    weights = load_file(f"{out_dir}/open_clip_tiny_vit.safetensors")
    model = CLIP(embed_dim=16, text_cfg=TEXT, vision_cfg=VISION, quick_gelu=False)
    state = {k[len("model."):]: v for k, v in weights.items() if k.startswith("model.")}
    model.load_state_dict(state)
    model.eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        classifier = build_zero_shot_classifier(
            model,
            tokenizer=lambda texts: mapped(tokenizer(texts)),
            classnames=CLASSES,
            templates=TEMPLATES,
            num_classes_per_batch=2,
            device="cpu",
        )
        images = F.normalize(model.encode_image(weights["input.images"]), dim=-1)
        logits = 100.0 * images @ classifier
    meta = {
        "open_clip": open_clip.__version__,
        "torch": torch.__version__,
        "classes": json.dumps(CLASSES),
        "templates": json.dumps(TEMPLATES),
    }
    tensors = {"classifier": classifier.T.contiguous(), "logits": logits.contiguous()}
    save_file(tensors, f"{out_dir}/open_clip_zero_shot.safetensors", metadata=meta)
    print("classifier", tuple(classifier.T.shape), "logits", tuple(logits.shape))


if __name__ == "__main__":
    main(sys.argv[1])
