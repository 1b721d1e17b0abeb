#!/usr/bin/env bash
# tessera convert -> llama.cpp forward pass == PyTorch forward pass of the HF
# checkpoint. For every shared test model and output type (f32 f16 bf16 q8_0),
# and for random-weight checkpoints of other families (qwen2, mistral, llama3;
# f32 and f16), llama.cpp's logits over ~64 positions are compared with the
# float32 reference from hf_reference.py.
#
# Bounds (max |logit diff|, top-1 agreement over the positions). f32 must
# match to 1e-3: only summation order differs. For the other types llama.cpp
# also rounds the *activations* inside each matmul (to f16, bf16, q8_0), so the
# error is that of the type, not of our converter. Measured (64 positions,
# logit std 1.5-3.9): f32 <= 1.9e-5; f16 <= 1.2e-2; bf16 <= 3.9e-2 dense,
# 0.12 MoE; q8_0 <= 0.18 dense, 0.25 MoE, top-1 >= 0.98. A wrong tensor layout
# gives diffs of the order of the logits (>= 1) at every position.
# MoE models skip their 2 worst positions for the rounded types: when two
# experts' router scores nearly tie (qwen3moe-spm-9m, layer 2, position 49:
# probability margin 1.6e-4), rounding picks the other expert and that
# position and a few after it move by ~1 however exact the conversion is.
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_shared
need_deps
tessera_has convert || skip "tessera convert not built"
[[ -f "$TS_SRC/tests/interop/hf_reference.py" ]] || skip "tests/interop/hf_reference.py missing"

declare -A MAX_ABS=([f32]=1e-3 [f16]=5e-2 [bf16]=0.25 [q8_0]=1.0)
declare -A TOP1=([f32]=0.98 [f16]=0.95 [bf16]=0.9 [q8_0]=0.9)
N_IDS=64
THREADS="${TS_THREADS:-2}"
TEXT="The quick brown fox jumps over the lazy dog. Once upon a time there was a little girl who lived in a village near the forest."

failures=()
row() { printf '%s\n' "$1"; }

# Prints N_IDS comma-separated token ids: the tokens of TEXT as llama.cpp
# reads them from GGUF ($1), then deterministic pseudo-random ids below $2 so
# that embedding rows far from the text's tokens are exercised too.
make_ids() {
  local gguf=$1 n_vocab=$2 list=() x=12345 toks
  printf '%s' "$TEXT" >"$TMP/text.txt"
  if toks=$("$TS_LLAMA" tokenize "$gguf" "$TMP/text.txt" --add-special 1); then
    [[ -z "$toks" ]] || mapfile -t list <<<"$toks"
  else
    echo "note: ts_llama tokenize failed on $gguf; using pseudo-random ids only" >&2
  fi
  list=("${list[@]:0:$((N_IDS / 2))}")
  while ((${#list[@]} < N_IDS)); do
    x=$(((x * 1103515245 + 12345) & 0x7fffffff))
    list+=($((x % n_vocab)))
  done
  local IFS=,
  echo "${list[*]}"
}

# check NAME MODEL_DIR OUTTYPES...: convert each type, run both forward passes.
check() {
  local name=$1 dir=$2 ids="" ref="$TMP/$1.ref.f32" t gguf out line n_vocab skip=0
  shift 2
  for t in "$@"; do
    gguf="$TMP/$name-$t.gguf"
    if ! "$TESSERA" convert "$dir" -o "$gguf" --outtype "$t" -q -t "$THREADS" >"$TMP/convert.log" 2>&1; then
      row "$(printf '%-28s convert failed: %s' "$name/$t" "$(tail -1 "$TMP/convert.log")")"
      failures+=("$name/$t")
      continue
    fi
    if [[ -z "$ids" ]]; then
      n_vocab=$("$TS_LLAMA" meta "$gguf" | sed -n 's/^n_vocab=//p') || n_vocab=""
      [[ -n "$n_vocab" ]] || { row "$name/$t: ts_llama meta failed"; failures+=("$name/$t"); continue; }
      ids=$(make_ids "$gguf" "$n_vocab")
      if ! "$PY" "$TS_SRC/tests/interop/hf_reference.py" "$dir" --ids "$ids" -o "$ref" \
          --threads "$THREADS" >"$TMP/ref.log" 2>&1; then
        row "$name: hf_reference.py failed: $(tail -1 "$TMP/ref.log")"
        failures+=("$name")
        return
      fi
    fi
    out="$TMP/$name-$t.f32"
    skip=0
    [[ $t != f32 ]] && grep -q '"num_experts"\|"num_local_experts"' "$dir/config.json" && skip=2
    if ! "$TS_LLAMA" logits "$gguf" --ids "$ids" -o "$out" -t "$THREADS" 2>"$TMP/llama.log"; then
      row "$(printf '%-28s llama.cpp failed: %s' "$name/$t" "$(tail -1 "$TMP/llama.log")")"
      failures+=("$name/$t")
      continue
    fi
    if line=$("$PY" "$TS_SRC/tests/interop/compare_logits.py" "$ref" "$out" --n "$N_IDS" \
        --label "$name/$t" --max-abs "${MAX_ABS[$t]}" --top1 "${TOP1[$t]}" \
        --skip-worst "$skip" 2>&1); then
      row "$line"
    else
      row "$line"  # includes compare_logits.py's reason
      failures+=("$name/$t")
    fi
    rm -f "$gguf" "$out"
  done
  rm -f "$ref"
}

for m in llama-spm-8m qwen3-tok-small qwen3moe-tok-small qwen3moe-spm-9m; do
  [[ -d "$SHARED/models/$m" ]] || { row "$m: not in $SHARED/models (skipped)"; continue; }
  start=$SECONDS
  check "$m" "$SHARED/models/$m" f32 f16 bf16 q8_0
  row "  ($m: $((SECONDS - start)) s)"
done

# Families we have no trained checkpoint of: random weights, the llama-spm-8m
# tokenizer (the forward pass does not care which tokenizer it is).
if [[ -f "$TS_SRC/tests/interop/make_checkpoint.py" ]]; then
  for kind in qwen2 mistral llama3; do
    if "$PY" "$TS_SRC/tests/interop/make_checkpoint.py" --kind "$kind" -o "$TMP/ck-$kind" \
        --tokenizer-from "$SHARED/models/llama-spm-8m" >"$TMP/mk.log" 2>&1; then
      start=$SECONDS
      check "random-$kind" "$TMP/ck-$kind" f32 f16
      row "  (random-$kind: $((SECONDS - start)) s)"
    else
      row "random-$kind: make_checkpoint.py failed: $(tail -1 "$TMP/mk.log")"
      failures+=("random-$kind")
    fi
    rm -rf "$TMP/ck-$kind"
  done
else
  row "random checkpoints: tests/interop/make_checkpoint.py missing (skipped)"
fi

((${#failures[@]} == 0)) || fail "logits differ from the PyTorch reference: ${failures[*]}"
echo "PASS: llama.cpp logits of converted models match the PyTorch reference"
