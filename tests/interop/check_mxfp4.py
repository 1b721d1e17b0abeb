#!/usr/bin/python3
"""Checks that a gpt-oss GGUF holds the checkpoint's MXFP4 experts bit for bit.

    check_mxfp4.py MODEL_DIR MODEL.gguf

For every layer, blk.N.ffn_{gate,up,down}_exps.weight must be ggml type
MXFP4 (39) with shape [in, out, experts], and its bytes must equal an
independent repack of model.layers.N.mlp.experts.{gate_up,down}_proj_blocks
and _scales: per 32-value block the E8M0 scale byte, then 16 bytes where byte
j holds value j in the low nibble and value j+16 in the high one (the source
holds value 2j in the low nibble of byte j and 2j+1 in the high one); gate =
the even rows of gate_up, up = the odd rows. Prints one line per tensor and
exits 1 on the first difference.
"""
import json
import os
import struct
import sys

import numpy as np

GGML_TYPE_MXFP4 = 39
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def gguf_tensors(path):
    """{name: (type, ne, bytes view)} of a GGUF file (tensor sizes from the next offset)."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    buf = data.tobytes() if data.size < (1 << 26) else bytes(data[: 1 << 26])
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, buf, pos)[0]
        pos += struct.calcsize(fmt)
        return v

    def string():
        nonlocal pos
        n = take("Q")
        s = buf[pos:pos + n]
        pos += n
        return s.decode("utf-8")

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(SCALAR[t])

    if buf[:4] != b"GGUF":
        raise SystemExit(f"{path}: not a GGUF file")
    take("4s")
    take("I")
    n_tensors, n_kv = take("Q"), take("Q")
    align = 32
    for _ in range(n_kv):
        k = string()
        v = value(take("I"))
        if k == "general.alignment":
            align = v
    infos = []
    for _ in range(n_tensors):
        name = string()
        ne = [take("Q") for _ in range(take("I"))]
        infos.append((name, take("I"), ne, take("Q")))
    base = pos + (-pos % align)
    ends = sorted(o for _, _, _, o in infos) + [data.size - base]
    out = {}
    for name, t, ne, off in infos:
        end = min(e for e in ends if e > off)
        out[name] = (t, ne, data[base + off: base + end])
    return out


def mxfp4_sources(model_dir):
    """The U8 *_blocks / *_scales tensors of a safetensors checkpoint folder, read with numpy only (importing
    torch for st_io costs seconds)."""
    out = {}
    for fn in sorted(os.listdir(model_dir)):
        if not fn.endswith(".safetensors"):
            continue
        path = os.path.join(model_dir, fn)
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
        for name, info in hdr.items():
            if name == "__metadata__" or not name.endswith(("_blocks", "_scales")):
                continue
            if info["dtype"] != "U8":
                raise SystemExit(f"{path}: {name}: dtype {info['dtype']}, expected U8")
            b, e = info["data_offsets"]
            out[name] = np.fromfile(path, dtype=np.uint8, count=e - b, offset=8 + n + b).reshape(info["shape"])
    return out


def repack(blocks, scales):
    """[E, R, G, 16] codes + [E, R, G] scales -> [E, R, G * 17] block_mxfp4 bytes."""
    lo, hi = blocks & 0x0F, blocks >> 4
    vals = np.stack((lo, hi), axis=-1).reshape(*blocks.shape[:-1], 32)  # value order
    qs = vals[..., :16] | (vals[..., 16:] << 4)
    return np.concatenate((scales[..., None], qs), axis=-1).reshape(*blocks.shape[:2], -1).astype(np.uint8)


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    model_dir, gguf = sys.argv[1:3]
    w = mxfp4_sources(model_dir)
    t = gguf_tensors(gguf)
    n_checked = 0
    for li in range(10000):
        pre = f"model.layers.{li}.mlp.experts."
        if pre + "down_proj_blocks" not in w:
            break
        gu = repack(w[pre + "gate_up_proj_blocks"], w[pre + "gate_up_proj_scales"])
        want = {"ffn_gate_exps": gu[:, 0::2], "ffn_up_exps": gu[:, 1::2],
                "ffn_down_exps": repack(w[pre + "down_proj_blocks"], w[pre + "down_proj_scales"])}
        for short, exp in want.items():
            name = f"blk.{li}.{short}.weight"
            if name not in t:
                raise SystemExit(f"FAIL: {gguf}: no tensor {name}")
            typ, ne, got = t[name]
            e, rows = exp.shape[:2]
            if typ != GGML_TYPE_MXFP4 or ne != [exp.shape[2] // 17 * 32, rows, e]:
                raise SystemExit(f"FAIL: {name}: type {typ} shape {ne}, expected MXFP4 (39) "
                                 f"{[exp.shape[2] // 17 * 32, rows, e]}")
            exp = np.ascontiguousarray(exp).reshape(-1)
            if got.size < exp.size or not np.array_equal(np.asarray(got[:exp.size]), exp):
                bad = int(np.argmax(np.asarray(got[:exp.size]) != exp)) if got.size >= exp.size else -1
                raise SystemExit(f"FAIL: {name}: bytes differ from the checkpoint's MXFP4 data (first at byte {bad})")
            n_checked += 1
            print(f"{name}: MXFP4 {ne}, {exp.size} bytes identical to the checkpoint's blocks and scales")
    if not n_checked:
        raise SystemExit(f"FAIL: {model_dir}: no MXFP4 expert tensors found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
