#!/usr/bin/env python3
"""Generated captions of every class of text that open_clip's cleaning
(ftfy's fix_text, html.unescape twice, whitespace collapsing, lower case)
treats specially, one JSON string per line, for scripts/tokenizer-reference.py.

Usage: scripts/tokenizer-cases.py > trainer/tests/data/unusual_captions.jsonl

Classes (the counts are printed to stderr):
- every HTML5 named entity, with and without its `;`, in lower and upper
  case, glued to letters and digits (`&copy2020`, `&notit;`);
- numeric character references: 0..0x10FFFF edges, 128..159, surrogates,
  noncharacters, too large, leading zeros, hex and decimal, with and
  without `;`, malformed;
- every C0 and C1 control character, and ANSI terminal escapes;
- mojibake: UTF-8 decoded as the single-byte encodings ftfy knows, one to
  three times over, of Latin, Greek, Cyrillic, CJK text, curly quotes and
  emoji; and the same with a lost byte or a space for U+A0;
- zero-width, bidi and other format characters; emoji sequences (ZWJ,
  skin tones, flags, keycaps, variation selectors); ligatures, full-width
  forms, line separators and every kind of white space.

Deterministic: the same file on every run (no randomness).
"""
import html.entities
import json
import sys

out = []
counts = {}


def add(cls, text):
    out.append(text)
    counts[cls] = counts.get(cls, 0) + 1


# HTML5 named entities, four to a line.
names = sorted(html.entities.html5)
batch = []
for i, name in enumerate(names):
    bare = name.rstrip(";")
    batch.append(f"&{name}x" if name.endswith(";") else f"&{name}2020")
    batch.append(f"a&{bare}b")
    batch.append(f"&{bare.upper()};")
    if len(batch) >= 12 or i == len(names) - 1:
        add("entities", " ".join(batch))
        batch = []
for s in ["&copy2020", "&notit;", "&notin;", "&amp;amp;", "&amp;lt;b&amp;gt;", "&ampx", "&AMP;",
          "&nbsp;&nbsp;x", "&unknown; &foo", "& amp;", "&;", "&&amp;", "<b>&amp;</b> &lt;",
          "Tom &amp; Jerry <3", "&EACUTE;cole", "&NTILDE;", "&lt&gt&quot"]:
    add("entities", s)

# Numeric character references.
edges = [0, 1, 8, 9, 10, 11, 12, 13, 14, 31, 32, 38, 60, 65, 127, 160, 173, 255, 256,
         0x2028, 0xD7FF, 0xD800, 0xDBFF, 0xDC00, 0xDFFF, 0xE000, 0xFDD0, 0xFDEF, 0xFEFF,
         0xFFFD, 0xFFFE, 0xFFFF, 0x10000, 0x1F600, 0x1FFFE, 0x10FFFD, 0x10FFFE, 0x10FFFF,
         0x110000, 0x7FFFFFFF, 10**20] + list(range(128, 160))
for n in edges:
    add("numeric", f"x&#{n};y &#{n}z")
    add("numeric", f"&#x{n:x}; &#X{n:X}z &#x{n:X}")
for s in ["&#0065;", "&#x0041;", "&#;", "&#x;", "&#65a", "&#x41g", "&#xx41;", "&# 65;",
          "&#-65;", "&#1234567890123;", "&#150;&#151;", "&#x96; dash", "&#8217;s"]:
    add("numeric", s)

# Control characters and terminal escapes.
for c in list(range(0, 32)) + list(range(127, 160)):
    ch = chr(c)
    if ch in "\n\r":
        add("controls", f"line one{ch}line two")
    else:
        add("controls", f"a{ch}b c{ch}{ch}d")
for s in ["\x1b[31mred\x1b[0m text", "\x1b[1;32;40mbold green\x1b[m", "\x1b[2Kcleared",
          "\x1b[10;20Hmoved", "\x1b]0;title\x07after", "\x1b[?25lhidden cursor",
          "\x1b[31", "esc \x1b alone", "\x1b[38;5;208morange\x1b[0m", "\x1b(Bcharset"]:
    add("escapes", s)

# Mojibake, one to three layers.
texts = ["café", "naïve façade", "“quoted” — dash…", "Ünïcödé", "l’humanité", "€100",
         "Straße", "Привет мир", "Ελληνικά", "日本語のテキスト", "中文图片", "한국어",
         "emoji 😀 here", "❤️ love", "½ price", "©2020 ®", "São Paulo", "Zürich",
         "Kraków", "İstanbul", "Ærøskøbing", "señor", "crème brûlée", "no mojibake"]
encodings = ["latin-1", "windows-1252", "windows-1251", "windows-1250", "windows-1253",
             "windows-1254", "windows-1257", "iso-8859-2", "mac_roman", "cp437"]
for t in texts:
    for enc in encodings:
        layer = t
        for depth in range(1, 4):
            try:
                layer = layer.encode("utf-8").decode(enc)
            except UnicodeDecodeError:
                break
            add("mojibake", layer)
            if depth == 1:
                add("mojibake", layer.replace("\xa0", " "))
                add("mojibake", f"{t} and {layer}")
                add("mojibake", layer[:-1])

# Format characters: zero-width, bidi, tags.
for c in [0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D,
          0x202E, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064, 0x2066, 0x2067, 0x2068,
          0x2069, 0x206A, 0x206B, 0x206C, 0x206D, 0x206E, 0x206F, 0xFEFF, 0xFFF9,
          0xFFFA, 0xFFFB, 0xFFFC, 0xFFFD, 0x00AD, 0x034F, 0x061C, 0x180E, 0xE0001,
          0xE0020, 0xE007F, 0x1D173, 0x1D17A]:
    add("format", f"zero{chr(c)}width {chr(c)}start end{chr(c)}")

# Emoji sequences.
for s in ["👨‍👩‍👧‍👦 family", "👍🏽 thumbs", "🇫🇷 🇯🇵 flags", "1️⃣ #️⃣ keycaps", "❤ ❤️ ❤︎",
          "🏳️‍🌈 flag", "🧑🏿‍🚀 astronaut", "🏴󠁧󠁢󠁳󠁣󠁴󠁿 scotland", "👩‍❤️‍💋‍👨", "☺️☺",
          "🙂🙃😉", "🐱‍👤 ninja cat", "👁‍🗨", "⚽️⚾️", "🤷‍♀️ shrug"]:
    add("emoji", s)

# Ligatures, widths, quotes, line breaks, white space.
for c in list(range(0xFB00, 0xFB07)) + [0x0132, 0x0133, 0x0149, 0x01C4, 0x01C5, 0x01C6,
                                        0x01C7, 0x01C8, 0x01C9, 0x01CA, 0x01CB, 0x01CC,
                                        0x01F1, 0x01F2, 0x01F3]:
    add("ligatures", f"o{chr(c)}ce {chr(c).upper()}")
for c in range(0xFF01, 0xFFEF, 3):
    add("width", f"wide {chr(c)}{chr(c + 1)}{chr(c + 2)} form")
for c in [0x02BC, 0x2018, 0x2019, 0x201A, 0x201B, 0x201C, 0x201D, 0x201E, 0x201F,
          0x2032, 0x2033, 0x00AB, 0x00BB, 0x2039, 0x203A]:
    add("quotes", f"it{chr(c)}s {chr(c)}quoted{chr(c)}")
for c in [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0,
          0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007,
          0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0x180E]:
    add("space", f"  a{chr(c)}b {chr(c)}{chr(c)} c\r\n{chr(c)}")

json.dump(counts, sys.stderr)
sys.stderr.write(f"\n{len(out)} lines\n")
for t in out:
    print(json.dumps(t, ensure_ascii=True))
