#!/usr/bin/env python3
"""Checks a gemma4q-mkmodel checkpoint against transformers (run on the GPU machine).

    python3 scripts/oracle/load_check.py DIR [--device cuda] [--tokens 64]

1. tokenizer.json loads with `tokenizers` and AutoTokenizer; both agree on English text, which
   encodes into multi-character tokens; the chat template renders docs/gemma4.md §7.3.
2. Gemma4UnifiedForConditionalGeneration.from_pretrained(DIR, dtype=fp32 / bf16, eager) reports no
   missing, unexpected or mismatched keys, and the text weights in memory equal the file's.
3. A forward pass on random token ids gives finite logits with a realistic spread.
4. Conditioning: the fp32 and fp64 forwards agree (top-1 and max relative logit difference).
   Skipped for models over --max-fp64-params (a 12B in fp64 needs 96 GB).
Prints one line per check and a final PASS/FAIL; exits 1 on failure.
Needs transformers 5.17, torch, tokenizers, safetensors.
"""
import argparse
import os
import sys

import torch
from safetensors import safe_open
from tokenizers import Tokenizer
from transformers import AutoTokenizer
from transformers.models.gemma4_unified import Gemma4UnifiedForConditionalGeneration

RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def check_tokenizer(d):
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    text = "The quick brown fox jumps over the lazy dog. Hello world, this is a test."
    enc = tok.encode(text, add_special_tokens=False)
    multi = [t for t in enc.tokens if len(t.replace("\u2581", "")) > 1]
    check("tokenizers: round trip", tok.decode(enc.ids) == text)
    check("tokenizers: multi-character merges", len(multi) >= 8, " ".join(enc.tokens[:12]))
    auto = AutoTokenizer.from_pretrained(d)
    ids = auto(text, add_special_tokens=False)["input_ids"]
    check("AutoTokenizer agrees with tokenizers", ids == enc.ids, f"{ids[:8]} vs {enc.ids[:8]}")
    want = "<bos><|turn>user\nHi<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"
    got = auto.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                   add_generation_prompt=True)
    check("chat template (§7.3)", got == want, repr(got))
    ids = tok.encode(want, add_special_tokens=False).ids
    check("control tokens at their ids", ids[:2] == [2, 105] and ids.count(107) == 4, str(ids))


def load(d, dtype):
    model, info = Gemma4UnifiedForConditionalGeneration.from_pretrained(
        d, dtype=dtype, attn_implementation="eager", output_loading_info=True)
    name = str(dtype).replace("torch.", "")
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        bad = list(info.get(key, []))
        check(f"{name}: no {key.replace('_', ' ')}", not bad, str(bad[:5]))
    return model.eval()


def check_values(d, model):
    """Every text tensor in memory equals the file's (fp32 holds bf16 exactly)."""
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    bad, n = [], 0
    for f in sorted(os.listdir(d)):
        if not f.endswith(".safetensors"):
            continue
        with safe_open(os.path.join(d, f), "pt") as st:
            for k in st.keys():
                if not k.startswith("model.language_model."):
                    continue  # multimodal tensors are renamed in memory
                n += 1
                p = params.get(k)
                if p is None or not torch.equal(p.detach().cpu().float(), st.get_tensor(k).float()):
                    bad.append(k)
    check("fp32: text weights in memory equal the file", not bad and n > 0, f"{n} tensors, {bad[:3]}")


@torch.no_grad()
def logits(model, ids, device):
    model.to(device)
    out = model(input_ids=ids.to(device)).logits[0].double().cpu()
    model.to("cpu")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--max-fp64-params", type=float, default=3e9)
    a = ap.parse_args()

    check_tokenizer(a.dir)
    vocab = Tokenizer.from_file(os.path.join(a.dir, "tokenizer.json")).get_vocab_size()
    g = torch.Generator().manual_seed(0)
    ids = torch.cat([torch.tensor([2]), torch.randint(600, vocab - 8, (a.tokens - 1,), generator=g)])
    ids = ids[None]

    m32 = load(a.dir, torch.float32)
    check_values(a.dir, m32)
    l32 = logits(m32, ids, a.device)
    n_params = sum(p.numel() for p in m32.parameters())
    del m32
    std = l32.std().item()
    check("fp32 logits finite", bool(torch.isfinite(l32).all()))
    check("fp32 logits have a realistic spread", 1.0 < std < 15.0 and l32.abs().max() < 30,
          f"std {std:.3f}, max {l32.max().item():.2f}, min {l32.min().item():.2f}")

    m16 = load(a.dir, torch.bfloat16)
    l16 = logits(m16, ids, a.device)
    del m16
    agree16 = (l16.argmax(-1) == l32.argmax(-1)).double().mean().item()
    check("bf16 logits finite", bool(torch.isfinite(l16).all()), f"top-1 agreement with fp32 {agree16:.3f}")

    if n_params <= a.max_fp64_params:
        m64 = load(a.dir, torch.float64)
        l64 = logits(m64, ids, a.device)
        del m64
        agree = (l64.argmax(-1) == l32.argmax(-1)).double().mean().item()
        rel = ((l32 - l64).abs().max() / l64.abs().max()).item()
        check("fp32 vs fp64: top-1 agreement", agree == 1.0, f"{agree:.4f}")
        # numpy forwards of mkmodel outputs gave 2e-6 (tiny), 4e-5 (small), 2e-4 (48 layers)
        check("fp32 vs fp64: max relative logit difference < 1e-3", rel < 1e-3, f"{rel:.3g}")
    else:
        print(f"SKIP  fp32 vs fp64 ({n_params / 1e9:.1f}B params; raise --max-fp64-params)")

    failed = RESULTS.count(False)
    print(f"{'PASS' if not failed else 'FAIL'}: {len(RESULTS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
