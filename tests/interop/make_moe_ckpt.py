#!/usr/bin/python3
"""Write small random-weight checkpoints of the MoE families for interop tests.

    make_moe_ckpt.py -o DIR [--seed N] FAMILY...
    make_moe_ckpt.py -o DIR --tokenizer-only

FAMILY: mixtral, glm4_moe, gpt_oss, gpt_oss_bf16, gpt_oss_bad_scales; each
goes to DIR/FAMILY (one process for all: importing torch is the slow part).
Each gets config.json in the key set of the family's release, two
safetensors shards with model.safetensors.index.json, and tokenizer.json: a
byte-level BPE of the 256 byte symbols (no merges; vocab_size pads it), since
these tests compare logits on given ids, not a tokenizer.

Shapes differ from the fixtures in ../shared/fixtures/families on purpose:
  mixtral       5 experts (odd), top-2, 3 layers, hidden 96, 6 heads / 2 KV heads
  glm4_moe      2 dense-first layers of 4, 7 routed experts, top-3, shared
                expert, qk norm, partial rotary 0.5 of head_dim 16,
                routed_scaling_factor 2.5, one NextN/MTP layer (model.layers.4)
  gpt_oss       5 experts, top-3, 3 layers with layer_types [full, sliding,
                sliding] (not llama.cpp's default alternation), window 5,
                intermediate 96, MXFP4 experts (*_blocks / *_scales) as released
  gpt_oss_bf16  the same model with the experts dequantized to BF16 in the
                transformers layout (gate_up_proj [E, H, 2I], down_proj [E, I, H])
  gpt_oss_bad_scales  gpt_oss whose layer 1 gate_up_proj_scales has one scale
                too many per row, which convert must refuse
--tokenizer-only writes just DIR/tokenizer.json (for the glm4_moe fixture,
which ships none).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

VOCAB = 320


def byte_tokenizer():
    """GPT-2's byte-to-unicode table as a BPE vocabulary without merges."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    vocab = {chr(c): i for i, c in enumerate(cs)}
    level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
            "pre_tokenizer": level, "post_processor": None, "decoder": level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": vocab, "merges": []}}


class Gen:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.t = {}

    def mat(self, name, rows, cols, std=None, dtype=torch.bfloat16):
        std = std or cols ** -0.5
        self.t[name] = torch.from_numpy(self.rng.normal(0, std, (rows, cols)).astype(np.float32)).to(dtype)

    def vec(self, name, n, mean=0.0, std=0.1, dtype=torch.bfloat16):
        self.t[name] = torch.from_numpy((mean + self.rng.normal(0, std, n)).astype(np.float32)).to(dtype)

    def attention(self, pre, hidden, heads, kv, head_dim, bias, o_bias=False):
        for p, rows in (("q", heads), ("k", kv), ("v", kv)):
            self.mat(f"{pre}self_attn.{p}_proj.weight", rows * head_dim, hidden)
            if bias:
                self.vec(f"{pre}self_attn.{p}_proj.bias", rows * head_dim, std=0.2)
        self.mat(f"{pre}self_attn.o_proj.weight", hidden, heads * head_dim)
        if o_bias:
            self.vec(f"{pre}self_attn.o_proj.bias", hidden, std=0.1)

    def norms(self, pre, hidden):
        self.vec(pre + "input_layernorm.weight", hidden, 1.0)
        self.vec(pre + "post_attention_layernorm.weight", hidden, 1.0)

    def embeddings(self, hidden):
        self.mat("model.embed_tokens.weight", VOCAB, hidden, 1.0)
        self.mat("lm_head.weight", VOCAB, hidden)
        self.vec("model.norm.weight", hidden, 1.0)


def mixtral(g):
    H, heads, kv, ff, E = 96, 6, 2, 160, 5
    cfg = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_act": "silu",
           "hidden_size": H, "intermediate_size": ff, "num_hidden_layers": 3, "num_attention_heads": heads,
           "num_key_value_heads": kv, "num_local_experts": E, "num_experts_per_tok": 2,
           "max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "rope_theta": 1e6, "sliding_window": None,
           "vocab_size": VOCAB, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
           "router_aux_loss_coef": 0.02, "torch_dtype": "bfloat16"}
    g.embeddings(H)
    for li in range(3):
        pre = f"model.layers.{li}."
        g.norms(pre, H)
        g.attention(pre, H, heads, kv, H // heads, False)
        g.mat(pre + "block_sparse_moe.gate.weight", E, H, 0.5)
        for e in range(E):
            ep = f"{pre}block_sparse_moe.experts.{e}."
            g.mat(ep + "w1.weight", ff, H)
            g.mat(ep + "w3.weight", ff, H)
            g.mat(ep + "w2.weight", H, ff)
    return cfg


def glm4_moe(g):
    H, heads, kv, hd, ff, mff, E, L = 64, 4, 2, 16, 96, 32, 7, 4
    cfg = {"architectures": ["Glm4MoeForCausalLM"], "model_type": "glm4_moe", "attention_bias": True,
           "hidden_act": "silu", "hidden_size": H, "head_dim": hd, "partial_rotary_factor": 0.5,
           "intermediate_size": ff, "moe_intermediate_size": mff, "num_hidden_layers": L,
           "num_attention_heads": heads, "num_key_value_heads": kv, "n_routed_experts": E,
           "num_experts_per_tok": 3, "n_shared_experts": 1, "first_k_dense_replace": 2, "n_group": 1,
           "topk_group": 1, "routed_scaling_factor": 2.5, "norm_topk_prob": True, "num_nextn_predict_layers": 1,
           "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 1e6, "rope_scaling": None,
           "use_qk_norm": True, "vocab_size": VOCAB, "tie_word_embeddings": False, "pad_token_id": 0,
           "eos_token_id": [1, 2], "torch_dtype": "bfloat16"}
    g.embeddings(H)
    for li in range(L + 1):  # the last one is the NextN/MTP layer
        pre = f"model.layers.{li}."
        g.norms(pre, H)
        g.attention(pre, H, heads, kv, hd, True)
        g.vec(pre + "self_attn.q_norm.weight", hd, 1.0)
        g.vec(pre + "self_attn.k_norm.weight", hd, 1.0)
        if li < 2:
            for p, (r, c) in (("gate", (ff, H)), ("up", (ff, H)), ("down", (H, ff))):
                g.mat(f"{pre}mlp.{p}_proj.weight", r, c)
            continue
        g.mat(pre + "mlp.gate.weight", E, H, 0.5, torch.bfloat16)
        g.vec(pre + "mlp.gate.e_score_correction_bias", E, std=0.3, dtype=torch.float32)
        for e in ["experts.%d." % e for e in range(E)] + ["shared_experts."]:
            for p, (r, c) in (("gate", (mff, H)), ("up", (mff, H)), ("down", (H, mff))):
                g.mat(f"{pre}mlp.{e}{p}_proj.weight", r, c)
    mtp = f"model.layers.{L}."
    g.t[mtp + "embed_tokens.weight"] = g.t["model.embed_tokens.weight"].clone()
    g.vec(mtp + "enorm.weight", H, 1.0)
    g.vec(mtp + "hnorm.weight", H, 1.0)
    g.mat(mtp + "eh_proj.weight", H, 2 * H)
    g.vec(mtp + "shared_head.norm.weight", H, 1.0)
    return cfg


FP4 = np.array([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float32)


def gpt_oss(g, bf16_experts=False, bad_scales=False):
    H, heads, kv, hd, I, E, L = 64, 4, 2, 32, 96, 5, 3
    cfg = {"architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "attention_bias": True,
           "hidden_act": "silu", "hidden_size": H, "head_dim": hd, "intermediate_size": I,
           "num_hidden_layers": L, "num_attention_heads": heads, "num_key_value_heads": kv,
           "num_local_experts": E, "num_experts_per_tok": 3, "experts_per_token": 3,
           "layer_types": ["full_attention", "sliding_attention", "sliding_attention"], "sliding_window": 5,
           "initial_context_length": 4096, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
           "rope_theta": 150000, "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
                                                  "beta_slow": 1.0, "original_max_position_embeddings": 4096,
                                                  "truncate": False},
           "swiglu_limit": 7.0, "vocab_size": VOCAB, "tie_word_embeddings": False, "eos_token_id": 2,
           "pad_token_id": 0, "router_aux_loss_coef": 0.9, "torch_dtype": "bfloat16"}
    if not bf16_experts:
        cfg["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
            "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    g.embeddings(H)
    for li in range(L):
        pre = f"model.layers.{li}."
        g.norms(pre, H)
        g.attention(pre, H, heads, kv, hd, True, o_bias=True)
        g.vec(pre + "self_attn.sinks", heads, std=1.0)
        g.mat(pre + "mlp.router.weight", E, H, 0.5)
        g.vec(pre + "mlp.router.bias", E, std=0.2)
        g.vec(pre + "mlp.experts.gate_up_proj_bias", (E, 2 * I), std=0.5)
        g.vec(pre + "mlp.experts.down_proj_bias", (E, H), std=0.1)
        for name, rows, cols in (("gate_up_proj", 2 * I, H), ("down_proj", H, I)):
            blocks = g.rng.integers(0, 256, (E, rows, cols // 32, 16), dtype=np.uint8)
            # E8M0 exponents around 2^-4 (gate/up pre-activations beyond the +-7 clamp do occur)
            scales = g.rng.integers(120, 126, (E, rows, cols // 32), dtype=np.uint8)
            if bf16_experts:  # what transformers' dequantization gives, in its [E, in, out] layout
                v = np.stack((FP4[blocks & 15], FP4[blocks >> 4]), -1).reshape(E, rows, cols // 32, 32)
                w = (v * np.ldexp(1.0, scales.astype(np.int32) - 127)[..., None]).reshape(E, rows, cols)
                g.t[pre + "mlp.experts." + name] = torch.from_numpy(w.transpose(0, 2, 1).copy()).to(torch.bfloat16)
                continue
            if bad_scales and li == 1 and name == "gate_up_proj":
                scales = np.concatenate((scales, scales[..., :1]), axis=-1)
            g.t[pre + f"mlp.experts.{name}_blocks"] = torch.from_numpy(blocks)
            g.t[pre + f"mlp.experts.{name}_scales"] = torch.from_numpy(scales)
    return cfg


FAMILIES = {
    "mixtral": mixtral,
    "glm4_moe": glm4_moe,
    "gpt_oss": gpt_oss,
    "gpt_oss_bf16": lambda g: gpt_oss(g, bf16_experts=True),
    "gpt_oss_bad_scales": lambda g: gpt_oss(g, bad_scales=True),
}


def write_tokenizer(out):
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(byte_tokenizer(), f, ensure_ascii=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("families", nargs="*", metavar="FAMILY", help=", ".join(FAMILIES))
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tokenizer-only", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.tokenizer_only:
        write_tokenizer(a.out)
        return 0
    if not a.families or not set(a.families) <= set(FAMILIES):
        ap.error("name one or more of: " + ", ".join(FAMILIES))
    for fam in a.families:
        out = os.path.join(a.out, fam)
        os.makedirs(out, exist_ok=True)
        g = Gen(a.seed)
        cfg = FAMILIES[fam](g)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        write_tokenizer(out)
        st_io.save_sharded(g.t, out, 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
