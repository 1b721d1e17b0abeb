#!/usr/bin/python3
"""Float32 PyTorch forward passes of three MoE families (reference logits).

Readable ports of transformers' modeling code, written from its math (no
transformers import), one function per piece as in the originals:

  MixtralForCausalLM   modeling_mixtral.py   softmax router over all experts,
                       top-k renormalised, w2(silu(w1 x) * w3 x), rotate-half RoPE
  Glm4MoeForCausalLM   modeling_glm4_moe.py  q/k/v biases, partial rotate-half
                       RoPE, dense first layers, sigmoid router whose choice adds
                       e_score_correction_bias (group-limited when n_group > 1),
                       shared experts; the NextN/MTP layers are not run
  GptOssForCausalLM    modeling_gpt_oss.py   q/k/v/o biases, attention sinks,
                       sliding window on "sliding_attention" layers, YaRN RoPE
                       (truncate as the config says), router top-k then softmax,
                       clamped SwiGLU (alpha 1.702) with biases; MXFP4 experts
                       dequantized as integrations/mxfp4.py does

    ref_moe_families.py MODEL_DIR... --ids 1,2,3 -o OUT.f32 [--truncate-yarn yes|no]
    ref_moe_families.py MODEL_DIR --reference-ids --check

OUT.f32: little-endian float32 logits [n_ids][vocab_size], one row per
position (causal, positions 0..n-1); with several MODEL_DIRs, "{}" in OUT
stands for each one's base name (one process: importing torch is slow). --check compares with the logits of
MODEL_DIR/reference.json (the families fixtures) and exits 1 above 1e-4.
"""
import argparse
import base64
import json
import math
import os
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

F = torch.nn.functional


# ------------------------------------------------------------ building blocks

def rmsnorm(x, weight, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(var + eps))


def linear(x, w, b=None):
    y = x @ w.t()
    return y if b is None else y + b


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def default_inv_freq(base, dim):
    return 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)


def yarn_inv_freq(cfg, base, dim, truncate):
    """transformers' _compute_yarn_parameters: (inv_freq, attention_factor)."""
    rs = cfg["rope_scaling"]
    factor = float(rs["factor"])
    orig = rs.get("original_max_position_embeddings") or cfg["max_position_embeddings"]

    def mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    att = rs.get("attention_factor")
    if att is None:
        ms, msa = rs.get("mscale"), rs.get("mscale_all_dim")
        att = mscale(factor, ms) / mscale(factor, msa) if ms and msa else mscale(factor)
    beta_fast, beta_slow = rs.get("beta_fast") or 32, rs.get("beta_slow") or 1

    def correction_dim(rotations):
        return dim * math.log(orig / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    extrapolation = 1 - ramp
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    inv = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return inv, float(att)


def rope_tables(inv_freq, n, scale=1.0):
    """cos, sin [n, 2 * len(inv_freq)] as HF's rotary embedding returns them."""
    fr = torch.arange(n, dtype=torch.float32).unsqueeze(1) * inv_freq.unsqueeze(0)
    emb = torch.cat((fr, fr), dim=-1)
    return emb.cos() * scale, emb.sin() * scale


def apply_rope(x, cos, sin):
    """rotate-half RoPE on the first cos.shape[-1] dims of x [heads, T, D] (partial when shorter)."""
    rot = cos.shape[-1]
    xr, xp = x[..., :rot], x[..., rot:]
    return torch.cat((xr * cos + rotate_half(xr) * sin, xp), dim=-1)


def attention(q, k, v, window=None, sinks=None):
    """q [H, T, D], k/v [KV, T, D]: causal (and windowed) softmax attention, optional per-head sink logits."""
    H, T, D = q.shape
    rep = H // k.shape[0]
    k, v = k.repeat_interleave(rep, dim=0), v.repeat_interleave(rep, dim=0)
    scores = (q @ k.transpose(1, 2)) * D ** -0.5
    i, j = torch.arange(T).unsqueeze(1), torch.arange(T).unsqueeze(0)
    allowed = j <= i
    if window:
        allowed = allowed & (i - j < window)
    scores = scores.masked_fill(~allowed, float("-inf"))
    if sinks is not None:  # gpt-oss: one extra logit per head that takes probability mass and no value
        scores = torch.cat((scores, sinks.view(H, 1, 1).expand(H, T, 1)), dim=-1)
        scores = scores - scores.max(dim=-1, keepdim=True).values
        return torch.softmax(scores, dim=-1)[..., :-1] @ v
    return torch.softmax(scores, dim=-1) @ v


def swiglu(x, w, prefix):
    return linear(F.silu(linear(x, w[prefix + "gate_proj.weight"])) * linear(x, w[prefix + "up_proj.weight"]),
                  w[prefix + "down_proj.weight"])


# ------------------------------------------------------------ the families

class Model:
    def __init__(self, model_dir, truncate_yarn=None):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = cfg = json.load(f)
        self.arch = (cfg.get("architectures") or ["?"])[0]
        raw = st_io.load_dir(model_dir)
        if self.arch == "GptOssForCausalLM":
            dequantize_mxfp4(raw)
        # float32 throughout, like the fixtures' reference ports
        self.w = {k: (v.to(torch.float32) if v.is_floating_point() else v) for k, v in raw.items()}
        self.n_layer = cfg["num_hidden_layers"]
        self.n_head = cfg["num_attention_heads"]
        self.n_kv = cfg.get("num_key_value_heads") or self.n_head
        self.head_dim = cfg.get("head_dim") or cfg["hidden_size"] // self.n_head
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        base = float(cfg.get("rope_theta", 10000.0))
        self.rope_scale = 1.0
        if self.arch == "GptOssForCausalLM":
            truncate = cfg["rope_scaling"].get("truncate", True) if truncate_yarn is None else truncate_yarn
            self.inv_freq, self.rope_scale = yarn_inv_freq(cfg, base, self.head_dim, truncate)
        elif self.arch == "Glm4MoeForCausalLM":
            rot = int(self.head_dim * cfg.get("partial_rotary_factor", 0.5))
            self.inv_freq = default_inv_freq(base, rot)
        elif self.arch == "MixtralForCausalLM":
            self.inv_freq = default_inv_freq(base, self.head_dim)
        else:
            raise SystemExit(f"{model_dir}: architecture {self.arch} not supported")

    def self_attention(self, x, li, cos, sin):
        w, pre, T = self.w, f"model.layers.{li}.self_attn.", x.shape[0]
        q = linear(x, w[pre + "q_proj.weight"], w.get(pre + "q_proj.bias")).view(T, self.n_head, self.head_dim)
        k = linear(x, w[pre + "k_proj.weight"], w.get(pre + "k_proj.bias")).view(T, self.n_kv, self.head_dim)
        v = linear(x, w[pre + "v_proj.weight"], w.get(pre + "v_proj.bias")).view(T, self.n_kv, self.head_dim)
        if pre + "q_norm.weight" in w:  # GLM-4.5 use_qk_norm
            q = rmsnorm(q, w[pre + "q_norm.weight"], self.eps)
            k = rmsnorm(k, w[pre + "k_norm.weight"], self.eps)
        q, k, v = (t.transpose(0, 1) for t in (q, k, v))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        window, sinks = None, None
        if self.arch == "GptOssForCausalLM":
            types = self.cfg.get("layer_types") or ["sliding_attention" if i % 2 == 0 else "full_attention"
                                                    for i in range(self.n_layer)]
            window = self.cfg["sliding_window"] if types[li] == "sliding_attention" else None
            sinks = w[pre + "sinks"]
        elif self.arch == "MixtralForCausalLM":
            window = self.cfg.get("sliding_window")
        o = attention(q, k, v, window, sinks).transpose(0, 1).reshape(T, self.n_head * self.head_dim)
        return linear(o, w[pre + "o_proj.weight"], w.get(pre + "o_proj.bias"))

    # -- Mixtral: MixtralSparseMoeBlock
    def mixtral_moe(self, x, li):
        w, pre = self.w, f"model.layers.{li}.block_sparse_moe."
        probs = torch.softmax(linear(x, w[pre + "gate.weight"]), dim=-1)
        top, sel = torch.topk(probs, self.cfg["num_experts_per_tok"], dim=-1)
        top = top / top.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for e in range(self.cfg["num_local_experts"]):
            rows, slot = (sel == e).nonzero(as_tuple=True)
            if rows.numel():
                ep = f"{pre}experts.{e}."
                xe = x[rows]
                ye = linear(F.silu(linear(xe, w[ep + "w1.weight"])) * linear(xe, w[ep + "w3.weight"]), w[ep + "w2.weight"])
                out.index_add_(0, rows, ye * top[rows, slot].unsqueeze(1))
        return out

    # -- GLM-4.5: Glm4MoeTopkRouter + Glm4MoeMoE
    def glm_moe(self, x, li):
        c, w, pre = self.cfg, self.w, f"model.layers.{li}.mlp."
        n_exp, k = c["n_routed_experts"], c["num_experts_per_tok"]
        scores = torch.sigmoid(linear(x, w[pre + "gate.weight"]))
        choice = scores + w[pre + "gate.e_score_correction_bias"]
        n_group, topk_group = c.get("n_group", 1), c.get("topk_group", 1)
        grouped = choice.view(-1, n_group, n_exp // n_group)
        group_scores = grouped.topk(2, dim=-1)[0].sum(dim=-1)
        group_idx = torch.topk(group_scores, k=topk_group, dim=-1, sorted=False)[1]
        group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
        score_mask = group_mask.unsqueeze(-1).expand(-1, n_group, n_exp // n_group).reshape(-1, n_exp)
        choice = choice.masked_fill(~score_mask.bool(), 0.0)
        sel = torch.topk(choice, k=k, dim=-1, sorted=False)[1]
        wts = scores.gather(1, sel)
        if c.get("norm_topk_prob", True):
            wts = wts / (wts.sum(dim=-1, keepdim=True) + 1e-20)
        wts = wts * c.get("routed_scaling_factor", 1.0)
        out = torch.zeros_like(x)
        for e in range(n_exp):
            rows, slot = (sel == e).nonzero(as_tuple=True)
            if rows.numel():
                out.index_add_(0, rows, swiglu(x[rows], w, f"{pre}experts.{e}.") * wts[rows, slot].unsqueeze(1))
        if c.get("n_shared_experts", 0):
            out = out + swiglu(x, w, pre + "shared_experts.")
        return out

    # -- gpt-oss: GptOssTopKRouter + GptOssExperts
    def gptoss_moe(self, x, li):
        c, w, pre = self.cfg, self.w, f"model.layers.{li}.mlp."
        logits = linear(x, w[pre + "router.weight"], w[pre + "router.bias"])
        top, sel = torch.topk(logits, c["num_experts_per_tok"], dim=-1)
        top = torch.softmax(top, dim=-1)
        limit, alpha = c.get("swiglu_limit", 7.0), 1.702
        out = torch.zeros_like(x)
        for e in range(c["num_local_experts"]):
            rows, slot = (sel == e).nonzero(as_tuple=True)
            if not rows.numel():
                continue
            gate_up = x[rows] @ w[pre + "experts.gate_up_proj"][e] + w[pre + "experts.gate_up_proj_bias"][e]
            gate, up = gate_up[..., ::2], gate_up[..., 1::2]
            gate = gate.clamp(max=limit)
            up = up.clamp(min=-limit, max=limit)
            glu = gate * torch.sigmoid(gate * alpha)
            ye = ((up + 1) * glu) @ w[pre + "experts.down_proj"][e] + w[pre + "experts.down_proj_bias"][e]
            out.index_add_(0, rows, ye * top[rows, slot].unsqueeze(1))
        return out

    def ffn(self, x, li):
        if self.arch == "MixtralForCausalLM":
            return self.mixtral_moe(x, li)
        if self.arch == "GptOssForCausalLM":
            return self.gptoss_moe(x, li)
        if li < self.cfg.get("first_k_dense_replace", 0):
            return swiglu(x, self.w, f"model.layers.{li}.mlp.")
        return self.glm_moe(x, li)

    @torch.no_grad()
    def forward(self, ids):
        w = self.w
        x = w["model.embed_tokens.weight"][torch.tensor(ids, dtype=torch.long)]
        cos, sin = rope_tables(self.inv_freq, len(ids), self.rope_scale)
        for li in range(self.n_layer):  # GLM's NextN layers (li >= num_hidden_layers) are not part of the forward pass
            pre = f"model.layers.{li}."
            x = x + self.self_attention(rmsnorm(x, w[pre + "input_layernorm.weight"], self.eps), li, cos, sin)
            x = x + self.ffn(rmsnorm(x, w[pre + "post_attention_layernorm.weight"], self.eps), li)
        x = rmsnorm(x, w["model.norm.weight"], self.eps)
        head = w["model.embed_tokens.weight"] if self.cfg.get("tie_word_embeddings") else w["lm_head.weight"]
        return x @ head.t()


FP4_VALUES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def dequantize_mxfp4(w):
    """integrations/mxfp4.py convert_moe_packed_tensors: *_blocks [E, R, G, 16] (element 2i in the low
    nibble of byte i) and *_scales [E, R, G] (E8M0, bias 127) -> the [E, R, G*32] matrix, stored
    transposed ([E, in, out]) as GptOssExperts.gate_up_proj / down_proj are."""
    lut = torch.tensor(FP4_VALUES, dtype=torch.float32)
    for name in [k for k in w if k.endswith("_blocks")]:
        blocks = w.pop(name).to(torch.int64)
        scales = w.pop(name[: -len("_blocks")] + "_scales").to(torch.int64) - 127
        vals = torch.stack((lut[blocks & 15], lut[blocks >> 4]), dim=-1).flatten(-2)  # [E, R, G, 32]
        mat = torch.ldexp(vals, scales.unsqueeze(-1).to(torch.float32)).flatten(-2)
        w[name[: -len("_blocks")]] = mat.transpose(1, 2).contiguous()


# ------------------------------------------------------------ CLI

def reference_logits(model_dir):
    with open(os.path.join(model_dir, "reference.json")) as f:
        r = json.load(f)
    ids = r["token_ids"]
    ids = json.loads(ids) if isinstance(ids, str) else ids
    pos = r["logit_positions"]
    want = np.frombuffer(base64.b64decode(r["logits_f32_b64"]), dtype="<f4").reshape(len(pos), -1)
    return ids, pos, want


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dirs", nargs="+", metavar="MODEL_DIR")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--ids", help="comma separated token ids")
    g.add_argument("--reference-ids", action="store_true", help="token_ids of MODEL_DIR/reference.json")
    ap.add_argument("-o", "--out", help="raw little-endian float32 logits")
    ap.add_argument("--check", action="store_true", help="compare with MODEL_DIR/reference.json")
    ap.add_argument("--truncate-yarn", choices=("config", "yes", "no"), default="config",
                    help="gpt-oss: floor/ceil the YaRN correction range (llama.cpp always does)")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    truncate = {"config": None, "yes": True, "no": False}[a.truncate_yarn]
    if len(a.model_dirs) > 1 and (a.check or not a.out or "{}" not in a.out):
        raise SystemExit("several MODEL_DIRs need -o with {} and no --check")
    rc = 0
    for model_dir in a.model_dirs:
        ids = [int(t) for t in a.ids.split(",")] if a.ids else reference_logits(model_dir)[0]
        logits = Model(model_dir, truncate).forward(ids)
        if a.out:
            name = os.path.basename(os.path.normpath(model_dir))
            logits.numpy().astype("<f4").tofile(a.out.replace("{}", name))
        if a.check:
            ref_ids, pos, want = reference_logits(model_dir)
            if ref_ids != ids:
                raise SystemExit("--check needs the reference ids")
            diff = float(np.abs(logits[pos].numpy().astype(np.float64) - want).max())
            print(f"{model_dir}: max |logit - reference.json| = {diff:.3e}")
            rc |= 0 if diff < 1e-4 else 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
