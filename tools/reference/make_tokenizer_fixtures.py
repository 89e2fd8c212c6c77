#!/usr/bin/env python3
"""Writes tests/fixtures/gpt2_tokenizer_cases.json: a test corpus and the ids that tiktoken's
`gpt2` encoding gives for it, so the C++ tokenizer can be checked token for token.

The corpus is written here (prose, code, whitespace runs, numbers, contractions, accented Latin,
other scripts, CJK, emoji, control characters), plus random strings drawn from fixed character
pools with a fixed seed, plus byte strings that are not valid UTF-8. Nothing in it is copied
from elsewhere.

tiktoken fetches its vocabulary from the internet on first use; this script instead builds the
encoding from a local gpt2.tiktoken (tools/fetch_vocab.sh), with the gpt2 pattern and
<|endoftext|> = 50256, which is exactly what tiktoken.get_encoding("gpt2") is.

Each case is {"name", "text", "ids"}, or for bytes that are not valid UTF-8 {"name", "hex",
"sanitized_hex", "ids"}: those are encoded as tiktoken.encode_ordinary(raw.decode("utf-8",
"replace")), i.e. each maximal ill-formed subsequence becomes U+FFFD first. The C++ tokenizer
documents and implements the same rule; `sanitized_hex` records Python's replacement so the test
checks that rule byte for byte too.

    pip install tiktoken
    bash tools/fetch_vocab.sh .cache/gpt2.tiktoken
    python3 tools/reference/make_tokenizer_fixtures.py [--vocab .cache/gpt2.tiktoken] [--out FILE]
"""
import argparse
import hashlib
import json
import os
import random
import sys

import tiktoken
from tiktoken.load import load_tiktoken_bpe

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VOCAB_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"

# tiktoken's pattern for gpt2 / r50k_base (the same split as GPT-2's original
# 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+).
try:
    from tiktoken_ext.openai_public import r50k_pat_str as PATTERN
except ImportError:  # older layouts
    PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def encoding(vocab_path):
    return tiktoken.Encoding(
        name="gpt2_local",
        pat_str=PATTERN,
        mergeable_ranks=load_tiktoken_bpe(vocab_path),
        special_tokens={"<|endoftext|>": 50256},
        explicit_n_vocab=50257,
    )


PROSE = """\
The lighthouse keeper counted the ships every evening. Most nights there were three or four,
low and slow against the grey water, but on the longest night of the year she counted eleven,
and she wrote the number twice in her ledger because she did not trust her own hand.

Nobody in the village had asked her to keep the tally. It began as a habit during the first
winter, when the lamp needed tending every two hours and the time between was long. By the
tenth winter the ledgers filled a shelf, and the harbour master came up the hill to borrow them.

"You've kept better records than the port authority," he said, turning the pages. "Why?"
She shrugged. "Somebody ought to notice what passes by."
"""

CODE_CPP = """\
// Returns the index of the first element not less than `key`, or n.
template <typename T>
size_t lower_bound_index(const T* a, size_t n, const T& key) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (a[mid] < key) lo = mid + 1; else hi = mid;
  }
  return lo;  // 0 <= lo <= n
}
"""

CODE_PY = """\
def histogram(values, bins=10):
    \"\"\"Counts values into `bins` equal-width buckets.\"\"\"
    lo, hi = min(values), max(values)
    width = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / width), bins - 1)] += 1
    return counts

if __name__ == "__main__":
\tprint(histogram([1, 2, 2, 3, 5, 8, 13], bins=4))  # tab-indented on purpose
"""

CODE_MISC = """\
{"name": "probe-7", "enabled": true, "thresholds": [0.25, 0.5, 0.75], "owner": null}
<ul class="menu"><li><a href="/home?lang=en&amp;v=2">Home</a></li></ul>
for f in *.log; do grep -c 'ERROR' "$f" || true; done | sort -n | tail -3
SELECT id, COUNT(*) AS n FROM events WHERE ts >= '2024-01-01' GROUP BY id HAVING n > 10;
x->y->z = a[i++] <<= 2; p && q || !r; a != b; c == d; e <= f; g >= h; i ** j; k // l
#define MAX(a, b) ((a) > (b) ? (a) : (b))
"""

NUMBERS = """\
0 1 12 123 1234 12345 123456 1234567 12345678901234567890
3.14159 2.71828 -0.5 +7 1e-10 6.022e23 0x7fff 0b1011 1,000,000 1.000.000,50
In 1999, 42% of 3,600 people paid $19.99; by 2024 it was 7/8 of them at €4,50.
Phone +1 (555) 010-0199, ISBN 978-0-00-000000-0, version v2.10.3-rc1, 12:30:45.
superscripts x² y³ z¹⁰, fractions ½ ¾ ⅞, circled ① ② ③, Roman Ⅻ ⅻ, Arabic-Indic ٠١٢٣٤٥٦٧٨٩,
Devanagari ०१२३, fullwidth １２３４, Thai ๑๒๓.
"""

CONTRACTIONS = """\
I'm sure you're right, but we've tried and they'll say it's late; she'd go, he'll stay.
DON'T SHOUT. I'M HERE. YOU'RE LATE. It'S odd. 'tis the season; rock 'n' roll; ma'am.
y'all'd've known; O'Neil's dog's bone; the '90s; 'quoted' words; ''double''; don’t (curly).
isn't aren't wasn't weren't hasn't haven't hadn't won't wouldn't can't couldn't shan't
'S 'T 'RE 'VE 'M 'LL 'D 's 't 're 've 'm 'll 'd 'x 'sm 'llama 'dd
"""

ACCENTED = """\
Le garçon a reçu une lettre très étrange ; il l'a lue à voix haute, puis il a souri.
Die Bäume am Straßenrand sind groß, und über der Brücke weht ein kühler Wind.
El niño pidió más café y la señora contestó: «¡Ya no queda, mañana habrá!»
Ação, coração e pão: três palavras que não se esquecem. Zażółć gęślą jaźń.
Tiếng Việt có nhiều dấu: ặ ề ỗ ự ỳ. Příliš žluťoučký kůň úpěl ďábelské ódy.
Ørsted og Åse spiste smørbrød. Ísland er fallegt land. Ğüşiöç İı. façade naïve coöperate.
Decomposed: e\u0301 a\u0300 n\u0303 o\u0308 (combining marks) vs composed é à ñ ö.
"""

SCRIPTS = """\
Ночью шёл снег, и утром весь двор был белым. Ελληνικά: καλημέρα, τι κάνεις;
עברית: שלום עולם. العربية: مرحبا بالعالم. हिन्दी: नमस्ते दुनिया। ภาษาไทย: สวัสดีครับ
Georgian ქართული, Armenian Հայերեն, Amharic አማርኛ, Tamil தமிழ், Korean jamo 각.
Math ∑∫√∞≈≠≤≥∂∇ ⊂⊃∈∉ ∀x∃y: x→y; arrows ←↑→↓↔; box ┌─┬─┐│ │└─┴─┘; ©®™§¶†‡•…‰′″
"""

CJK = """\
今天天气很好，我们去公园散步吧。这本书我已经看了三遍了。
東京の駅で友達に会いました。カタカナとひらがなと漢字を混ぜて書きます。ｶﾀｶﾅ（半角）
서울의 겨울은 춥지만 하늘이 맑습니다. 한국어 문장을 토큰으로 나눕니다.
全角スペース　で区切る。「引用」『二重』【括弧】〜ー・。、
"""

EMOJI = """\
Smile 😀 thumbs 👍 👍🏽 👍🏿 family 👨‍👩‍👧‍👦 flags 🇩🇪🇯🇵🇧🇷 heart ❤️ ❤ keycap 1️⃣ #️⃣
mixed text🙂with emoji🚀inside words, repeated 😂😂😂😂😂, rare 🦩🪐🧬, symbols ☀☁☂★☆♠♣♥♦
"""

WHITESPACE_AND_CONTROL = (
    "tabs\tand\t\ttabs\t\t\t\n"
    "line\r\nwindows\r\n\r\nmac\rform\x0cfeed\x0bvtab\n"
    "nbsp\u00a0here, thin\u2009space, ideographic\u3000space, line\u2028sep, para\u2029sep\n"
    "next-line\u0085char, ogham\u1680mark, narrow\u202fnbsp, math\u205fspace\n"
    "not white space: zwsp\u200bzwnj\u200czwj\u200dbom\ufeffwj\u2060 mongolian\u180evs\n"
    "file-sep\x1cgroup\x1drecord\x1eunit\x1f (Python isspace, not Unicode White_Space)\n"
    "controls \x00 \x01\x02 \x1b[31mred\x1b[0m \x7f del \u0080 \u009f\n"
    "special token as text: <|endoftext|> and <|endoftext|><|endoftext|> and <|endoftext\n"
)

LONG_CASES = {
    "spaces_1000_then_word": " " * 1000 + "word",
    "spaces_then_end": "end with spaces" + " " * 257,
    "newlines_500": "\n" * 500,
    "mixed_whitespace_run": ("\t \n  \r\n\u3000 \u00a0" * 40) + "x" + (" \n" * 30),
    "spaces_between_words": " ".join("w" + " " * (i % 17) for i in range(200)),
    "indentation": "".join(" " * (4 * (i % 6)) + "line %d\n" % i for i in range(120)),
    "long_word": "a" * 1500,
    "long_mixed_word": "abcdefghijklmnopqrstuvwxyz" * 45,
    "long_digits": "1234567890" * 150,
    "long_punct": "!?.,;:-=+*" * 120,
    "long_equals": "=" * 1000,
    "base64_blob": "".join(chr(33 + (i * 7919) % 94) for i in range(2000)),
    "long_cjk": "漢字仮名交じり文" * 120,
    "long_emoji": "😀🎉🚀" * 100,
    "apostrophes": "'" * 50 + "s" + "'s" * 100 + "''ll" * 20,
}

INVALID = {
    "lone_continuation": b"abc\x80def",
    "continuations": b"\xbf\xbf\xbf x \x80\x81",
    "overlong_slash": b"path\xc0\xafetc",
    "overlong_3": b"\xe0\x80\xaf and \xe0\x9f\xbf",
    "surrogate": b"hi \xed\xa0\x80\xed\xbf\xbf there",
    "above_max": b"\xf4\x90\x80\x80 big",
    "f5_ff": b"\xf5\xf6\xf7\xf8\xf9\xfa\xfb\xfc\xfd\xfe\xff.",
    "truncated_end": b"euro \xe2\x82",
    "truncated_middle": b"euro \xe2\x82x and \xf0\x9f\x98a and \xf0\x9f b",
    "latin1_text": "café naïve résumé Straße".encode("latin-1"),
    "cp1252_quotes": b"\x93quoted\x94 and \x91single\x92 \x96 dash",
    "utf16le_bom": "\ufeffhi".encode("utf-16-le"),
    "nul_bytes": b"a\x00b\x00\x00c",
    "mixed_valid_invalid": "ok ✓ ".encode() + b"\xff" + " ñ 😀 ".encode() + b"\xe2\x28\xa1" + b" end",
    "only_invalid": b"\x80\xfe\xc3",
    "valid_then_cut_emoji": "smile 😀".encode()[:-1],
}


def random_text_cases(rng):
    pools = {
        "ascii": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "digits": "0123456789",
        "punct": "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        "space": " " * 6 + "\t\n\r\x0b\x0c\u00a0\u3000\u2028\u0085\u2009",
        "latin": "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßœšžŁłŒ",
        "greek_cyr": "αβγδεζηθλμπσφψωΑΒΓΔЖЗИЙКЛМНабвгдежзя",
        "cjk": "的一是不了人我在有他这为之大来以个中上们日本語学校한국어",
        "emoji": "😀😂👍🏽🚀❤\ufe0f\u200d🇩🇪🦩",
        "marks": "\u0301\u0300\u0308\u0303\u0327\u064b\u0902",
        "numbers": "²³½¾①②٣٤१२３４Ⅻⅻ",
        "other": "\u200b\u200c\u200d\ufeff\x00\x1b\x7f©®™€£¥§¶•…",
    }
    words = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", " the", " and", "ing", "tion", " of"]
    names = list(pools)
    cases = {}
    for i in range(120):
        weights = [rng.random() for _ in names]
        n = rng.randint(1, 300)
        out = []
        for _ in range(n):
            if rng.random() < 0.08:
                out.append(rng.choice(words))
            else:
                pool = rng.choices(names, weights)[0]
                out.append(rng.choice(pools[pool]))
        cases["random_text_%03d" % i] = "".join(out).encode("utf-8")
    for i in range(40):
        n = rng.randint(1, 200)
        if i % 2 == 0:  # arbitrary bytes
            data = bytes(rng.randrange(256) for _ in range(n))
        else:  # mostly ASCII/UTF-8 with a few stray bytes
            data = bytearray("".join(rng.choice(pools["ascii"] + " \n😀é漢") for _ in range(n)).encode())
            for _ in range(rng.randint(1, 5)):
                data.insert(rng.randrange(len(data) + 1), rng.choice([0x80, 0xbf, 0xc0, 0xc3, 0xe2, 0xed, 0xf0, 0xf4, 0xf8, 0xff]))
            data = bytes(data)
        cases["random_bytes_%03d" % i] = data
    return cases


def corpus():
    cases = {}
    for name, text in [
        ("prose", PROSE),
        ("code_cpp", CODE_CPP),
        ("code_python", CODE_PY),
        ("code_misc", CODE_MISC),
        ("numbers", NUMBERS),
        ("contractions", CONTRACTIONS),
        ("accented_latin", ACCENTED),
        ("scripts_and_symbols", SCRIPTS),
        ("cjk", CJK),
        ("emoji", EMOJI),
        ("whitespace_and_control", WHITESPACE_AND_CONTROL),
    ]:
        cases[name] = text.encode("utf-8")
    # Every line of the hand-written texts also on its own (more starts and ends of text).
    for name in list(cases):
        for j, line in enumerate(cases[name].split(b"\n")):
            if line:
                cases["%s_line_%02d" % (name, j)] = line
    for name, text in LONG_CASES.items():
        cases[name] = text.encode("utf-8")
    cases.update(INVALID)
    cases["empty"] = b""
    cases["single_space"] = b" "
    cases["single_newline"] = b"\n"
    cases.update(random_text_cases(random.Random(20240520)))
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", default=os.path.join(ROOT, ".cache", "gpt2.tiktoken"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "gpt2_tokenizer_cases.json"))
    args = ap.parse_args()
    sha = hashlib.sha256(open(args.vocab, "rb").read()).hexdigest()
    if sha != VOCAB_SHA256:
        sys.exit("%s: SHA-256 %s is not gpt2.tiktoken's %s" % (args.vocab, sha, VOCAB_SHA256))
    enc = encoding(args.vocab)
    out_cases = []
    total_bytes = total_ids = 0
    for name, raw in corpus().items():
        text = raw.decode("utf-8", "replace")
        ids = enc.encode_ordinary(text)
        assert enc.decode_bytes(ids) == text.encode("utf-8"), name
        if text.encode("utf-8") == raw:
            case = {"name": name, "text": text, "ids": ids}
        else:  # not valid UTF-8: the raw bytes, and what Python's "replace" made of them
            case = {"name": name, "hex": raw.hex(), "sanitized_hex": text.encode("utf-8").hex(), "ids": ids}
        out_cases.append(case)
        total_bytes += len(raw)
        total_ids += len(ids)
    doc = {
        "generator": "tools/reference/make_tokenizer_fixtures.py",
        "tiktoken": tiktoken.__version__,
        "vocab_sha256": sha,
        "pattern": PATTERN,
        "invalid_utf8": "each case is encoded as encode_ordinary(raw.decode('utf-8', 'replace'))",
        "cases": out_cases,
    }
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    assert len(text.encode()) < 400_000, "fixture too large: %d bytes" % len(text)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print("%s: %d cases, %d bytes of text, %d ids, %d bytes" % (args.out, len(out_cases), total_bytes, total_ids, len(text)))


if __name__ == "__main__":
    main()
