"""Benchmark-only shim: Debian 12's torch 1.13 predates the float8 and unsigned
dtypes that llama.cpp's converter names in its dtype tables. Placeholders let it
import; the benchmark checkpoint is BF16 and never uses them."""
try:
    import torch

    for _name in ("float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu", "uint16", "uint32", "uint64",
                  "float4_e2m1fn_x2"):
        if not hasattr(torch, _name):
            setattr(torch, _name, type(_name, (), {})())
except ImportError:
    pass
