#!/usr/bin/python3
"""llama-perplexity's mean KL divergence, computed from llama.cpp's logits.

usage: llama_kld.py DIR CTX CHUNKS [--stats]

DIR holds base.I.f32 and q.I.f32 for I in 0..CHUNKS-1: the raw float32
logits (CTX x n_vocab) llama.cpp (ts_llama logits) gave for chunk I with the
unquantized and the quantized model. Scored positions are llama-perplexity's:
the second half of each chunk, CTX/2 .. CTX-2 (the last has no next token).

The statistic is llama-perplexity's --kl-divergence, not an exact KLD: the
base log-probabilities pass through its file encoding (per position a scale
and offset, then uint16 codes over the top 16 nats; tools/perplexity/
perplexity.cpp, log_softmax with a uint16 output) and terms with a base
log-probability at or below -16 are dropped, all in float32 as there. That
encoding puts a floor of a few 1e-7 under any mean KLD, which matters only
for nearly identical models (F32 against F16).
"""
import sys

import numpy as np


def encode_base(lg):
    """The uint16 codes, scale and min_log_prob llama-perplexity stores per row."""
    lg = lg.astype(np.float32)
    mx = lg.max(1, keepdims=True)
    mn = np.maximum(lg.min(1, keepdims=True), mx - np.float32(16))
    sum_exp = np.exp(lg - mx).astype(np.float64).sum(1, keepdims=True)
    lse = np.log(sum_exp).astype(np.float32)
    min_log_prob = (mn - mx - lse).astype(np.float32)
    scale = ((mx - mn) / np.float32(65535)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(scale != 0, np.float32(1) / scale, np.float32(0)).astype(np.float32)
    v = (inv * (lg - mn)).astype(np.float32)
    codes = np.where(lg > mn, np.rint(v), 0).astype(np.float64)  # nearest_int: ties to even
    return codes, scale, min_log_prob


def kld_rows(base, q):
    codes, scale, min_log_prob = encode_base(base)
    q = q.astype(np.float32)
    mx = q.max(1, keepdims=True)
    sum_exp = np.exp(q - mx).astype(np.float64).sum(1, keepdims=True)
    lse = np.log(sum_exp).astype(np.float32)
    top = (mx + lse).astype(np.float32)
    p_log_base = (scale * codes.astype(np.float32) + min_log_prob).astype(np.float32)
    keep = p_log_base > np.float32(-16)
    p_base = np.exp(p_log_base).astype(np.float32)
    term = (p_base * (p_log_base - q + top)).astype(np.float32)
    kld = np.where(keep, term, 0).astype(np.float64).sum(1)
    same_top = q.argmax(1) == p_log_base.argmax(1)
    return kld, same_top


def load(d, name, i, ctx):
    return np.fromfile(f"{d}/{name}.{i}.f32", "<f4").reshape(ctx, -1)[ctx // 2:ctx - 1]


def per_position(d, ctx, chunks):
    out = [kld_rows(load(d, "base", i, ctx), load(d, "q", i, ctx))[0] for i in range(chunks)]
    return np.concatenate(out)


def main():
    """Prints: mean over all positions from llama.cpp's logits (DIR), and with
    --ours DIR2 (the same files from tessera's logits) also tessera's mean,
    both means over the positions where the two agree, and the count of
    positions where they do not ("flips": a per-position KLD differing by
    more than FLIP nats, i.e. one side's MoE router picked other experts at a
    near-tie, which no two implementations with different summation orders
    can avoid)."""
    d, ctx, chunks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rest = sys.argv[4:]
    ref = per_position(d, ctx, chunks)
    if "--ours" not in rest:
        print(f"{ref.mean():.9g}")
        return
    ours = per_position(rest[rest.index("--ours") + 1], ctx, chunks)
    flip = 0.02
    agree = np.abs(ref - ours) <= flip + 0.5 * np.maximum(ref, ours)
    print(f"{ref.mean():.9g} {ours.mean():.9g} {ref[agree].mean():.9g} {ours[agree].mean():.9g} "
          f"{int((~agree).sum())} {ref.size}")


if __name__ == "__main__":
    main()
