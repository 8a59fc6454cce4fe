"""Writes the state-dict keys and shapes of open_clip's models, which wit's
models must equal (trainer/tests/data/open_clip_state_dicts.json).

Usage: python scripts/open-clip-state-dicts.py > trainer/tests/data/open_clip_state_dicts.json
Needs torch and open_clip_torch (a venv such as ~/.cache/wit/torch-venv);
CI reads the committed output and needs neither.
"""
import json

import open_clip
import torch

MODELS = ["RN50", "RN50x4", "ViT-B-32", "ViT-L-14-336", "ViT-S-32"]

out = {"open_clip": open_clip.__version__, "torch": torch.__version__, "models": {}}
for name in MODELS:
    model = open_clip.create_model(name)
    sd = model.state_dict()
    out["models"][name] = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "state_dict": {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in sd.items()},
    }
# One key per line: small, and diffs read well.
lines = ["{", f'"open_clip": {json.dumps(out["open_clip"])}, "torch": {json.dumps(out["torch"])},', '"models": {']
for i, (name, m) in enumerate(out["models"].items()):
    lines.append(f'{json.dumps(name)}: {{"parameters": {m["parameters"]}, "state_dict": {{')
    items = sorted(m["state_dict"].items())
    for j, (k, v) in enumerate(items):
        lines.append(f"{json.dumps(k)}: {json.dumps(v)}" + ("," if j + 1 < len(items) else ""))
    lines.append("}}" + ("," if i + 1 < len(out["models"]) else ""))
lines.append("}}")
print("\n".join(lines))
