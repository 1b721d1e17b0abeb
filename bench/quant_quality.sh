#!/usr/bin/env bash
# (Run by hand, not by CI: it is the quality comparison behind issue 5, which our
# quantizer does not yet pass for every type; results are recorded in docs/benchmarks.md.)
# tessera quantize vs llama.cpp's own quantizer, judged by llama.cpp's
# perplexity. For every model in ../shared/models: tessera convert -> F16
# GGUF; llama.cpp quantizes it (ts_llama quantize = llama_model_quantize) and
# tessera quantizes the same file to the same ftype; llama.cpp loads both and
# measures perplexity on the start of wiki.test.raw (ts_llama perplexity,
# llama-perplexity's method). Ours must be <= llama.cpp's * (1 + TOL).
#
# Why a tolerance at all: a scale search that lowers the weighted RMSE does
# not lower perplexity on every text; 0.5% is the issue's bound.
# Chunks: -c 256, 16 chunks (2032 scored tokens) for the 4096-vocab models,
# 8 for the 151936-vocab ones, whose logits dominate the run time: about 165
# CPU seconds in all, ~1.5 minutes on 2 idle cores. TS_QQ_TYPES / TS_QQ_CHUNKS override.
#
# A type tessera does not implement yet (its quantize fails with "not
# implemented", "unsupported" or "unknown") is listed as skipped; the test
# skips (77) when tessera quantize is missing or no type could be compared.
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tests/interop/lib.sh"

need_shared
need_deps
tessera_has convert || skip "tessera convert not built"
tessera_has quantize || skip "tessera quantize not built yet"
# pipefail would report ts_llama's usage exit status, not grep's: compare the text.
[[ $("$TS_LLAMA" quantize 2>&1 || true) != *"unknown command"* ]] ||
  skip "ts_llama has no quantize subcommand yet"
TEXT_SRC="$SHARED/data/wiki.test.raw"
[[ -f "$TEXT_SRC" ]] || skip "$TEXT_SRC not found"

TOL=0.005
CTX=256
TYPES="${TS_QQ_TYPES:-Q4_0 Q4_K_M Q6_K Q8_0 IQ4_XS}"
# More types where a run is cheap (4096-token vocabularies).
EXTRA_TYPES="${TS_QQ_EXTRA_TYPES:-Q4_1 Q5_0 Q5_1 Q2_K Q3_K_M Q4_K_S Q5_K_M IQ4_NL}"
# Each perplexity run is single-threaded and the two of a pair run side by
# side: ggml's spinning thread barrier makes one 2-thread decode slower than
# two 1-thread ones as soon as anything else wants a core.
PPL_THREADS="${TS_QQ_THREADS:-1}"

# The first 256 KB of the text hold far more tokens than any run scores, and
# tokenizing them instead of 1.3 MB saves ~1 s per run. Cut at a line end.
TEXT="$TMP/wiki.head.txt"
head -c 262144 "$TEXT_SRC" | sed '$d' >"$TEXT"

# ppl GGUF CHUNKS: prints the perplexity, or fails the test.
ppl() {
  local out
  out=$("$TS_LLAMA" perplexity "$1" "$TEXT" -c "$CTX" --chunks "$2" -t "$PPL_THREADS" --json) ||
    fail "ts_llama perplexity failed on $1"
  sed -n 's/.*"ppl": *\([0-9.eE+-]*\).*/\1/p' <<<"$out"
}

# ppl2 A B CHUNKS: both perplexities at once, one core each; sets p_ref, p_ours.
ppl2() {
  local pa pb
  ppl "$1" "$3" >"$TMP/ppl.a" & pa=$!
  ppl "$2" "$3" >"$TMP/ppl.b" & pb=$!
  wait "$pa" || fail "perplexity of $1"
  wait "$pb" || fail "perplexity of $2"
  p_ref=$(<"$TMP/ppl.a") p_ours=$(<"$TMP/ppl.b")
  [[ -n $p_ref && -n $p_ours ]] || fail "no perplexity in the output for $1 or $2"
}

size_mb() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.2f", b / 1048576 }'; }

failures=()
skipped=()
compared=0
printf '| %-20s | %-7s | %10s | %10s | %10s | %7s | %6s | %6s | %s\n' \
  model type "F16 PPL" "llama.cpp" tessera ratio "MB l" "MB t" result
printf '|%s|\n' "----------------------|---------|------------|------------|------------|---------|--------|--------|-------"

for dir in "$SHARED"/models/*/; do
  dir=${dir%/}
  name=$(basename "$dir")
  [[ -f "$dir/config.json" ]] || continue
  f16="$TMP/$name.f16.gguf"
  if ! "$TESSERA" convert "$dir" -o "$f16" --outtype f16 -q >"$TMP/convert.log" 2>&1; then
    echo "$name: tessera convert failed: $(tail -1 "$TMP/convert.log")"
    failures+=("$name/convert")
    continue
  fi
  n_vocab=$("$TS_LLAMA" meta "$f16" | sed -n 's/^n_vocab=//p')
  types=$TYPES chunks=16
  if ((n_vocab > 32768)); then
    chunks=8
  else
    types="$TYPES $EXTRA_TYPES"
  fi
  chunks="${TS_QQ_CHUNKS:-$chunks}"
  base=$(ppl "$f16" "$chunks")
  for t in $types; do
    ref="$TMP/$name.$t.llama.gguf" ours="$TMP/$name.$t.tessera.gguf"
    if ! "$TS_LLAMA" quantize "$f16" "$ref" "$t" >"$TMP/q.log" 2>&1; then
      echo "$name/$t: ts_llama quantize failed: $(tail -1 "$TMP/q.log")"
      failures+=("$name/$t")
      continue
    fi
    if ! "$TESSERA" quantize "$f16" "$ours" "$t" >"$TMP/q.log" 2>&1; then
      if grep -qiE "not (yet )?implemented|unsupported|not supported|unknown (quant|type|ftype)" "$TMP/q.log"; then
        skipped+=("$t")
        printf '| %-20s | %-7s | %10.4f | %10s | %10s | %7s | %6s | %6s | %s\n' \
          "$name" "$t" "$base" "-" "-" "-" "-" "-" "skip: $(tail -1 "$TMP/q.log")"
        continue
      fi
      echo "$name/$t: tessera quantize failed: $(tail -1 "$TMP/q.log")"
      failures+=("$name/$t")
      continue
    fi
    ppl2 "$ref" "$ours" "$chunks"
    ratio=$(awk -v a="$p_ours" -v b="$p_ref" 'BEGIN { printf "%.4f", a / b }')
    result=ok
    if ! awk -v a="$p_ours" -v b="$p_ref" -v t="$TOL" 'BEGIN { exit !(a <= b * (1 + t)) }'; then
      result="FAIL (> llama.cpp * $(awk -v t="$TOL" 'BEGIN { print 1 + t }'))"
      failures+=("$name/$t")
    fi
    compared=$((compared + 1))
    printf '| %-20s | %-7s | %10.4f | %10.4f | %10.4f | %7s | %6s | %6s | %s\n' \
      "$name" "$t" "$base" "$p_ref" "$p_ours" "$ratio" "$(size_mb "$ref")" "$(size_mb "$ours")" "$result"
    rm -f "$ref" "$ours"
  done
  rm -f "$f16"
done
echo "(-c $CTX, first 8-16 chunks of wiki.test.raw; MB l / MB t: file sizes, llama.cpp / tessera)"

if ((${#failures[@]})); then
  fail "${#failures[@]} case(s): ${failures[*]}"
fi
if ((${#skipped[@]})); then
  echo "not implemented in tessera yet: $(tr ' ' '\n' <<<"${skipped[*]}" | sort -u | tr '\n' ' ')"
fi
((compared > 0)) || skip "no type could be compared"
echo "PASS: $compared comparisons"
