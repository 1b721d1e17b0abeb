#!/usr/bin/env bash
# Tessera's own forward pass (verify/: forward_deepseek.c, forward_glm.c,
# forward_moe2.c) on the MoE families' GGUFs, against float32 PyTorch
# references and against llama.cpp on the same files.
#
# 1. deepseek2, the families fixture (FP8 DeepSeek-V3 layout, vocabulary
#    129280, hidden 12: few chunks). tessera convert to f32 and q8_0, then:
#    - tessera logits on reference.json's ids: the last 4 positions within
#      1e-3 of reference.json (top-5 ids identical), every position within
#      1e-3 of llama.cpp's (ts_llama logits, F32 KV cache);
#    - tessera perplexity vs llama.cpp's (ts_llama perplexity, llama-
#      perplexity's defaults) on the start of wiki.test.raw, -c 128, 8
#      chunks: within 0.1% on f32 and q8_0;
#    - KL divergence of q8_0 against f32 (perplexity --kld-save / --kld) vs
#      llama-perplexity's statistic from llama.cpp's logits (llama_kld.py):
#      within 5%;
#    - tessera imatrix vs llama.cpp's collection (ts_llama imatrix) on the f32
#      file: the same weights (attn_k_b / attn_v_b per head), the same counts
#      for dense weights, layer 0's mean squared activations within 1e-3;
#    - tessera verify q8_0 --base f32: every check passes.
# 2. deepseek2 with q_lora_rank null (plain attn_q, DeepSeek-V2-Lite-like),
#    2 dense-first layers, 9 experts in 3 groups, 2 shared experts
#    (make_deepseek.py): logits on 48 ids within 1e-3 of ref_deepseek.py
#    (a port of the official modeling code) and of llama.cpp; perplexity f32
#    within 0.1%, q8_0 within 1% (this model's routers sit near ties often
#    enough that q8_0 rounding flips experts on both sides; measured 0.1-0.5%).
# 3. glm4moe (when convert/arch_glm.c is there): the fixture (GLM-4.5-Air
#    layout, no tokenizer: a byte-level one is added as test_family_moe.sh
#    does) as in 1 (logits, perplexity f32 / q8_0), and make_moe_ckpt.py's
#    glm4_moe (qk norm, 2 dense-first layers, 7 experts, NextN layer) against
#    ref_moe_families.py and llama.cpp.
# TS_THREADS sets tessera's threads (default 2); llama.cpp runs on one thread
# next to it (ggml's spinning barrier makes 2 threads slow on 2 cores).
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_shared
need_tessera
for c in convert logits perplexity imatrix verify; do
  tessera_has $c || skip "tessera $c not built"
done
FIXD="$SHARED/fixtures/families"
[[ -f "$FIXD/deepseek_v3/reference.json" ]] || skip "family fixtures not found in $FIXD (set TS_SHARED)"
need_deps
"$PY" -c "import torch, numpy" 2>/dev/null || skip "python3-torch / numpy not available"
HERE="$TS_SRC/tests/interop"
THREADS="${TS_THREADS:-2}"
SPM_TOK="$SHARED/models/llama-spm-8m"
TEXT="$TMP/wiki.txt"
head -c 60000 "$SHARED/data/wiki.test.raw" >"$TEXT"
CTX=128
CHUNKS=8
failures=()
# shellcheck source=tests/interop/family_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/family_lib.sh"

# ppl GGUF LABEL TOL: tessera perplexity vs ts_llama perplexity, side by side.
ppl() {
  local g=$1 label=$2 tol=$3 pa pb p_ref p_ours rel
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

# ---- 1. deepseek2: the fixture ----
FIX="$FIXD/deepseek_v3"
DS32="$TMP/ds-f32.gguf" DSQ8="$TMP/ds-q8_0.gguf"
if convert "$FIX" "$DS32" f32 && convert "$FIX" "$DSQ8" q8_0; then
  ids=$(ids_of "$FIX/reference.json")
  n=$(tr ',' '\n' <<<"$ids" | wc -l)
  if vs_llama "$DS32" "$ids" "$n" "deepseek_v3/f32"; then
    vs_reference "$FIX/reference.json" "$TMP/ours.f32" "deepseek_v3/f32 vs reference.json"
  fi
  ppl "$DS32" deepseek_v3/f32 0.001
  ppl "$DSQ8" deepseek_v3/q8_0 0.001

  # KL divergence of q8_0 against f32: tessera's vs llama-perplexity's statistic from llama.cpp's logits.
  KC=2
  if "$TESSERA" perplexity "$DS32" -f "$TEXT" -c "$CTX" --chunks $KC -q --kv-f32 --kld-save "$TMP/base.kld" \
      >/dev/null && "$TESSERA" perplexity "$DSQ8" --kld "$TMP/base.kld" --kv-f32 --json -q >"$TMP/kld.json"; then
    ours=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["kld"]["kld"]["value"])' "$TMP/kld.json")
    mkdir -p "$TMP/kl"
    # the .kld file: 20-byte header, then the chunks' int32 ids; BOS (id 0 here) replaces each chunk's first
    "$PY" -c '
import sys, numpy as np
t = np.fromfile(sys.argv[1], dtype="<i4", count=int(sys.argv[2]) * int(sys.argv[3]), offset=20).reshape(int(sys.argv[3]), -1)
t[:, 0] = 0
print("\n".join(",".join(map(str, r)) for r in t))' "$TMP/base.kld" "$CTX" "$KC" >"$TMP/chunks.txt"
    i=0
    while read -r cids; do
      "$TS_LLAMA" logits "$DS32" --ids "$cids" -o "$TMP/kl/base.$i.f32" -t 1 2>/dev/null &&
        "$TS_LLAMA" logits "$DSQ8" --ids "$cids" -o "$TMP/kl/q.$i.f32" -t 1 2>/dev/null ||
        bad "deepseek_v3 KLD: ts_llama logits failed"
      i=$((i + 1))
    done <"$TMP/chunks.txt"
    ref=$("$PY" "$HERE/llama_kld.py" "$TMP/kl" "$CTX" "$KC")
    line=$(printf '%-34s mean KLD llama.cpp %.6g tessera %.6g (bound 5%%)' "deepseek_v3 q8_0 vs f32" "$ref" "$ours")
    if awk -v a="$ref" -v b="$ours" 'BEGIN { d = b - a; if (d < 0) d = -d; exit !(d <= 0.05 * a || d <= 1e-6) }'
    then row "$line"; else bad "$line"; fi
    rm -rf "$TMP/kl"
  else
    bad "deepseek_v3 KLD: tessera perplexity --kld-save / --kld failed"
  fi

  # imatrix: tessera's collection vs llama.cpp's on the same file and text.
  if "$TESSERA" imatrix "$DS32" -f "$TEXT" -o "$TMP/im.ours.gguf" -c 64 --chunks 4 -t "$THREADS" -q &&
      "$TS_LLAMA" imatrix "$DS32" "$TEXT" -o "$TMP/im.ref.gguf" -c 64 --chunks 4 -t 1 >/dev/null 2>&1; then
    if line=$("$PY" - "$TMP/im.ours.gguf" "$TMP/im.ref.gguf" "$HERE" <<'EOF'
import sys
import numpy as np
sys.dont_write_bytecode = True
sys.path.insert(0, sys.argv[3])
from check_mxfp4 import gguf_tensors

def load(path):
    """{weight: (mean squares [n_mat, n_per_row], counts [n_mat])}; a 3-D dense
    weight (attn_k_b, attn_v_b) may come as one row of n_mat * n_per_row with one count."""
    t = gguf_tensors(path)
    out = {}
    for name in t:
        if not name.endswith(".in_sum2"):
            continue
        w = name[: -len(".in_sum2")]
        s = np.frombuffer(t[name][2].tobytes(), "<f4", int(np.prod(t[name][1]))).astype(np.float64)
        c = np.frombuffer(t[w + ".counts"][2].tobytes(), "<f4", int(np.prod(t[w + ".counts"][1]))).astype(np.float64)
        out[w] = (s.reshape(len(c), -1), c)
    return out

ours, ref = load(sys.argv[1]), load(sys.argv[2])
errs = []
if set(ours) != set(ref):
    errs.append(f"weights differ: only ours {sorted(set(ours) - set(ref))}, only llama.cpp {sorted(set(ref) - set(ours))}")
worst = 0.0
for w in sorted(set(ours) & set(ref)):
    (so, co), (sr, cr) = ours[w], ref[w]
    if "_exps" in w:
        if co.sum() != cr.sum():
            errs.append(f"{w}: {co.sum()} expert rows, llama.cpp {cr.sum()}")
        continue
    mo, mr = (so / co[:, None]).ravel(), (sr / cr[:, None]).ravel()
    if mo.size != mr.size or co[0] != cr[0]:
        errs.append(f"{w}: {mo.size} values / count {co[0]}, llama.cpp {mr.size} / {cr[0]}")
        continue
    if w.startswith("blk.0."):
        rel = float(np.abs(mo - mr).max() / max(np.abs(mr).max(), 1e-30))
        worst = max(worst, rel)
        if rel > 1e-3:
            errs.append(f"{w}: mean squares differ by {rel:.2e} (relative to the largest)")
print(f"{'deepseek_v3 imatrix':<34} {len(ours)} weights as llama.cpp's, layer 0 within {worst:.1e}"
      + ("" if not errs else ": " + "; ".join(errs[:4])))
sys.exit(1 if errs else 0)
EOF
    ); then row "$line"; else bad "$line"; fi
  else
    bad "deepseek_v3 imatrix: tessera imatrix or ts_llama imatrix failed"
  fi

  if "$TESSERA" verify "$DSQ8" --base "$DS32" -f "$TEXT" -c "$CTX" --chunks 2 >"$TMP/verify.log" 2>&1 &&
      grep -q "deepseek2: every tensor" "$TMP/verify.log"; then
    row "$(printf '%-34s %s' "deepseek_v3 verify q8_0" "$(grep -m1 'kld' "$TMP/verify.log" | sed 's/^ *//')")"
  else
    bad "deepseek_v3 verify q8_0 --base f32: $(tail -3 "$TMP/verify.log" | tr '\n' ' ')"
  fi
fi
rm -f "$TMP"/ds-* "$TMP"/im.* "$TMP"/base.kld

# ---- 2. deepseek2: q_lora_rank null, more dense layers, groups, 2 shared experts ----
GEN="$TMP/qnull"
if "$PY" "$HERE/make_deepseek.py" -o "$GEN" --tokenizer-from "$SPM_TOK" --q-lora 0 --dense 2 --layers 4 --experts 9 \
    --n-group 3 --topk-group 2 --topk 3 --shared 2 >"$TMP/log" 2>&1; then
  if convert "$GEN" "$TMP/qnull-f32.gguf" f32 && convert "$GEN" "$TMP/qnull-q8_0.gguf" q8_0; then
    n_vocab=$("$TS_LLAMA" meta "$TMP/qnull-f32.gguf" | sed -n 's/^n_vocab=//p')
    ids=$("$PY" -c "import random,sys; r=random.Random(7); print(','.join(str(r.randrange(int(sys.argv[1]))) for _ in range(48)))" "$n_vocab")
    if "$PY" "$HERE/ref_deepseek.py" "$GEN" --ids "$ids" -o "$TMP/qnull.ref" --threads "$THREADS" >"$TMP/log" 2>&1; then
      vs_llama "$TMP/qnull-f32.gguf" "$ids" 48 "q_lora null/f32" "$TMP/qnull.ref"
    else
      bad "q_lora null: ref_deepseek.py: $(tail -1 "$TMP/log")"
    fi
    ppl "$TMP/qnull-f32.gguf" "q_lora null/f32" 0.001
    ppl "$TMP/qnull-q8_0.gguf" "q_lora null/q8_0" 0.01
  fi
else
  bad "q_lora null: make_deepseek.py: $(tail -1 "$TMP/log")"
fi
rm -rf "$GEN" "$TMP"/qnull*

# ---- 3. glm4moe ----
if [[ -f "$TS_SRC/convert/arch_glm.c" && -f "$FIXD/glm4_moe/reference.json" ]]; then
  G="$TMP/glm4_moe"
  mkdir -p "$G"
  for f in "$FIXD/glm4_moe"/*; do ln -s "$f" "$G/"; done
  "$PY" "$HERE/make_moe_ckpt.py" --tokenizer-only -o "$G"
  if convert "$G" "$TMP/glm-f32.gguf" f32 && convert "$G" "$TMP/glm-q8_0.gguf" q8_0; then
    ids=$(ids_of "$FIXD/glm4_moe/reference.json")
    if vs_llama "$TMP/glm-f32.gguf" "$ids" "$(tr ',' '\n' <<<"$ids" | wc -l)" "glm4_moe/f32"; then
      vs_reference "$FIXD/glm4_moe/reference.json" "$TMP/ours.f32" "glm4_moe/f32 vs reference.json"
    fi
    ppl "$TMP/glm-f32.gguf" glm4_moe/f32 0.001
    ppl "$TMP/glm-q8_0.gguf" glm4_moe/q8_0 0.001
  fi
  rm -f "$TMP"/glm-*
  "$PY" "$HERE/make_moe_ckpt.py" -o "$TMP/gen" glm4_moe >"$TMP/log" 2>&1 || bad "make_moe_ckpt.py glm4_moe: $(tail -1 "$TMP/log")"
  ids=$("$PY" -c 'import random; random.seed(3); print(",".join(str(random.randrange(320)) for _ in range(48)))')
  if [[ -d "$TMP/gen/glm4_moe" ]] && convert "$TMP/gen/glm4_moe" "$TMP/glmgen.gguf" f32; then
    if "$PY" "$HERE/ref_moe_families.py" "$TMP/gen/glm4_moe" --ids "$ids" -o "$TMP/gen/{}.ref.f32" \
        --threads "$THREADS" >"$TMP/log" 2>&1; then
      vs_llama "$TMP/glmgen.gguf" "$ids" 48 "generated glm4_moe/f32" "$TMP/gen/glm4_moe.ref.f32"
    else
      bad "generated glm4_moe: ref_moe_families.py: $(tail -1 "$TMP/log")"
    fi
  fi
else
  row "glm4moe: skipped (convert/arch_glm.c or the glm4_moe fixture not there yet)"
fi

((${#failures[@]} == 0)) || fail "${#failures[@]} check(s) failed: ${failures[*]}"
echo "PASS: tessera's forward pass on deepseek2 and glm4moe matches the PyTorch references and llama.cpp"
