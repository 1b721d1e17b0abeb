#!/usr/bin/env bash
# The CI subset of bench/quant_quality.sh (issue 5's perplexity criterion):
# llama-spm-8m, F16 from tessera convert, quantized to Q4_K_M and Q2_K by
# llama.cpp (ts_llama quantize = llama_model_quantize) and by tessera, each
# scored on the first 32 x 512 tokens of wiki.test.raw (8160 scored) with
# `tessera perplexity --kld` against the F16 model's log-probabilities.
#
# Checked:
#  - KLD from F16 (how far the quantized model is from the original; the
#    measure of quantization error): ours <= llama.cpp's * 1.05 for both.
#    The 5%: two equally good quantizations (llama.cpp's own, of the F16
#    file and of it moved by 1 ulp) differ by 2-4% in KLD on these models.
#  - Perplexity: ours <= llama.cpp's * 1.005 (the issue's bound) for Q4_K_M.
#    For Q2_K it is printed, not checked: on these tiny models it swings by
#    +-2% between text windows and between equally good quantizations
#    (llama.cpp against itself with a flat imatrix: +1.6% on 65k tokens), so
#    at 8k tokens the bound would test luck (docs/formats/quant-types.md,
#    "Measuring against llama.cpp").
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_shared
need_deps
tessera_has convert || skip "tessera convert not built"
tessera_has quantize || skip "tessera quantize not built"
tessera_has perplexity || skip "tessera perplexity not built"
TEXT="$SHARED/data/wiki.test.raw"
MODEL="$SHARED/models/llama-spm-8m"
[[ -f "$TEXT" && -d "$MODEL" ]] || skip "wiki.test.raw or llama-spm-8m not found in $SHARED"
CHUNKS=32

"$TESSERA" convert "$MODEL" -o "$TMP/f16.gguf" --outtype f16 -q || fail "tessera convert $MODEL"
"$TESSERA" perplexity "$TMP/f16.gguf" -f "$TEXT" -c 512 --chunks "$CHUNKS" -t 2 -q \
  --kld-save "$TMP/base.kld" >/dev/null || fail "tessera perplexity --kld-save"

# score GGUF OUT.json
score() { "$TESSERA" perplexity "$1" --kld "$TMP/base.kld" -t 1 -q --json >"$2"; }
field() {
  "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["ppl"] if sys.argv[2] == "ppl" else d["kld"]["kld"]["value"])' "$1" "$2"
}

failures=()
for t in Q4_K_M Q2_K; do
  "$TS_LLAMA" quantize "$TMP/f16.gguf" "$TMP/ref.gguf" "$t" -t 2 >"$TMP/q.log" 2>&1 || fail "ts_llama quantize $t: $(tail -1 "$TMP/q.log")"
  "$TESSERA" quantize "$TMP/f16.gguf" "$TMP/ours.gguf" "$t" -t 2 >"$TMP/q.log" 2>&1 || fail "tessera quantize $t: $(tail -1 "$TMP/q.log")"
  # one thread each, side by side (see bench/quant_quality.sh)
  score "$TMP/ref.gguf" "$TMP/ref.json" & pr=$!
  score "$TMP/ours.gguf" "$TMP/ours.json" & po=$!
  wait "$pr" || fail "scoring llama.cpp's $t"
  wait "$po" || fail "scoring tessera's $t"
  p_ref=$(field "$TMP/ref.json" ppl) p_ours=$(field "$TMP/ours.json" ppl)
  k_ref=$(field "$TMP/ref.json" kld) k_ours=$(field "$TMP/ours.json" kld)
  printf '%-7s PPL llama.cpp %9.4f tessera %9.4f (%+.2f%%)   KLD llama.cpp %.6f tessera %.6f (%+.1f%%)\n' \
    "$t" "$p_ref" "$p_ours" "$(awk -v a="$p_ours" -v b="$p_ref" 'BEGIN { print 100 * (a / b - 1) }')" \
    "$k_ref" "$k_ours" "$(awk -v a="$k_ours" -v b="$k_ref" 'BEGIN { print 100 * (a / b - 1) }')"
  awk -v a="$k_ours" -v b="$k_ref" 'BEGIN { exit !(a <= b * 1.05) }' ||
    failures+=("$t: KLD $k_ours > llama.cpp's $k_ref * 1.05")
  if [[ $t != Q2_K ]]; then
    awk -v a="$p_ours" -v b="$p_ref" 'BEGIN { exit !(a <= b * 1.005) }' ||
      failures+=("$t: perplexity $p_ours > llama.cpp's $p_ref * 1.005")
  fi
done

if ((${#failures[@]})); then
  printf 'FAIL: %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "PASS: KLD within 5% of llama.cpp's (Q4_K_M, Q2_K), Q4_K_M perplexity within 0.5%"
