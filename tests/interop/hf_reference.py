#!/usr/bin/python3
"""Independent PyTorch forward pass of HF decoder checkpoints (reference logits).

Written from the math of transformers' modeling code (no transformers import):
LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, Qwen2ForCausalLM,
Qwen3ForCausalLM, Qwen3MoeForCausalLM.  Reads config.json and safetensors
(single file or sharded index) from MODEL_DIR.

    hf_reference.py MODEL_DIR --ids 1,2,3 -o OUT.f32 [--dtype float32|float64]

OUT.f32 is raw little-endian float32 logits, row-major [n_ids][vocab_size],
one row per input position (causal, positions 0..n-1, no KV cache).
--check prints next-token NLL / perplexity / top-5 of the last position to
stderr and, when MODEL_DIR has a reference.json (families fixtures), compares
its logits.  --text-file tokenizes text with MODEL_DIR/tokenizer.model
(SentencePiece) instead of --ids.
"""
import argparse
import base64
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

SUPPORTED = {
    "LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM",
    "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Qwen3MoeForCausalLM",
}


# ---------------------------------------------------------------- RoPE ----

def rope_inv_freq(cfg, head_dim):
    """(inv_freq float64 numpy [head_dim/2], attention scaling) as HF computes.

    Computed in float64 here; the caller rounds to its compute dtype (HF
    builds inv_freq in float32, which the float32 path reproduces).
    """
    base = float(cfg.get("rope_theta", 10000.0))
    prf = float(cfg.get("partial_rotary_factor", 1.0))
    if prf != 1.0:
        raise ValueError("partial_rotary_factor != 1 is not used by these architectures")
    dim = head_dim
    inv = 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    rs = cfg.get("rope_scaling") or None
    if rs is None:
        return inv, 1.0
    kind = rs.get("rope_type", rs.get("type"))
    if kind in (None, "default"):
        return inv, 1.0
    if kind == "linear":
        return inv / float(rs["factor"]), 1.0
    if kind == "llama3":
        factor = float(rs["factor"])
        lo = float(rs["low_freq_factor"])
        hi = float(rs["high_freq_factor"])
        old = float(rs["original_max_position_embeddings"])
        lo_wl, hi_wl = old / lo, old / hi
        wl = 2 * math.pi / inv
        # long wavelengths: interpolate fully; short: keep; between: blend.
        out = np.where(wl > lo_wl, inv / factor, inv)
        smooth = (old / wl - lo) / (hi - lo)
        blended = (1 - smooth) * out / factor + smooth * out
        medium = (wl >= hi_wl) & (wl <= lo_wl)
        return np.where(medium, blended, out), 1.0
    if kind == "yarn":
        # Follows current transformers: the explicit factor wins; the pre-yarn
        # context is rope_scaling.original_max_position_embeddings when given,
        # else max_position_embeddings.  (transformers 4.45-4.55 instead
        # replaced factor by max_position_embeddings / original when the
        # latter was present; identical when the config is consistent.)
        factor = rs.get("factor")
        orig = rs.get("original_max_position_embeddings") or cfg["max_position_embeddings"]
        if factor is None:
            factor = cfg["max_position_embeddings"] / orig
        factor = float(factor)

        def mscale(scale, m=1.0):
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

        att = rs.get("attention_factor")
        if att is None:
            ms, msa = rs.get("mscale"), rs.get("mscale_all_dim")
            att = mscale(factor, ms) / mscale(factor, msa) if ms and msa else mscale(factor)
        beta_fast = rs.get("beta_fast") or 32
        beta_slow = rs.get("beta_slow") or 1

        def corr_dim(rot):
            return dim * math.log(orig / (rot * 2 * math.pi)) / (2 * math.log(base))

        low, high = corr_dim(beta_fast), corr_dim(beta_slow)
        if rs.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
        extra = 1 - ramp  # 1 = keep original frequency (extrapolate)
        out = (inv / factor) * (1 - extra) + inv * extra
        return out, float(att)
    raise ValueError(f"rope_scaling type {kind!r} not supported")


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


# --------------------------------------------------------------- model ----

class Reference:
    def __init__(self, model_dir, dtype=torch.float32):
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        arch = (cfg.get("architectures") or ["?"])[0]
        if arch not in SUPPORTED:
            raise ValueError(f"{model_dir}: architecture {arch} not supported")
        self.cfg, self.arch, self.dt = cfg, arch, dtype
        self.w = st_io.load_dir(model_dir)
        self._dequant_fp8()
        self.n_layer = cfg["num_hidden_layers"]
        self.n_head = cfg["num_attention_heads"]
        self.n_kv = cfg.get("num_key_value_heads") or self.n_head
        self.head_dim = cfg.get("head_dim") or cfg["hidden_size"] // self.n_head
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        if cfg.get("hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act {cfg.get('hidden_act')} not supported")
        inv, self.att_scale = rope_inv_freq(cfg, self.head_dim)
        # HF keeps inv_freq in float32; the float64 mode keeps full precision.
        self.inv_freq = torch.tensor(inv, dtype=torch.float64).to(
            torch.float32 if dtype == torch.float32 else torch.float64)
        self.window = [self._layer_window(i) for i in range(self.n_layer)]

    def _dequant_fp8(self):
        """Block-scaled FP8 weights (weight + weight_scale_inv) -> plain."""
        for k in [k for k in self.w if k.endswith(".weight_scale_inv")]:
            base = k[: -len("_scale_inv")]
            wq = self.w[base].to(torch.float32)
            s = self.w.pop(k).to(torch.float32)
            br = -(-wq.shape[0] // s.shape[0])
            bc = -(-wq.shape[1] // s.shape[1])
            s = s.repeat_interleave(br, 0)[: wq.shape[0]].repeat_interleave(bc, 1)[:, : wq.shape[1]]
            self.w[base] = wq * s

    def _layer_window(self, i):
        """Sliding window for layer i, or None for full causal attention."""
        c = self.cfg
        sw = c.get("sliding_window")
        if not sw:
            return None
        if self.arch in ("MistralForCausalLM", "MixtralForCausalLM"):
            return int(sw)
        if self.arch.startswith("Qwen"):
            lt = c.get("layer_types")
            if lt:
                return int(sw) if lt[i] == "sliding_attention" else None
            if c.get("use_sliding_window") and i >= c.get("max_window_layers", 0):
                return int(sw)
        return None

    def p(self, name):
        """Parameter in the compute dtype (converted once, then cached)."""
        t = self.w[name]
        if t.dtype != self.dt:
            t = self.w[name] = t.to(self.dt)
        return t

    def has(self, name):
        return name in self.w

    def linear(self, x, name):
        y = x @ self.p(name + ".weight").t()
        if self.has(name + ".bias"):
            y = y + self.p(name + ".bias")
        return y

    def rmsnorm(self, x, name):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.p(name + ".weight") * (x * torch.rsqrt(var + self.eps))

    def attention(self, x, pre, li, cos, sin):
        T = x.shape[0]
        H, KV, D = self.n_head, self.n_kv, self.head_dim
        q = self.linear(x, pre + "q_proj").view(T, H, D)
        k = self.linear(x, pre + "k_proj").view(T, KV, D)
        v = self.linear(x, pre + "v_proj").view(T, KV, D)
        if self.has(pre + "q_norm.weight"):  # Qwen3: per-head RMSNorm pre-RoPE
            q = self.rmsnorm(q, pre + "q_norm")
            k = self.rmsnorm(k, pre + "k_norm")
        q, k, v = (t.transpose(0, 1) for t in (q, k, v))  # [heads, T, D]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = H // KV  # GQA: query head h reads kv head h // rep
        k = k.repeat_interleave(rep, dim=0)
        v = v.repeat_interleave(rep, dim=0)
        scores = (q @ k.transpose(1, 2)) * (D ** -0.5)
        i = torch.arange(T).unsqueeze(1)
        j = torch.arange(T).unsqueeze(0)
        allowed = j <= i
        w = self.window[li]
        if w is not None:
            allowed = allowed & (j > i - w)
        scores = scores.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        o = (probs @ v).transpose(0, 1).reshape(T, H * D)
        return self.linear(o, pre + "o_proj")

    def swiglu(self, x, gate, up, down):
        return self.linear(torch.nn.functional.silu(self.linear(x, gate)) * self.linear(x, up), down)

    def moe(self, x, pre, n_exp, top_k, renorm, names):
        """Softmax router over all experts, top-k, optional renormalisation."""
        router, g, u, d = names
        logits = self.linear(x, pre + router)
        probs = torch.softmax(logits, dim=-1)
        wts, sel = torch.topk(probs, top_k, dim=-1)
        if renorm:
            wts = wts / wts.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        fused = self.has(pre + "experts.gate_up_proj")  # transformers v5 layout
        for e in range(n_exp):
            rows, slot = (sel == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            xe = x[rows]
            if fused:
                gu = xe @ self.p(pre + "experts.gate_up_proj")[e].t()
                a, b = gu.chunk(2, dim=-1)
                ye = (torch.nn.functional.silu(a) * b) @ self.p(pre + "experts.down_proj")[e].t()
            else:
                ep = f"{pre}experts.{e}."
                ye = self.swiglu(xe, ep + g, ep + u, ep + d)
            out.index_add_(0, rows, ye * wts[rows, slot].unsqueeze(1))
        return out

    def mlp(self, x, li):
        c = self.cfg
        pre = f"model.layers.{li}."
        if self.arch == "Qwen3MoeForCausalLM":
            n_exp = c.get("num_experts", 0)
            sparse = (li not in (c.get("mlp_only_layers") or [])
                      and n_exp > 0 and (li + 1) % c.get("decoder_sparse_step", 1) == 0)
            if sparse:
                return self.moe(x, pre + "mlp.", n_exp, c["num_experts_per_tok"],
                                c.get("norm_topk_prob", False),
                                ("gate", "gate_proj", "up_proj", "down_proj"))
        if self.arch == "MixtralForCausalLM":
            return self.moe(x, pre + "block_sparse_moe.", c["num_local_experts"],
                            c["num_experts_per_tok"], True, ("gate", "w1", "w3", "w2"))
        m = pre + "mlp."
        return self.swiglu(x, m + "gate_proj", m + "up_proj", m + "down_proj")

    @torch.no_grad()
    def forward(self, ids):
        ids = torch.tensor(ids, dtype=torch.long)
        T = ids.shape[0]
        emb = self.p("model.embed_tokens.weight")
        if int(ids.max()) >= emb.shape[0] or int(ids.min()) < 0:
            raise ValueError(f"token id out of range 0..{emb.shape[0] - 1}")
        x = emb[ids]
        pos = torch.arange(T, dtype=self.inv_freq.dtype)
        fr = pos.unsqueeze(1) * self.inv_freq.unsqueeze(0)
        fr = torch.cat((fr, fr), dim=-1)
        cos = (fr.cos() * self.att_scale).to(self.dt)
        sin = (fr.sin() * self.att_scale).to(self.dt)
        for li in range(self.n_layer):
            pre = f"model.layers.{li}."
            h = self.rmsnorm(x, pre + "input_layernorm")
            x = x + self.attention(h, pre + "self_attn.", li, cos, sin)
            h = self.rmsnorm(x, pre + "post_attention_layernorm")
            x = x + self.mlp(h, li)
        x = self.rmsnorm(x, "model.norm")
        tie = self.cfg.get("tie_word_embeddings", False)
        if tie or not self.has("lm_head.weight"):
            head = emb
        else:
            head = self.p("lm_head.weight")
        return x @ head.t()


# ----------------------------------------------------------------- CLI ----

def parse_ids(s):
    return [int(t) for t in s.replace(",", " ").split()]


def tokenize_text(model_dir, text, max_tokens):
    import sentencepiece as spm
    path = os.path.join(model_dir, "tokenizer.model")
    if not os.path.exists(path):
        raise SystemExit(f"{model_dir}: --text-file needs tokenizer.model (SentencePiece)")
    sp = spm.SentencePieceProcessor(model_file=path)
    add_bos = True
    tc = os.path.join(model_dir, "tokenizer_config.json")
    if os.path.exists(tc):
        with open(tc) as f:
            add_bos = json.load(f).get("add_bos_token", True)
    ids = ([sp.bos_id()] if add_bos and sp.bos_id() >= 0 else []) + sp.encode(text)
    return ids[:max_tokens]


def check_report(model_dir, ids, logits):
    lg = logits.to(torch.float64)
    if len(ids) > 1:
        lp = torch.log_softmax(lg[:-1], dim=-1)
        nll = -lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
        print(f"tokens {len(ids)}  mean next-token NLL {nll.mean():.4f}  "
              f"ppl {math.exp(nll.mean()):.2f}", file=sys.stderr)
    top = torch.topk(lg[-1], 5)
    print(f"last position top5 ids {top.indices.tolist()} logits "
          f"{[round(v, 4) for v in top.values.tolist()]}", file=sys.stderr)
    ref = os.path.join(model_dir, "reference.json")
    if not os.path.exists(ref):
        return 0
    with open(ref) as f:
        r = json.load(f)
    if r.get("token_ids") != list(ids):
        print("reference.json: different token ids, not compared", file=sys.stderr)
        return 0
    pos = r["logit_positions"]
    want = np.frombuffer(base64.b64decode(r["logits_f32_b64"]), dtype="<f4").reshape(len(pos), -1)
    got = logits[pos].to(torch.float64).numpy()
    diff = float(np.abs(got - want).max())
    top_ok = all(list(np.argsort(-got[i], kind="stable")[:5]) == r["top5_ids"][i]
                 for i in range(len(pos)))
    print(f"reference.json: max |diff| {diff:.3e} over {want.size} logits; "
          f"top5 {'identical' if top_ok else 'DIFFER'}", file=sys.stderr)
    return 0 if diff < 1e-3 and top_ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--ids", help="comma/space separated token ids")
    g.add_argument("--ids-file", help="file of whitespace/comma separated token ids")
    g.add_argument("--text-file", help="text to tokenize with tokenizer.model")
    g.add_argument("--reference-ids", action="store_true",
                   help="use token_ids from MODEL_DIR/reference.json")
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("-o", "--out", help="raw little-endian float32 logits output")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="print NLL/top-5 and compare reference.json")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.ids is not None:
        ids = parse_ids(a.ids)
    elif a.ids_file:
        with open(a.ids_file) as f:
            ids = parse_ids(f.read())
    elif a.reference_ids:
        with open(os.path.join(a.model_dir, "reference.json")) as f:
            ids = json.load(f)["token_ids"]
    else:
        with open(a.text_file, encoding="utf-8") as f:
            ids = tokenize_text(a.model_dir, f.read(), a.max_tokens)
    if not ids:
        raise SystemExit("no token ids")
    if not a.out and not a.check:
        raise SystemExit("nothing to do: give -o OUT and/or --check")
    t0 = time.time()
    model = Reference(a.model_dir, torch.float64 if a.dtype == "float64" else torch.float32)
    t1 = time.time()
    logits = model.forward(ids)
    t2 = time.time()
    if a.out:
        logits.to(torch.float32).numpy().astype("<f4").tofile(a.out)
    rc = 0
    if a.check:
        print(f"{model.arch}: load {t1 - t0:.2f}s forward {t2 - t1:.2f}s "
              f"logits [{logits.shape[0]}][{logits.shape[1]}] {a.dtype}", file=sys.stderr)
        rc = check_report(a.model_dir, ids, logits)
    return rc


if __name__ == "__main__":
    sys.exit(main())
