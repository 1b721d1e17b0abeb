#!/usr/bin/python3
"""Write a small random DeepseekV3ForCausalLM checkpoint in the release layout.

    make_deepseek.py -o DIR [--tokenizer-from TOKDIR | --tiktoken]
                     [--layers 3] [--dense 1] [--hidden 64] [--heads 4]
                     [--q-lora 24 | --q-lora 0 (null)] [--kv-lora 32]
                     [--nope 16] [--rope 8] [--v 24] [--inter 96]
                     [--moe-inter 16] [--experts 8] [--topk 2]
                     [--n-group 2] [--topk-group 1] [--shared 1]
                     [--block 128,128 | --block none (BF16 release)]
                     [--mtp] [--shards 2] [--seed 0]
                     [--break missing-scale|scale-shape|method|scale-orphan]

Mirrors deepseek-ai/DeepSeek-V3 (and Kimi K2, same class): config.json with
the release's keys; every Linear weight of the decoder layers stored as
F8_E4M3 with an F32 `<name>_scale_inv` of shape [ceil(rows/br), ceil(cols/bc)]
(one scale per block, edge blocks partial), embeddings / norms / router in
BF16, e_score_correction_bias in F32; sharded safetensors with an index.
--mtp adds the multi-token-prediction layer model.layers.<layers>.* that the
release ships and converters drop.  --break writes a deliberately broken
checkpoint for the converter's error paths.

--tiktoken writes a Kimi K2 style tokenizer instead of copying one:
tiktoken.model (base64 token + rank per line) trained here as byte-level BPE
on a small English text, single bytes at shuffled ranks, and a
tokenizer_config.json with Kimi's TikTokenTokenizer class and named special
tokens after the base vocabulary (vocab_size = base + 256, as in the release).
`make_deepseek.py --encode DIR TEXTFILE` prints the ids tiktoken's algorithm
gives (ASCII text: Kimi's regex with ASCII classes, then rank-ordered merges);
`make_deepseek.py --check-vocab DIR GGUF` compares the GGUF's tokens, types and
merges with what llama.cpp's converter builds from DIR's tiktoken.model.
"""
import argparse
import base64
import json
import math
import os
import re
import shutil
import sys

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

# E4M3FN bytes 0x00..0x7e hold the non-negative finite values in increasing order
_E4M3_POS = st_io._E4M3[:127].astype(np.float64)


def encode_e4m3(x):
    """float array -> E4M3FN bytes (nearest value; exact rounding is not needed,
    every reader decodes the bytes written here)."""
    a = np.abs(x.astype(np.float64)).ravel()
    idx = np.clip(np.searchsorted(_E4M3_POS, a), 1, len(_E4M3_POS) - 1)
    codes = np.where(a - _E4M3_POS[idx - 1] <= _E4M3_POS[idx] - a, idx - 1, idx).astype(np.uint8)
    codes |= (np.signbit(x.ravel()).astype(np.uint8) << 7)
    return codes.tobytes()


def fp8_weight(w, block):
    """w float [rows, cols] -> (Raw F8_E4M3 weight, F32 scale_inv [ceil, ceil])."""
    rows, cols = w.shape
    br, bc = block
    nr, nc = -(-rows // br), -(-cols // bc)
    scale = np.zeros((nr, nc), dtype=np.float32)
    q = np.zeros_like(w, dtype=np.float64)
    for i in range(nr):
        for j in range(nc):
            blk = w[i * br:(i + 1) * br, j * bc:(j + 1) * bc]
            s = float(np.abs(blk).max()) / 448.0 or 1.0
            scale[i, j] = s
            q[i * br:(i + 1) * br, j * bc:(j + 1) * bc] = blk / np.float32(s)
    return st_io.Raw("F8_E4M3", [rows, cols], encode_e4m3(q)), scale


class Writer:
    def __init__(self, a, rng):
        self.a, self.rng, self.t = a, rng, {}

    def bf16(self, name, arr):
        import torch
        self.t[name] = torch.from_numpy(np.asarray(arr, dtype=np.float32)).to(torch.bfloat16)

    def linear(self, name, rows, cols, gain=1.0, fp8=True):
        w = self.rng.standard_normal((rows, cols)) * (gain / math.sqrt(cols))
        if self.a.block is None or not fp8:
            self.bf16(name, w)
            return
        raw, scale = fp8_weight(w, self.a.block)
        self.t[name] = raw
        self.t[name + "_scale_inv"] = scale

    def norm(self, name, n):
        self.bf16(name, 1.0 + 0.1 * self.rng.standard_normal(n))


def decoder_layer(wr, a, i):
    p = f"model.layers.{i}."
    D, H = a.hidden, a.heads
    wr.norm(p + "input_layernorm.weight", D)
    wr.norm(p + "post_attention_layernorm.weight", D)
    qd = a.nope + a.rope
    if a.q_lora:
        wr.linear(p + "self_attn.q_a_proj.weight", a.q_lora, D)
        wr.norm(p + "self_attn.q_a_layernorm.weight", a.q_lora)
        wr.linear(p + "self_attn.q_b_proj.weight", H * qd, a.q_lora)
    else:
        wr.linear(p + "self_attn.q_proj.weight", H * qd, D)
    wr.linear(p + "self_attn.kv_a_proj_with_mqa.weight", a.kv_lora + a.rope, D)
    wr.norm(p + "self_attn.kv_a_layernorm.weight", a.kv_lora)
    wr.linear(p + "self_attn.kv_b_proj.weight", H * (a.nope + a.v), a.kv_lora)
    wr.linear(p + "self_attn.o_proj.weight", D, H * a.v)
    if i < a.dense:
        wr.linear(p + "mlp.gate_proj.weight", a.inter, D)
        wr.linear(p + "mlp.up_proj.weight", a.inter, D)
        wr.linear(p + "mlp.down_proj.weight", D, a.inter)
        return
    wr.bf16(p + "mlp.gate.weight", wr.rng.standard_normal((a.experts, D)) * (2.0 / math.sqrt(D)))
    # non-negative, as the fixture's: HF's masked_fill(0.0) and the release's -inf then agree
    wr.t[p + "mlp.gate.e_score_correction_bias"] = wr.rng.uniform(0, 0.3, a.experts).astype(np.float32)
    for e in range(a.experts):
        q = f"{p}mlp.experts.{e}."
        wr.linear(q + "gate_proj.weight", a.moe_inter, D)
        wr.linear(q + "up_proj.weight", a.moe_inter, D)
        wr.linear(q + "down_proj.weight", D, a.moe_inter)
    if a.shared:
        s = p + "mlp.shared_experts."
        wr.linear(s + "gate_proj.weight", a.moe_inter * a.shared, D)
        wr.linear(s + "up_proj.weight", a.moe_inter * a.shared, D)
        wr.linear(s + "down_proj.weight", D, a.moe_inter * a.shared)


def config(a, vocab):
    c = {
        "architectures": ["DeepseekV3ForCausalLM"],
        "attention_bias": False, "attention_dropout": 0.0,
        "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config",
                     "AutoModel": "modeling_deepseek.DeepseekV3Model",
                     "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM"},
        "bos_token_id": a.bos, "eos_token_id": a.eos, "ep_size": 1,
        "first_k_dense_replace": a.dense, "hidden_act": "silu", "hidden_size": a.hidden,
        "initializer_range": 0.02, "intermediate_size": a.inter, "kv_lora_rank": a.kv_lora,
        "max_position_embeddings": 163840, "model_type": "kimi_k2" if a.tiktoken else "deepseek_v3",
        "moe_intermediate_size": a.moe_inter, "moe_layer_freq": 1, "n_group": a.n_group,
        "n_routed_experts": a.experts, "n_shared_experts": a.shared, "norm_topk_prob": True,
        "num_attention_heads": a.heads, "num_experts_per_tok": a.topk, "num_hidden_layers": a.layers,
        "num_key_value_heads": a.heads, "num_nextn_predict_layers": 1 if a.mtp else 0,
        "q_lora_rank": a.q_lora or None, "qk_nope_head_dim": a.nope, "qk_rope_head_dim": a.rope,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": a.yarn_factor, "mscale": 1.0,
                         "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096, "type": "yarn"},
        "rope_theta": 50000.0 if a.tiktoken else 10000, "routed_scaling_factor": a.routed_scale,
        "scoring_func": "sigmoid", "tie_word_embeddings": False, "topk_group": a.topk_group,
        "topk_method": "noaux_tc", "torch_dtype": "bfloat16", "transformers_version": "4.48.3",
        "use_cache": True, "v_head_dim": a.v, "vocab_size": vocab,
    }
    if a.block is not None:
        c["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                    "weight_block_size": list(a.block)}
    if a.brk == "method":
        c["quantization_config"] = {"quant_method": "awq", "bits": 4}
    return c


def make_model(a):
    os.makedirs(a.out, exist_ok=True)
    if a.tiktoken:
        vocab = make_tiktoken(a.out, a.seed)
        a.bos, a.eos = vocab - 256, vocab - 255  # Kimi: [BOS], [EOS] follow the base vocabulary
    else:
        vocab = copy_tokenizer(a.tokenizer_from, a.out)
    rng = np.random.Generator(np.random.PCG64(a.seed))
    wr = Writer(a, rng)
    wr.bf16("model.embed_tokens.weight", rng.standard_normal((vocab, a.hidden)))
    wr.norm("model.norm.weight", a.hidden)
    wr.bf16("lm_head.weight", rng.standard_normal((vocab, a.hidden)) * (2.0 / math.sqrt(a.hidden)))
    for i in range(a.layers):
        decoder_layer(wr, a, i)
    if a.mtp:  # the release's MTP layer: a full MoE decoder layer plus its own heads
        n = a.layers
        decoder_layer(wr, argparse.Namespace(**{**vars(a), "dense": 0}), n)
        p = f"model.layers.{n}."
        wr.t[p + "embed_tokens.weight"] = wr.t["model.embed_tokens.weight"]
        wr.t[p + "shared_head.head.weight"] = wr.t["lm_head.weight"]
        wr.norm(p + "enorm.weight", a.hidden)
        wr.norm(p + "hnorm.weight", a.hidden)
        wr.norm(p + "shared_head.norm.weight", a.hidden)
        wr.bf16(p + "eh_proj.weight", rng.standard_normal((a.hidden, 2 * a.hidden)) / math.sqrt(2 * a.hidden))
    if a.brk == "missing-scale":
        del wr.t["model.layers.0.self_attn.kv_b_proj.weight_scale_inv"]
    elif a.brk == "scale-shape":
        s = wr.t["model.layers.0.self_attn.kv_b_proj.weight_scale_inv"]
        wr.t["model.layers.0.self_attn.kv_b_proj.weight_scale_inv"] = np.concatenate([s, s], axis=0)
    elif a.brk == "scale-orphan":
        wr.t["model.layers.0.self_attn.k_proj.weight_scale_inv"] = np.ones((1, 1), dtype=np.float32)
    st_io.save_sharded(wr.t, a.out, a.shards)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config(a, vocab), f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"_from_model_config": True, "bos_token_id": a.bos, "eos_token_id": a.eos,
                   "transformers_version": "4.48.3"}, f, indent=2)


def copy_tokenizer(src, dst):
    for n in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if os.path.exists(os.path.join(src, n)):
            shutil.copy(os.path.join(src, n), os.path.join(dst, n))
    path = os.path.join(src, "tokenizer.model")
    if os.path.exists(path):
        import sentencepiece as spm
        return spm.SentencePieceProcessor(model_file=path).get_piece_size()
    with open(os.path.join(src, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    ids = list(tok["model"]["vocab"].values()) + [t["id"] for t in tok.get("added_tokens", [])]
    return max(ids) + 1


# ------------------------------------------------------- tiktoken (Kimi K2) ----

# Kimi K2's pat_str (tokenization_kimi.py) with ASCII classes: for ASCII text
# \p{Han} never matches, \p{L} is [A-Za-z], \p{Lu} [A-Z], \p{Ll} [a-z], \p{N} [0-9].
_CONTR = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
KIMI_ASCII_PAT = re.compile("|".join([
    r"[^\r\nA-Za-z0-9]?[A-Z]*[a-z]+" + _CONTR,
    r"[^\r\nA-Za-z0-9]?[A-Z]+[a-z]*" + _CONTR,
    r"[0-9]{1,3}",
    r" ?[^\sA-Za-z0-9]+[\r\n]*",
    r"\s*[\r\n]+",
    r"\s+(?!\S)",
    r"\s+",
]))

CORPUS = (
    "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore, and "
    "the shells she sells are surely seashells. Peter Piper picked a peck of pickled peppers; "
    "how many pickled peppers did Peter Piper pick? It's 2024 and we're testing 123 numbers, "
    "they'll see I'd rather THE END. Tokenizers split text into pieces: words, numbers, spaces "
    "and punctuation!! Don't worry, you've got this.\n\nNew paragraph with    several   spaces\n"
)
SPECIAL_NAMES = {0: "[BOS]", 1: "[EOS]", 2: "<|im_end|>", 3: "<|im_user|>", 4: "<|im_assistant|>",
                 6: "<|start_header_id|>", 7: "<|end_header_id|>", 9: "[EOT]", 10: "<|im_system|>",
                 15: "<|im_middle|>", 254: "[UNK]", 255: "[PAD]"}


def bpe_ranks_encode(ranks, piece):
    """tiktoken's byte-pair merge: repeatedly merge the adjacent pair whose
    concatenation has the lowest rank."""
    parts = [bytes([b]) for b in piece]
    while len(parts) > 1:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return [ranks[p] for p in parts]


def make_tiktoken(out, seed, n_merges=400):
    rng = np.random.Generator(np.random.PCG64(seed + 1))
    order = rng.permutation(256)  # single bytes at shuffled ranks, as in real tiktoken files
    ranks = {bytes([int(b)]): r for r, b in enumerate(order)}
    words = [list(bytes([b]) for b in w.encode()) for w in KIMI_ASCII_PAT.findall(CORPUS * 3)]
    while len(ranks) < 256 + n_merges:
        pairs = {}
        for w in words:
            for x, y in zip(w, w[1:]):
                pairs[(x, y)] = pairs.get((x, y), 0) + 1
        if not pairs:
            break
        (x, y), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        new = x + y
        if new not in ranks:
            ranks[new] = len(ranks)
        for w in words:
            i = 0
            while i < len(w) - 1:
                if w[i] == x and w[i + 1] == y:
                    w[i:i + 2] = [new]
                i += 1
    n_base = len(ranks)
    with open(os.path.join(out, "tiktoken.model"), "w") as f:
        for tok, r in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(f"{base64.b64encode(tok).decode()} {r}\n")
    decoder = {str(n_base + k): {"content": v, "lstrip": False, "normalized": False, "rstrip": False,
                                 "single_word": False, "special": True} for k, v in SPECIAL_NAMES.items()}
    tc = {
        "added_tokens_decoder": decoder,
        "additional_special_tokens": ["<|im_end|>", "<|im_user|>", "<|im_assistant|>", "<|start_header_id|>",
                                      "<|end_header_id|>", "[EOT]", "<|im_system|>", "<|im_middle|>"],
        "auto_map": {"AutoTokenizer": ["tokenization_kimi.TikTokenTokenizer", None]},
        "bos_token": "[BOS]", "clean_up_tokenization_spaces": False, "eos_token": "[EOS]",
        "extra_special_tokens": {}, "model_max_length": 1000000000000000019884624838656,
        "pad_token": "[PAD]", "tokenizer_class": "TikTokenTokenizer", "unk_token": "[UNK]",
        "chat_template": "{% for m in messages %}<|im_{{ m['role'] }}|>{{ m['content'] }}<|im_end|>{% endfor %}",
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(tc, f, indent=2)
    return n_base + 256


def load_tiktoken(path):
    ranks = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                tok, r = line.split()
                ranks[base64.b64decode(tok)] = int(r)
    return ranks


def encode_ascii(model_dir, text):
    ranks = load_tiktoken(os.path.join(model_dir, "tiktoken.model"))
    ids = []
    for piece in KIMI_ASCII_PAT.findall(text):
        ids += bpe_ranks_encode(ranks, piece.encode())
    return ids


def read_gguf_kv(path):
    """The metadata of a GGUF file as {key: value} (arrays as lists)."""
    import struct
    with open(path, "rb") as f:
        data = f.read()
    off = 0

    def take(fmt):
        nonlocal off
        v = struct.unpack_from("<" + fmt, data, off)
        off += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal off
        n = take("Q")
        off += n
        return data[off - n:off].decode("utf-8")

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(scalar[t])

    if data[:4] != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    off = 4
    take("I")
    take("Q")
    kv = {}
    for _ in range(take("Q")):
        k = string()
        kv[k] = value(take("I"))
    return kv


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def expected_kimi_vocab(model_dir):
    """tokens, types, merges as llama.cpp's converter builds them for kimi-k2
    (DeepseekV2Model.set_vocab with QwenModel.bpe / token_bytes_to_string)."""
    enc = bytes_to_unicode()
    ranks = load_tiktoken(os.path.join(model_dir, "tiktoken.model"))

    def text(b):
        return "".join(enc[x] for x in b)

    def bpe(token, max_rank):
        parts = [bytes([b]) for b in token]
        while True:
            best = None
            for i, pair in enumerate(zip(parts[:-1], parts[1:])):
                r = ranks.get(pair[0] + pair[1])
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None or best[0] >= max_rank:
                break
            i = best[1]
            parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]
        return parts

    vocab, merges = {}, []
    for token, rank in ranks.items():
        vocab[text(token)] = rank
        if len(token) > 1:
            m = bpe(token, rank)
            if len(m) == 2:
                merges.append(" ".join(map(text, m)))
    with open(os.path.join(model_dir, "tokenizer_config.json")) as f:
        dec = json.load(f)["added_tokens_decoder"]
    with open(os.path.join(model_dir, "config.json")) as f:
        n_vocab = json.load(f)["vocab_size"]
    n = len(ranks)
    special = {dec.get(str(i), {}).get("content", f"<|reserved_token_{i}|>"): i for i in range(n, n + 256)}
    rev = {i: t for t, i in {**vocab, **special}.items()}
    tokens = [rev.get(i, f"[PAD{i}]") for i in range(n_vocab)]
    types = [3 if i in special.values() else 1 if i in rev else 5 for i in range(n_vocab)]
    return tokens, types, merges


def check_vocab(model_dir, gguf):
    kv = read_gguf_kv(gguf)
    tokens, types, merges = expected_kimi_vocab(model_dir)
    got = (kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"], kv["tokenizer.ggml.merges"])
    for what, w, g in zip(("tokens", "token types", "merges"), (tokens, types, merges), got):
        if w != g:
            bad = next((i for i, (x, y) in enumerate(zip(w, g)) if x != y), min(len(w), len(g)))
            print(f"{what} differ from llama.cpp's converter at {bad}: "
                  f"{w[bad] if bad < len(w) else None!r} != {g[bad] if bad < len(g) else None!r} "
                  f"({len(w)} vs {len(g)})")
            return 1
    if kv["tokenizer.ggml.pre"] != "kimi-k2" or kv["tokenizer.ggml.model"] != "gpt2":
        print(f"pre {kv['tokenizer.ggml.pre']!r} model {kv['tokenizer.ggml.model']!r}")
        return 1
    print(f"vocabulary identical to llama.cpp's converter: {len(tokens)} tokens, {len(merges)} merges")
    return 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--encode":
        with open(sys.argv[3], encoding="ascii") as f:
            print("\n".join(str(i) for i in encode_ascii(sys.argv[2], f.read())))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--check-vocab":
        return check_vocab(sys.argv[2], sys.argv[3])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", required=True)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--tokenizer-from")
    g.add_argument("--tiktoken", action="store_true")
    for k, v in (("layers", 3), ("dense", 1), ("hidden", 64), ("heads", 4), ("q_lora", 24), ("kv_lora", 32),
                 ("nope", 16), ("rope", 8), ("v", 24), ("inter", 96), ("moe_inter", 16), ("experts", 8),
                 ("topk", 2), ("n_group", 2), ("topk_group", 1), ("shared", 1), ("shards", 2), ("seed", 0),
                 ("bos", 1), ("eos", 2)):
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    ap.add_argument("--routed-scale", type=float, default=2.5)
    ap.add_argument("--yarn-factor", type=float, default=40.0)
    ap.add_argument("--block", default="128,128", help="FP8 block rows,cols, or 'none' for a BF16 release")
    ap.add_argument("--mtp", action="store_true")
    ap.add_argument("--break", dest="brk", choices=("missing-scale", "scale-shape", "method", "scale-orphan"))
    a = ap.parse_args()
    a.block = None if a.block == "none" else tuple(int(x) for x in a.block.split(","))
    make_model(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
