"""The reference for `cargo bench -p wit-trainer --bench loader`: open_clip's
training input pipeline on the same shards, in one process. webdataset reads
the tar files with a 1000-sample shuffle buffer, Pillow decodes, and
torchvision's RandomResizedCrop(224, scale=(0.9, 1.0), bicubic), ToTensor and
Normalize(OpenAI mean/std) are written out with Pillow and numpy (torchvision
needs torch, which these machines do not install); batches of 256 are
stacked. Captions are not tokenized here, which favours this side.

Usage: python loader_reference.py SHARD.tar...   prints samples and seconds.
"""
import math
import random
import sys
import time

import numpy as np
import webdataset as wds
from PIL import Image

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)[:, None, None]
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)[:, None, None]


def random_resized_crop(img, size=224, scale=(0.9, 1.0), ratio=(3 / 4, 4 / 3)):
    # torchvision's RandomResizedCrop.get_params, then crop and resize.
    w, h = img.size
    area = w * h
    for _ in range(10):
        target = area * random.uniform(*scale)
        log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        aspect = math.exp(random.uniform(*log_ratio))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            x = random.randint(0, w - cw)
            y = random.randint(0, h - ch)
            break
    else:
        cw = ch = min(w, h)
        x, y = (w - cw) // 2, (h - ch) // 2
    return img.crop((x, y, x + cw, y + ch)).resize((size, size), Image.BICUBIC)


def preprocess(img):
    img = random_resized_crop(img.convert("RGB"))
    x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return (x - MEAN) / STD


def main():
    random.seed(0)
    ds = (
        wds.WebDataset(sys.argv[1:], shardshuffle=False)
        .shuffle(1000)
        .decode("pil")
        .to_tuple("jpg", "txt")
        .map_tuple(preprocess, lambda t: t)
    )
    start = time.perf_counter()
    n = 0
    batch = []
    for image, _ in ds:
        batch.append(image)
        if len(batch) == 256:
            np.stack(batch)
            n += len(batch)
            batch = []
    if batch:
        np.stack(batch)
        n += len(batch)
    print(n, time.perf_counter() - start)


main()
