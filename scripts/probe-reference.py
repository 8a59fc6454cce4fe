"""The linear-probe reference: scikit-learn's LogisticRegression (L-BFGS,
multinomial, L2) on fixed features, which `wit`'s probe must match within
one point of accuracy (trainer/tests/probe.rs).

Features: scikit-learn's digits (1,797 8x8 images, 64 pixel values 0-16; UCI
Optical Recognition of Handwritten Digits, CC BY 4.0), written to
trainer/tests/data/digits.csv as label,64 values. Split: the first 1,000
rows train, the next 300 validate, the last 497 test. C is swept over
10^-4 .. 10^2 (13 values, as wit sweeps lambda = 1 / (C n)) on the
validation rows, then refit on train + validation and scored on test.

Usage: python scripts/probe-reference.py trainer/tests/data
Needs scikit-learn (a venv such as ~/.cache/wit/torch-venv).
"""
import json
import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

out = sys.argv[1]
x, y = load_digits(return_X_y=True)
with open(f"{out}/digits.csv", "w") as f:
    for row, label in zip(x.astype(int), y):
        f.write(",".join([str(label)] + [str(v) for v in row]) + "\n")
train, val, test = slice(0, 1000), slice(1000, 1300), slice(1300, None)
best = None
sweep = []
for c in np.logspace(-4, 2, 13):
    m = LogisticRegression(C=c, max_iter=1000).fit(x[train], y[train])
    acc = float((m.predict(x[val]) == y[val]).mean())
    sweep.append({"C": float(c), "val_top1": acc})
    if best is None or acc > best[1]:
        best = (c, acc)
trval = slice(0, 1300)
m = LogisticRegression(C=best[0], max_iter=1000).fit(x[trval], y[trval])
test_acc = float((m.predict(x[test]) == y[test]).mean())
json.dump({"best_C": float(best[0]), "val_top1": best[1], "test_top1": test_acc, "sweep": sweep},
          open(f"{out}/probe_reference.json", "w"), indent=1)
print(best, test_acc)
