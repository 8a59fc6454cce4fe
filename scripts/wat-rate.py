#!/usr/bin/env python3
"""wit extract against cc2dataset's way of reading WAT files, on the same
synthetic WAT file, one core each, in one run: the `--extract-speedup` of
scripts/cost-model.py.

The WAT file is generated here, seeded: Common Crawl's layout (per capture a
request, a response and a metadata record, each a gzip member holding a
WARC `metadata` record of JSON), response envelopes with an HTML-Metadata
head and about 100 links of which 12 are images, 40% of those with an alt
text. The reference does what cc2dataset's extraction does per record:
FastWARC's ArchiveIterator over metadata records, simdjson parsing, the
`IMG@/src` links with an alt made absolute against the page, and the
uid = md5(alt + url). wit runs `wit extract -j 1` on the same file.

    python3 scripts/wat-rate.py --wit target/release/wit --python ~/.cache/wit/cc-venv/bin/python

The reference's interpreter needs `fastwarc` and `pysimdjson` (pip).
"""

import argparse
import gzip
import json
import os
import random
import resource
import subprocess
import tempfile

REFERENCE = r'''
import hashlib, sys, time, resource
from urllib.parse import urljoin
import simdjson
from fastwarc.warc import ArchiveIterator, WarcRecordType

parser = simdjson.Parser()
pairs = 0
t = time.process_time()
with open(sys.argv[1], "rb") as f:
    for record in ArchiveIterator(f, record_types=WarcRecordType.metadata, parse_http=False):
        try:
            doc = parser.parse(record.reader.read())
            env = doc["Envelope"]
            page = env["WARC-Header-Metadata"]["WARC-Target-URI"]
            links = env["Payload-Metadata"]["HTTP-Response-Metadata"]["HTML-Metadata"]["Links"]
        except (KeyError, ValueError, TypeError):
            doc = env = None
            continue
        seen = set()
        link = None
        for link in links:
            if link.get("path") != "IMG@/src":
                continue
            alt = link.get("alt")
            if not alt:
                continue
            url = urljoin(page, link.get("url", ""))
            if not url.startswith(("http://", "https://")):
                continue
            uid = hashlib.md5((alt + url).encode()).hexdigest()
            if uid not in seen:
                seen.add(uid)
                pairs += 1
        # simdjson's proxies must go before the parser is reused.
        del doc, env, links, link
print(pairs, time.process_time() - t)
'''

WORDS = ("red old house garden photo city night river winter market street dog cat "
         "mountain lake bridge train station beach summer family portrait church "
         "museum flower tree sky cloud road car bicycle window door table chair").split()


def words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


COUNTER = [0]


def record(uri, payload):
    COUNTER[0] += 1
    body = json.dumps(payload, separators=(",", ":")).encode()
    head = (
        "WARC/1.0\r\nWARC-Type: metadata\r\n"
        f"WARC-Target-URI: {uri}\r\nWARC-Date: 2024-05-18T00:00:00Z\r\n"
        f"WARC-Record-ID: <urn:uuid:{COUNTER[0]:012d}>\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return gzip.compress(head + body + b"\r\n\r\n", compresslevel=6)


def generate(path, pages, seed=7):
    rng = random.Random(seed)
    with open(path, "wb") as out:
        for i in range(pages):
            host = f"site{rng.randrange(20000)}.example.org"
            uri = f"https://{host}/p/{i}.html"
            hdr = {"WARC-Type": "response", "WARC-Target-URI": uri, "WARC-Date": "2024-05-18T00:00:00Z",
                   "Content-Length": str(rng.randrange(5000, 90000))}
            out.write(record(uri, {"Envelope": {"Format": "WARC", "WARC-Header-Metadata":
                      {"WARC-Type": "request", "WARC-Target-URI": uri}}}))
            links = []
            for k in range(100):
                if k % 8 == 3:
                    link = {"path": "IMG@/src", "url": f"/img/{i}/{k}.jpg"}
                    if rng.random() < 0.4:
                        link["alt"] = words(rng, rng.randrange(2, 12))
                    links.append(link)
                else:
                    links.append({"path": "A@/href", "url": f"/p/{rng.randrange(10**6)}.html",
                                  "text": words(rng, rng.randrange(1, 5))})
            payload = {"Envelope": {
                "Format": "WARC", "WARC-Header-Metadata": hdr,
                "Payload-Metadata": {
                    "Actual-Content-Type": "application/http; msgtype=response",
                    "HTTP-Response-Metadata": {
                        "Response-Message": {"Version": "HTTP/1.1", "Status": "200", "Reason": "OK"},
                        "Headers": {"Content-Type": "text/html; charset=UTF-8", "Server": "nginx"},
                        "HTML-Metadata": {
                            "Head": {"Title": words(rng, 6),
                                     "Metas": [{"name": "description", "content": words(rng, 20)}]},
                            "Links": links}}}}}
            out.write(record(uri, payload))
            out.write(record(uri, {"Envelope": {"Format": "WARC", "WARC-Header-Metadata":
                      {"WARC-Type": "metadata", "WARC-Target-URI": uri}}}))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wit", required=True, help="the wit binary (release)")
    p.add_argument("--python", required=True, help="an interpreter with fastwarc and pysimdjson")
    p.add_argument("--pages", type=int, default=20000, help="captures in the WAT file")
    f = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wat = os.path.join(tmp, "synthetic.warc.wat.gz")
        generate(wat, f.pages)
        mb = os.path.getsize(wat) / 1e6
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([f.wit, "extract", wat, "-d", os.path.join(tmp, "ds"), "-j", "1", "-q"], check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        ours = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        manifest = json.load(open(os.path.join(tmp, "ds", "candidates", "_manifest.json")))
        found = manifest["counts"].get("candidates", 0)
        out = subprocess.run([f.python, "-c", REFERENCE, wat], check=True, capture_output=True, text=True)
        ref_pairs, theirs = out.stdout.split()
        theirs = float(theirs)
        print(f"synthetic WAT: {f.pages} captures, {mb:.1f} MB gzipped")
        print(f"wit extract -j 1: {ours:.2f} s CPU, {mb / ours:.1f} MB/s, {found} candidates (alt and title texts)")
        print(f"cc2dataset's way (FastWARC + simdjson): {theirs:.2f} s CPU, {mb / theirs:.1f} MB/s, {ref_pairs} pairs")
        print(f"speedup: {theirs / ours:.2f}x")


if __name__ == "__main__":
    main()
