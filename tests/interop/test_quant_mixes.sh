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
#
# Then the MoE families of fixtures/families (DeepSeek-V3 as deepseek2 with
# MLA, dense first layers and shared experts; gpt-oss with MXFP4 experts,
# sinks and biases; GLM-4.5 as glm4moe; Mixtral as llama with experts), each
# converted to F16 when `tessera convert` can (skipped with a message
# otherwise), through the same variants. Their hidden sizes (12 to 64) make
# most rows fall back to 32-block types or F16. gpt-oss's F16 file keeps the
# release's MXFP4 experts; tessera keeps them (llama.cpp's dry run lists the
# mix's type, and its real run refuses such a file without
# --allow-requantize): every mix is compared once so (llama.cpp's types, the
# MXFP4 tensors as mxfp4) and once with tessera's --allow-requantize (exactly
# llama.cpp's types). Q4_K_M and Q2_K outputs of each family are really
# written by tessera and loaded by llama.cpp (finite logits, written types as
# planned).
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_shared
need_deps
tessera_has quantize || skip "tessera quantize not built"

FTYPES=(Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_0 Q4_1 Q5_0 Q5_1 Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K Q8_0 IQ4_NL IQ4_XS F16 BF16 F32)
IMATRIX_FTYPES=(Q2_K_S Q4_0 Q5_0 IQ4_NL IQ4_XS Q4_K_M)
REAL_FTYPES=" Q4_K_M "   # really quantized by llama.cpp (with and without imatrix)
HF_FTYPES=" Q4_K_M F16 "  # also planned from the checkpoint directory
HF_OVERRIDES=1            # so are the --tensor-type variants
LOAD_FTYPES=(Q4_K_M Q2_K) # families: written by tessera, loaded by llama.cpp
FAMILIES=(deepseek_v3 glm4_moe gpt_oss mixtral)
THREADS="${TS_THREADS:-2}"

failures=()
n_checked=0
n_loaded=0
TS_EXTRA=() # options for tessera only (--allow-requantize)
KEPT=""     # file of tensor names tessera keeps as mxfp4 in this check ("" when none)
LLAMA_REAL=1 # 0: llama.cpp cannot really quantize this model (MXFP4 input), dry runs only

# types_of_json FILE: sorted "name type" lines from tessera's JSON plan.
types_of_json() {
  "$PY" -c 'import json,sys
d = json.load(open(sys.argv[1]))
print("\n".join(sorted("%s %s" % (t["name"], t["type"]) for t in d["tensors"])))' "$1"
}

# mark_kept WANT: llama.cpp's "name type" lines with the tensors named in
# $KEPT as mxfp4 (what tessera writes for them without --allow-requantize).
mark_kept() {
  [[ -n $KEPT ]] || { cat "$1"; return; }
  awk 'NR == FNR { kept[$1] = 1; next } ($1 in kept) { $2 = "mxfp4" } { print }' "$KEPT" "$1"
}

# check LABEL F16_GGUF MODEL_DIR FTYPE [tessera/llama options...]
check() {
  local label=$1 gguf=$2 dir=$3 ft=$4 want="$TMP/want.txt" got="$TMP/got.txt" dry=(--dry-run) inputs=("$2")
  shift 4
  [[ $REAL_FTYPES == *" $ft "* ]] && ((LLAMA_REAL)) && dry=()
  [[ $HF_FTYPES == *" $ft "* || ($label == *override* && $HF_OVERRIDES == 1) ]] && inputs+=("$dir")
  if ! "$TS_LLAMA" quantize "$gguf" "$TMP/llama.gguf" "$ft" -t "$THREADS" "${dry[@]}" "$@" 2>"$TMP/llama.log" |
      sort >"$TMP/llama.txt" || [[ ! -s "$TMP/llama.txt" ]]; then
    echo "$label: llama.cpp failed: $(tail -1 "$TMP/llama.log")"
    failures+=("$label")
    return
  fi
  mark_kept "$TMP/llama.txt" >"$want"
  rm -f "$TMP/llama.gguf"
  local input
  for input in "${inputs[@]}"; do
    if ! "$TESSERA" quantize "$input" "$ft" --dry-run --json -q "${TS_EXTRA[@]}" "$@" >"$TMP/plan.json" 2>"$TMP/ts.log"; then
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

# mixes GGUF DIR LABEL: every variant above on one F16 GGUF.
mixes() {
  local gguf=$1 dir=$2 m=$3 ft
  for ft in "${FTYPES[@]}"; do
    check "$m/$ft" "$gguf" "$dir" "$ft"
  done
  for ft in "${IMATRIX_FTYPES[@]}"; do
    check "$m/$ft+imatrix" "$gguf" "$dir" "$ft" --imatrix "$TMP/$m-imatrix.gguf"
  done
  check "$m/Q4_K_M+pure" "$gguf" "$dir" Q4_K_M --pure
  # --output-tensor-type / --token-embedding-type skip the fallback: where q5_0 / q8_0 do not fit the
  # rows (DeepSeek's fixture: 12 wide), llama.cpp's dry run lists them anyway and tessera refuses (a
  # unit test checks the refusal), so float types stand in
  local out_t=q5_0 emb_t=q8_0
  ((EMBD_ROW % 32 == 0)) || { out_t=bf16; emb_t=f16; }
  check "$m/Q4_K_M+overrides" "$gguf" "$dir" Q4_K_M --tensor-type 'blk\.[01]\.attn_v=q8_0' \
    --tensor-type 'ffn_up=q5_K' --tensor-type 'ffn_=iq4_nl' --output-tensor-type "$out_t" --token-embedding-type "$emb_t"
  check "$m/Q3_K_M+override" "$gguf" "$dir" Q3_K_M --tensor-type 'attn_output=q4_0'
}

# convert_f16 DIR GGUF LABEL: false (with a message) when tessera cannot convert it.
convert_f16() {
  "$TESSERA" convert "$1" -o "$2" --outtype f16 -q -t "$THREADS" >"$TMP/convert.log" 2>&1 && return 0
  echo "$3: convert failed: $(tail -1 "$TMP/convert.log")"
  return 1
}

# prepare GGUF LABEL: the F16 plan (names, shapes, stored types), a synthetic
# imatrix for it, and EMBD_ROW, the length of token_embd's rows.
prepare() {
  "$TESSERA" quantize "$1" F16 --dry-run --json -q >"$TMP/f16-plan.json"
  EMBD_ROW=$("$PY" -c 'import json, sys
print([t["shape"][0] for t in json.load(open(sys.argv[1]))["tensors"] if t["name"] == "token_embd.weight"][0])' \
    "$TMP/f16-plan.json")
  "$PY" "$TS_SRC/tests/interop/make_imatrix.py" "$TMP/f16-plan.json" "$TMP/$2-imatrix.gguf"
}

start=$SECONDS
for m in llama-spm-8m qwen3-tok-small qwen3moe-spm-9m qwen3moe-tok-small; do
  dir="$SHARED/models/$m"
  [[ -d "$dir" ]] || { echo "$m: not in $SHARED/models (skipped)"; continue; }
  gguf="$TMP/$m-f16.gguf"
  convert_f16 "$dir" "$gguf" "$m" || { failures+=("$m"); continue; }
  prepare "$gguf" "$m"
  t0=$SECONDS
  n0=$n_checked
  mixes "$gguf" "$dir" "$m"
  echo "$m: $((n_checked - n0)) mixes identical to llama.cpp's ($((SECONDS - t0)) s)"
  rm -f "$gguf"
done

# load_check LABEL GGUF FTYPE [tessera options...]: tessera really writes the
# mix; llama.cpp loads it and computes finite logits; the written types are
# llama.cpp's (as mark_kept shows them for the options given).
load_check() {
  local label=$1 gguf=$2 ft=$3 out="$TMP/load.gguf"
  shift 3
  if ! "$TESSERA" quantize "$gguf" "$out" "$ft" -q -t "$THREADS" "$@" 2>"$TMP/ts.log"; then
    echo "$label: tessera quantize failed: $(tail -1 "$TMP/ts.log")"
    failures+=("$label")
    return
  fi
  if ! "$TS_LLAMA" logits "$out" --ids 1,2,3,4,5 -o "$TMP/logits.f32" -t "$THREADS" >/dev/null 2>"$TMP/llama.log" ||
      ! "$PY" -c 'import sys, numpy as np; x = np.fromfile(sys.argv[1], np.float32); sys.exit(not (x.size and np.isfinite(x).all()))' \
        "$TMP/logits.f32"; then
    echo "$label: llama.cpp cannot run tessera's output: $(tail -1 "$TMP/llama.log")"
    failures+=("$label")
    return
  fi
  "$TS_LLAMA" quantize "$gguf" "$TMP/llama.gguf" "$ft" -t "$THREADS" --dry-run 2>/dev/null | sort >"$TMP/llama.txt"
  mark_kept "$TMP/llama.txt" >"$TMP/want.txt"
  "$TESSERA" quantize "$out" F16 --dry-run --json -q --allow-requantize | "$PY" -c 'import json, sys
print("\n".join(sorted("%s %s" % (t["name"], t["src_type"]) for t in json.load(sys.stdin)["tensors"])))' >"$TMP/got.txt"
  if ! diff -u "$TMP/want.txt" "$TMP/got.txt" >"$TMP/diff.txt"; then
    echo "$label: written types differ from llama.cpp's (- llama.cpp, + tessera's file):"
    grep '^[-+][^-+]' "$TMP/diff.txt" | head -20
    failures+=("$label")
    return
  fi
  n_loaded=$((n_loaded + 1))
  rm -f "$out"
}

# the checkpoint path once per family (DeepSeek's FP8 conversion is the slow part)
HF_FTYPES=" Q4_K_M "
HF_OVERRIDES=0
for m in "${FAMILIES[@]}"; do
  dir="$SHARED/fixtures/families/$m"
  [[ -d "$dir" ]] || { echo "$m: not in $SHARED/fixtures/families (skipped)"; continue; }
  gguf="$TMP/$m-f16.gguf"
  convert_f16 "$dir" "$gguf" "$m" || { echo "$m: skipped (not convertible yet)"; continue; }
  prepare "$gguf" "$m"
  t0=$SECONDS
  n0=$n_checked
  "$PY" -c 'import json, sys
for t in json.load(open(sys.argv[1]))["tensors"]:
    if t["src_type"] == "mxfp4":
        print(t["name"])' "$TMP/f16-plan.json" >"$TMP/$m-mxfp4.txt"
  if [[ -s "$TMP/$m-mxfp4.txt" ]]; then
    # MXFP4 input: llama.cpp only in dry runs; tessera as llama.cpp with --allow-requantize ...
    LLAMA_REAL=0
    TS_EXTRA=(--allow-requantize)
    mixes "$gguf" "$dir" "$m"
    # ... and by default with the MXFP4 tensors kept
    TS_EXTRA=()
    KEPT="$TMP/$m-mxfp4.txt"
    for ft in "${FTYPES[@]}"; do
      check "$m/$ft+kept" "$gguf" "$dir" "$ft"
    done
    check "$m/Q4_K_M+imatrix+kept" "$gguf" "$dir" Q4_K_M --imatrix "$TMP/$m-imatrix.gguf"
  else
    mixes "$gguf" "$dir" "$m"
  fi
  # experts forced to mxfp4 (on gpt-oss: kept as they are, whatever the mode)
  check "$m/Q4_K_M+mxfp4-override" "$gguf" "$dir" Q4_K_M --tensor-type '_exps=mxfp4'
  n1=$n_loaded
  for ft in "${LOAD_FTYPES[@]}"; do
    load_check "$m/$ft/load" "$gguf" "$ft"
  done
  if [[ -n $KEPT ]]; then
    KEPT=""
    load_check "$m/Q4_K_M+requantized/load" "$gguf" Q4_K_M --allow-requantize
  fi
  LLAMA_REAL=1
  echo "$m: $((n_checked - n0)) mixes identical to llama.cpp's, $((n_loaded - n1)) outputs loaded by llama.cpp ($((SECONDS - t0)) s)"
  rm -f "$gguf"
done

((${#failures[@]} == 0)) || fail "tensor types differ from llama.cpp's: ${failures[*]}"
((n_checked > 0)) || skip "no model checked"
echo "PASS: $n_checked quantization plans identical to llama.cpp's, $n_loaded family outputs loaded ($((SECONDS - start)) s)"
