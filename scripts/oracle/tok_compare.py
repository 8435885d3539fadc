#!/usr/bin/env python3
"""Compare gemma4q's tokenizer (C) with Hugging Face `tokenizers` (the oracle).

    tok_compare.py --tokenizer /work/shared/data/gemma3-tokenizer.json.gz \
                   --bin build/test_tokenizer [--texts FILE_OR_DIR ...] [--keep DIR]
                   [--write-vectors tests/data/tok_gemma3_vectors.txt]

Without --texts, a built-in varied text set is generated (prose, code with tabs, CJK, emoji and
ZWJ sequences, runs of spaces/newlines, mixed scripts, special-token strings, literal U+2581,
invalid UTF-8, long words, random Unicode, a ~1 MB mix).

For every text: ids from HF (encode(..., add_special_tokens=False)) must equal the ids printed by
`test_tokenizer --encode`, and the C decode of those ids (`test_tokenizer --decode`) must equal
HF's decode(skip_special_tokens=False). decode(encode(x)) == x is reported for both; it fails for
both on texts holding a literal U+2581 (the decoder turns it into a space).

HF's Python API takes str, so a file with invalid UTF-8 is compared on its lossy decoding
(bytes.decode('utf-8', 'replace')): that string is written to a side file and given to the C
side too. What the C tokenizer does with the raw invalid bytes (one <0xHH> byte token per stray
byte) is tested in tests/test_tokenizer.c.

Exit status 0 when everything agrees.
"""
import argparse
import gzip
import os
import random
import subprocess
import sys
import tempfile

from tokenizers import Tokenizer

PROSE = (
    "It was the best of times, it was the worst of times; it was the age of wisdom. "
    "Quantization maps each weight to one of sixteen levels (FP4 E2M1), with a scale per block "
    "of 16 values - that's \"NVFP4\". Don't panic!  Mr. O'Neil paid $1,234.56 on 2024-03-07 "
    "at 10:45 a.m. (UTC+2)... e.g. i.e. etc. #hashtag @user 100% 3.14159 1e-6 0x1F.\n"
)

CODE_C = (
    "#include <stdio.h>\n\nstatic int sum(const int *x, int n)\n{\n\tint s = 0;\n"
    "\tfor (int i = 0; i < n; i++) {\n\t\tif (x[i] > 0)\n\t\t\ts += x[i];\n\t}\n\treturn s;\n}\n\n"
    "int main(void)\n{\n    printf(\"%d\\n\", sum((int[]){1, -2, 3}, 3));  // tabs and spaces\n"
    "    return 0;\n}\n"
)

CODE_PY = (
    "class Attention(nn.Module):\n    def __init__(self, d: int, heads: int = 8) -> None:\n"
    "        super().__init__()\n        self.qkv = nn.Linear(d, 3 * d, bias=False)\n\n"
    "    def forward(self, x):\n        q, k, v = self.qkv(x).chunk(3, dim=-1)\n"
    "        return F.scaled_dot_product_attention(q, k, v)  # noqa: E501\n\n\n\n"
    "if __name__ == '__main__':\n\tprint({'a': [1, 2, 3], \"b\": None})\n"
)

MAKEFILE = "all: main\n\nmain: main.o util.o\n\t$(CC) -o $@ $^ $(LDFLAGS)\n\n%.o: %.c\n\t$(CC) -c $<\n"

JSON = '{"name": "gemma4q", "version": [0, 1, 0], "nested": {"k": "v\\u00e9", "list": [true, false, null]}}\n'

CJK = (
    "東京は日本の首都です。人工知能の研究が進んでいます。\n"
    "我们正在测试分词器：中文、标点符号（全角）以及数字１２３。\n"
    "한국어 문장도 포함합니다. 토크나이저가 잘 작동하나요?\n"
    "ひらがなとカタカナ、そして漢字が混在する文章。ｆｕｌｌｗｉｄｔｈ　ｓｐａｃｅ\n"
)

EMOJI = (
    "Smile 😀 family 👨‍👩‍👧‍👦 flag 🇫🇷🇯🇵 skin 👍🏽 heart ❤️ keycap 1️⃣ "
    "rainbow flag 🏳️‍🌈 woman technologist 👩🏾‍💻 😀😀😀 🤖🧠⚡\n"
    "Math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∀x∈ℝ: x²≥0, ∑ᵢ aᵢ ≤ ∞, √2 ≈ 1.414 → ⇒ ⟨ψ|φ⟩\n"
)

MIXED = (
    "English, Русский текст, Ελληνικά, العربية من اليمين، עברית, हिन्दी भाषा, ภาษาไทย, "
    "Tiếng Việt có dấu, Ærøskøbing, naïve café, Straße, ﬁ ligature, Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇\n"
)

SPECIAL = (
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n"
    "<bos><eos><pad><unk><mask>[multimodal]<unused0><unused98><start_of_image><end_of_image>"
    "<image_soft_token> partial <start_of_tur and <<bos>> and <bos<eos> and <unused99999>\n"
)

META = "Literal ▁ metaspace ▁▁ and ▁word and words▁ and  ▁ mixed ▁  ▁▁▁ runs.\n"


def builtin_texts(rng):
    """(name, bytes) pairs of the built-in varied set."""
    t = []
    t.append(("empty", b""))
    t.append(("space", b" "))
    t.append(("newline", b"\n"))
    t.append(("prose", PROSE.encode()))
    t.append(("prose_x20", (PROSE * 20).encode()))
    t.append(("code_c", CODE_C.encode()))
    t.append(("code_py", CODE_PY.encode()))
    t.append(("makefile", MAKEFILE.encode()))
    t.append(("json", JSON.encode()))
    t.append(("cjk", CJK.encode()))
    t.append(("emoji", EMOJI.encode()))
    t.append(("mixed", MIXED.encode()))
    t.append(("special", SPECIAL.encode()))
    t.append(("metaspace", META.encode()))
    t.append(("crlf", "line one\r\nline two\r\n\r\n\ttabbed\r\n".encode()))
    for n in (1, 2, 3, 7, 16, 31, 32, 33, 40, 100):
        t.append((f"spaces_{n}", ("a" + " " * n + "b" + " " * n).encode()))
        t.append((f"newlines_{n}", ("x" + "\n" * n + "y").encode()))
        t.append((f"tabs_{n}", ("\t" * n + "z").encode()))
    t.append(("mixed_ws", " \t \n \t\t\n\n  \u00a0\u3000\u2003 x \u200b y\n".encode()))
    t.append(("long_word", ("antidisestablishmentarianism" * 300).encode()))
    t.append(("long_base64", bytes(rng.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                                   for _ in range(20000))))
    t.append(("long_line_no_newline", (" ".join(["token"] * 5000)).encode()))
    t.append(("invalid_utf8", b"valid \xff\xfe then \xe2\x82 cut, \xc0\xaf overlong, \xed\xa0\x80 surrogate, ok\n"))
    t.append(("invalid_utf8_2", b"\x80\x80abc\xf5\xf0\x9f\x98"))
    # Random Unicode: all planes, excluding surrogates and the metaspace.
    for k in range(8):
        chars = []
        for _ in range(rng.randint(1, 600)):
            r = rng.random()
            if r < 0.3:
                cp = rng.randint(0x20, 0x7E)
            elif r < 0.4:
                cp = rng.choice([0x20, 0x0A, 0x09, 0x0D])
            elif r < 0.7:
                cp = rng.randint(0xA0, 0xFFFD)
            else:
                cp = rng.randint(0x10000, 0x10FFFF)
            if 0xD800 <= cp <= 0xDFFF:
                cp = 0x41
            chars.append(chr(cp))
        t.append((f"random_unicode_{k}", "".join(chars).encode()))
    # Random mixes of the pieces above.
    pieces = [PROSE, CODE_C, CODE_PY, CJK, EMOJI, MIXED, SPECIAL, "\n\n", "    ", "\t\t"]
    for k in range(6):
        t.append((f"random_mix_{k}", "".join(rng.choice(pieces) for _ in range(rng.randint(1, 30))).encode()))
    big = []
    size = 0
    while size < 1 << 20:
        p = rng.choice(pieces)
        big.append(p)
        size += len(p.encode())
    t.append(("mix_1mb", "".join(big).encode()))
    return t


def load_hf(path):
    if path.endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return Tokenizer.from_str(f.read())
    return Tokenizer.from_file(path)


def escape(s):
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--bin", required=True, help="the test_tokenizer executable")
    ap.add_argument("--texts", nargs="*", help="text files or folders (default: built-in set)")
    ap.add_argument("--keep", help="write the text set into this folder and keep it")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--write-vectors", help="write short oracle vectors (text TAB ids) here")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    if args.texts:
        texts = []
        for p in args.texts:
            files = [os.path.join(p, f) for f in sorted(os.listdir(p))] if os.path.isdir(p) else [p]
            for f in files:
                with open(f, "rb") as fh:
                    texts.append((os.path.basename(f), fh.read()))
    else:
        texts = builtin_texts(rng)

    hf = load_hf(args.tokenizer)
    work = args.keep or tempfile.mkdtemp(prefix="tok_compare_")
    os.makedirs(work, exist_ok=True)
    paths, strs = [], []
    for i, (name, data) in enumerate(texts):
        s = data.decode("utf-8", "replace")  # lossy only where the file is invalid UTF-8
        path = os.path.join(work, "%03d_%s.txt" % (i, name))
        with open(path, "wb") as f:
            f.write(s.encode("utf-8"))
        paths.append(path)
        strs.append(s)

    enc = subprocess.run([args.bin, "--encode", args.tokenizer] + paths, capture_output=True, check=True)
    sys.stderr.write(enc.stderr.decode())
    c_lines = enc.stdout.decode().split("\n")[: len(paths)]
    c_ids = [[int(x) for x in line.split(",")] if line else [] for line in c_lines]

    id_files = []
    for i, ids in enumerate(c_ids):
        p = os.path.join(work, "%03d.ids" % i)
        with open(p, "w") as f:
            f.write(",".join(map(str, ids)))
        id_files.append("@" + p)
    dec = subprocess.run([args.bin, "--decode", args.tokenizer] + id_files,
                         capture_output=True, check=True)
    c_texts = dec.stdout.split(b"\0")[: len(paths)]

    agree_ids = agree_rt_c = agree_rt_hf = agree_dec = 0
    total_tokens = 0
    for (name, data), s, ids, back in zip(texts, strs, c_ids, c_texts):
        want = hf.encode(s, add_special_tokens=False).ids
        total_tokens += len(want)
        ok_ids = ids == want
        hf_back = hf.decode(want, skip_special_tokens=False)
        ok_c = back == s.encode("utf-8")
        ok_hf = hf_back == s
        ok_dec = back == hf_back.encode("utf-8")
        agree_ids += ok_ids
        agree_rt_c += ok_c
        agree_rt_hf += ok_hf
        agree_dec += ok_dec
        if not ok_dec:
            print(f"MISMATCH C decode != HF decode: {name}")
        if not ok_ids:
            k = next((j for j in range(min(len(ids), len(want))) if ids[j] != want[j]), min(len(ids), len(want)))
            print(f"MISMATCH ids {name}: first difference at {k}: C {ids[k:k+8]} HF {want[k:k+8]}")
        if not ok_c:
            print(f"note: C decode(encode(x)) != x: {name}")
        if not ok_hf:
            print(f"note: HF decode(encode(x)) != x: {name}")
    n = len(texts)
    print(f"texts: {n}, tokens (HF): {total_tokens}")
    print(f"ids identical:            {agree_ids}/{n}")
    print(f"C decode(encode(x)) == x: {agree_rt_c}/{n}")
    print(f"HF decode(encode(x)) == x: {agree_rt_hf}/{n}")
    print(f"C decode == HF decode:     {agree_dec}/{n}")

    if args.write_vectors:
        short = [s for s in strs if 0 < len(s) <= 200]
        short += ["Hello world", "Hello  world ", "a\n\nb", "😀 𝔘 \x07",
                  "<start_of_turn>user\nHi<end_of_turn>\n", "   leading spaces", "trailing\n\n\n",
                  "<bos><start_of_turn>user\nWrite a haiku about GPUs.<end_of_turn>\n<start_of_turn>model\n"]
        with open(args.write_vectors, "w", encoding="utf-8") as f:
            f.write("# Oracle vectors: HF tokenizers %s, Tokenizer.from_str(gemma3-tokenizer.json)"
                    ".encode(text, add_special_tokens=False).\n" % __import__("tokenizers").__version__)
            f.write("# Made by scripts/oracle/tok_compare.py --write-vectors. Format: escaped text "
                    "(\\n \\t \\r \\\\ \\xHH), TAB, comma-separated ids.\n")
            seen = set()
            for s in short:
                if s in seen:
                    continue
                seen.add(s)
                f.write(escape(s) + "\t" + ",".join(map(str, hf.encode(s, add_special_tokens=False).ids)) + "\n")
        print(f"wrote {len(seen)} vectors to {args.write_vectors}")
    return 0 if agree_ids == n and agree_dec == n and agree_rt_c == agree_rt_hf else 1


if __name__ == "__main__":
    sys.exit(main())
