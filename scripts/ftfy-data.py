#!/usr/bin/env python3
"""The tables wit's tokenizer needs to clean text as open_clip does, taken
from ftfy 6.3.1 (the version open_clip's users get) and from Python's
`html` module, as data: trainer/assets/ftfy-6.3.1.json.

Usage: scripts/ftfy-data.py > trainer/assets/ftfy-6.3.1.json

Runs in the venv scripts/tokenizer-reference.py makes (~/.cache/wit/
tokenizer-venv, with ftfy). The output holds:
- `charmaps`: for each single-byte encoding ftfy tries, in its order, the
  character of every byte 0..255 (ftfy's "sloppy" codecs fill a codec's
  holes with Latin-1 and map byte 0x1A to U+FFFD); `windows-1252` strict,
  with "" for its five undefined bytes;
- `badness`, `utf8_detector`: ftfy's mojibake heuristics, rewritten from
  Python's verbose syntax into the Rust `regex` crate's (classes spelled
  out as \\x{..}, `\\s` and `\\w` as Python reads them); the detector's
  look-behind class apart as `utf8_continuation_strict`;
- `altered_utf8`, `lossy_utf8`: ftfy's byte patterns, as byte regexes;
- `entities`: ftfy's entity table (names with `;`, some upper-cased);
  `html5`: Python's `html.entities.html5`; `invalid_charrefs` and
  `invalid_codepoints`: what `html.unescape` does with numeric references;
- `ligatures`, `width_map`, `control_chars`: ftfy's character maps.
"""
import html
import html.entities
import json
import os
import re
import sys

VENV = os.path.expanduser("~/.cache/wit/tokenizer-venv")
PY = os.path.join(VENV, "bin", "python")
if os.path.realpath(sys.prefix) != os.path.realpath(VENV):
    if not os.path.exists(PY):
        sys.exit(f"run scripts/tokenizer-reference.py once first: it makes {VENV}")
    os.execv(PY, [PY] + sys.argv)

import ftfy  # noqa: E402
from ftfy import badness, chardata  # noqa: E402

assert ftfy.__version__ == "6.3.1", ftfy.__version__


def rust_char(c):
    return "\\x{%X}" % ord(c)


def to_rust(pattern):
    """Python verbose regex -> Rust regex: white space and comments outside
    classes dropped, every class member spelled \\x{..}, \\s and \\w as
    Python's str patterns read them."""
    out = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            e = pattern[i + 1]
            if e in "xu":
                width = 2 if e == "x" else 4
                c = chr(int(pattern[i + 2:i + 2 + width], 16))
                out.append(rust_char(c))
                i += 2 + width
                continue
            if e == "s":
                out.append("\\s\\x{1C}-\\x{1F}" if in_class else "[\\s\\x{1C}-\\x{1F}]")
            elif e == "w":
                out.append("\\p{L}\\p{N}_" if in_class else "[\\p{L}\\p{N}_]")
            else:
                out.append(rust_char(e) if in_class else "\\" + e)
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
                out.append("]")
            elif c == "-" or (c == "^" and pattern[i - 1] == "["):
                out.append(c)
            else:
                out.append(rust_char(c))
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append("[")
        elif c == "#":
            while i < n and pattern[i] != "\n":
                i += 1
            continue
        elif c.isspace():
            pass
        elif c.isascii() and (c.isalnum() or c in "|()?*+{}^$.,"):
            out.append(c)
        else:
            out.append(rust_char(c))
        i += 1
    return "".join(out)


def bytes_to_rust(pattern):
    out = ["(?-u)"]
    for b in pattern:
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in "|()[]-?*+{}^$"):
            out.append(c)
        else:
            out.append("\\x%02X" % b)
    return "".join(out)


charmaps = {}
for enc in chardata.CHARMAP_ENCODINGS:
    charmaps[enc] = bytes(range(256)).decode(enc)
charmaps["windows-1252"] = [
    bytes([b]).decode("windows-1252", errors="replace").replace("\ufffd", "") for b in range(256)
]
for enc in chardata.CHARMAP_ENCODINGS:
    charmaps[enc] = list(charmaps[enc])

detector = chardata.UTF8_DETECTOR_RE.pattern
# The look-behind goes apart: Rust's regex has none.
look = re.match(r"\s*\(\?<!\s*\[([^\]]*)\]\)", detector)
assert look, detector
strict_class = look.group(1)
core = detector[look.end():]

invalid_charrefs = {str(k): v for k, v in html._invalid_charrefs.items()}

data = {
    "version": ftfy.__version__,
    "charmap_encodings": chardata.CHARMAP_ENCODINGS,
    "charmaps": charmaps,
    "badness": to_rust(badness.BADNESS_RE.pattern),
    "utf8_detector": to_rust(core),
    "utf8_continuation_strict": to_rust("[" + strict_class + "]"),
    "altered_utf8": bytes_to_rust(chardata.ALTERED_UTF8_RE.pattern),
    "lossy_utf8": bytes_to_rust(chardata.LOSSY_UTF8_RE.pattern),
    "c1_control": to_rust(chardata.C1_CONTROL_RE.pattern),
    "entities": chardata.HTML_ENTITIES,
    "html5": html.entities.html5,
    "invalid_charrefs": invalid_charrefs,
    "invalid_codepoints": sorted(html._invalid_codepoints),
    "ligatures": {chr(k): v for k, v in chardata.LIGATURES.items()},
    "width_map": {chr(k): v for k, v in chardata.WIDTH_MAP.items()},
    "control_chars": sorted(chardata.CONTROL_CHARS),
}
json.dump(data, sys.stdout, ensure_ascii=True, indent=0, sort_keys=True)
sys.stdout.write("\n")
