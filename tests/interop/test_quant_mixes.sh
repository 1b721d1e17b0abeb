#!/usr/bin/env bash
# tessera quantize's per-tensor types == llama.cpp's. For every shared test
# model: tessera convert -> F16 GGUF; llama.cpp's own llama_model_quantize
# (ts_llama quantize) decides each mix on it; the tensor types must equal
# `tessera quantize --dry-run --json` on the same F16 GGUF, tensor for tensor,
# and on the checkpoint directory itself (the one-pass path) for a subset.
# llama.cpp runs in its own --dry-run mode (types read from its log, so the
# test stays within its time budget) except for REAL_FTYPES, which it really
# quantizes and whose written files' types are compared; those also show that
# its dry-run and its output agree.
#
# Variants: every ftype without an imatrix (Q2_K_S only with one: llama.cpp
# refuses it without); the ftypes whose mix depends on having an imatrix with
# a synthetic one (make_imatrix.py; one expert of each stacked tensor has a
# zero count); and the controls: --pure, --tensor-type (first match wins),
# --output-tensor-type, --token-embedding-type.
# The models cover: a dense llama with GQA 2 (8 layers), a tied-embedding
# qwen3 whose 128-wide rows fall back from every 256-block type, and two
# 8-expert qwen3moe models (the n_expert == 8 bumps, experts' layers read
# from names).
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_shared
need_deps
tessera_has quantize || skip "tessera quantize not built"

FTYPES=(Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_0 Q4_1 Q5_0 Q5_1 Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K Q8_0 IQ4_NL IQ4_XS F16 BF16 F32)
IMATRIX_FTYPES=(Q2_K_S Q4_0 Q5_0 IQ4_NL IQ4_XS Q4_K_M)
REAL_FTYPES=" Q4_K_M "   # really quantized by llama.cpp (with and without imatrix)
HF_FTYPES=" Q4_K_M F16 "  # also planned from the checkpoint directory
THREADS="${TS_THREADS:-2}"

failures=()
n_checked=0

# types_of_json FILE: sorted "name type" lines from tessera's JSON plan.
types_of_json() {
  "$PY" -c 'import json,sys
d = json.load(open(sys.argv[1]))
print("\n".join(sorted("%s %s" % (t["name"], t["type"]) for t in d["tensors"])))' "$1"
}

# check LABEL F16_GGUF MODEL_DIR FTYPE [tessera/llama options...]
check() {
  local label=$1 gguf=$2 dir=$3 ft=$4 want="$TMP/want.txt" got="$TMP/got.txt" dry=(--dry-run) inputs=("$2")
  shift 4
  [[ $REAL_FTYPES == *" $ft "* ]] && dry=()
  [[ $HF_FTYPES == *" $ft "* || $label == *override* ]] && inputs+=("$dir")
  if ! "$TS_LLAMA" quantize "$gguf" "$TMP/llama.gguf" "$ft" -t "$THREADS" "${dry[@]}" "$@" 2>"$TMP/llama.log" |
      sort >"$want" || [[ ! -s "$want" ]]; then
    echo "$label: llama.cpp failed: $(tail -1 "$TMP/llama.log")"
    failures+=("$label")
    return
  fi
  rm -f "$TMP/llama.gguf"
  local input
  for input in "${inputs[@]}"; do
    if ! "$TESSERA" quantize "$input" "$ft" --dry-run --json -q "$@" >"$TMP/plan.json" 2>"$TMP/ts.log"; then
      echo "$label ($input): tessera failed: $(tail -1 "$TMP/ts.log")"
      failures+=("$label")
      return
    fi
    types_of_json "$TMP/plan.json" >"$got"
    if ! diff -u "$want" "$got" >"$TMP/diff.txt"; then
      echo "$label ($input): types differ from llama.cpp's (- llama.cpp, + tessera):"
      grep '^[-+][^-+]' "$TMP/diff.txt" | head -20
      failures+=("$label")
      return
    fi
  done
  n_checked=$((n_checked + 1))
}

start=$SECONDS
for m in llama-spm-8m qwen3-tok-small qwen3moe-spm-9m qwen3moe-tok-small; do
  dir="$SHARED/models/$m"
  [[ -d "$dir" ]] || { echo "$m: not in $SHARED/models (skipped)"; continue; }
  gguf="$TMP/$m-f16.gguf"
  if ! "$TESSERA" convert "$dir" -o "$gguf" --outtype f16 -q -t "$THREADS" >"$TMP/convert.log" 2>&1; then
    echo "$m: convert failed: $(tail -1 "$TMP/convert.log")"
    failures+=("$m")
    continue
  fi
  "$TESSERA" quantize "$gguf" F16 --dry-run --json -q >"$TMP/f16-plan.json"
  "$PY" "$TS_SRC/tests/interop/make_imatrix.py" "$TMP/f16-plan.json" "$TMP/$m-imatrix.gguf"
  t0=$SECONDS
  n0=$n_checked
  for ft in "${FTYPES[@]}"; do
    check "$m/$ft" "$gguf" "$dir" "$ft"
  done
  for ft in "${IMATRIX_FTYPES[@]}"; do
    check "$m/$ft+imatrix" "$gguf" "$dir" "$ft" --imatrix "$TMP/$m-imatrix.gguf"
  done
  check "$m/Q4_K_M+pure" "$gguf" "$dir" Q4_K_M --pure
  check "$m/Q4_K_M+overrides" "$gguf" "$dir" Q4_K_M --tensor-type 'blk\.[01]\.attn_v=q8_0' \
    --tensor-type 'ffn_up=q5_K' --tensor-type 'ffn_=iq4_nl' --output-tensor-type q5_0 --token-embedding-type q8_0
  check "$m/Q3_K_M+override" "$gguf" "$dir" Q3_K_M --tensor-type 'attn_output=q4_0'
  echo "$m: $((n_checked - n0)) mixes identical to llama.cpp's ($((SECONDS - t0)) s)"
  rm -f "$gguf"
done

((${#failures[@]} == 0)) || fail "tensor types differ from llama.cpp's: ${failures[*]}"
((n_checked > 0)) || skip "no model checked"
echo "PASS: $n_checked quantization plans identical to llama.cpp's ($((SECONDS - start)) s)"
