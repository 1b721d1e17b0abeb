"""Minimal safetensors reader/writer for Tessera's interop tests.

Only the Debian python3-torch and numpy are available (no `safetensors`
package), so this implements the format directly:

    u64 little-endian N | N bytes of JSON header | tensor data

The header maps each tensor name to {"dtype", "shape", "data_offsets":
[begin, end]} (offsets relative to the end of the header) plus an optional
"__metadata__" dict of strings.  Sharded checkpoints add
model.safetensors.index.json whose "weight_map" names the shard per tensor.

Reading returns torch tensors in their stored dtype where torch has one.
8-bit floats are decoded to float32 when this torch lacks float8 types
(torch 1.13 in Debian has none); unsigned 16/32/64-bit integers are widened
or bit-reinterpreted into the signed types torch 1.13 has.
"""
import json
import os
import struct

import numpy as np
import torch

# safetensors dtype -> (element size, numpy dtype used to read the raw bytes)
_RAW = {
    "F64": (8, "<f8"), "F32": (4, "<f4"), "F16": (2, "<f2"), "BF16": (2, "<i2"),
    "I64": (8, "<i8"), "I32": (4, "<i4"), "I16": (2, "<i2"), "I8": (1, "i1"),
    "U8": (1, "u1"), "BOOL": (1, "u1"), "U16": (2, "<u2"), "U32": (4, "<u4"),
    "U64": (8, "<u8"), "F8_E4M3": (1, "u1"), "F8_E5M2": (1, "u1"),
    "F8_E8M0": (1, "u1"),
}

_HAS_F8 = hasattr(torch, "float8_e4m3fn")
MAX_HEADER = 100 * 1024 * 1024  # same cap the reference implementation uses


def _f8_table(exp_bits, man_bits, bias, fn):
    """float32 value of every byte for an 8-bit float format.

    fn=True is the "finite" E4M3FN variant: no infinities, only S.1111.111 is
    NaN.  fn=False is IEEE-like (E5M2): all-ones exponent is inf/NaN.
    """
    out = np.zeros(256, dtype=np.float32)
    emax = (1 << exp_bits) - 1
    for b in range(256):
        sign = -1.0 if b & 0x80 else 1.0
        e = (b >> man_bits) & emax
        m = b & ((1 << man_bits) - 1)
        if fn and e == emax and m == (1 << man_bits) - 1:
            v = float("nan")
        elif not fn and e == emax:
            v = float("inf") if m == 0 else float("nan")
        elif e == 0:
            v = (m / (1 << man_bits)) * 2.0 ** (1 - bias)
        else:
            v = (1 + m / (1 << man_bits)) * 2.0 ** (e - bias)
        out[b] = sign * v
    return out


_E4M3 = _f8_table(4, 3, 7, True)
_E5M2 = _f8_table(5, 2, 15, False)


def _decode(dtype, raw, shape):
    """raw: numpy array of the stored element type (flat) -> torch tensor."""
    if dtype == "BF16":
        return torch.from_numpy(raw.copy()).view(torch.bfloat16).reshape(shape)
    if dtype == "BOOL":
        return torch.from_numpy(raw != 0).reshape(shape)
    if dtype in ("F8_E4M3", "F8_E5M2"):
        if _HAS_F8:
            td = torch.float8_e4m3fn if dtype == "F8_E4M3" else torch.float8_e5m2
            return torch.from_numpy(raw.copy()).view(td).reshape(shape)
        table = _E4M3 if dtype == "F8_E4M3" else _E5M2
        return torch.from_numpy(table[raw]).reshape(shape)
    if dtype == "F8_E8M0":
        # Exponent-only scale (MX formats): 2^(x-127), 0xFF is NaN.
        v = np.ldexp(np.float32(1.0), raw.astype(np.int32) - 127).astype(np.float32)
        v[raw == 0xFF] = np.nan
        return torch.from_numpy(v).reshape(shape)
    if dtype == "U16":
        return torch.from_numpy(raw.astype(np.int32)).reshape(shape)
    if dtype == "U32":
        return torch.from_numpy(raw.astype(np.int64)).reshape(shape)
    if dtype == "U64":
        return torch.from_numpy(raw.view(np.int64).copy()).reshape(shape)
    return torch.from_numpy(raw.astype(raw.dtype.newbyteorder("="))).reshape(shape)


def read_header(path):
    """Return (tensor header dict, metadata dict, absolute data start)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            raise ValueError(f"{path}: header length {n} exceeds {MAX_HEADER}")
        blob = f.read(n)
        if len(blob) != n:
            raise ValueError(f"{path}: header truncated ({len(blob)} of {n} bytes)")
    hdr = json.loads(blob.decode("utf-8"))
    meta = hdr.pop("__metadata__", None) or {}
    return hdr, meta, 8 + n


def load_file(path, names=None):
    """Load tensors (all, or those in `names`) from one .safetensors file."""
    hdr, _, start = read_header(path)
    size = os.path.getsize(path)
    out = {}
    with open(path, "rb") as f:
        for name in sorted(hdr):
            if names is not None and name not in names:
                continue
            info = hdr[name]
            dt = info["dtype"]
            if dt not in _RAW:
                raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
            esz, npdt = _RAW[dt]
            shape = [int(s) for s in info["shape"]]
            b, e = info["data_offsets"]
            count = int(np.prod(shape)) if shape else 1
            if e - b != count * esz or start + e > size or b > e:
                raise ValueError(
                    f"{path}: tensor {name}: data_offsets [{b},{e}] do not fit "
                    f"shape {shape} x {esz} bytes in a {size}-byte file")
            f.seek(start + b)
            raw = np.frombuffer(f.read(e - b), dtype=npdt)
            out[name] = _decode(dt, raw, shape)
    return out


def checkpoint_files(model_dir):
    """Shard files of a checkpoint folder (index-driven when sharded)."""
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        return [os.path.join(model_dir, s) for s in sorted(set(wm.values()))]
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(single):
        return [single]
    shards = sorted(p for p in os.listdir(model_dir) if p.endswith(".safetensors"))
    if not shards:
        raise FileNotFoundError(f"{model_dir}: no .safetensors files")
    return [os.path.join(model_dir, s) for s in shards]


def load_dir(model_dir):
    """All tensors of a (possibly sharded) checkpoint folder."""
    out = {}
    for p in checkpoint_files(model_dir):
        for k, v in load_file(p).items():
            if k in out:
                raise ValueError(f"{p}: tensor {k} also present in another shard")
            out[k] = v
    return out


class Raw:
    """Pre-encoded tensor for save_file: dtype string, shape, raw bytes.

    Lets callers write formats torch cannot hold (F8 on torch 1.13, U16...).
    """

    def __init__(self, dtype, shape, data):
        self.dtype, self.shape, self.data = dtype, list(shape), bytes(data)


_TORCH_TO_ST = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
    torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32",
    torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}
if _HAS_F8:
    _TORCH_TO_ST[torch.float8_e4m3fn] = "F8_E4M3"
    _TORCH_TO_ST[torch.float8_e5m2] = "F8_E5M2"


def _encode(t):
    if isinstance(t, Raw):
        return t.dtype, t.shape, t.data
    if isinstance(t, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(t))
    t = t.detach().contiguous().cpu()
    dt = _TORCH_TO_ST.get(t.dtype)
    if dt is None:
        raise ValueError(f"cannot store torch dtype {t.dtype}")
    if t.dtype == torch.bfloat16:
        arr = t.view(torch.int16).numpy()
    elif dt.startswith("F8"):
        arr = t.view(torch.uint8).numpy()
    else:
        arr = t.numpy()
    return dt, list(t.shape), arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def save_file(tensors, path, metadata=None):
    """Write {name: tensor} as safetensors, names sorted, data in name order.

    The header is space-padded to a multiple of 8 so data starts aligned,
    as the reference writer does.
    """
    meta = {"format": "pt"}
    if metadata:
        meta.update({str(k): str(v) for k, v in metadata.items()})
    hdr = {"__metadata__": meta}
    blobs = []
    off = 0
    for name in sorted(tensors):
        dt, shape, data = _encode(tensors[name])
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    js = json.dumps(hdr, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for b in blobs:
            f.write(b)


def save_sharded(tensors, model_dir, n_shards):
    """Write model-0000i-of-0000n.safetensors shards plus the HF index."""
    names = sorted(tensors)
    n_shards = min(n_shards, len(names))
    if n_shards <= 1:
        save_file(tensors, os.path.join(model_dir, "model.safetensors"))
        return
    per = -(-len(names) // n_shards)
    weight_map = {}
    total = 0
    for i in range(n_shards):
        part = names[i * per:(i + 1) * per]
        fname = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        sub = {k: tensors[k] for k in part}
        save_file(sub, os.path.join(model_dir, fname))
        for k in part:
            weight_map[k] = fname
            total += len(_encode(tensors[k])[2])
    with open(os.path.join(model_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
                  f, indent=2, sort_keys=True)
        f.write("\n")
