#!/usr/bin/env python3
"""Multistream Wikipedia dump decompression and counting, by thread count.

Writes a Wikipedia-format multistream dump (streams of 100 pages, as Wikimedia
makes them) of about SIZE_MB of XML, then times `wit queries build --wikipedia`
with --jobs 1 and --jobs N and prints the speedup: bzip2 decompression is
spread over the worker threads, so the speedup shows whether it scales.

usage: scripts/bench-wikipedia.py WIT_BINARY [SIZE_MB] [JOBS]
"""
import bz2, os, random, subprocess, sys, tempfile, time

wit = sys.argv[1]
size_mb = int(sys.argv[2]) if len(sys.argv) > 2 else 200
jobs = int(sys.argv[3]) if len(sys.argv) > 3 else os.cpu_count()
rng = random.Random(3)
vocab = ["w%d" % i for i in range(200000)]
weights = [1.0 / (i + 1) for i in range(len(vocab))]

def page(i):
    words = rng.choices(vocab, weights, k=600)
    text = " ".join("[[%s]]" % w if j % 9 == 0 else w for j, w in enumerate(words))
    return ("<page><title>P%d</title><ns>0</ns><id>%d</id><revision><text xml:space=\"preserve\">%s. "
            "{{cite|x}}</text></revision></page>\n" % (i, i, text))

with tempfile.TemporaryDirectory() as tmp:
    dump = os.path.join(tmp, "enwiki-pages-articles-multistream.xml.bz2")
    written, i = 0, 0
    with open(dump, "wb") as f:
        f.write(bz2.compress(b"<mediawiki><siteinfo></siteinfo>\n"))
        while written < size_mb << 20:
            block = "".join(page(i + k) for k in range(100)).encode()
            i += 100
            written += len(block)
            f.write(bz2.compress(block))
        f.write(bz2.compress(b"</mediawiki>\n"))
    print("dump: %d pages, %.0f MB of XML, %.0f MB compressed" % (i, written / 2**20, os.path.getsize(dump) / 2**20))
    times = {}
    for j in sorted({1, jobs}):
        t = time.time()
        subprocess.run([wit, "-q", "queries", "build", "--wikipedia", dump, "--no-seed-numbers",
                        "--min-count", "5", "--jobs", str(j), "--force", "-d", os.path.join(tmp, "ds%d" % j)], check=True)
        times[j] = time.time() - t
        print("--jobs %d: %.1fs, %.1f MB/s of XML" % (j, times[j], written / 2**20 / times[j]))
    if jobs > 1:
        print("speedup with %d jobs: %.2fx" % (jobs, times[1] / times[jobs]))
