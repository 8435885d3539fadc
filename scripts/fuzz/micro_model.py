"""Writes the BF16 checkpoint of tests/fuzz_qlinear.c's model into DIR: config.json (a copy of
tests/data/fuzz_qlinear_config.json: text-only Gemma 4, one sliding and one full layer with
attention_k_eq_v, one head), model.safetensors (seeded random weights) and a 16-token tokenizer.json
(unknown characters become <unk>) that calibration can run on. Usage: micro_model.py DIR"""
import json
import os
import struct
import sys

import numpy as np
from safetensors.numpy import save_file

out = sys.argv[1]
cfg = json.load(open(os.path.join(os.path.dirname(__file__), "../../tests/data/fuzz_qlinear_config.json")))
H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
HD = cfg["head_dim"]  # the full layer's per_layer_config repeats it
rng = np.random.default_rng(0)


def bf16(shape, sigma=0.05):
    a = (rng.standard_normal(shape) * sigma).astype(np.float32)
    return (a.view(np.uint32) >> 16).astype(np.uint16)


def ones(n):
    return (np.ones(n, np.float32).view(np.uint32) >> 16).astype(np.uint16)


t = {"model.embed_tokens.weight": bf16((V, H), 1.0), "model.norm.weight": ones(H)}
for L in range(2):
    p = f"model.layers.{L}."
    for n in ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
              "post_feedforward_layernorm"]:
        t[p + n + ".weight"] = ones(H)
    t[p + "layer_scalar"] = ones(1)
    for n in ["q_norm", "k_norm"]:
        t[p + "self_attn." + n + ".weight"] = ones(HD)
    for n in ["q_proj", "k_proj", "o_proj"] + (["v_proj"] if L == 0 else []):
        t[p + "self_attn." + n + ".weight"] = bf16((HD, H))
    for n in ["gate_proj", "up_proj", "down_proj"]:
        t[p + "mlp." + n + ".weight"] = bf16((I, H))
path = out + "/model.safetensors"
save_file(t, path)
# safetensors' numpy API has no bfloat16: the arrays went in as U16; mark them BF16
raw = open(path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
for k, v in hdr.items():
    if k != "__metadata__":
        v["dtype"] = "BF16"
h = json.dumps(hdr, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
open(path, "wb").write(struct.pack("<Q", len(h)) + h + raw[8 + n:])
json.dump(cfg, open(out + "/config.json", "w"), indent=1)
vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
for i, c in enumerate("etaoinsrhl\u2581.", start=4):
    vocab[c] = i
tok = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": i, "content": c, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True}
                     for c, i in list(vocab.items())[:4]],
    "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
    "pre_tokenizer": None, "post_processor": None,
    "decoder": {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
    "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
              "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
              "byte_fallback": False, "ignore_merges": False, "vocab": vocab, "merges": []},
}
json.dump(tok, open(out + "/tokenizer.json", "w"), ensure_ascii=False)
