#!/usr/bin/env python3
"""Writes a synthetic importance matrix in llama-imatrix's GGUF format for the
tensors of a model: "<name>.in_sum2" [n_per_row, n_mat] and "<name>.counts"
[1, n_mat] (F32), keys imatrix.datasets / chunk_count / chunk_size, as
tools/imatrix/imatrix.cpp (save_imatrix) writes them. Entries are made for the
matrices llama-imatrix sees in a forward pass: 2-D+ weights other than
token_embd and output (and no norms). One expert of every stacked tensor gets
a zero count, as an expert no calibration token reached would.

usage: make_imatrix.py PLAN.json OUT.gguf
PLAN.json: `tessera quantize MODEL.gguf F16 --dry-run --json` (names, shapes).
"""
import json
import struct
import sys

import numpy as np

ALIGN = 32


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def main():
    plan = json.load(open(sys.argv[1]))
    entries = []
    for t in plan["tensors"]:
        name, shape = t["name"], t["shape"]
        if len(shape) < 2 or not name.endswith(".weight") or "_norm" in name:
            continue
        if name in ("token_embd.weight", "output.weight"):
            continue
        n_mat = shape[2] if len(shape) >= 3 else 1
        entries.append((name, shape[0], n_mat))
    rng = np.random.RandomState(1234)
    tensors = []  # (name, ne, data bytes)
    for name, n_per_row, n_mat in entries:
        counts = np.full(n_mat, 2048.0, dtype=np.float32)
        if n_mat > 1:
            counts[n_mat // 2] = 0.0
        sums = (rng.gamma(2.0, 1.0, size=(n_mat, n_per_row)) * counts[:, None]).astype(np.float32)
        tensors.append((name + ".in_sum2", [n_per_row, n_mat], sums.tobytes()))
        tensors.append((name + ".counts", [1, n_mat], counts.tobytes()))
    kv = b""
    kv += gguf_str("general.type") + struct.pack("<I", 8) + gguf_str("imatrix")
    kv += gguf_str("imatrix.datasets") + struct.pack("<IIQ", 9, 8, 1) + gguf_str("synthetic.txt")
    kv += gguf_str("imatrix.chunk_count") + struct.pack("<II", 4, 16)
    kv += gguf_str("imatrix.chunk_size") + struct.pack("<II", 4, 128)
    info = b""
    offset = 0
    for name, ne, data in tensors:
        info += gguf_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        info += struct.pack("<IQ", 0, offset)
        offset += (len(data) + ALIGN - 1) // ALIGN * ALIGN
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 4) + kv + info
    head += b"\0" * ((-len(head)) % ALIGN)
    with open(sys.argv[2], "wb") as f:
        f.write(head)
        for _, _, data in tensors:
            f.write(data + b"\0" * ((-len(data)) % ALIGN))


if __name__ == "__main__":
    main()
