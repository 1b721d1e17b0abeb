#!/usr/bin/python3
"""Independent float32 PyTorch forward pass of DeepseekV3ForCausalLM.

    ref_deepseek.py MODEL_DIR --ids 1,2,3 -o OUT.f32 [--threads N] [--check]

A readable port of the official modeling code (DeepSeek-V3's
modeling_deepseek.py, transformers' modeling_deepseek_v3.py): multi-head
latent attention with interleaved RoPE under YaRN scaling (and its mscale^2
on the softmax scale), dense MLP for the first first_k_dense_replace layers,
then a sigmoid router with e_score_correction_bias, group-limited top-k,
norm_topk_prob and routed_scaling_factor, plus shared experts.  FP8 weights
are dequantized with their weight_scale_inv blocks.  No transformers import:
only config.json and the safetensors files (tests/interop/st_io.py).

OUT.f32 is raw little-endian float32 logits [n_ids][vocab_size].  --check
compares with MODEL_DIR/reference.json when it has one (families fixtures).
"""
import argparse
import base64
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402


# ---------------------------------------------------------------- YaRN ----
# DeepseekV3YarnRotaryEmbedding and its helpers.

def yarn_find_correction_dim(num_rotations, dim, base, max_pos):
    return (dim * math.log(max_pos / (num_rotations * 2 * math.pi))) / (2 * math.log(base))


def yarn_find_correction_range(low_rot, high_rot, dim, base, max_pos):
    low = math.floor(yarn_find_correction_dim(low_rot, dim, base, max_pos))
    high = math.ceil(yarn_find_correction_dim(high_rot, dim, base, max_pos))
    return max(low, 0), min(high, dim - 1)


def yarn_get_mscale(scale=1.0, mscale=1.0):
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def yarn_linear_ramp_mask(lo, hi, dim):
    if lo == hi:
        hi += 0.001
    return torch.clamp((torch.arange(dim, dtype=torch.float32) - lo) / (hi - lo), 0, 1)


def rotary_cos_sin(cfg, dim, seq_len):
    """cos, sin [seq_len, dim] as the release's rotary embedding computes them."""
    base = float(cfg.get("rope_theta", 10000))
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("type", rs.get("rope_type"))
    exps = torch.arange(0, dim, 2, dtype=torch.float32) / dim
    if kind != "yarn":
        if kind not in (None, "default"):
            raise ValueError(f"rope_scaling type {kind!r} not supported here")
        inv_freq, mscale = 1.0 / (base ** exps), 1.0
    else:
        factor = float(rs["factor"])
        orig = rs["original_max_position_embeddings"]
        freq_extra = 1.0 / (base ** exps)
        freq_inter = 1.0 / (factor * base ** exps)
        lo, hi = yarn_find_correction_range(rs.get("beta_fast", 32), rs.get("beta_slow", 1), dim, base, orig)
        inv_freq_mask = 1.0 - yarn_linear_ramp_mask(lo, hi, dim // 2)
        inv_freq = freq_inter * (1 - inv_freq_mask) + freq_extra * inv_freq_mask
        mscale = yarn_get_mscale(factor, rs.get("mscale", 1)) / yarn_get_mscale(factor, rs.get("mscale_all_dim", 0))
    t = torch.arange(seq_len, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * mscale, emb.sin() * mscale


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    """The release's RoPE: pairs (2i, 2i+1) are de-interleaved, then rotate-half."""
    b, h, s, d = q.shape
    q = q.view(b, h, s, d // 2, 2).transpose(4, 3).reshape(b, h, s, d)
    b, h, s, d = k.shape
    k = k.view(b, h, s, d // 2, 2).transpose(4, 3).reshape(b, h, s, d)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


# --------------------------------------------------------------- model ----

class DeepseekV3:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        if (cfg.get("architectures") or ["?"])[0] != "DeepseekV3ForCausalLM":
            raise ValueError(f"{model_dir}: not a DeepseekV3ForCausalLM checkpoint")
        self.cfg = cfg
        self.w = st_io.load_dir(model_dir)
        self.dequant_fp8()
        self.n_layer = cfg["num_hidden_layers"]
        self.eps = cfg.get("rms_norm_eps", 1e-6)

    def dequant_fp8(self):
        """weight [rows, cols] * weight_scale_inv [ceil(rows/br), ceil(cols/bc)], per block."""
        q = self.cfg.get("quantization_config") or {}
        if q.get("quant_method") != "fp8":
            return
        br, bc = q["weight_block_size"]
        for name in [n for n in self.w if n.endswith("_scale_inv")]:
            scale = self.w.pop(name).float()
            wname = name[: -len("_scale_inv")]
            w = self.w[wname].float()
            full = scale.repeat_interleave(br, 0).repeat_interleave(bc, 1)[: w.shape[0], : w.shape[1]]
            self.w[wname] = w * full

    def p(self, name):
        t = self.w[name]
        if t.dtype != torch.float32:
            t = self.w[name] = t.float()
        return t

    def linear(self, x, name):
        return x @ self.p(name + ".weight").t()

    def rmsnorm(self, x, name):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.p(name + ".weight") * (x * torch.rsqrt(var + self.eps))

    # DeepseekV3Attention.forward
    def attention(self, x, pre, cos, sin):
        c = self.cfg
        T = x.shape[0]
        H, nope, rope, vd = c["num_attention_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        q_head_dim, kv_lora = nope + rope, c["kv_lora_rank"]
        if c.get("q_lora_rank") is None:
            q = self.linear(x, pre + "q_proj")
        else:
            q = self.linear(self.rmsnorm(self.linear(x, pre + "q_a_proj"), pre + "q_a_layernorm"), pre + "q_b_proj")
        q = q.view(1, T, H, q_head_dim).transpose(1, 2)
        q_nope, q_pe = torch.split(q, [nope, rope], dim=-1)
        compressed_kv = self.linear(x, pre + "kv_a_proj_with_mqa")
        compressed_kv, k_pe = torch.split(compressed_kv, [kv_lora, rope], dim=-1)
        k_pe = k_pe.view(1, T, 1, rope).transpose(1, 2)
        kv = self.linear(self.rmsnorm(compressed_kv, pre + "kv_a_layernorm"), pre + "kv_b_proj")
        kv = kv.view(1, T, H, nope + vd).transpose(1, 2)
        k_nope, value_states = torch.split(kv, [nope, vd], dim=-1)
        q_pe, k_pe = apply_rotary_pos_emb(q_pe, k_pe, cos, sin)
        query_states = torch.cat([q_nope, q_pe], dim=-1)
        key_states = torch.cat([k_nope, k_pe.expand(1, H, T, rope)], dim=-1)
        softmax_scale = q_head_dim ** -0.5
        rs = c.get("rope_scaling") or {}
        if rs.get("mscale_all_dim"):
            m = yarn_get_mscale(rs["factor"], rs["mscale_all_dim"])
            softmax_scale = softmax_scale * m * m
        scores = (query_states @ key_states.transpose(2, 3)) * softmax_scale
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
        out = (probs @ value_states).transpose(1, 2).reshape(T, H * vd)
        return self.linear(out, pre + "o_proj")

    def mlp(self, x, pre):
        return self.linear(F.silu(self.linear(x, pre + "gate_proj")) * self.linear(x, pre + "up_proj"),
                           pre + "down_proj")

    # MoEGate.forward (topk_method noaux_tc)
    def gate(self, x, pre):
        c = self.cfg
        n_exp, top_k = c["n_routed_experts"], c["num_experts_per_tok"]
        n_group, topk_group = c.get("n_group", 1) or 1, c.get("topk_group", 1) or 1
        N = x.shape[0]
        logits = F.linear(x, self.p(pre + "gate.weight"))
        if c.get("scoring_func", "softmax") == "sigmoid":
            scores = logits.sigmoid()
        else:
            scores = logits.softmax(dim=-1)
        bias = pre + "gate.e_score_correction_bias"
        choice = scores + self.p(bias).unsqueeze(0) if bias in self.w else scores
        group_scores = choice.view(N, n_group, -1).topk(min(2, n_exp // n_group), dim=-1)[0].sum(dim=-1)
        group_idx = torch.topk(group_scores, k=topk_group, dim=-1, sorted=False)[1]
        group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
        score_mask = group_mask.unsqueeze(-1).expand(N, n_group, n_exp // n_group).reshape(N, -1)
        # the release code masks with -inf (transformers with 0.0; same choice for non-negative scores)
        tmp = choice.masked_fill(~score_mask.bool(), float("-inf"))
        _, topk_idx = torch.topk(tmp, k=top_k, dim=-1, sorted=False)
        topk_weight = scores.gather(1, topk_idx)
        if top_k > 1 and c.get("norm_topk_prob"):
            topk_weight = topk_weight / (topk_weight.sum(dim=-1, keepdim=True) + 1e-20)
        return topk_idx, topk_weight * c.get("routed_scaling_factor", 1.0)

    # DeepseekV3MoE.forward
    def moe(self, x, pre):
        idx, wts = self.gate(x, pre)
        out = torch.zeros_like(x)
        for e in range(self.cfg["n_routed_experts"]):
            rows, slot = (idx == e).nonzero(as_tuple=True)
            if rows.numel():
                y = self.mlp(x[rows], f"{pre}experts.{e}.")
                out.index_add_(0, rows, y * wts[rows, slot].unsqueeze(1))
        if self.cfg.get("n_shared_experts"):
            out = out + self.mlp(x, pre + "shared_experts.")
        return out

    @torch.no_grad()
    def forward(self, ids):
        c = self.cfg
        x = self.p("model.embed_tokens.weight")[torch.tensor(ids)]
        cos, sin = rotary_cos_sin(c, c["qk_rope_head_dim"], len(ids))
        dense = c.get("first_k_dense_replace", 0)
        for i in range(self.n_layer):
            pre = f"model.layers.{i}."
            x = x + self.attention(self.rmsnorm(x, pre + "input_layernorm"), pre + "self_attn.", cos, sin)
            h = self.rmsnorm(x, pre + "post_attention_layernorm")
            moe = c.get("n_routed_experts") and i >= dense and i % c.get("moe_layer_freq", 1) == 0
            x = x + (self.moe(h, pre + "mlp.") if moe else self.mlp(h, pre + "mlp."))
        return self.linear(self.rmsnorm(x, "model.norm"), "lm_head")


def check_reference(model_dir, ids, logits):
    path = os.path.join(model_dir, "reference.json")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        r = json.load(f)
    if r["token_ids"] != ids:
        print("reference.json: other token ids, not compared", file=sys.stderr)
        return 0
    pos = r["logit_positions"]
    want = np.frombuffer(base64.b64decode(r["logits_f32_b64"]), dtype="<f4").reshape(len(pos), -1)
    diff = float(np.abs(logits[pos].numpy() - want).max())
    print(f"reference.json: max |diff| {diff:.3e}", file=sys.stderr)
    return 0 if diff < 1e-3 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--ids")
    g.add_argument("--reference-ids", action="store_true")
    ap.add_argument("-o", "--out")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.ids:
        ids = [int(t) for t in a.ids.replace(",", " ").split()]
    else:
        with open(os.path.join(a.model_dir, "reference.json")) as f:
            ids = json.load(f)["token_ids"]
    logits = DeepseekV3(a.model_dir).forward(ids)
    if a.out:
        logits.numpy().astype("<f4").tofile(a.out)
    return check_reference(a.model_dir, ids, logits) if a.check else 0


if __name__ == "__main__":
    sys.exit(main())
