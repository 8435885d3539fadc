#!/usr/bin/env python3
"""In-domain calibration text for the trained referee, from this machine's man pages.

The referee (../shared/data/trained-small) was trained on Debian documentation, manuals and
dictionaries; its held-out text holds documents of the same sources. calib/default.txt (synthetic
prose, chat, tables and code) is out of its domain. This script renders the Debian man pages of
sections 2, 3 and 7 (packages manpages and manpages-dev, both among the referee's training
sources) to plain text in the layout of the held-out text (section headings flush left, bodies
dedented) and writes them as .jsonl documents (one page each) for `calibration.dataset`.

No held-out text is used for calibration: a page is skipped when its NAME line is one of the
held-out text's, or when more than 1% of its 8-word shingles occur in the held-out text (shared
boilerplate such as licence footers stays below that). The page list is sorted and every
`--stride`-th page (cut to its first 12 KB at a paragraph) is taken until `--bytes` of text, so the output depends only on the installed
pages and the held-out file.

Usage: debian_man.py HELDOUT OUT.jsonl [--bytes N] [--stride K]
"""
import argparse
import gzip
import json
import os
import re
import subprocess
import sys

SECTIONS = ("man2", "man3", "man7")
MAX_PAGE = 12_000


def render(path):
    env = dict(os.environ, MANWIDTH="1000", LC_ALL="C.UTF-8")  # wide: paragraphs unwrapped
    try:
        out = subprocess.run(["man", "--no-justification", "--no-hyphenation", "-P", "cat", "-l", path], env=env, capture_output=True,
                             timeout=30).stdout
        out = subprocess.run(["col", "-bx"], input=out, capture_output=True, timeout=30).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    lines = out.decode("utf-8", "replace").split("\n")
    if len(lines) < 6:
        return None
    body = lines[1:-2]  # the page header and footer lines
    text = "\n".join(l[7:] if l.startswith("       ") else l for l in body).strip()
    text = re.sub(r"\n{3,}", "\n\n", text)
    if len(text) > MAX_PAGE:  # long pages cut at a paragraph, so that no page dominates
        text = text[:text.rfind("\n\n", 0, MAX_PAGE)]
    return text


def shingles(text, n=8):
    w = text.split()
    return {" ".join(w[i:i + n]) for i in range(len(w) - n + 1)}


def name_line(text):
    m = re.search(r"^NAME\n(.+)$", text, re.M)
    return m.group(1).strip() if m else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("heldout")
    ap.add_argument("out")
    ap.add_argument("--bytes", type=int, default=600_000)
    ap.add_argument("--stride", type=int, default=7)
    a = ap.parse_args()
    held = open(a.heldout, encoding="utf-8").read()
    held_sh = shingles(held)
    held_names = {l.strip() for l in re.findall(r"^NAME\n(.+)$", held, re.M)}
    pages = sorted(os.path.join("/usr/share/man", s, f) for s in SECTIONS
                   for f in os.listdir(os.path.join("/usr/share/man", s)))
    pages = pages[::a.stride]
    total = kept = skipped = 0
    tmp = a.out + ".partial"
    with open(tmp, "w", encoding="utf-8") as o:
        for p in pages:
            if total >= a.bytes:
                break
            t = render(p)
            if not t or len(t) < 500:
                continue
            sh = shingles(t)
            if name_line(t) in held_names or (sh and len(sh & held_sh) > 0.01 * len(sh)):
                skipped += 1
                continue
            o.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
            total += len(t.encode())
            kept += 1
    os.replace(tmp, a.out)
    print(f"{a.out}: {kept} pages, {total} bytes; {skipped} skipped for held-out overlap",
          file=sys.stderr)


if __name__ == "__main__":
    main()
