"""Converts a PyTorch CLIP checkpoint to the safetensors `wit eval` reads.

Reads OpenAI's TorchScript archives (`ViT-B-32.pt`, `RN50.pt`), open_clip
checkpoints (`open_clip_pytorch_model.bin`, `epoch_32.pt` with a
`state_dict` and `module.` prefixes) and plain state dicts; drops OpenAI's
non-tensor entries (`input_resolution`, `context_length`, `vocab_size`);
writes the tensors under open_clip's keys, float32, with metadata
`format=pt` and `wit.model=MODEL` so that `wit eval --checkpoint OUT` needs
no --model.

Usage: python scripts/convert-checkpoint.py IN.pt OUT.safetensors --model RN50
Needs torch and safetensors (a venv such as ~/.cache/wit/torch-venv).
"""
import argparse

import torch
from safetensors.torch import save_file

DROP = {"input_resolution", "context_length", "vocab_size"}


def load(path):
    try:
        return torch.jit.load(path, map_location="cpu").state_dict()
    except RuntimeError:
        obj = torch.load(path, map_location="cpu", weights_only=False)
        if isinstance(obj, dict) and "state_dict" in obj:
            obj = obj["state_dict"]
        return obj


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--model", required=True, help="wit's preset name, e.g. RN50 or ViT-B-32-quickgelu")
    a = ap.parse_args()
    sd = load(a.input)
    out = {}
    for k, v in sd.items():
        k = k.removeprefix("module.")
        if k in DROP or not torch.is_tensor(v):
            continue
        out[k] = v.detach().contiguous() if v.dtype == torch.int64 else v.detach().float().contiguous()
    save_file(out, a.output, metadata={"format": "pt", "wit.model": a.model})
    print(f"{a.output}: {len(out)} tensors, {sum(t.numel() for t in out.values()):,} values, model {a.model}")


main()
