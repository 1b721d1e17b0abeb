#!/usr/bin/python3
"""Write a small random-weight Hugging Face checkpoint for interop tests.

    make_checkpoint.py --kind qwen2|mistral|llama3 -o DIR --tokenizer-from TOKDIR
                       [--seed N] [--dtype bf16|f32] [--layers N]
                       [--sliding-window N] [--head-dim N] [--shards N]

DIR gets config.json (key set and style of the real release of that
architecture), generation_config.json, model.safetensors (or N shards plus
model.safetensors.index.json) and the tokenizer files copied from TOKDIR
(tokenizer.model, tokenizer_config.json, special_tokens_map.json).

Kinds (hidden 128, heads 4, kv heads 2, intermediate 256, vocab = TOKDIR's):
  qwen2    Qwen2ForCausalLM, non-zero random q/k/v biases, tied embeddings
           (no lm_head.weight stored, as in the Qwen2.5 small releases).
  mistral  MistralForCausalLM.  sliding_window defaults to 4096 (Mistral 7B
           v0.1's value), longer than any test sequence: llama.cpp converts
           Mistral to its `llama` arch, which neither writes nor reads
           `llama.attention.sliding_window`, so a shorter window would make
           HF and llama.cpp disagree by design.  --sliding-window N sets it
           (0 = null) to test that the converter warns or that the reference
           applies the mask.
  llama3   LlamaForCausalLM with rope_scaling llama3 (factor 8, low 1, high 4,
           original 8192), rope_theta 500000 and head_dim 64 (!= hidden/heads)
           so rotary pairs fall in all three llama3 bands (kept, blended,
           divided by factor) and key_length must be taken from config.

Weights are drawn from numpy's PCG64 with --seed, so a seed always gives the
same files.  Scales (std 0.05-0.3, norm gains 1 +- 0.1) keep the logits
spread (std ~2) rather than flat or one-hot.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

HIDDEN, HEADS, KV_HEADS, INTER = 128, 4, 2, 256
TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json",
                   "special_tokens_map.json", "tokenizer.json")


def vocab_of(tokdir, fallback):
    path = os.path.join(tokdir, "tokenizer.model")
    if os.path.exists(path):
        import sentencepiece as spm
        return spm.SentencePieceProcessor(model_file=path).get_piece_size()
    path = os.path.join(tokdir, "tokenizer.json")
    if os.path.exists(path):  # byte-level BPE: the vocabulary plus the added tokens
        with open(path, encoding="utf-8") as f:
            tok = json.load(f)
        ids = list(tok["model"]["vocab"].values()) + [t["id"] for t in tok.get("added_tokens", [])]
        return max(ids) + 1
    return fallback


def make_config(kind, vocab, layers, sliding_window, head_dim):
    common = {
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTER,
        "num_attention_heads": HEADS,
        "num_hidden_layers": layers,
        "num_key_value_heads": KV_HEADS,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.51.3",
        "use_cache": True,
        "vocab_size": vocab,
    }
    if kind == "qwen2":
        c = dict(common, architectures=["Qwen2ForCausalLM"], attention_dropout=0.0,
                 max_position_embeddings=32768, max_window_layers=layers,
                 model_type="qwen2", rms_norm_eps=1e-06, rope_scaling=None,
                 rope_theta=1000000.0, sliding_window=32768,
                 tie_word_embeddings=True, use_sliding_window=False)
    elif kind == "mistral":
        c = dict(common, architectures=["MistralForCausalLM"], attention_dropout=0.0,
                 max_position_embeddings=32768, model_type="mistral",
                 rms_norm_eps=1e-05, rope_theta=10000.0,
                 sliding_window=sliding_window or None, tie_word_embeddings=False)
    elif kind == "llama3":
        c = dict(common, architectures=["LlamaForCausalLM"], attention_bias=False,
                 attention_dropout=0.0, head_dim=head_dim,
                 max_position_embeddings=131072, mlp_bias=False, model_type="llama",
                 pretraining_tp=1, rms_norm_eps=1e-05,
                 rope_scaling={"factor": 8.0, "high_freq_factor": 4.0,
                               "low_freq_factor": 1.0,
                               "original_max_position_embeddings": 8192,
                               "rope_type": "llama3"},
                 rope_theta=500000.0, tie_word_embeddings=False)
    else:
        raise SystemExit(f"unknown kind {kind}")
    return dict(sorted(c.items()))


def make_weights(cfg, rng):
    """{name: float32 numpy} in HF layout ([out, in] for linear weights)."""
    hd = cfg.get("head_dim") or HIDDEN // HEADS
    qd, kd = HEADS * hd, KV_HEADS * hd
    bias = cfg["model_type"] == "qwen2"
    shapes = {"model.embed_tokens.weight": ((cfg["vocab_size"], HIDDEN), 0.2),
              "model.norm.weight": ((HIDDEN,), "norm")}
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = ((cfg["vocab_size"], HIDDEN), 0.2)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": ((HIDDEN,), "norm"),
            p + "post_attention_layernorm.weight": ((HIDDEN,), "norm"),
            p + "self_attn.q_proj.weight": ((qd, HIDDEN), 0.1),
            p + "self_attn.k_proj.weight": ((kd, HIDDEN), 0.1),
            p + "self_attn.v_proj.weight": ((kd, HIDDEN), 0.1),
            p + "self_attn.o_proj.weight": ((HIDDEN, qd), 0.08),
            p + "mlp.gate_proj.weight": ((INTER, HIDDEN), 0.1),
            p + "mlp.up_proj.weight": ((INTER, HIDDEN), 0.1),
            p + "mlp.down_proj.weight": ((HIDDEN, INTER), 0.06),
        })
        if bias:  # large enough that dropping a bias visibly changes logits
            shapes.update({p + "self_attn.q_proj.bias": ((qd,), 0.3),
                           p + "self_attn.k_proj.bias": ((kd,), 0.3),
                           p + "self_attn.v_proj.bias": ((kd,), 0.3)})
    out = {}
    for name in sorted(shapes):
        shape, std = shapes[name]
        z = rng.standard_normal(shape).astype(np.float32)
        out[name] = (1.0 + 0.1 * z) if std == "norm" else z * np.float32(std)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", required=True, choices=("qwen2", "mistral", "llama3"))
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--tokenizer-from", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=("bf16", "f32"), default="bf16")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--sliding-window", type=int, default=4096,
                    help="mistral only; 0 writes null")
    ap.add_argument("--head-dim", type=int, default=64, help="llama3 only")
    ap.add_argument("--shards", type=int, default=1)
    a = ap.parse_args()

    vocab = vocab_of(a.tokenizer_from, 4096)
    cfg = make_config(a.kind, vocab, a.layers, a.sliding_window, a.head_dim)
    if a.dtype == "f32":
        cfg["torch_dtype"] = "float32"
    w = make_weights(cfg, np.random.default_rng(a.seed))
    tdt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    tensors = {k: torch.from_numpy(v).to(tdt) for k, v in w.items()}

    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2,
                   "transformers_version": cfg["transformers_version"]}, f, indent=2)
        f.write("\n")
    st_io.save_sharded(tensors, a.out, a.shards)
    for fn in TOKENIZER_FILES:
        src = os.path.join(a.tokenizer_from, fn)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(a.out, fn))
    return 0


if __name__ == "__main__":
    sys.exit(main())
