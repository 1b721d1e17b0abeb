#!/usr/bin/env bash
# Tessera's quant kernels against ggml's own (libggml-base of the npm package),
# on real weight rows of the shared models, for every type Tessera quantizes
# (`ts_quant_rows types`: whatever quant/ implements, k-quants included as they
# land), each without and with an imatrix:
#
#  1. ggml's to_float of OUR bytes == our dequantize of our bytes, bit for bit
#     (the format contract), and our dequantize of GGML's bytes == ggml's
#     to_float of them (our dequantizer on blocks we did not choose).
#     Also on random bytes (512 rows of 256), which include blocks whose fp16
#     scales are inf or NaN: the layouts are decoded the same, bit for bit.
#  2. Weighted RMSE of ours <= ggml_quantize_chunk's on the same rows. The
#     weights: the imatrix per column when there is one; without, ggml's own
#     default objective for the type: x^2 for q6_K, iq4_nl and iq4_xs (what
#     their reference quantizers minimize), 1 for the others. Plain RMSE is
#     printed too, for information.
#
# Rows: layer 1's attention and MLP matrices of llama-spm-8m (down_proj has
# 768 columns, the rest 256) and attention + expert 0 of qwen3moe-spm-9m, plus
# 256 token-embedding rows of each: 256-multiples, so the k-quants apply.
# The imatrix is synthetic but shaped like real ones: per column j,
# mean over 64 samples of (s_j * z)^2 with z ~ N(0,1) and s_j = exp(N(0,1))
# (heavy-tailed channel scales), fixed seed, and 1/64 of the columns exactly
# 0 (channels no calibration token reached).
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_shared
GGML="$TS_BUILD/ts_ggml"
QROWS="$TS_BUILD/ts_quant_rows"
[[ -x "$GGML" ]] || skip "$GGML not built; run scripts/deps.sh, then re-run cmake"
[[ -x "$QROWS" ]] || skip "$QROWS not built"
[[ -x "$PY" ]] && "$PY" -c 'import numpy, torch' 2>/dev/null || skip "$PY with numpy and torch not found"

"$PY" - "$SHARED/models" "$TMP" <<'EOF'
import sys
import numpy as np
sys.path.insert(0, __import__("os").environ["TS_SRC"] + "/tests/interop")
import st_io

models, out = sys.argv[1], sys.argv[2]
picks = {
    "llama-spm-8m": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"],
    "qwen3moe-spm-9m": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.o_proj",
                        "mlp.experts.0.gate_proj", "mlp.experts.0.up_proj", "mlp.experts.0.down_proj"],
}
by_width = {}
for model, names in picks.items():
    t = st_io.load_file(f"{models}/{model}/model.safetensors")
    mats = [t[f"model.layers.1.{n}.weight"] for n in names] + [t["model.embed_tokens.weight"][:256]]
    for m in mats:
        by_width.setdefault(m.shape[1], []).append(m.float().numpy())
rng = np.random.default_rng(20240601)
for n, mats in sorted(by_width.items()):
    np.concatenate(mats).astype("<f4").tofile(f"{out}/w{n}.f32")
    s = np.exp(rng.normal(0.0, 1.0, n))
    im = ((s * rng.normal(0.0, 1.0, (64, n))) ** 2).mean(0)
    im[rng.choice(n, n // 64, replace=False)] = 0.0
    im.astype("<f4").tofile(f"{out}/im{n}.f32")
    print(n, sum(m.shape[0] for m in mats))
EOF
widths=()
for f in "$TMP"/w*.f32; do w=${f##*/w}; widths+=("${w%.f32}"); done

types=()
while read -r t; do
  case $t in f32 | f16 | bf16) ;; *) types+=("$t") ;; esac
done < <("$QROWS" types)
((${#types[@]})) || skip "Tessera implements no quantized type yet"
echo "types: ${types[*]}"

failures=()
for t in "${types[@]}"; do
  for n in "${widths[@]}"; do
    for im in 0 1; do
      extra=()
      ((im)) && extra=(--imatrix "$TMP/im$n.f32")
      base="$TMP/$t.$n.$im"
      "$QROWS" quantize "$t" "$TMP/w$n.f32" "$n" "$base.ours" "${extra[@]}"
      "$GGML" quantize "$t" "$TMP/w$n.f32" "$n" "$base.ggml" "${extra[@]}"
      "$QROWS" dequant "$t" "$base.ours" "$n" "$base.ours.by_ours"
      "$GGML" dequant "$t" "$base.ours" "$n" "$base.ours.by_ggml"
      "$QROWS" dequant "$t" "$base.ggml" "$n" "$base.ggml.by_ours"
      "$GGML" dequant "$t" "$base.ggml" "$n" "$base.ggml.by_ggml"
      cmp -s "$base.ours.by_ours" "$base.ours.by_ggml" ||
        failures+=("$t n=$n imatrix=$im: ggml's to_float of our bytes differs from our dequantize")
      cmp -s "$base.ggml.by_ours" "$base.ggml.by_ggml" ||
        failures+=("$t n=$n imatrix=$im: our dequantize of ggml's bytes differs from ggml's to_float")
    done
  done
done

for t in "${types[@]}"; do
  "$PY" -c 'import sys; open(sys.argv[1], "wb").write(bytes(256 * 4))' "$TMP/zero.f32"
  "$QROWS" quantize "$t" "$TMP/zero.f32" 256 "$TMP/zero.$t"
  row_bytes=$(wc -c <"$TMP/zero.$t")
  "$PY" -c 'import sys, numpy as np; np.random.default_rng(int(sys.argv[2])).integers(0, 256, int(sys.argv[1]), dtype=np.uint8).tofile(sys.argv[3])' \
    $((row_bytes * 512)) "$row_bytes" "$TMP/rand.$t"
  "$QROWS" dequant "$t" "$TMP/rand.$t" 256 "$TMP/rand.$t.by_ours"
  "$GGML" dequant "$t" "$TMP/rand.$t" 256 "$TMP/rand.$t.by_ggml"
  cmp -s "$TMP/rand.$t.by_ours" "$TMP/rand.$t.by_ggml" ||
    failures+=("$t: dequantizing random bytes differs from ggml's to_float")
done

# The RMSE table (all widths together) and the <= check.
if ! "$PY" - "$TMP" "${widths[*]}" "${types[@]}" <<'EOF'; then
import sys
import numpy as np

tmp, widths, types = sys.argv[1], [int(w) for w in sys.argv[2].split()], sys.argv[3:]
x2_default = {"q6_K", "iq4_nl", "iq4_xs"}
print(f"{'type':8} {'imatrix':7} {'wrmse ours':>11} {'wrmse ggml':>11} {'ratio':>6}   {'rmse ours':>10} {'rmse ggml':>10}")
bad = []
for t in types:
    for im in (0, 1):
        acc = {k: np.zeros(4) for k in ("ours", "ggml")}
        for n in widths:
            x = np.fromfile(f"{tmp}/w{n}.f32", "<f4").astype(np.float64).reshape(-1, n)
            if im:
                w = np.broadcast_to(np.fromfile(f"{tmp}/im{n}.f32", "<f4").astype(np.float64), x.shape)
            elif t in x2_default:
                w = x * x
            else:
                w = np.ones_like(x)
            for k in acc:
                y = np.fromfile(f"{tmp}/{t}.{n}.{im}.{k}.by_ggml", "<f4").astype(np.float64).reshape(-1, n)
                e = (x - y) ** 2
                acc[k] += [(w * e).sum(), w.sum(), e.sum(), e.size]
        o, g = acc["ours"], acc["ggml"]
        wo, wg = np.sqrt(o[0] / o[1]), np.sqrt(g[0] / g[1])
        print(f"{t:8} {'yes' if im else 'no':7} {wo:11.4e} {wg:11.4e} {wo / wg:6.3f}   "
              f"{np.sqrt(o[2] / o[3]):10.4e} {np.sqrt(g[2] / g[3]):10.4e}")
        if not wo <= wg:
            bad.append(f"{t} imatrix={im}: weighted RMSE {wo:.6e} > ggml's {wg:.6e}")
for b in bad:
    print("FAIL:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
  failures+=("weighted RMSE above ggml's (see the table)")
fi

if ((${#failures[@]})); then
  printf 'FAIL: %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "PASS: ${#types[@]} types, bit-exact dequantization both ways, RMSE <= ggml's"
