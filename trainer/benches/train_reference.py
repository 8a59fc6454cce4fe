"""open_clip's training step on the CPU, the reference `benches/train.rs`
measures wit against in the same run.

For each model given as NAME:BATCH (the shapes of wit's presets `demo`,
`tiny` and `ViT-S-32`, built with open_clip's own `CLIP` class), it times
forward, `ClipLoss`, backward and an `AdamW` step (betas 0.9/0.98, eps 1e-6,
weight decay 0.2) in f32 on random images and random token ids, after one
warm-up step, with torch's threads set to the machine's cores. Prints one
JSON line per model: samples/s, s/step and the peak resident memory of the
process so far (MiB, VmHWM).

Usage: python train_reference.py demo:64:10 tiny:64:20 ViT-S-32:32:3
Needs torch and open_clip_torch (the bench venv ~/.cache/wit/bench-venv).
"""
import json
import os
import sys
import time

import open_clip
import torch
from open_clip.loss import ClipLoss
from open_clip.model import CLIP

# wit's presets (trainer/src/model/mod.rs, ClipConfig::preset), in
# open_clip's config terms; heads = width / head_width.
MODELS = {
    "demo": dict(
        embed_dim=64,
        vision_cfg={"image_size": 64, "patch_size": 8, "width": 64, "layers": 3, "head_width": 16},
        text_cfg={"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3},
    ),
    "tiny": dict(
        embed_dim=16,
        vision_cfg={"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 8},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
    ),
    "ViT-S-32": dict(
        embed_dim=384,
        vision_cfg={"image_size": 224, "patch_size": 32, "width": 384, "layers": 12, "head_width": 64},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 384, "heads": 6, "layers": 12},
    ),
}


def peak_rss_mib():
    """The process's peak resident memory so far (VmHWM; getrusage's
    ru_maxrss would include the parent's, inherited across fork and exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench(name, batch, steps):
    torch.manual_seed(0)
    cfg = MODELS[name]
    model = CLIP(quick_gelu=False, **cfg)
    model.train()
    # open_clip's rule (and wit's optim::decays): no decay on gains, biases,
    # the logit scale and other parameters of rank < 2.
    def decays(n, p):
        return p.ndim >= 2 and not any(s in n for s in ("bn", "ln", "bias", "logit_scale"))

    decay = [p for n, p in model.named_parameters() if decays(n, p)]
    rest = [p for n, p in model.named_parameters() if not decays(n, p)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.2}, {"params": rest, "weight_decay": 0.0}],
        lr=5e-4,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    loss_fn = ClipLoss()
    size = cfg["vision_cfg"]["image_size"]
    ctx = cfg["text_cfg"]["context_length"]
    images = torch.randn(batch, 3, size, size)
    tokens = torch.randint(1, 49000, (batch, ctx))
    tokens[:, 12] = 49407

    def step():
        opt.zero_grad(set_to_none=True)
        im, tx, scale = model(images, tokens)
        loss = loss_fn(im, tx, scale)
        loss.backward()
        opt.step()
        return loss.item()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    secs = time.perf_counter() - t0
    rss = peak_rss_mib()
    params = sum(p.numel() for p in model.parameters())
    print(
        json.dumps(
            {
                "model": name,
                "batch": batch,
                "steps": steps,
                "samples_per_s": batch * steps / secs,
                "s_per_step": secs / steps,
                "peak_rss_mib": rss,
                "parameters": params,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "open_clip": open_clip.__version__,
            }
        ),
        flush=True,
    )


def main(args):
    torch.set_num_threads(os.cpu_count() or 1)
    for a in args:
        name, batch, steps = a.split(":")
        bench(name, int(batch), int(steps))


if __name__ == "__main__":
    main(sys.argv[1:])
