#!/usr/bin/env python3
"""Oracle for the config parser and the weight binding (src/model/config.c, weights.c).

Runs on the GPU machine (transformers 5.17). Writes into OUTDIR:
  12b_517_config.json   Gemma4UnifiedConfig(**12B shipped config).save_pretrained -> 5.17 form
  12b_names.txt         name, shape of every parameter of the 12B (meta device, in-memory names),
                        state_dict order, and the parameter totals (multimodal and text-only)
  tiny_config.json      a tiny multimodal model saved by save_pretrained (5.17 form)
  tiny_names.txt        its on-disk tensor names, dtypes and shapes in state_dict order
  tinytext_config.json  a tiny Gemma4UnifiedForCausalLM saved by save_pretrained
  tinytext_names.txt    its on-disk names/shapes
Usage: python3 gemma4_layout.py OUTDIR SHIPPED_12B_CONFIG_JSON
"""
import json
import os
import sys

import torch
from safetensors import safe_open
from transformers.models.gemma4_unified import (Gemma4UnifiedConfig, Gemma4UnifiedForCausalLM,
                                                Gemma4UnifiedForConditionalGeneration,
                                                Gemma4UnifiedTextConfig)


def dump_names(path, sd_items):
    with open(path, "w") as f:
        for name, shape, dtype in sd_items:
            f.write("%s %s %s\n" % (name, dtype, ",".join(str(s) for s in shape)))


def saved_names(d):
    out = []
    with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        for k in keys:
            sl = f.get_slice(k)
            out.append((k, sl.get_shape(), sl.get_dtype()))
    return out


def main():
    outdir, shipped_path = sys.argv[1], sys.argv[2]
    shipped = json.load(open(shipped_path))
    print("transformers config class defaults seen below")

    # 12B: config in the 5.17 form, parameter names on the meta device.
    cfg = Gemma4UnifiedConfig(**shipped)
    d = os.path.join(outdir, "c12")
    cfg.save_pretrained(d)
    os.replace(os.path.join(d, "config.json"), os.path.join(outdir, "12b_517_config.json"))
    with torch.device("meta"):
        m = Gemma4UnifiedForConditionalGeneration(cfg)
    items = [(k, list(v.shape), str(v.dtype)) for k, v in m.state_dict().items()]
    total = sum(int(torch.tensor(s).prod().item()) if s else 1 for _, s, _ in items)
    print("12B state_dict tensors", len(items), "params", total)
    tcfg = Gemma4UnifiedTextConfig(**shipped["text_config"])
    with torch.device("meta"):
        mt = Gemma4UnifiedForCausalLM(tcfg)
    titems = [(k, list(v.shape), str(v.dtype)) for k, v in mt.state_dict().items()]
    ttotal = sum(int(torch.tensor(s).prod().item()) if s else 1 for _, s, _ in titems)
    print("12B text-only tensors", len(titems), "params", ttotal)
    dump_names(os.path.join(outdir, "12b_names.txt"), items + [("TEXTONLY", [], "")] + titems)

    # Tiny multimodal model: mm dims deliberately unlike the text dims to see which one each uses.
    tiny = json.loads(json.dumps(shipped))
    tc = tiny["text_config"]
    tc.update(vocab_size=512, hidden_size=128, intermediate_size=320, num_hidden_layers=6,
              num_attention_heads=4, num_key_value_heads=2, head_dim=32, global_head_dim=64,
              num_global_key_value_heads=1, sliding_window=8, max_position_embeddings=4096)
    del tc["layer_types"]
    del tc["rope_parameters"]
    tiny["vision_config"].update(patch_size=4, pooling_kernel_size=2, mm_embed_dim=96,
                                 mm_posemb_size=40, output_proj_dims=112)
    tiny["audio_config"].update(audio_embed_dim=48)
    cfg = Gemma4UnifiedConfig(**tiny)
    torch.manual_seed(0)
    m = Gemma4UnifiedForConditionalGeneration(cfg).to(torch.bfloat16)
    d = os.path.join(outdir, "tiny")
    m.save_pretrained(d)
    os.replace(os.path.join(d, "config.json"), os.path.join(outdir, "tiny_config.json"))
    dump_names(os.path.join(outdir, "tiny_names.txt"), saved_names(d))
    print("tiny in-memory state_dict order:")
    for k, v in m.state_dict().items():
        print("  ", k, list(v.shape))

    tcfg = Gemma4UnifiedTextConfig(**tc)
    mt = Gemma4UnifiedForCausalLM(tcfg).to(torch.bfloat16)
    d = os.path.join(outdir, "tinytext")
    mt.save_pretrained(d)
    os.replace(os.path.join(d, "config.json"), os.path.join(outdir, "tinytext_config.json"))
    dump_names(os.path.join(outdir, "tinytext_names.txt"), saved_names(d))
    # A 7-layer text config without layer_types: which layers are full?
    tc7 = dict(tc)
    tc7["num_hidden_layers"] = 7
    c7 = Gemma4UnifiedTextConfig(**tc7)
    print("7-layer default layer_types:", c7.layer_types)
    print("7-layer per_layer_config:", getattr(c7, "per_layer_config", None))
    tc13 = dict(tc)
    tc13["num_hidden_layers"] = 13
    c13 = Gemma4UnifiedTextConfig(**tc13)
    print("13-layer default layer_types:", c13.layer_types)
    print("13-layer per_layer_config:", getattr(c13, "per_layer_config", None))
    # k_eq_v false: what does per_layer_config hold?
    tc8 = dict(tc)
    tc8["attention_k_eq_v"] = False
    c8 = Gemma4UnifiedTextConfig(**tc8)
    print("k_eq_v false per_layer_config:", getattr(c8, "per_layer_config", None))
    print("rope_parameters default:", c7.rope_parameters)


if __name__ == "__main__":
    main()
