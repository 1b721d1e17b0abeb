#!/usr/bin/env bash
# tessera's reference forward pass against llama.cpp on the same GGUFs.
# For every model in ../shared/models, converted by tessera to F32, F16 and
# Q8_0 (and quantized to Q4_K_M and Q6_K once tessera quantize exists):
#   - perplexity: tessera perplexity vs llama.cpp's (ts_llama perplexity,
#     llama-perplexity's method and defaults) on the start of wiki.test.raw,
#     same -c and chunks: equal within TOL (0.1%) relative;
#   - logits (F32 files): tessera logits vs ts_llama logits (F32 KV cache) on
#     the first 64 tokens of the text: max |difference| below 1e-3;
#   - KL divergence: tessera's mean KLD of every other type against the F16
#     file (--kld-save / --kld) vs llama-perplexity's statistic computed from
#     llama.cpp's logits of both files (llama_kld.py): within 5%.
# Chunks: -c 128, 32 chunks (2016 scored tokens) for the 4096-vocab models,
# 8 for the 151936-vocab ones. Each pair of runs goes side by side on one
# thread each (ggml's spinning barrier makes a 2-thread decode slow as soon as
# anything else wants a core). TS_PPL_TYPES / TS_PPL_CHUNKS / TS_KLD_CHUNKS /
# TS_PPL_MODELS (names) override.
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_shared
need_deps
need_tessera
tessera_has convert || skip "tessera convert not built"
tessera_has perplexity || skip "tessera perplexity not built"
tessera_has logits || skip "tessera logits not built"
[[ $("$TS_LLAMA" perplexity 2>&1 || true) != *"unknown command"* ]] || skip "ts_llama has no perplexity subcommand yet"
TEXT_SRC="$SHARED/data/wiki.test.raw"
[[ -f "$TEXT_SRC" ]] || skip "$TEXT_SRC not found"

TOL=0.001
CTX=128
TYPES="${TS_PPL_TYPES:-F32 F16 Q8_0 Q4_K_M Q6_K}"
HAVE_QUANTIZE=0
tessera_has quantize && HAVE_QUANTIZE=1

# Far more tokens than any run scores; tokenizing 1.3 MB would dominate.
TEXT="$TMP/wiki.head.txt"
head -c 131072 "$TEXT_SRC" | sed '$d' >"$TEXT"

json_num() { sed -n "s/.*\"$1\": *\\([0-9.eE+-]*\\).*/\\1/p" | head -1; }

# ppl_pair GGUF CHUNKS: both perplexities side by side; sets p_ref, p_ours.
ppl_pair() {
  local pa pb
  "$TS_LLAMA" perplexity "$1" "$TEXT" -c "$CTX" --chunks "$2" -t 1 --json >"$TMP/ppl.ref" & pa=$!
  "$TESSERA" perplexity "$1" -f "$TEXT" -c "$CTX" --chunks "$2" -t 1 --json -q >"$TMP/ppl.ours" & pb=$!
  wait "$pa" || fail "ts_llama perplexity failed on $1"
  wait "$pb" || fail "tessera perplexity failed on $1"
  p_ref=$(json_num ppl <"$TMP/ppl.ref") p_ours=$(json_num ppl <"$TMP/ppl.ours")
  [[ -n $p_ref && -n $p_ours ]] || fail "no perplexity in the output for $1"
}

# kld_check NAME CHUNKS: for every other type of NAME against its F16 file:
#   - tessera's mean KLD (perplexity --kld-save / --kld) vs llama-perplexity's
#     statistic computed by llama_kld.py from llama.cpp's logits of both files
#     (ts_llama logits) over the same scored positions: within 5%;
#   - the same statistic from tessera's logits (tessera logits) position by
#     position: positions where one side's MoE router chose other experts at a
#     near-tie ("flips": the KLD of one position differs by far more than
#     rounding explains) may differ, at most max(1, 2%) of them; over the
#     other positions the two means agree within 5%.
# An absolute tolerance of 1e-6 covers the resolution of the statistic itself
# (llama-perplexity stores base log-probabilities as 16-bit codes, which puts a
# floor of a few 1e-7 under any mean KLD: what F32 against F16 measures).
# Both sides keep K/V in f32 (ts_llama logits always does).
near() { awk -v a="$1" -v b="$2" 'BEGIN { d = b - a; if (d < 0) d = -d; m = a < 0 ? -a : a; exit !(d <= 0.05 * m || d <= 1e-6) }'; }
kld_check() {
  local name=$1 kc=$2 base="$TMP/$1.F16.gguf" t f ours bos i ids r_all o_all r_ag o_ag flips npos ok
  [[ -f $base ]] || return 0
  "$TESSERA" perplexity "$base" -f "$TEXT" -c "$CTX" --chunks "$kc" -q --kv-f32 --kld-save "$TMP/base.kld" >/dev/null ||
    fail "$name: tessera perplexity --kld-save failed"
  bos=$("$TESSERA" inspect "$base" --json --no-tensors | "$PY" -c '
import json, sys
m = json.load(sys.stdin)["metadata"]
print(m.get("tokenizer.ggml.bos_token_id", -1) if m.get("tokenizer.ggml.add_bos_token", False) else -1)')
  # The .kld file holds the evaluated tokens (llama.cpp's layout: 20-byte header,
  # then int32 ids); the first of each chunk is BOS when the model adds one.
  "$PY" - "$TMP/base.kld" "$CTX" "$kc" "$bos" >"$TMP/chunks.txt" <<'PYEOF'
import sys, numpy as np
path, ctx, kc, bos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
tok = np.fromfile(path, dtype="<i4", count=ctx * kc, offset=20).reshape(kc, ctx)
for row in tok:
    if bos >= 0:
        row[0] = bos
    print(",".join(map(str, row)))
PYEOF
  mkdir -p "$TMP/kl" "$TMP/ko"
  # both_logits GGUF PREFIX: llama.cpp's and tessera's logits of every chunk.
  both_logits() {
    local i=0 ids
    while read -r ids; do
      "$TS_LLAMA" logits "$1" --ids "$ids" -o "$TMP/kl/$2.$i.f32" -t 2 >/dev/null 2>&1 || fail "$name: ts_llama logits ($1)"
      "$TESSERA" logits "$1" --ids "$ids" -o "$TMP/ko/$2.$i.f32" -t 2 >/dev/null 2>&1 || fail "$name: tessera logits ($1)"
      i=$((i + 1))
    done <"$TMP/chunks.txt"
  }
  both_logits "$base" base
  for t in $TYPES; do
    f="$TMP/$name.$t.gguf"
    [[ $t != F16 && -f $f ]] || continue
    "$TESSERA" perplexity "$f" --kld "$TMP/base.kld" --kv-f32 --json -q >"$TMP/kld.json" ||
      fail "$name $t: tessera perplexity --kld failed"
    ours=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["kld"]["kld"]["value"])' "$TMP/kld.json")
    both_logits "$f" q
    read -r r_all o_all r_ag o_ag flips npos < <("$PY" "$TS_SRC/tests/interop/llama_kld.py" "$TMP/kl" "$CTX" "$kc" --ours "$TMP/ko") ||
      fail "$name $t: llama_kld.py failed"
    ok=ok
    near "$r_ag" "$o_ag" || ok=FAIL
    near "$o_all" "$ours" || ok=FAIL
    ((flips <= (npos / 50 > 1 ? npos / 50 : 1))) || ok=FAIL
    [[ $r_all == "$r_ag" ]] || echo "  $name $t: $flips of $npos positions flipped (llama.cpp mean $r_all with them)"
    printf '| %-20s | %-7s | %12.6g | %12.6g | %10s | %s\n' "$name" "KLD $t" "$r_ag" "$ours" \
      "$(awk -v a="$r_ag" -v b="$ours" 'BEGIN { printf "%+.2f%%", 100 * (b / a - 1) }')" "$ok"
    [[ $ok == ok ]] || failures+=("$name $t mean KLD vs F16: llama.cpp $r_all ($r_ag without $flips flips of $npos), tessera logits $o_all ($o_ag), tessera perplexity --kld $ours")
    kld_compared=$((kld_compared + 1))
    rm -f "$f"
  done
  rm -rf "$TMP/kl" "$TMP/ko" "$base"
}

failures=()
compared=0
kld_compared=0
printf '| %-20s | %-7s | %12s | %12s | %10s | %s\n' model type llama.cpp tessera "rel diff" result
printf '|%s|\n' "----------------------|---------|--------------|--------------|------------|-------"
for dir in "$SHARED"/models/*/; do
  dir=${dir%/}
  name=$(basename "$dir")
  [[ -f "$dir/config.json" ]] || continue
  [[ -z ${TS_PPL_MODELS:-} || " $TS_PPL_MODELS " == *" $name "* ]] || continue
  vocab=$(sed -n 's/.*"vocab_size": *\([0-9]*\).*/\1/p' "$dir/config.json")
  chunks=${TS_PPL_CHUNKS:-$((vocab > 100000 ? 8 : 32))}
  for t in $TYPES; do
    f="$TMP/$name.$t.gguf"
    case $t in
      F32|F16|Q8_0)
        "$TESSERA" convert "$dir" -o "$f" --outtype "${t,,}" -q >"$TMP/conv.log" 2>&1 ||
          fail "$name: tessera convert --outtype ${t,,} failed: $(tail -1 "$TMP/conv.log")" ;;
      *)
        if ((!HAVE_QUANTIZE)); then
          echo "| $name | $t | - | - | - | skipped (no tessera quantize)"
          continue
        fi
        [[ -f "$TMP/$name.F16.gguf" ]] || "$TESSERA" convert "$dir" -o "$TMP/$name.F16.gguf" --outtype f16 -q
        "$TESSERA" quantize "$TMP/$name.F16.gguf" "$f" "$t" -q >"$TMP/q.log" 2>&1 ||
          fail "$name: tessera quantize $t failed: $(tail -1 "$TMP/q.log")" ;;
    esac
    ppl_pair "$f" "$chunks"
    rel=$(awk -v a="$p_ref" -v b="$p_ours" 'BEGIN { printf "%+.5f%%", 100 * (b / a - 1) }')
    ok=$(awk -v a="$p_ref" -v b="$p_ours" -v t="$TOL" 'BEGIN { d = b / a - 1; print (d <= t && d >= -t) ? "ok" : "FAIL" }')
    printf '| %-20s | %-7s | %12s | %12s | %10s | %s\n' "$name" "$t" "$p_ref" "$p_ours" "$rel" "$ok"
    [[ $ok == ok ]] || failures+=("$name $t perplexity: llama.cpp $p_ref, tessera $p_ours")
    compared=$((compared + 1))

    if [[ $t == F32 ]]; then
      "$TS_LLAMA" tokenize "$f" "$TEXT" >"$TMP/ids.txt" 2>/dev/null || fail "ts_llama tokenize failed on $f"
      ids=$(head -64 "$TMP/ids.txt" | paste -sd,)
      "$TS_LLAMA" logits "$f" --ids "$ids" -o "$TMP/ref.f32" -t 2 >/dev/null 2>&1 || fail "ts_llama logits failed on $f"
      "$TESSERA" logits "$f" --ids "$ids" -o "$TMP/got.f32" -t 2 || fail "tessera logits failed on $f"
      "$PY" "$TS_SRC/tests/interop/compare_logits.py" "$TMP/ref.f32" "$TMP/got.f32" --n 64 --max-abs 1e-3 \
        --label "$name F32 logits vs llama.cpp" || failures+=("$name F32 logits")
    fi
  done
  kld_check "$name" "${TS_KLD_CHUNKS:-$((vocab > 100000 ? 2 : 4))}"
done

((compared > 0)) || skip "nothing compared"
if ((${#failures[@]})); then
  printf 'FAIL: %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "PASS: $compared perplexities within $TOL of llama.cpp's, $kld_compared mean KLDs within 5%"
