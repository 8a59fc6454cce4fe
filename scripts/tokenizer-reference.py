#!/usr/bin/env python3
"""Reference token ids for wit's CLIP tokenizer, from open_clip itself.

Usage: scripts/tokenizer-reference.py CAPTIONS.txt > IDS.jsonl
       scripts/tokenizer-reference.py --jsonl CAPTIONS.jsonl > CLEAN_IDS.jsonl

Makes (once) a venv at ~/.cache/wit/tokenizer-venv with ftfy and regex,
downloads the open-clip-torch wheel (without its dependencies: the tokenizer
needs no torch for encoding), imports open_clip/tokenizer.py from it with a
stand-in `torch` module, and prints, for every caption line, the JSON array
of its 77 context ids (start, BPE ids, end, truncated keeping the end token,
zero-padded), as open_clip's tokenizer gives them.

With --jsonl the captions are JSON strings, one a line (any character,
line breaks included: scripts/tokenizer-cases.py writes them), and each
output line is {"clean": the text as open_clip's cleaning leaves it, "ids":
the context ids without the padding}.

The committed outputs are trainer/tests/data/caption_ids.jsonl (from
captions.txt) and unusual_caption_ids.jsonl (from unusual_captions.jsonl);
tests/tokenize.rs compares wit's with them.
"""
import json
import os
import subprocess
import sys
import tempfile
import types
import zipfile

VENV = os.path.expanduser("~/.cache/wit/tokenizer-venv")
PY = os.path.join(VENV, "bin", "python")
WHEEL = "open-clip-torch==3.3.0"

if os.path.realpath(sys.prefix) != os.path.realpath(VENV):
    if not os.path.exists(PY):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([PY, "-m", "pip", "install", "--quiet", "ftfy", "regex", "numpy"])
    os.execv(PY, [PY] + sys.argv)

work = tempfile.mkdtemp()
subprocess.check_call([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", work, WHEEL])
wheel = next(f for f in os.listdir(work) if f.endswith(".whl"))
with zipfile.ZipFile(os.path.join(work, wheel)) as z:
    z.extract("open_clip/tokenizer.py", work)
    z.extract("open_clip/bpe_simple_vocab_16e6.txt.gz", work)

# The tokenizer imports torch only to build tensors; encoding needs none.
torch = types.ModuleType("torch")
torch.LongTensor = object
torch.Tensor = object
sys.modules["torch"] = torch
sys.path.insert(0, os.path.join(work, "open_clip"))
import tokenizer as oc  # noqa: E402

tok = oc.SimpleTokenizer(bpe_path=os.path.join(work, "open_clip", "bpe_simple_vocab_16e6.txt.gz"))
CONTEXT = 77


def context(caption):
    ids = [tok.sot_token_id] + tok.encode(caption) + [tok.eot_token_id]
    if len(ids) > CONTEXT:
        ids = ids[:CONTEXT]
        ids[-1] = tok.eot_token_id
    return ids


if sys.argv[1] == "--jsonl":
    with open(sys.argv[2], encoding="utf-8") as f:
        for line in f:
            caption = json.loads(line)
            print(json.dumps({"clean": tok.clean_fn(caption), "ids": context(caption)}, ensure_ascii=True))
else:
    with open(sys.argv[1], encoding="utf-8") as f:
        for line in f:
            ids = context(line.rstrip("\n"))
            print(json.dumps(ids + [0] * (CONTEXT - len(ids))))
