#!/usr/bin/env python3
"""Writes PyTorch checkpoints for the torch reader's tests, with a manifest of
what PyTorch itself says they hold.

  make_torch_ckpt.py random OUTDIR [--seed N]
      Random state dicts in every serialization torch.save has (zip, legacy,
      pickle protocols 2 and 4, a plain pickle.dumps, a deflate re-zip, a
      training checkpoint, sharded .bin + index) with random dtypes, shapes,
      views (slices, transposes, steps, expand), shared storages, 0-d and empty
      tensors. OUTDIR/MANIFEST.json lists, per file, every tensor's dtype,
      shape and the sha256 of its C-contiguous bytes (same schema as
      ../shared/fixtures/torch/MANIFEST.json).

  make_torch_ckpt.py repack HF_DIR OUTDIR [--shards N] [--legacy] [--wrap KEY]
      The HF model's pytorch_model.bin written again as N shards with
      pytorch_model.bin.index.json (or one pytorch_model.bin), optionally in
      the legacy format and/or as a training checkpoint {KEY: state_dict,
      "optimizer": ...}; config and tokenizer files are copied beside it.

  make_torch_ckpt.py meta HF_DIR OUTDIR [--shards N]
      Meta's original layout of a Hugging Face Llama checkpoint:
      consolidated.0K.pth tensor-parallel slices + params.json +
      tokenizer.model, with q/k rows back in Meta's (interleaved RoPE) order.
      OUTDIR/MANIFEST.json lists the merged tensors under the key ".".

  make_torch_ckpt.py compare-gguf TESSERA A.gguf B.gguf
      Exits non-zero unless both GGUFs hold the same tensors (names, types,
      shapes, bytes); metadata may differ. Uses `tessera inspect --json`.

Only trusted files (our own test models) are loaded with torch.load here.
"""
import argparse
import hashlib
import io
import json
import os
import pickle
import random
import shutil
import zipfile

import torch

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.int16,
          torch.int32, torch.int64, torch.uint8, torch.bool]
NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16",
         torch.float64: "float64", torch.int8: "int8", torch.int16: "int16", torch.int32: "int32",
         torch.int64: "int64", torch.uint8: "uint8", torch.bool: "bool"}


def rand_tensor(rng, dtype, shape):
    g = torch.Generator().manual_seed(rng.randrange(1 << 30))
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=g, dtype=torch.float64) * 3).to(dtype)
    info = torch.iinfo(dtype)
    return torch.randint(max(info.min, -1000), min(info.max, 1000) + 1, shape, generator=g, dtype=torch.int64).to(dtype)


def describe(t):
    flat = torch.empty(t.shape, dtype=t.dtype).copy_(t.detach()).reshape(-1)  # fresh C-order strides
    flat = flat.to(torch.uint8) if flat.dtype == torch.bool else flat
    data = flat.view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return {"dtype": NAMES[t.dtype], "shape": list(t.shape), "sha256": hashlib.sha256(data).hexdigest()}


def flatten(obj, prefix, out):
    """Tensor leaves of nested dicts/lists with dotted names, as the reader names them."""
    if isinstance(obj, torch.Tensor):
        out[prefix] = describe(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            flatten(v, f"{prefix}.{i}" if prefix else str(i), out)


def random_views(rng, n):
    """n tensors of random dtype and shape, many of them views of shared storages."""
    sd = {}
    for i in range(n):
        dtype = rng.choice(DTYPES)
        kind = rng.choice(["plain", "plain", "slice", "transpose", "step", "expand", "tied", "scalar", "empty", "4d"])
        shape = [rng.randint(1, 9) for _ in range(rng.randint(1, 3))]
        base = rand_tensor(rng, dtype, shape)
        if kind == "slice" and shape[0] > 1:
            t = base[rng.randint(0, shape[0] - 1):]
        elif kind == "transpose" and len(shape) >= 2:
            t = base.transpose(0, len(shape) - 1)
        elif kind == "step":
            t = base[::2]
        elif kind == "expand":
            t = rand_tensor(rng, dtype, [1, shape[-1]]).expand(rng.randint(2, 4), shape[-1])
        elif kind == "tied" and any(v.is_contiguous() and v.numel() for v in sd.values()):
            other = sd[rng.choice(sorted(k for k, v in sd.items() if v.is_contiguous() and v.numel()))]
            t = other.view(-1)[other.numel() // 2:]
        elif kind == "scalar":
            t = rand_tensor(rng, dtype, [])
        elif kind == "empty":
            t = rand_tensor(rng, dtype, [0, shape[-1]])
        elif kind == "4d":
            t = rand_tensor(rng, dtype, [2, 3, 2, rng.randint(1, 5)]).permute(0, 2, 1, 3)
        else:
            t = base
        sd[f"t{i}.{kind}"] = t
    sd["param.weight"] = torch.nn.Parameter(torch.randn(3, 4), requires_grad=False)
    return sd


def write_random(out, seed):
    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    manifest = {"hostile": []}

    def save(name, obj, fmt, manifest_obj=None, **kw):
        torch.save(obj, os.path.join(out, name), **kw)
        tensors = {}
        flatten(manifest_obj if manifest_obj is not None else obj, "", tensors)
        manifest[name] = {"format": fmt, "tensors": tensors}

    for i in range(3):
        save(f"zip_{i}.pt", random_views(rng, 12), "zip")
        save(f"legacy_{i}.pt", random_views(rng, 12), "legacy", _use_new_zipfile_serialization=False)
    save("zip_proto4.pt", random_views(rng, 8), "zip", pickle_protocol=4)
    save("legacy_proto4.pt", random_views(rng, 8), "legacy", pickle_protocol=4,
         _use_new_zipfile_serialization=False)
    # a training checkpoint: the state dict under "model", optimizer state beside it
    model = {"tok_embeddings.weight": torch.randn(7, 4), "layers.0.attention.wq.weight": torch.randn(4, 4)}
    ckpt = {"model": model, "optimizer": {"state": {0: {"exp_avg": torch.randn(7, 4)}}, "param_groups": [{"lr": 1e-3}]},
            "iter_num": 5, "config": {"name": "x", "betas": (0.9, 0.95)}}
    save("train.pt", ckpt, "zip", manifest_obj={"model": model})
    # plain pickles: storages travel as torch.storage._load_from_bytes (protocol 2 wraps bytes in _codecs.encode)
    for proto in (2, 4):
        sd = random_views(rng, 6)
        name = f"plain_proto{proto}.pkl"
        with open(os.path.join(out, name), "wb") as f:
            pickle.dump(sd, f, protocol=proto)
        tensors = {}
        flatten(sd, "", tensors)
        manifest[name] = {"format": "pickle", "tensors": tensors}
    # the same zip re-compressed with deflate: entries are read through libarchive
    src = os.path.join(out, "zip_0.pt")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(os.path.join(out, "deflated.pt"), "w",
                                                       zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, zin.read(item.filename))
    manifest["deflated.pt"] = dict(manifest["zip_0.pt"], format="zip-deflated")
    # sharded .bin with an index (HF's layout)
    shard_dir = os.path.join(out, "sharded")
    os.makedirs(shard_dir, exist_ok=True)
    sd = random_views(rng, 10)
    names = sorted(sd)
    half = len(names) // 2
    weight_map = {}
    for k, part in enumerate((names[:half], names[half:])):
        fname = f"pytorch_model-0000{k + 1}-of-00002.bin"
        torch.save({n: sd[n] for n in part}, os.path.join(shard_dir, fname))
        weight_map.update({n: fname for n in part})
    with open(os.path.join(shard_dir, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=1)
    tensors = {}
    flatten(sd, "", tensors)
    manifest["sharded/pytorch_model.bin.index.json"] = {"format": "zip-sharded", "tensors": tensors}
    with open(os.path.join(out, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)


def write_repack(hf_dir, out, n_shards, legacy, wrap):
    os.makedirs(out, exist_ok=True)
    sd = torch.load(os.path.join(hf_dir, "pytorch_model.bin"), map_location="cpu")  # our own trusted test model
    for f in os.listdir(hf_dir):
        if f.endswith(".json") or f == "tokenizer.model":
            shutil.copy(os.path.join(hf_dir, f), out)
    names = list(sd)
    kw = {"_use_new_zipfile_serialization": not legacy}

    def dump(obj, path):
        if wrap:
            obj = {wrap: obj, "optimizer": {"state": {}, "param_groups": [{"lr": 3e-4}]}, "iter_num": 1}
        torch.save(obj, path, **kw)

    if n_shards == 1:
        dump(sd, os.path.join(out, "pytorch_model.bin"))
        return
    weight_map = {}
    per = (len(names) + n_shards - 1) // n_shards
    for k in range(n_shards):
        fname = f"pytorch_model-{k + 1:05d}-of-{n_shards:05d}.bin"
        part = names[k * per:(k + 1) * per]
        dump({n: sd[n] for n in part}, os.path.join(out, fname))
        weight_map.update({n: fname for n in part})
    with open(os.path.join(out, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=1)


def unpermute(w, n_heads):
    """HF rotate-half rows -> Meta's interleaved rows (inverse of HF's conversion permute)."""
    d1, d2 = w.shape
    return w.view(n_heads, 2, d1 // n_heads // 2, d2).transpose(1, 2).reshape(d1, d2)


def write_meta(hf_dir, out, n_shards):
    os.makedirs(out, exist_ok=True)
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    sd = torch.load(os.path.join(hf_dir, "pytorch_model.bin"), map_location="cpu")  # our own trusted test model
    nh, nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    meta = {"tok_embeddings.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"],
            "output.weight": sd["lm_head.weight"]}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        q = f"layers.{i}."
        meta[q + "attention.wq.weight"] = unpermute(sd[p + "self_attn.q_proj.weight"], nh)
        meta[q + "attention.wk.weight"] = unpermute(sd[p + "self_attn.k_proj.weight"], nkv)
        meta[q + "attention.wv.weight"] = sd[p + "self_attn.v_proj.weight"]
        meta[q + "attention.wo.weight"] = sd[p + "self_attn.o_proj.weight"]
        meta[q + "feed_forward.w1.weight"] = sd[p + "mlp.gate_proj.weight"]
        meta[q + "feed_forward.w2.weight"] = sd[p + "mlp.down_proj.weight"]
        meta[q + "feed_forward.w3.weight"] = sd[p + "mlp.up_proj.weight"]
        meta[q + "attention_norm.weight"] = sd[p + "input_layernorm.weight"]
        meta[q + "ffn_norm.weight"] = sd[p + "post_attention_layernorm.weight"]
    axis = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "wo": 1, "w2": 1}

    def split_dim(name, t):
        if t.dim() == 1:
            return None
        if name == "output.weight":
            return 0
        if name == "tok_embeddings.weight":
            return 1  # Llama 2 ParallelEmbedding
        return axis[name.split(".")[-2]]

    for k in range(n_shards):
        shard = {}
        for name, t in meta.items():
            d = split_dim(name, t)
            shard[name] = t.clone() if d is None else t.chunk(n_shards, dim=d)[k].clone()
        torch.save(shard, os.path.join(out, f"consolidated.{k:02d}.pth"))
    params = {"dim": cfg["hidden_size"], "n_layers": cfg["num_hidden_layers"], "n_heads": nh, "n_kv_heads": nkv,
              "vocab_size": cfg["vocab_size"], "norm_eps": cfg["rms_norm_eps"],
              "rope_theta": cfg.get("rope_theta", 10000.0), "max_seq_len": cfg.get("max_position_embeddings", 2048),
              "hidden_dim": cfg["intermediate_size"]}
    with open(os.path.join(out, "params.json"), "w") as f:
        json.dump(params, f, indent=1)
    shutil.copy(os.path.join(hf_dir, "tokenizer.model"), out)
    tensors = {}
    flatten(meta, "", tensors)
    with open(os.path.join(out, "MANIFEST.json"), "w") as f:
        json.dump({"hostile": [], ".": {"format": "consolidated", "tensors": tensors}}, f, indent=1, sort_keys=True)


def compare_gguf(tessera, a, b):
    import subprocess
    import sys

    def load(path):
        out = subprocess.run([tessera, "inspect", path, "--json"], check=True, capture_output=True, text=True).stdout
        return {t["name"]: t for t in json.loads(out)["tensors"]}

    ta, tb = load(a), load(b)
    if set(ta) != set(tb):
        sys.exit(f"tensor names differ: {sorted(set(ta) ^ set(tb))}")
    fa, fb = open(a, "rb").read(), open(b, "rb").read()
    bad = []
    for n in sorted(ta):
        x, y = ta[n], tb[n]
        if (x["type"], x["shape"], x["bytes"]) != (y["type"], y["shape"], y["bytes"]):
            bad.append(f"{n}: {x['type']} {x['shape']} vs {y['type']} {y['shape']}")
        elif fa[x["offset"]:x["offset"] + x["bytes"]] != fb[y["offset"]:y["offset"] + y["bytes"]]:
            bad.append(f"{n}: data differs")  # inspect reports absolute file offsets
    if bad:
        sys.exit("\n".join(bad))
    print(f"{len(ta)} tensors identical (names, types, shapes, bytes)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("random")
    r.add_argument("out")
    r.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("repack")
    p.add_argument("hf_dir")
    p.add_argument("out")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--legacy", action="store_true")
    p.add_argument("--wrap")
    c = sub.add_parser("compare-gguf")
    c.add_argument("tessera")
    c.add_argument("a")
    c.add_argument("b")
    m = sub.add_parser("meta")
    m.add_argument("hf_dir")
    m.add_argument("out")
    m.add_argument("--shards", type=int, default=2)
    a = ap.parse_args()
    if a.cmd == "random":
        write_random(a.out, a.seed)
    elif a.cmd == "compare-gguf":
        compare_gguf(a.tessera, a.a, a.b)
    elif a.cmd == "repack":
        write_repack(a.hf_dir, a.out, a.shards, a.legacy, a.wrap)
    else:
        write_meta(a.hf_dir, a.out, a.shards)


if __name__ == "__main__":
    main()
