#!/usr/bin/python3
"""Writes a large random-weight DeepseekV3ForCausalLM checkpoint in the FP8
release layout for the memory benchmark (bench/convert_fp8_bench.sh).

usage: make_fp8_checkpoint.py OUT_DIR --tokenizer-from DIR
           [--layers 6] [--dense 3] [--hidden 1536] [--heads 12]
           [--q-lora 512] [--kv-lora 256] [--nope 64] [--rope 32] [--v 64]
           [--inter 4800] [--moe-inter 704] [--experts 256] [--topk 8]
           [--n-group 8] [--topk-group 4] [--shared 1] [--shard-mb 1024]
           [--mtp] [--seed 0]

The layout is the one deepseek-ai/DeepSeek-V3 ships (and Kimi K2, same class):
MLA (q_a / q_b, kv_a_proj_with_mqa, kv_b), `--dense` dense first layers, then
routed experts plus shared experts with a sigmoid router and its F32
e_score_correction_bias; every decoder Linear in F8_E4M3 with an F32
`<name>_scale_inv` per 128x128 block; embeddings, lm_head, norms and router
in BF16; sharded safetensors with model.safetensors.index.json; config.json
with quantization_config. The default shape is DeepSeek-V3's at a smaller
width (256 experts, 8 groups, 3 dense layers) and has partial edge blocks on
both axes: kv_a rows (kv_lora + rope = 288), moe_intermediate_size 704 and
intermediate_size 4800 (not multiples of 128). About 3.4 GB.

Weights are random bytes, not a trained model: FP8 bytes uniform except the
two NaN codes, positive random scales, BF16 values with a bounded exponent.
Each tensor is generated and written in slices, so memory stays small
whatever the size (only the tokenizer files are copied).
"""
import argparse
import json
import os
import shutil
import struct

import numpy as np

SLICE = 32 << 20  # bytes generated per write
DTYPE_SIZE = {"F8_E4M3": 1, "BF16": 2, "F32": 4}


def linears(a, i):
    """(name, rows, cols) of every FP8 Linear of decoder layer i."""
    p = f"model.layers.{i}."
    H, D = a.heads, a.hidden
    out = []
    if a.q_lora:
        out += [(p + "self_attn.q_a_proj.weight", a.q_lora, D),
                (p + "self_attn.q_b_proj.weight", H * (a.nope + a.rope), a.q_lora)]
    else:
        out += [(p + "self_attn.q_proj.weight", H * (a.nope + a.rope), D)]
    out += [(p + "self_attn.kv_a_proj_with_mqa.weight", a.kv_lora + a.rope, D),
            (p + "self_attn.kv_b_proj.weight", H * (a.nope + a.v), a.kv_lora),
            (p + "self_attn.o_proj.weight", D, H * a.v)]
    if i < a.dense:
        m = p + "mlp."
        return out + [(m + "gate_proj.weight", a.inter, D), (m + "up_proj.weight", a.inter, D),
                      (m + "down_proj.weight", D, a.inter)]
    for e in range(a.experts):
        m = f"{p}mlp.experts.{e}."
        out += [(m + "gate_proj.weight", a.moe_inter, D), (m + "up_proj.weight", a.moe_inter, D),
                (m + "down_proj.weight", D, a.moe_inter)]
    if a.shared:
        m, f = p + "mlp.shared_experts.", a.moe_inter * a.shared
        out += [(m + "gate_proj.weight", f, D), (m + "up_proj.weight", f, D), (m + "down_proj.weight", D, f)]
    return out


def layer_tensors(a, i):
    """(name, dtype, shape, kind) of decoder layer i, in safetensors' sorted order."""
    p = f"model.layers.{i}."
    t = [(p + "input_layernorm.weight", "BF16", [a.hidden], "norm"),
         (p + "post_attention_layernorm.weight", "BF16", [a.hidden], "norm"),
         (p + "self_attn.kv_a_layernorm.weight", "BF16", [a.kv_lora], "norm")]
    if a.q_lora:
        t.append((p + "self_attn.q_a_layernorm.weight", "BF16", [a.q_lora], "norm"))
    if i >= a.dense:
        t += [(p + "mlp.gate.weight", "BF16", [a.experts, a.hidden], "bf16"),
              (p + "mlp.gate.e_score_correction_bias", "F32", [a.experts], "bias")]
    br, bc = a.block
    for name, rows, cols in linears(a, i):
        t.append((name, "F8_E4M3", [rows, cols], "fp8"))
        t.append((name + "_scale_inv", "F32", [-(-rows // br), -(-cols // bc)], "scale"))
    return sorted(t)


def all_tensors(a, vocab):
    """Groups of tensors that stay in one shard (the model's ends, then each layer)."""
    groups = [[("model.embed_tokens.weight", "BF16", [vocab, a.hidden], "bf16")]]
    groups += [layer_tensors(a, i) for i in range(a.layers)]
    if a.mtp:  # the release's multi-token-prediction layer, which converters drop
        n = a.layers
        p = f"model.layers.{n}."
        extra = [(p + "embed_tokens.weight", "BF16", [vocab, a.hidden], "bf16"),
                 (p + "shared_head.head.weight", "BF16", [vocab, a.hidden], "bf16"),
                 (p + "eh_proj.weight", "BF16", [a.hidden, 2 * a.hidden], "bf16")]
        extra += [(p + k, "BF16", [a.hidden], "norm") for k in ("enorm.weight", "hnorm.weight",
                                                                "shared_head.norm.weight")]
        groups.append(sorted(layer_tensors(argparse.Namespace(**{**vars(a), "dense": 0}), n) + extra))
    groups.append([("lm_head.weight", "BF16", [vocab, a.hidden], "bf16"),
                   ("model.norm.weight", "BF16", [a.hidden], "norm")])
    return groups


def nbytes(t):
    n = DTYPE_SIZE[t[1]]
    for d in t[2]:
        n *= d
    return n


def gen_bytes(rng, kind, n):
    """n bytes of tensor data of this kind."""
    if kind == "fp8":
        b = np.frombuffer(rng.bytes(n), dtype=np.uint8).copy()
        b[(b & 0x7F) == 0x7F] ^= 0x01  # E4M3FN's only NaN codes become +-416
        return b.tobytes()
    if kind == "bf16":  # sign, 2 low exponent bits and mantissa random: |x| in [2^-7, 2^-3)
        u = np.frombuffer(rng.bytes(n), dtype=np.uint16)
        return ((u & 0x81FF) | 0x3C00).astype(np.uint16).tobytes()
    if kind == "norm":
        return (np.full(n // 2, 0x3F80, dtype=np.uint16) + rng.integers(0, 64, n // 2, dtype=np.uint16)).tobytes()
    if kind == "scale":  # block scales: max|W| / 448 of a trained layer is in this range
        return rng.uniform(2e-5, 2e-4, n // 4).astype(np.float32).tobytes()
    if kind == "bias":
        return rng.uniform(0.0, 0.3, n // 4).astype(np.float32).tobytes()
    raise ValueError(kind)


def write_shard(path, items, rng):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for t in items:
        header[t[0]] = {"dtype": t[1], "shape": t[2], "data_offsets": [off, off + nbytes(t)]}
        off += nbytes(t)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for t in items:
            left = nbytes(t)
            step = SLICE - SLICE % 4
            while left:
                n = min(step, left)
                f.write(gen_bytes(rng, t[3], n))
                left -= n
    return off


def vocab_of(tok_dir):
    with open(os.path.join(tok_dir, "config.json")) as f:
        return json.load(f)["vocab_size"]


def config(a, vocab):
    return {
        "architectures": ["DeepseekV3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config",
                     "AutoModel": "modeling_deepseek.DeepseekV3Model",
                     "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM"},
        "bos_token_id": 0, "eos_token_id": 1, "ep_size": 1, "first_k_dense_replace": a.dense,
        "hidden_act": "silu", "hidden_size": a.hidden, "initializer_range": 0.02,
        "intermediate_size": a.inter, "kv_lora_rank": a.kv_lora, "max_position_embeddings": 163840,
        "model_type": "deepseek_v3", "moe_intermediate_size": a.moe_inter, "moe_layer_freq": 1,
        "n_group": a.n_group, "n_routed_experts": a.experts, "n_shared_experts": a.shared,
        "norm_topk_prob": True, "num_attention_heads": a.heads, "num_experts_per_tok": a.topk,
        "num_hidden_layers": a.layers, "num_key_value_heads": a.heads,
        "num_nextn_predict_layers": 1 if a.mtp else 0, "q_lora_rank": a.q_lora or None,
        "qk_nope_head_dim": a.nope, "qk_rope_head_dim": a.rope,
        "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                "weight_block_size": list(a.block)},
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
                         "original_max_position_embeddings": 4096, "type": "yarn"},
        "rope_theta": 10000, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid",
        "tie_word_embeddings": False, "topk_group": a.topk_group, "topk_method": "noaux_tc",
        "torch_dtype": "bfloat16", "transformers_version": "4.46.3", "use_cache": True,
        "v_head_dim": a.v, "vocab_size": vocab,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--tokenizer-from", required=True, help="a DeepSeek-V3 checkpoint dir (tokenizer + config.json)")
    for k, v in (("layers", 6), ("dense", 3), ("hidden", 1536), ("heads", 12), ("q-lora", 512), ("kv-lora", 256),
                 ("nope", 64), ("rope", 32), ("v", 64), ("inter", 4800), ("moe-inter", 704), ("experts", 256),
                 ("topk", 8), ("n-group", 8), ("topk-group", 4), ("shared", 1), ("shard-mb", 1024), ("seed", 0)):
        ap.add_argument("--" + k, type=int, default=v)
    ap.add_argument("--mtp", action="store_true", help="add the multi-token-prediction layer the release ships")
    a = ap.parse_args()
    a.block = (128, 128)
    os.makedirs(a.out, exist_ok=True)
    vocab = vocab_of(a.tokenizer_from)
    rng = np.random.Generator(np.random.PCG64(a.seed))
    # shards: whole groups, a new shard once the current one passes --shard-mb
    shards, cur, size = [], [], 0
    for g in all_tensors(a, vocab):
        cur += g
        size += sum(nbytes(t) for t in g)
        if size >= a.shard_mb << 20:
            shards.append(cur)
            cur, size = [], 0
    if cur:
        shards.append(cur)
    weight_map, total = {}, 0
    for s, items in enumerate(shards):
        fname = f"model-{s + 1:05d}-of-{len(shards):05d}.safetensors"
        total += write_shard(os.path.join(a.out, fname), sorted(items), rng)
        weight_map.update({t[0]: fname for t in items})
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config(a, vocab), f, indent=2, sort_keys=True)
        f.write("\n")
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        src = os.path.join(a.tokenizer_from, name)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(a.out, name))
    print(f"{a.out}: {total / 1e9:.2f} GB in {len(shards)} shards (FP8 E4M3 + BF16, DeepseekV3ForCausalLM)")


if __name__ == "__main__":
    main()
