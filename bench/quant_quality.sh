#!/usr/bin/env bash
# (Run by hand, not by CI: the quality comparison behind issue 5; results are
# recorded in docs/benchmarks.md. tests/interop/test_quant_ppl.sh is its CI subset.)
# tessera quantize vs llama.cpp's own quantizer, from the same F16 GGUF
# (tessera convert), judged on wiki.test.raw at -c 512 (llama-perplexity's
# method) by perplexity AND by KL divergence from the F16 model.
#
# Per model: F16 -> base log-probs (tessera perplexity --kld-save). Per type:
#   ref   = ts_llama quantize (llama_model_quantize) of the F16 GGUF
#   ours  = tessera quantize of the same file
#   ulp   = ts_llama quantize of the F16 GGUF with every weight matrix moved
#           by +-1 ulp on half its values (fixed seed): a quantization exactly
#           as good as ref, so PPL(ulp)/PPL(ref) - 1 is the size of the
#           perplexity differences that mean nothing (which blocks round which
#           way). It is ~0.05-0.3% at 4-6 bits and ~0.5% at 2 bits here.
#   alt   = ts_llama quantize with a flat (all-ones) imatrix: llama.cpp's own
#           weighted search instead of its reference rounding, same tensor
#           types. How far llama.cpp moves from itself by choosing scales
#           differently: up to ~1% perplexity either way on these models,
#           usually at a lower KLD.
# Each file is scored with `tessera perplexity --kld base` (one pass gives
# PPL and KLD; tessera's perplexity equals llama.cpp's to ~1e-4 relative,
# tests/interop/test_perplexity.sh). Ours passes when
# PPL(ours) <= PPL(ref) * (1 + TOL) (the issue's bound); the KLD columns say
# whether a difference is quantization error (KLD higher) or not: the shared
# models are tiny and over-confident on Wikipedia text (F16 entropy ~1.4 nats
# below its NLL), so perplexity there rewards some error patterns that move
# the model further from F16 (docs/formats/quant-types.md, "Measuring").
#
# Time: the 4096-vocab models at 128 chunks (32,640 scored tokens) take ~20
# CPU-seconds a pass; the 151936-vocab ones are scored on 8 chunks (their
# logits dominate). 4 passes a type, 2 at a time: ~20 minutes on 2 idle cores.
# TS_QQ_TYPES / TS_QQ_EXTRA_TYPES / TS_QQ_CHUNKS / TS_QQ_CHUNKS_BIG /
# TS_QQ_MODELS (name glob) override; TS_QQ_NOISE=0 skips the ulp and alt
# columns (half the time).
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tests/interop/lib.sh"

need_shared
need_deps
tessera_has convert || skip "tessera convert not built"
tessera_has quantize || skip "tessera quantize not built yet"
tessera_has perplexity || skip "tessera perplexity not built yet"
[[ $("$TS_LLAMA" quantize 2>&1 || true) != *"unknown command"* ]] ||
  skip "ts_llama has no quantize subcommand yet"
TEXT="$SHARED/data/wiki.test.raw"
[[ -f "$TEXT" ]] || skip "$TEXT not found"

TOL=0.005
CTX=512
TYPES="${TS_QQ_TYPES:-Q4_0 Q4_K_M Q6_K Q8_0 IQ4_XS}"
# More types where a pass is cheap (4096-token vocabularies).
EXTRA_TYPES="${TS_QQ_EXTRA_TYPES-Q4_1 Q5_0 Q5_1 Q2_K Q3_K_M Q4_K_S Q5_K_M IQ4_NL}"
CHUNKS="${TS_QQ_CHUNKS:-128}"
CHUNKS_BIG="${TS_QQ_CHUNKS_BIG:-8}"
MODELS="${TS_QQ_MODELS:-*}"
NOISE="${TS_QQ_NOISE:-1}"

# perturb IN OUT: +-1 ulp on a random half of every F16 tensor of 2+ dims
# (GGUF v2/v3 read just far enough to find the tensor data).
perturb() {
  "$PY" - "$1" "$2" <<'EOF'
import shutil, struct, sys
import numpy as np
src, dst = sys.argv[1], sys.argv[2]
shutil.copyfile(src, dst)
buf = open(dst, "r+b").read()
pos = 0
def rd(fmt):
    global pos
    v = struct.unpack_from("<" + fmt, buf, pos)
    pos += struct.calcsize("<" + fmt)
    return v[0]
def rstr():
    global pos
    n = rd("Q"); s = buf[pos:pos + n]; pos += n
    return s.decode()
SIZES = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
def skip_val(t):
    if t == 8:
        rstr()
    elif t == 9:
        et, n = rd("I"), rd("Q")
        for _ in range(n):
            skip_val(et)
    else:
        rd(SIZES[t])
assert buf[:4] == b"GGUF"
pos = 4
rd("I"); n_t, n_kv = rd("Q"), rd("Q")
align = 32
for _ in range(n_kv):
    k, t = rstr(), rd("I")
    if k == "general.alignment":
        align = rd("I")
    else:
        skip_val(t)
infos = []
for _ in range(n_t):
    name = rstr(); nd = rd("I"); dims = [rd("Q") for _ in range(nd)]; ty = rd("I"); off = rd("Q")
    infos.append((name, dims, ty, off))
base = (pos + align - 1) // align * align
rng = np.random.default_rng(5)
mm = np.memmap(dst, dtype=np.uint8, mode="r+")
for name, dims, ty, off in infos:
    if ty != 1 or len(dims) < 2:  # F16 matrices only
        continue
    n = int(np.prod(dims))
    u = mm[base + off: base + off + 2 * n].view(np.uint16)
    pick = (rng.integers(0, 2, n) == 1) & ((u & 0x7fff) != 0) & ((u & 0x7c00) != 0x7c00)
    step = np.where(rng.integers(0, 2, n) == 1, 1, 0xffff).astype(np.uint16)
    u[pick] = u[pick] + step[pick]
mm.flush()
EOF
}

# flat_imatrix F16 OUT: llama-imatrix's GGUF format, every in_sum2 equal to
# its count (mean square 1) for the matrices llama-imatrix sees.
flat_imatrix() {
  "$TESSERA" quantize "$1" "$TMP/plan.gguf" F16 --dry-run --json >"$TMP/plan.json" 2>/dev/null ||
    fail "tessera quantize --dry-run --json on $1"
  "$PY" - "$TMP/plan.json" "$2" <<'EOF'
import json, struct, sys
import numpy as np
def s(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b
ts = []
for t in json.load(open(sys.argv[1]))["tensors"]:
    name, shape = t["name"], t["shape"]
    if len(shape) < 2 or not name.endswith(".weight") or "_norm" in name or name in ("token_embd.weight", "output.weight"):
        continue
    n_mat = shape[2] if len(shape) >= 3 else 1
    ts.append((name + ".in_sum2", [shape[0], n_mat], np.full((n_mat, shape[0]), 64.0, np.float32).tobytes()))
    ts.append((name + ".counts", [1, n_mat], np.full(n_mat, 64.0, np.float32).tobytes()))
kv = s("general.type") + struct.pack("<I", 8) + s("imatrix")
kv += s("imatrix.datasets") + struct.pack("<IIQ", 9, 8, 1) + s("flat")
kv += s("imatrix.chunk_count") + struct.pack("<II", 4, 1) + s("imatrix.chunk_size") + struct.pack("<II", 4, 64)
info, off = b"", 0
for name, ne, data in ts:
    info += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne) + struct.pack("<IQ", 0, off)
    off += (len(data) + 31) // 32 * 32
head = b"GGUF" + struct.pack("<IQQ", 3, len(ts), 4) + kv + info
head += b"\0" * ((-len(head)) % 32)
with open(sys.argv[2], "wb") as f:
    f.write(head)
    for _, _, data in ts:
        f.write(data + b"\0" * ((-len(data)) % 32))
EOF
}

# score GGUF BASE OUT: tessera perplexity --kld into OUT (JSON).
score() {
  "$TESSERA" perplexity "$1" --kld "$2" -t 1 -q --json >"$3" 2>"$3.err" || { echo "scoring $1 failed: $(tail -1 "$3.err")" >&2; return 1; }
}
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.2f%%", 100 * (a / b - 1) }'; }
field() { "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["ppl"] if sys.argv[2] == "ppl" else d["kld"]["kld"]["value"])' "$1" "$2"; }

failures=()
skipped=()
compared=0
printf '| %-18s | %-7s | %9s | %9s | %9s | %7s | %7s | %7s | %9s | %9s | %9s | %s\n' \
  model type "F16 PPL" llama.cpp tessera ratio ulp alt "KLD l" "KLD t" "KLD alt" result
printf '|%s|\n' "--------------------|---------|-----------|-----------|-----------|---------|---------|---------|-----------|-----------|-----------|-------"

for dir in "$SHARED"/models/$MODELS/; do
  dir=${dir%/}
  name=$(basename "$dir")
  [[ -f "$dir/config.json" ]] || continue
  f16="$TMP/$name.f16.gguf" f16p="$TMP/$name.f16p.gguf" base="$TMP/$name.base.kld" flat="$TMP/$name.flat.gguf"
  if ! "$TESSERA" convert "$dir" -o "$f16" --outtype f16 -q >"$TMP/convert.log" 2>&1; then
    echo "$name: tessera convert failed: $(tail -1 "$TMP/convert.log")"
    failures+=("$name/convert")
    continue
  fi
  if ((NOISE)); then
    perturb "$f16" "$f16p"
    flat_imatrix "$f16" "$flat"
  fi
  n_vocab=$("$TS_LLAMA" meta "$f16" | sed -n 's/^n_vocab=//p')
  types=$TYPES chunks=$CHUNKS
  if ((n_vocab > 32768)); then chunks=$CHUNKS_BIG; else types="$TYPES $EXTRA_TYPES"; fi
  "$TESSERA" perplexity "$f16" -f "$TEXT" -c "$CTX" --chunks "$chunks" -t 2 -q --kld-save "$base" --json \
    >"$TMP/base.json" 2>"$TMP/base.err" || fail "tessera perplexity --kld-save on $f16: $(tail -1 "$TMP/base.err")"
  p_f16=$(field "$TMP/base.json" ppl)
  for t in $types; do
    ref="$TMP/$name.$t.llama.gguf" ours="$TMP/$name.$t.tessera.gguf"
    refp="$TMP/$name.$t.ulp.gguf" alt="$TMP/$name.$t.alt.gguf"
    if ! "$TS_LLAMA" quantize "$f16" "$ref" "$t" >"$TMP/q.log" 2>&1; then
      echo "$name/$t: ts_llama quantize failed: $(tail -1 "$TMP/q.log")"
      failures+=("$name/$t")
      continue
    fi
    if ! "$TESSERA" quantize "$f16" "$ours" "$t" >"$TMP/q.log" 2>&1; then
      if grep -qiE "not (yet )?implemented|unsupported|not supported|unknown (quant|type|ftype)" "$TMP/q.log"; then
        skipped+=("$t")
        continue
      fi
      echo "$name/$t: tessera quantize failed: $(tail -1 "$TMP/q.log")"
      failures+=("$name/$t")
      continue
    fi
    score "$ref" "$base" "$TMP/s.ref" & pr=$!
    score "$ours" "$base" "$TMP/s.ours" & po=$!
    wait "$pr" || fail "perplexity of $ref"
    wait "$po" || fail "perplexity of $ours"
    ulp="-" altp="-" k_alt="-"
    if ((NOISE)); then
      "$TS_LLAMA" quantize "$f16p" "$refp" "$t" >"$TMP/q.log" 2>&1 || fail "ts_llama quantize of the perturbed F16 to $t"
      "$TS_LLAMA" quantize "$f16" "$alt" "$t" --imatrix "$flat" >"$TMP/q.log" 2>&1 ||
        fail "ts_llama quantize --imatrix (flat) to $t: $(tail -1 "$TMP/q.log")"
      score "$refp" "$base" "$TMP/s.ulp" & pu=$!
      score "$alt" "$base" "$TMP/s.alt" & pa=$!
      wait "$pu" || fail "perplexity of $refp"
      wait "$pa" || fail "perplexity of $alt"
      ulp=$(pct "$(field "$TMP/s.ulp" ppl)" "$(field "$TMP/s.ref" ppl)")
      altp=$(pct "$(field "$TMP/s.alt" ppl)" "$(field "$TMP/s.ref" ppl)")
      k_alt=$(printf '%.6f' "$(field "$TMP/s.alt" kld)")
    fi
    p_ref=$(field "$TMP/s.ref" ppl) p_ours=$(field "$TMP/s.ours" ppl)
    k_ref=$(field "$TMP/s.ref" kld) k_ours=$(field "$TMP/s.ours" kld)
    ratio=$(awk -v a="$p_ours" -v b="$p_ref" 'BEGIN { printf "%.4f", a / b }')
    kld_note=$(awk -v a="$k_ours" -v b="$k_ref" 'BEGIN { print (a <= b ? "KLD <=" : "KLD HIGHER") }')
    result="ok ($kld_note)"
    if ! awk -v a="$p_ours" -v b="$p_ref" -v t="$TOL" 'BEGIN { exit !(a <= b * (1 + t)) }'; then
      result="FAIL: PPL > llama.cpp * $(awk -v t="$TOL" 'BEGIN { print 1 + t }') ($kld_note)"
      failures+=("$name/$t")
    fi
    compared=$((compared + 1))
    printf '| %-18s | %-7s | %9.3f | %9.3f | %9.3f | %7s | %7s | %7s | %9.6f | %9.6f | %9s | %s\n' \
      "$name" "$t" "$p_f16" "$p_ref" "$p_ours" "$ratio" "$ulp" "$altp" "$k_ref" "$k_ours" "$k_alt" "$result"
    rm -f "$ref" "$ours" "$refp" "$alt"
  done
  rm -f "$f16" "$f16p" "$base" "$flat"
done
echo "(-c $CTX on wiki.test.raw: $CHUNKS chunks for 4096-token vocabularies, $CHUNKS_BIG for larger."
echo " ulp / alt: PPL relative to llama.cpp's of llama.cpp's own quantization of the +-1-ulp-perturbed"
echo " F16 / with a flat imatrix: how far llama.cpp differs from itself. KLD: from the F16 model)"

if ((${#skipped[@]})); then
  echo "not implemented in tessera yet: $(tr ' ' '\n' <<<"${skipped[*]}" | sort -u | tr '\n' ' ')"
fi
if ((${#failures[@]})); then
  fail "${#failures[@]} case(s): ${failures[*]}"
fi
((compared > 0)) || skip "no type could be compared"
echo "PASS: $compared comparisons"
