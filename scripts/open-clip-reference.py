"""Reference outputs of open_clip for small models with random weights, which
wit's Candle models must reproduce (trainer/tests/data/open_clip_tiny_*.safetensors).

For a small ViT and a small modified ResNet (open_clip's own classes, custom
sizes), with every parameter and buffer drawn at random (seeded), it saves:
- `model.KEY`: the state dict (batch-norm buffers included);
- `input.images` (4 x 3 x S x S) and `input.tokens` (4 x 77, vocabulary 512,
  each text's end token the largest id);
- `output.image`, `output.text`: `encode_image` and `encode_text` in eval mode;
- `output.loss`: open_clip's ClipLoss of the normalised features in train mode
  (batch statistics in batch norms), and `grad.KEY`: its gradient for every
  parameter.

Usage: python scripts/open-clip-reference.py trainer/tests/data
Needs torch and open_clip_torch (a venv such as ~/.cache/wit/torch-venv);
CI reads the committed files and needs neither.
"""
import sys

import open_clip
import torch
from open_clip.loss import ClipLoss
from open_clip.model import CLIP
from safetensors.torch import save_file

TEXT = {"context_length": 77, "vocab_size": 512, "width": 32, "heads": 4, "layers": 2}
MODELS = {
    # heads = width / head_width = 4
    "vit": dict(vision_cfg={"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 8}),
    # attention-pool heads = 32 * width / 64 = 2
    "rn": dict(vision_cfg={"image_size": 64, "layers": [1, 1, 1, 1], "width": 4}),
}


def main(out_dir):
    for name, cfg in MODELS.items():
        torch.manual_seed(7)
        model = CLIP(embed_dim=16, text_cfg=TEXT, quick_gelu=False, **cfg)
        with torch.no_grad():
            for k, p in model.state_dict().items():
                if k.endswith("num_batches_tracked"):
                    p.fill_(3)
                elif k.endswith("running_var"):
                    p.uniform_(0.5, 1.5)
                elif k == "logit_scale":
                    p.fill_(2.0)
                else:
                    p.normal_(0.0, 0.2 if p.ndim < 2 else p.shape[-1] ** -0.5)
        size = cfg["vision_cfg"]["image_size"]
        images = torch.randn(4, 3, size, size)
        tokens = torch.zeros(4, 77, dtype=torch.int64)
        for i in range(4):
            n = 5 + 3 * i
            tokens[i, 0] = 510
            tokens[i, 1 : n - 1] = torch.randint(1, 500, (n - 2,))
            tokens[i, n - 1] = 511
        sd = {f"model.{k}": v.clone().contiguous() for k, v in model.state_dict().items()}
        model.eval()
        with torch.no_grad():
            image = model.encode_image(images)
            text = model.encode_text(tokens)
        model.train()
        im, tx, scale = model(images, tokens)
        loss = ClipLoss()(im, tx, scale)
        loss.backward()
        grads = {f"grad.{k}": p.grad.clone().contiguous() for k, p in model.named_parameters()}
        tensors = {
            **sd,
            **grads,
            "input.images": images,
            "input.tokens": tokens,
            "output.image": image,
            "output.text": text,
            "output.loss": loss.detach().reshape(()),
        }
        meta = {"open_clip": open_clip.__version__, "torch": torch.__version__}
        save_file(tensors, f"{out_dir}/open_clip_tiny_{name}.safetensors", metadata=meta)
        print(name, f"loss {loss.item():.6f}", sum(t.numel() for t in tensors.values()), "values")


main(sys.argv[1])
