"""Compares two raw float32 logit files, [n_positions][n_vocab] little-endian.

    compare_logits.py REF.f32 GOT.f32 --n N [--max-abs X] [--mean-abs Y]
                      [--top1 Z] [--skip-worst K] [--label TEXT]

Prints one line: label, max |ref-got|, mean |ref-got|, top-1 agreement (share
of positions where both pick the same argmax) and the reference logits' std
(for scale). Exits 1 when a given threshold is crossed or the shapes differ,
so a shell test can use it directly.

--skip-worst K checks --max-abs against the positions left after dropping the
K with the largest error (the raw maximum is still printed). It is for MoE
models: when two experts' router scores nearly tie, rounding the activations
(f16, bf16, q8_0 matmuls) can pick the other expert at that position, which
moves its logits by O(1) however exact the conversion is.
"""
import argparse
import sys

import numpy as np


def load(path, n):
    a = np.fromfile(path, dtype="<f4")
    if n <= 0 or a.size % n:
        sys.exit(f"{path}: {a.size} floats do not split into {n} positions")
    return a.reshape(n, a.size // n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ref")
    ap.add_argument("got")
    ap.add_argument("--n", type=int, required=True, help="number of positions")
    ap.add_argument("--max-abs", type=float)
    ap.add_argument("--mean-abs", type=float)
    ap.add_argument("--top1", type=float, help="minimum top-1 agreement, 0..1")
    ap.add_argument("--skip-worst", type=int, default=0, metavar="K")
    ap.add_argument("--label", default="")
    args = ap.parse_args()

    ref, got = load(args.ref, args.n), load(args.got, args.n)
    if ref.shape != got.shape:
        sys.exit(f"{args.label}: shape {got.shape} != reference {ref.shape}")
    if not np.isfinite(got).all():
        print(f"{args.label}: non-finite logits")
        sys.exit(1)
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    per_pos = np.sort(diff.max(axis=1))
    max_abs, mean_abs = float(per_pos[-1]), float(diff.mean())
    k = min(max(args.skip_worst, 0), args.n - 1)
    max_trim = float(per_pos[-1 - k])
    top1 = float((ref.argmax(axis=1) == got.argmax(axis=1)).mean())
    trim = f" max_abs_skip{k}={max_trim:.3e}" if k else ""
    print(f"{args.label:<28} max_abs={max_abs:.3e}{trim} mean_abs={mean_abs:.3e} "
          f"top1={top1:.3f} ref_std={float(ref.std()):.3f}")

    bad = []
    if args.max_abs is not None and not max_trim < args.max_abs:
        what = f"max_abs_skip{k}" if k else "max_abs"
        bad.append(f"{what} {max_trim:.3e} >= {args.max_abs:g}")
    if args.mean_abs is not None and not mean_abs < args.mean_abs:
        bad.append(f"mean_abs {mean_abs:.3e} >= {args.mean_abs:g}")
    if args.top1 is not None and not top1 >= args.top1:
        bad.append(f"top1 {top1:.3f} < {args.top1:g}")
    if bad:
        print(f"{args.label}: FAIL: " + "; ".join(bad))
        sys.exit(1)


if __name__ == "__main__":
    main()
