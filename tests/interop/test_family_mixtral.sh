#!/usr/bin/env bash
# Tessera's own forward pass on Mixtral (MixtralForCausalLM -> llama with
# stacked experts: softmax router over every expert, top-k renormalized,
# experts as big as feed_forward_length), against float32 PyTorch references
# and against llama.cpp on the same files.
#
# 1. The families fixture (Mixtral-8x7B layout, 8 experts top-2, BF16 shards,
#    tokenizer.json only). tessera convert to f32 and q8_0, then:
#    - tessera logits on reference.json's ids: the last 4 positions within
#      1e-3 of reference.json (top-5 ids identical), every position within
#      1e-3 of llama.cpp's (ts_llama logits, F32 KV cache);
#    - tessera perplexity vs llama.cpp's (ts_llama perplexity) on the start of
#      wiki.test.raw, -c 128, 8 chunks: within 0.1% on f32 and q8_0;
#    - tessera imatrix vs llama.cpp's collection (ts_llama imatrix) on the f32
#      file: the same weights, every expert of every layer seen, per-expert
#      token counts identical, layer 0's mean squares (experts included)
#      within 1e-3;
#    - tessera verify q8_0 --base f32: every check passes.
# 2. make_moe_ckpt.py's mixtral (5 experts: odd, top-2, 3 layers, hidden 96,
#    expert ff 160 != feed_forward_length / top-k): logits on 48 ids within
#    1e-3 of ref_moe_families.py (a port of modeling_mixtral.py) and of
#    llama.cpp.
# TS_THREADS sets tessera's threads (default 2); llama.cpp runs on one thread.
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_shared
need_tessera
for c in convert logits perplexity imatrix verify; do
  tessera_has $c || skip "tessera $c not built"
done
FIX="$SHARED/fixtures/families/mixtral"
[[ -f "$FIX/reference.json" ]] || skip "Mixtral fixture not found in $FIX (set TS_SHARED)"
need_deps
"$PY" -c "import torch, numpy" 2>/dev/null || skip "python3-torch / numpy not available"
HERE="$TS_SRC/tests/interop"
THREADS="${TS_THREADS:-2}"
TEXT="$TMP/wiki.txt"
head -c 60000 "$SHARED/data/wiki.test.raw" >"$TEXT"
CTX=128
CHUNKS=8
failures=()
# shellcheck source=tests/interop/family_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/family_lib.sh"

# The generated checkpoint and its reference logits, in the background while the fixture runs
# (importing torch is the slow part).
GEN_IDS=$("$PY" -c 'import random; random.seed(3); print(",".join(str(random.randrange(320)) for _ in range(48)))')
("$PY" "$HERE/make_moe_ckpt.py" -o "$TMP/gen" mixtral &&
  "$PY" "$HERE/ref_moe_families.py" "$TMP/gen/mixtral" --ids "$GEN_IDS" -o "$TMP/gen/{}.ref.f32" --threads 1) \
  >"$TMP/gen.log" 2>&1 &
GEN_PID=$!

# ppl GGUF LABEL TOL: tessera perplexity vs ts_llama perplexity, side by side.
ppl() {
  local g=$1 label=$2 tol=$3 pa pb p_ref p_ours rel line
  "$TS_LLAMA" perplexity "$g" "$TEXT" -c "$CTX" --chunks "$CHUNKS" -t 1 --json >"$TMP/ppl.ref" 2>/dev/null & pa=$!
  "$TESSERA" perplexity "$g" -f "$TEXT" -c "$CTX" --chunks "$CHUNKS" -t "$THREADS" --json -q >"$TMP/ppl.ours" & pb=$!
  wait "$pa" || { bad "$label: ts_llama perplexity failed"; wait "$pb" || true; return; }
  wait "$pb" || { bad "$label: tessera perplexity failed"; return; }
  p_ref=$(json_num ppl <"$TMP/ppl.ref") p_ours=$(json_num ppl <"$TMP/ppl.ours")
  rel=$(awk -v a="$p_ref" -v b="$p_ours" 'BEGIN { printf "%+.4f%%", 100 * (b / a - 1) }')
  line=$(printf '%-34s PPL llama.cpp %.4f tessera %.4f (%s, bound %s)' "$label perplexity" "$p_ref" "$p_ours" "$rel" "$tol")
  if awk -v a="$p_ref" -v b="$p_ours" -v t="$tol" 'BEGIN { d = b / a - 1; if (d < 0) d = -d; exit !(d <= t) }'
  then row "$line"; else bad "$line"; fi
}

# ---- 1. the fixture ----
F32="$TMP/mixtral-f32.gguf" Q8="$TMP/mixtral-q8_0.gguf"
if convert "$FIX" "$F32" f32 && convert "$FIX" "$Q8" q8_0; then
  ids=$(ids_of "$FIX/reference.json")
  if vs_llama "$F32" "$ids" "$(tr ',' '\n' <<<"$ids" | wc -l)" "mixtral/f32"; then
    vs_reference "$FIX/reference.json" "$TMP/ours.f32" "mixtral/f32 vs reference.json"
  fi
  ppl "$F32" mixtral/f32 0.001
  ppl "$Q8" mixtral/q8_0 0.001

  # imatrix: tessera's collection vs llama.cpp's on the same file and text.
  if "$TESSERA" imatrix "$F32" -f "$TEXT" -o "$TMP/im.ours.gguf" -c 64 --chunks 4 -t "$THREADS" -q &&
      "$TS_LLAMA" imatrix "$F32" "$TEXT" -o "$TMP/im.ref.gguf" -c 64 --chunks 4 -t 1 >/dev/null 2>&1; then
    if line=$("$PY" - "$TMP/im.ours.gguf" "$TMP/im.ref.gguf" "$HERE" <<'EOF'
import sys
import numpy as np
sys.dont_write_bytecode = True
sys.path.insert(0, sys.argv[3])
from check_mxfp4 import gguf_tensors

def load(path):
    """{weight: (sums of squares [n_mat, n_per_row], counts [n_mat])}"""
    t = gguf_tensors(path)
    out = {}
    for name in t:
        if name.endswith(".in_sum2"):
            w = name[: -len(".in_sum2")]
            s = np.frombuffer(t[name][2].tobytes(), "<f4", int(np.prod(t[name][1]))).astype(np.float64)
            c = np.frombuffer(t[w + ".counts"][2].tobytes(), "<f4", int(np.prod(t[w + ".counts"][1])))
            out[w] = (s.reshape(len(c), -1), c.astype(np.float64))
    return out

ours, ref = load(sys.argv[1]), load(sys.argv[2])
errs, worst, n_exp = [], 0.0, 0
if set(ours) != set(ref):
    errs.append(f"weights differ: only ours {sorted(set(ours) - set(ref))}, only llama.cpp {sorted(set(ref) - set(ours))}")
for w in sorted(set(ours) & set(ref)):
    (so, co), (sr, cr) = ours[w], ref[w]
    if so.shape != sr.shape or not np.array_equal(co, cr):
        errs.append(f"{w}: shape {so.shape} counts {co.tolist()}, llama.cpp {sr.shape} {cr.tolist()}")
        continue
    if "_exps" in w:
        n_exp += 1
        if (co == 0).any():
            errs.append(f"{w}: experts {np.flatnonzero(co == 0).tolist()} saw no tokens")
    if w.startswith("blk.0."):
        mo, mr = so / co[:, None], sr / cr[:, None]
        rel = float(np.abs(mo - mr).max() / max(np.abs(mr).max(), 1e-30))
        worst = max(worst, rel)
        if rel > 1e-3:
            errs.append(f"{w}: mean squares differ by {rel:.2e} (relative to the largest)")
print(f"{'mixtral imatrix':<34} {len(ours)} weights as llama.cpp's ({n_exp} expert stacks, every expert seen, "
      f"per-expert counts identical), layer 0 within {worst:.1e}" + ("" if not errs else ": " + "; ".join(errs[:4])))
sys.exit(1 if errs else 0)
EOF
    ); then row "$line"; else bad "$line"; fi
  else
    bad "mixtral imatrix: tessera imatrix or ts_llama imatrix failed"
  fi

  if "$TESSERA" verify "$Q8" --base "$F32" -f "$TEXT" -c "$CTX" --chunks 2 >"$TMP/verify.log" 2>&1 &&
      grep -q "llama: every tensor" "$TMP/verify.log"; then
    row "$(printf '%-34s %s' "mixtral verify q8_0" "$(grep -m1 'kld' "$TMP/verify.log" | sed 's/^ *//')")"
  else
    bad "mixtral verify q8_0 --base f32: $(tail -3 "$TMP/verify.log" | tr '\n' ' ')"
  fi
fi
rm -f "$TMP"/mixtral-* "$TMP"/im.*

# ---- 2. generated: 5 experts, top-2 ----
if wait "$GEN_PID"; then
  if convert "$TMP/gen/mixtral" "$TMP/gen.gguf" f32; then
    vs_llama "$TMP/gen.gguf" "$GEN_IDS" 48 "generated mixtral 5x top-2/f32" "$TMP/gen/mixtral.ref.f32"
  fi
else
  bad "generated mixtral: make_moe_ckpt.py / ref_moe_families.py: $(tail -1 "$TMP/gen.log")"
fi

((${#failures[@]} == 0)) || fail "${#failures[@]} check(s) failed: ${failures[*]}"
echo "PASS: tessera's forward pass on Mixtral matches the PyTorch references and llama.cpp"
