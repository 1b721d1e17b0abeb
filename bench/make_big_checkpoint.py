#!/usr/bin/python3
"""Writes a large random-weight LlamaForCausalLM checkpoint (BF16 safetensors,
sharded with an index) for the convert benchmark. Tensors are generated and
written one at a time, so this needs little memory whatever the size.

usage: make_big_checkpoint.py OUT_DIR [--layers N] [--hidden H] [--ff F] [--shards S]
                              [--tokenizer-from DIR]
"""
import argparse
import json
import os
import shutil
import struct

import torch


def tensor_list(a):
    h, ff, v, kv = a.hidden, a.ff, a.vocab, a.hidden // a.heads * a.kv_heads
    names = [("model.embed_tokens.weight", [v, h])]
    for l in range(a.layers):
        p = f"model.layers.{l}."
        names += [
            (p + "input_layernorm.weight", [h]),
            (p + "self_attn.q_proj.weight", [h, h]),
            (p + "self_attn.k_proj.weight", [kv, h]),
            (p + "self_attn.v_proj.weight", [kv, h]),
            (p + "self_attn.o_proj.weight", [h, h]),
            (p + "post_attention_layernorm.weight", [h]),
            (p + "mlp.gate_proj.weight", [ff, h]),
            (p + "mlp.up_proj.weight", [ff, h]),
            (p + "mlp.down_proj.weight", [h, ff]),
        ]
    names += [("model.norm.weight", [h]), ("lm_head.weight", [v, h])]
    return names


def write_shard(path, items, gen):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in items:
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, shape in items:
            t = (torch.randn(shape, generator=gen) * 0.02).to(torch.bfloat16)
            if name.endswith("norm.weight"):
                t = torch.ones(shape, dtype=torch.bfloat16)
            f.write(t.view(torch.int16).numpy().tobytes())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=16)
    ap.add_argument("--ff", type=int, default=5632)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--tokenizer-from", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    items = tensor_list(a)
    per = (len(items) + a.shards - 1) // a.shards
    weight_map = {}
    for s in range(a.shards):
        part = items[s * per:(s + 1) * per]
        fname = f"model-{s + 1:05d}-of-{a.shards:05d}.safetensors"
        write_shard(os.path.join(a.out, fname), part, gen)
        weight_map.update({n: fname for n, _ in part})
    total = sum(2 * torch.Size(shape).numel() for _, shape in items)
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": a.hidden,
        "intermediate_size": a.ff, "num_hidden_layers": a.layers, "num_attention_heads": a.heads,
        "num_key_value_heads": a.kv_heads, "vocab_size": a.vocab, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        src = os.path.join(a.tokenizer_from, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(a.out, name))
    print(f"{a.out}: {total / 1e9:.2f} GB of BF16 weights in {a.shards} shards")


if __name__ == "__main__":
    main()
