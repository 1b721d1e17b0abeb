#!/usr/bin/env bash
# tessera's reference forward pass against llama.cpp on the same GGUFs.
# For every model in ../shared/models, converted by tessera to F32, F16 and
# Q8_0 (and quantized to Q4_K_M and Q6_K once tessera quantize exists):
#   - perplexity: tessera perplexity vs llama.cpp's (ts_llama perplexity,
#     llama-perplexity's method and defaults) on the start of wiki.test.raw,
#     same -c and chunks: equal within TOL (0.1%) relative;
#   - logits (F32 files): tessera logits vs ts_llama logits (F32 KV cache) on
#     the first 64 tokens of the text: max |difference| below 1e-3;
#   - KL divergence (llama-spm-8m): tessera's mean KLD of Q4_K_M against the
#     F16 file (--kld-save / --kld) vs the same statistic computed here from
#     llama.cpp's logits of both files: within 5%.
# Chunks: -c 128, 32 chunks (2016 scored tokens) for the 4096-vocab models,
# 8 for the 151936-vocab ones. Each pair of runs goes side by side on one
# thread each (ggml's spinning barrier makes a 2-thread decode slow as soon as
# anything else wants a core). TS_PPL_TYPES / TS_PPL_CHUNKS override.
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

failures=()
compared=0
printf '| %-20s | %-7s | %12s | %12s | %10s | %s\n' model type llama.cpp tessera "rel diff" result
printf '|%s|\n' "----------------------|---------|--------------|--------------|------------|-------"
for dir in "$SHARED"/models/*/; do
  dir=${dir%/}
  name=$(basename "$dir")
  [[ -f "$dir/config.json" ]] || continue
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
    [[ $t == F16 || ($t == Q4_K_M && $name == llama-spm-8m) ]] || rm -f "$f"
  done
done

# KL divergence of Q4_K_M against F16, ours vs the same statistic from llama.cpp's logits.
kname=llama-spm-8m
if ((HAVE_QUANTIZE)) && [[ -f "$TMP/$kname.F16.gguf" && -f "$TMP/$kname.Q4_K_M.gguf" ]]; then
  kc=4
  "$TESSERA" perplexity "$TMP/$kname.F16.gguf" -f "$TEXT" -c "$CTX" --chunks "$kc" -q --kld-save "$TMP/base.kld" >/dev/null ||
    fail "tessera perplexity --kld-save failed"
  "$TESSERA" perplexity "$TMP/$kname.Q4_K_M.gguf" --kld "$TMP/base.kld" --json -q >"$TMP/kld.json" ||
    fail "tessera perplexity --kld failed"
  ours=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["kld"]["kld"]["value"])' "$TMP/kld.json")
  bos=$("$TESSERA" inspect "$TMP/$kname.F16.gguf" --json --no-tensors |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["tokenizer.ggml.bos_token_id"])')
  # The .kld file holds the evaluated tokens (llama.cpp's layout: 20-byte header, then int32 ids).
  "$PY" - "$TMP/base.kld" "$CTX" "$kc" "$bos" >"$TMP/chunks.txt" <<'EOF'
import sys, numpy as np
path, ctx, kc, bos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
tok = np.fromfile(path, dtype="<i4", count=ctx * kc, offset=20).reshape(kc, ctx)
for row in tok:
    row[0] = bos
    print(",".join(map(str, row)))
EOF
  i=0
  while read -r ids; do
    "$TS_LLAMA" logits "$TMP/$kname.F16.gguf" --ids "$ids" -o "$TMP/base.$i.f32" -t 2 >/dev/null 2>&1 || fail "ts_llama logits (F16)"
    "$TS_LLAMA" logits "$TMP/$kname.Q4_K_M.gguf" --ids "$ids" -o "$TMP/q.$i.f32" -t 2 >/dev/null 2>&1 || fail "ts_llama logits (Q4_K_M)"
    i=$((i + 1))
  done <"$TMP/chunks.txt"
  ref=$("$PY" - "$TMP" "$CTX" "$kc" <<'EOF'
import sys, numpy as np
d, ctx, kc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def logp(a):
    a = a.astype(np.float64)
    m = a.max(1, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(1, keepdims=True))
vals = []
for i in range(kc):
    b = logp(np.fromfile(f"{d}/base.{i}.f32", "<f4").reshape(ctx, -1)[ctx // 2:ctx - 1])
    q = logp(np.fromfile(f"{d}/q.{i}.f32", "<f4").reshape(ctx, -1)[ctx // 2:ctx - 1])
    vals.append((np.exp(b) * (b - q)).sum(1))
print(np.concatenate(vals).mean())
EOF
)
  rel=$(awk -v a="$ref" -v b="$ours" 'BEGIN { printf "%+.2f%%", 100 * (b / a - 1) }')
  echo "mean KLD $kname Q4_K_M vs F16: llama.cpp logits $ref, tessera $ours ($rel)"
  awk -v a="$ref" -v b="$ours" 'BEGIN { d = b / a - 1; exit !(a > 0 && d <= 0.05 && d >= -0.05) }' ||
    failures+=("$kname mean KLD: llama.cpp logits $ref, tessera $ours")
fi

((compared > 0)) || skip "nothing compared"
if ((${#failures[@]})); then
  printf 'FAIL: %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "PASS: $compared perplexities within $TOL of llama.cpp's"
