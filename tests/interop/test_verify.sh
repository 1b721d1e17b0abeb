#!/usr/bin/env bash
# tessera verify as a CI gate, end to end on llama-spm-8m (docs/verify.md):
#   - convert to F16 and quantize to Q4_K_M: the good file passes every check
#     and the gates against the F16 base (GGUF base scored on a text, and the
#     same base saved as a .kld file);
#   - one flipped byte in a tensor: exit 1, the "checksums" check fails;
#   - a NaN block scale: exit 1, "block_data" fails;
#   - a deliberately bad quantization (pure Q2_K, output and embeddings too):
#     exit 1, the "kld" gate fails;
#   - bad input (truncated file, missing base, gates without a base, a bad
#     option value): exit 2, and the JSON report says "error";
#   - with llama.cpp present: it still loads a file carrying tessera.checksum.*,
#     and its own quantizer's output (no checksums) passes, unless
#     --require-checksums.
# 8 chunks of 128 tokens; runs in a few seconds.
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_shared
need_tessera
tessera_has verify || skip "tessera verify not built"
tessera_has quantize || skip "tessera quantize not built"
[[ -x "$PY" ]] || skip "$PY not found"
MODEL="$SHARED/models/llama-spm-8m"
[[ -d "$MODEL" ]] || skip "$MODEL not found"
TEXT_SRC="$SHARED/data/wiki.test.raw"
[[ -f "$TEXT_SRC" ]] || skip "$TEXT_SRC not found"
TEXT="$TMP/text.txt"
head -c 65536 "$TEXT_SRC" | sed '$d' >"$TEXT"

GATES=(--max-kld 0.03 --max-ppl-ratio 1.05 --min-same-top 85)
SCORE=(-c 128 --chunks 8 -t 2)

"$TESSERA" convert "$MODEL" -o "$TMP/f16.gguf" --outtype f16 -q || fail "convert failed"
"$TESSERA" quantize "$TMP/f16.gguf" "$TMP/q4km.gguf" Q4_K_M -q || fail "quantize Q4_K_M failed"
"$TESSERA" quantize "$TMP/f16.gguf" "$TMP/bad.gguf" Q2_K --pure --output-tensor-type q2_K \
  --token-embedding-type q2_K -q || fail "quantize Q2_K failed"

# expect RC NAME ARGS...: runs tessera verify ARGS --json NAME.json, checks the exit code.
expect() {
  local want=$1 name=$2 rc=0
  shift 2
  "$TESSERA" verify "$@" --json "$TMP/$name.json" >"$TMP/$name.out" 2>&1 || rc=$?
  if ((rc != want)); then
    cat "$TMP/$name.out" >&2
    fail "$name: tessera verify exited $rc, expected $want"
  fi
}

# check NAME CHECK STATUS: the JSON report's check CHECK has STATUS.
check() {
  "$PY" - "$TMP/$1.json" "$2" "$3" <<'EOF' || fail "$1: the JSON report does not show $2 = $3"
import json, sys
path, name, want = sys.argv[1:4]
r = json.load(open(path))
got = {c["name"]: c for c in r["checks"]}
c = got.get(name)
if c is None or c["status"] != want:
    print(f"{name}: {c}", file=sys.stderr)
    sys.exit(1)
# every check carries the documented fields
for c in r["checks"]:
    assert set(c) >= {"name", "status", "value", "limit", "compare", "detail", "failure_count", "failures"}, c
assert r["result"] == {0: "pass", 1: "fail", 2: "error"}[r["exit_code"]], r["result"]
EOF
}

# -- good file -----------------------------------------------------------------
expect 0 good "$TMP/q4km.gguf" --base "$TMP/f16.gguf" -f "$TEXT" "${SCORE[@]}" "${GATES[@]}" --require-checksums
for c in gguf tensor_types block_data checksums model kld ppl_ratio same_top; do check good "$c" pass; done
echo "ok: Q4_K_M passes: $(grep -E '^  pass  kld' "$TMP/good.out" | sed 's/^ *pass *kld *//')"

# the same base saved once as a .kld file gives the same verdict
"$TESSERA" perplexity "$TMP/f16.gguf" -f "$TEXT" "${SCORE[@]}" --kld-save "$TMP/base.kld" -q >/dev/null ||
  fail "perplexity --kld-save failed"
expect 0 good_kld "$TMP/q4km.gguf" --base "$TMP/base.kld" "${GATES[@]}" -t 2
"$PY" - "$TMP/good.json" "$TMP/good_kld.json" <<'EOF' || fail "GGUF base and .kld base measure different KLDs"
import json, sys
a, b = (json.load(open(p))["accuracy"] for p in sys.argv[1:3])
assert a["kld"] == b["kld"] and a["tokens_scored"] == b["tokens_scored"], (a, b)
EOF
echo "ok: a .kld base gives the same measurement"

# -- damaged files ---------------------------------------------------------------
# poke FILE OUT TENSOR AT BYTES_HEX: OUT = FILE with bytes at TENSOR's data + AT replaced
# (XOR with 0x10 when BYTES_HEX is "flip").
poke() {
  cp "$1" "$2"
  "$TESSERA" inspect "$1" --json >"$TMP/inspect.json"
  "$PY" - "$TMP/inspect.json" "$2" "$3" "$4" "$5" <<'EOF'
import json, sys
meta, out, tensor, at, what = sys.argv[1:6]
t = next(t for t in json.load(open(meta))["tensors"] if t["name"] == tensor)
off = t["offset"] + int(at)
with open(out, "r+b") as f:
    f.seek(off); old = f.read(2); f.seek(off)
    f.write(bytes([old[0] ^ 0x10]) if what == "flip" else bytes.fromhex(what))
EOF
}

poke "$TMP/q4km.gguf" "$TMP/flipped.gguf" blk.0.attn_q.weight 100 flip # a q4_K quant byte, not a scale
expect 1 flipped "$TMP/flipped.gguf"
check flipped checksums fail
check flipped block_data pass
grep -q 'blk.0.attn_q.weight' "$TMP/flipped.json" || fail "flipped: the failing tensor is not named"
echo "ok: a flipped byte fails the checksums check"

poke "$TMP/q4km.gguf" "$TMP/nan.gguf" blk.1.ffn_up.weight 288 007e # block 2's d := NaN
expect 1 nan "$TMP/nan.gguf"
check nan block_data fail
echo "ok: a NaN scale fails the block_data check"

expect 1 bad "$TMP/bad.gguf" --base "$TMP/base.kld" "${GATES[@]}" -t 2
check bad kld fail
check bad checksums pass
echo "ok: pure Q2_K fails the KLD gate: $(grep -E '^  FAIL  kld' "$TMP/bad.out" | sed 's/^ *FAIL *kld *//')"

# -- bad input -------------------------------------------------------------------
head -c 4000 "$TMP/q4km.gguf" >"$TMP/trunc.gguf"
expect 2 trunc "$TMP/trunc.gguf"
check trunc gguf fail
expect 2 nobase "$TMP/q4km.gguf" --base "$TMP/missing.gguf" -f "$TEXT" "${GATES[@]}"
expect 2 notext "$TMP/q4km.gguf" --base "$TMP/f16.gguf" "${GATES[@]}"
expect 2 nogates "$TMP/q4km.gguf" --max-kld 0.1
expect 2 badopt "$TMP/q4km.gguf" --base "$TMP/base.kld" --min-same-top 120
expect 2 nofile "$TMP/missing.gguf"
echo "ok: bad input exits 2"

# -- llama.cpp -------------------------------------------------------------------
if [[ -x "$TS_LLAMA" && -d "$LLAMA_LIB_DIR" ]]; then
  "$TS_LLAMA" perplexity "$TMP/q4km.gguf" "$TEXT" -c 128 --chunks 2 -t 2 --json >/dev/null 2>"$TMP/ll.err" ||
    fail "llama.cpp cannot load a file with tessera.checksum.* keys: $(tail -3 "$TMP/ll.err")"
  "$TS_LLAMA" quantize "$TMP/f16.gguf" "$TMP/llq8.gguf" Q8_0 >/dev/null 2>&1 || fail "ts_llama quantize failed"
  expect 0 foreign "$TMP/llq8.gguf"
  check foreign checksums skip
  expect 1 foreign_req "$TMP/llq8.gguf" --require-checksums
  check foreign_req checksums fail
  echo "ok: llama.cpp loads checksummed files; its own files pass unless --require-checksums"
else
  echo "note: llama.cpp not found (scripts/deps.sh): its checks skipped"
fi
echo "PASS: tessera verify"
