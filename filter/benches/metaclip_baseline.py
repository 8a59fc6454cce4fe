#!/usr/bin/env python3
"""MetaCLIP's substring matching with pyahocorasick: the baseline of `cargo bench
-p wit-filter --bench matcher`.

Usage: metaclip_baseline.py QUERIES.json CAPTIONS.txt
Prints one JSON line: {"build_s": ..., "match_s": ..., "bytes": ..., "matches": ...}.

It runs itself inside a venv at ~/.cache/wit/bench-venv with pyahocorasick
installed (made on first use). The matching follows MetaCLIP's
substr_matching_ahocorasick.py: " " + text + " ", the punctuation , . ; : ? !
and the backtick spaced on both sides, tab/newline/CR as spaces, each entry
added as " entry ", iter() for overlapping matches collected into a set.
"""
import json
import os
import subprocess
import sys
import time

VENV = os.path.expanduser("~/.cache/wit/bench-venv")
PY = os.path.join(VENV, "bin", "python")

if os.path.realpath(sys.prefix) != os.path.realpath(VENV):
    if not os.path.exists(PY):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    try:
        subprocess.check_call([PY, "-c", "import ahocorasick"], stderr=subprocess.DEVNULL)
    except subprocess.CalledProcessError:
        subprocess.check_call([PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "pyahocorasick"])
    os.execv(PY, [PY] + sys.argv)

import ahocorasick  # noqa: E402

SPACED = [",", ".", ";", ":", "?", "!", "`"]


def normalize(text):
    for p in SPACED:
        text = text.replace(p, f" {p} ")
    for w in ("\t", "\n", "\r"):
        text = text.replace(w, " ")
    return f" {text} "


def main():
    queries = json.load(open(sys.argv[1], encoding="utf-8"))
    captions = open(sys.argv[2], encoding="utf-8").read().split("\n")
    if captions and captions[-1] == "":
        captions.pop()
    t = time.perf_counter()
    automaton = ahocorasick.Automaton()
    for idx, q in enumerate(queries):
        automaton.add_word(f" {q} ", (idx, q))
    automaton.make_automaton()
    build = time.perf_counter() - t
    t = time.perf_counter()
    matches = 0
    for text in captions:
        ids = set()
        for _, (idx, _) in automaton.iter(normalize(text)):
            ids.add(idx)
        matches += len(ids)
    match = time.perf_counter() - t
    size = sum(len(c.encode("utf-8")) for c in captions)
    print(json.dumps({"build_s": build, "match_s": match, "bytes": size, "matches": matches}))


main()
