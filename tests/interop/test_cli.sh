#!/usr/bin/env bash
# The tessera binary as a user meets it: exit codes, --json output, inspect on
# both formats, --vocab-only, --dry-run, and no file left by a failed convert.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_tessera
need_shared
M="$SHARED/models/llama-spm-8m"

# expect_exit CODE CMD...: runs CMD (output discarded) and checks its exit status
expect_exit() {
  local want=$1 rc=0
  shift
  "$@" >/dev/null 2>&1 || rc=$?
  [[ $rc -eq $want ]] || fail "$*: exit $rc, expected $want"
}

# usage errors exit 2, failures 1, help 0
expect_exit 2 "$TESSERA"
expect_exit 2 "$TESSERA" frobnicate
expect_exit 0 "$TESSERA" --help
"$TESSERA" convert --help | grep -q -- "--outtype" || fail "convert --help lacks --outtype"
expect_exit 2 "$TESSERA" convert "$M"
expect_exit 2 "$TESSERA" convert "$M" -o "$TMP/x.gguf" -t 0

# convert --json, then inspect the result (text and JSON)
"$TESSERA" convert "$M" -o "$TMP/m.gguf" --outtype q8_0 --json -q > "$TMP/conv.json"
$PY - "$TMP/conv.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["arch"] == "llama" and j["file_type"] == "q8_0" and j["tensors"] == 75, j
PY
"$TESSERA" inspect "$TMP/m.gguf" > "$TMP/inspect.txt"
grep -q "general.architecture .* \"llama\"" "$TMP/inspect.txt" || fail "inspect text lacks general.architecture"
grep -q "blk.0.attn_q.weight .* q8_0" "$TMP/inspect.txt" || fail "inspect text lacks the q8_0 attn_q row"
"$TESSERA" inspect "$TMP/m.gguf" --json > "$TMP/inspect.json"
"$TESSERA" inspect "$M" --json > "$TMP/inspect-st.json"
$PY - "$TMP/inspect.json" "$TMP/inspect-st.json" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
assert g["format"] == "gguf" and g["metadata"]["llama.block_count"] == 8, g["metadata"].get("llama.block_count")
assert g["metadata"]["tokenizer.ggml.tokens"]["n"] == 4096
t = {x["name"]: x for x in g["tensors"]}
assert t["token_embd.weight"]["shape"] == [256, 4096] and t["output_norm.weight"]["type"] == "f32"
s = json.load(open(sys.argv[2]))
assert s["format"] == "safetensors" and len(s["tensors"]) == 75
st = {x["name"]: x for x in s["tensors"]}
assert st["model.embed_tokens.weight"]["type"] == "bf16" and st["model.embed_tokens.weight"]["shape"] == [256, 4096]
PY

# --dry-run writes nothing
"$TESSERA" convert "$M" -o "$TMP/dry.gguf" --dry-run -v -q 2> "$TMP/plan.txt"
[[ ! -e "$TMP/dry.gguf" ]] || fail "--dry-run wrote a file"
grep -q "blk.7.ffn_down.weight" "$TMP/plan.txt" || fail "--dry-run -v does not print the plan"

# --vocab-only from a folder holding only tokenizer files
mkdir "$TMP/tok"
cp "$M/tokenizer.model" "$M/tokenizer_config.json" "$TMP/tok/"
expect_exit 1 "$TESSERA" convert "$TMP/tok" -o "$TMP/tok.gguf" --vocab-only
"$TESSERA" convert "$TMP/tok" -o "$TMP/tok.gguf" --vocab-only --arch llama -q
"$TESSERA" inspect "$TMP/tok.gguf" --json | $PY -c '
import json, sys
g = json.load(sys.stdin)
assert g["tensors"] == [] and g["metadata"]["general.architecture"] == "llama"
assert g["metadata"]["tokenizer.ggml.model"] == "llama"'

# a damaged input: exit 1, a message naming the file, no output and no temp file
cp -r "$M" "$TMP/bad"
truncate -s 100000 "$TMP/bad/model.safetensors"
mkdir -p "$TMP/out"
rc=0
"$TESSERA" convert "$TMP/bad" -o "$TMP/out/bad.gguf" 2> "$TMP/err.txt" || rc=$?
[[ $rc -eq 1 ]] || fail "truncated checkpoint: exit $rc, expected 1"
grep -q "model.safetensors" "$TMP/err.txt" || fail "error does not name the file: $(cat "$TMP/err.txt")"
[[ -z "$(ls -A "$TMP/out")" ]] || fail "a failed convert left files: $(ls "$TMP/out")"
expect_exit 1 "$TESSERA" inspect "$TMP/bad/model.safetensors"
echo "cli: all checks passed"
