#!/usr/bin/env bash
# GLM-4.5's tokenizer (Glm4MoeForCausalLM -> glm4moe) and, with it, the GLM
# quantization mixes against llama.cpp.
#
# The families fixture (GLM-4.5-Air layout, vocab_size 8192) ships no
# tokenizer, so the test trains one in GLM-4.5's format on the tail of
# wiki.test.raw: byte-level BPE with ~7700 merges, GLM's Split regex (Llama 3's
# regex, merges not ignored) before a ByteLevel step without regex, and GLM's
# 36 added tokens from <|endoftext|> on, placed where the fixture's config.json
# expects them (eos_token_id [7969, 7976, 7978] = 151329, 151336, 151338 of
# the release, the same distance from the top). tokenizer_config.json as the
# release's: eos / pad <|endoftext|>, no bos.
#
# 1. tessera convert writes what llama.cpp's converter (conversion/glm.py,
#    _set_vocab_glm) writes: tokenizer.ggml.pre "glm4", bos [gMASK], eot
#    <|user|>, unk <|endoftext|>, eom <|observation|>, eos and pad from the
#    files; a tokenizer.json whose post_processor prepends [gMASK] <sop> gives
#    add_bos; the same files under a non-GLM config.json stay "smaug-bpe".
# 2. Tessera's tokenizer (ts_tokenize) == llama.cpp's (ts_llama tokenize), id
#    for id: 100 KB of wiki.test.raw, and a chat text with GLM's special tokens,
#    accents, CJK, digits and blank lines with and without add_special /
#    parse_special; tessera perplexity == llama.cpp's (0.1%) on the f32 file.
# 3. The quantization mixes of test_quant_mixes.sh on the GLM fixture's F16
#    GGUF: every ftype (with and without a synthetic imatrix, --pure, tensor
#    type overrides) gives the per-tensor types of llama.cpp's own quantizer;
#    Q4_K_M and Q2_K are written by tessera and loaded by llama.cpp.
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_shared
need_tessera
for c in convert quantize perplexity; do
  tessera_has $c || skip "tessera $c not built"
done
FIX="$SHARED/fixtures/families/glm4_moe"
[[ -f "$FIX/config.json" && -f "$SHARED/data/wiki.test.raw" ]] || skip "GLM fixture or wiki.test.raw not found (set TS_SHARED)"
need_deps
TS_TOK="$TS_BUILD/ts_tokenize"
[[ -x "$TS_TOK" ]] || skip "$TS_TOK not built"
"$PY" -c "import numpy" 2>/dev/null || skip "python3-numpy not available"
THREADS="${TS_THREADS:-2}"
failures=()
row() { printf '%s\n' "$1"; }
bad() { row "FAIL $1"; failures+=("$1"); }
json_num() { sed -n "s/.*\"$1\": *\\([0-9.eE+-]*\\).*/\\1/p" | head -1; }

# gen_tokenizer DIR TEMPLATE_DIR: GLM-4.5-style tokenizer.json + tokenizer_config.json into DIR
# (ByteLevel post_processor: adds nothing), and the same with a TemplateProcessing [gMASK] <sop> $A
# post_processor into TEMPLATE_DIR.
gen_tokenizer() {
  "$PY" - "$SHARED/data/wiki.test.raw" "$1" "$2" <<'EOF'
import collections, heapq, json, os, re, sys
wiki, out, out_tpl = sys.argv[1:4]
N_BASE = 7969            # GLM's <|endoftext|> sits here in the fixture (151329 in the release)
TRAIN_BYTES = 300000     # the tail of wiki.test.raw; the tokenization check reads its head

def byte_chars():
    """GPT-2's byte -> printable character table (what ByteLevel uses)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}

B2U = byte_chars()
text = open(wiki, "rb").read()[-TRAIN_BYTES:].decode("utf-8", "ignore")
# GLM's split regex approximated with Python's re: training only needs plausible words
split = re.compile(r"'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])|[^\r\n\w]?[^\W\d_]+|\d{1,3}| ?[^\s\w]+[\r\n]*"
                   r"|\s*[\r\n]+|\s+(?!\S)|\s+")
counts = collections.Counter("".join(B2U[b] for b in w.encode()) for w in split.findall(text))
words, freq = [list(w) for w in counts], list(counts.values())
pairs, where = collections.Counter(), collections.defaultdict(set)
for i, w in enumerate(words):
    for p in zip(w, w[1:]):
        pairs[p] += freq[i]
        where[p].add(i)
heap = [(-c, p) for p, c in pairs.items()]
heapq.heapify(heap)
vocab = {B2U[b]: i for i, b in enumerate(sorted(B2U))}
merges = []
while len(vocab) < N_BASE and heap:  # BPE training: most frequent pair first, lazy heap
    c, p = heapq.heappop(heap)
    if c == 0 or pairs.get(p, 0) != -c:
        continue
    new = p[0] + p[1]
    merges.append(list(p))
    vocab.setdefault(new, len(vocab))
    touched = set()
    for i in list(where[p]):
        w = words[i]
        for q in zip(w, w[1:]):
            pairs[q] -= freq[i]
            touched.add(q)
        j, nw = 0, []
        while j < len(w):
            if j + 1 < len(w) and (w[j], w[j + 1]) == p:
                nw.append(new)
                j += 2
            else:
                nw.append(w[j])
                j += 1
        words[i] = nw
        for q in zip(nw, nw[1:]):
            pairs[q] += freq[i]
            where[q].add(i)
            touched.add(q)
    for q in touched:
        if pairs[q] > 0:
            heapq.heappush(heap, (-pairs[q], q))
assert len(vocab) == N_BASE, len(vocab)

GLM_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
          r"|\s+(?!\S)|\s+")
SPECIAL = ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
           "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
           "<|end_of_video|>", "<|begin_of_audio|>", "<|end_of_audio|>", "<|begin_of_transcription|>",
           "<|end_of_transcription|>", "<|code_prefix|>", "<|code_middle|>", "<|code_suffix|>", "<think>",
           "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<arg_key>",
           "</arg_key>", "<arg_value>", "</arg_value>", "/nothink", "<|begin_of_box|>", "<|end_of_box|>",
           "<|image|>", "<|video|>"]
flags = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
added = [dict(id=N_BASE + i, content=s, **flags) for i, s in enumerate(SPECIAL)]
level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
st = lambda t: {"SpecialToken": {"id": t, "type_id": 0}}
seq = lambda s: {"Sequence": {"id": s, "type_id": 0}}
template = {"type": "TemplateProcessing", "single": [st("[gMASK]"), st("<sop>"), seq("A")],
            "pair": [st("[gMASK]"), st("<sop>"), seq("A"), seq("B")],
            "special_tokens": {t: {"id": t, "ids": [N_BASE + SPECIAL.index(t)], "tokens": [t]}
                               for t in ("[gMASK]", "<sop>")}}
post = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
       "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
           {"type": "Split", "pattern": {"Regex": GLM_RE}, "behavior": "Isolated", "invert": False}, level]},
       "post_processor": post,
       "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
       "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                 "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                 "vocab": vocab, "merges": merges}}
cfg = {"added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in added},
       "additional_special_tokens": SPECIAL, "clean_up_tokenization_spaces": False, "do_lower_case": False,
       "eos_token": "<|endoftext|>", "extra_special_tokens": {}, "model_max_length": 128000,
       "pad_token": "<|endoftext|>", "padding_side": "left", "remove_space": False,
       "tokenizer_class": "PreTrainedTokenizer",
       "chat_template": "[gMASK]<sop>{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{% endfor %}"
                        "{% if add_generation_prompt %}<|assistant|>{% endif %}"}
for d, pp in ((out, post), (out_tpl, template)):
    tok["post_processor"] = pp
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=1)
EOF
}

# want_meta GGUF LABEL KEY=VALUE...: the file's keys as tessera inspect reads them ("-" = absent).
want_meta() {
  local g=$1 label=$2 line
  shift 2
  "$TESSERA" inspect "$g" --json --no-tensors >"$TMP/meta.json" 2>"$TMP/log" || { bad "$label: inspect: $(tail -1 "$TMP/log")"; return; }
  if line=$("$PY" - "$TMP/meta.json" "$label" "$@" <<'EOF'
import json, sys
meta = json.load(open(sys.argv[1]))["metadata"]
errs = []
for kv in sys.argv[3:]:
    k, want = kv.split("=", 1)
    v = meta.get(k)
    got = "-" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
    if got != want:
        errs.append(f"{k}={got} (expected {want})")
print(f"{sys.argv[2]}: " + ("; ".join(errs) if errs else " ".join(sys.argv[3:])))
sys.exit(1 if errs else 0)
EOF
  ); then row "$line"; else bad "$line"; fi
}

# same_ids GGUF TEXT LABEL [ts_llama/ts_tokenize options]: both tokenizers, id for id.
same_ids() {
  local g=$1 text=$2 label=$3
  shift 3
  "$TS_LLAMA" tokenize "$g" "$text" "$@" >"$TMP/ids.llama" 2>"$TMP/log" || { bad "$label: ts_llama: $(tail -1 "$TMP/log")"; return; }
  "$TS_TOK" "$g" "$text" "$@" >"$TMP/ids.ours" 2>"$TMP/log" || { bad "$label: ts_tokenize: $(tail -1 "$TMP/log")"; return; }
  if cmp -s "$TMP/ids.llama" "$TMP/ids.ours"; then
    row "$label: $(wc -l <"$TMP/ids.ours") ids identical to llama.cpp's"
  else
    bad "$label: ids differ from llama.cpp's from line $(cmp "$TMP/ids.llama" "$TMP/ids.ours" | awk '{print $NF}')"
  fi
}

# ---- 1. conversion ----
G="$TMP/glm"
mkdir -p "$G" "$TMP/tpl" "$TMP/qwen"
for f in "$FIX"/*; do ln -s "$f" "$G/"; done
t0=$SECONDS
gen_tokenizer "$G" "$TMP/tpl" || fail "generating the GLM tokenizer failed"
row "GLM-4.5-style tokenizer trained ($((SECONDS - t0)) s)"
G16="$TMP/glm-f16.gguf" G32="$TMP/glm-f32.gguf"
for t in f16 f32; do
  "$TESSERA" convert "$G" -o "$TMP/glm-$t.gguf" --outtype $t -q -t "$THREADS" >"$TMP/log" 2>&1 ||
    fail "convert GLM fixture + tokenizer to $t: $(tail -1 "$TMP/log")"
done
want_meta "$G16" "glm4moe keys" tokenizer.ggml.model=gpt2 tokenizer.ggml.pre=glm4 tokenizer.ggml.bos_token_id=7971 \
  tokenizer.ggml.eos_token_id=7969 tokenizer.ggml.unknown_token_id=7969 tokenizer.ggml.padding_token_id=7969 \
  tokenizer.ggml.eot_token_id=7976 tokenizer.ggml.eom_token_id=7978 tokenizer.ggml.add_bos_token=-

# the [gMASK] <sop> template: add_bos with bos [gMASK]
cp "$FIX/config.json" "$TMP/tpl/"
TPL="$TMP/tpl.gguf"
if "$TESSERA" convert "$TMP/tpl" -o "$TPL" --vocab-only -q >"$TMP/log" 2>&1; then
  want_meta "$TPL" "glm4moe keys, [gMASK] <sop> template" tokenizer.ggml.pre=glm4 tokenizer.ggml.bos_token_id=7971 \
    tokenizer.ggml.add_bos_token=true tokenizer.ggml.eot_token_id=7976 tokenizer.ggml.eom_token_id=7978
else
  bad "template variant: convert --vocab-only: $(tail -1 "$TMP/log")"
fi

# the same files under another model class: llama.cpp's GLM conventions do not apply
cp "$G/tokenizer.json" "$G/tokenizer_config.json" "$TMP/qwen/"
"$PY" -c 'import json,sys; c = json.load(open(sys.argv[1])); c["architectures"] = ["Qwen3ForCausalLM"]
json.dump(c, open(sys.argv[2], "w"))' "$FIX/config.json" "$TMP/qwen/config.json"
if "$TESSERA" convert "$TMP/qwen" -o "$TMP/qwen.gguf" --vocab-only -q >"$TMP/log" 2>&1; then
  want_meta "$TMP/qwen.gguf" "same tokenizer, Qwen3 config" tokenizer.ggml.pre=smaug-bpe tokenizer.ggml.bos_token_id=- \
    tokenizer.ggml.eot_token_id=- tokenizer.ggml.eom_token_id=-
else
  bad "non-GLM config: convert --vocab-only: $(tail -1 "$TMP/log")"
fi

# ---- 2. tokenization and perplexity ----
"$PY" - "$SHARED/data/wiki.test.raw" "$TMP/wiki.txt" "$TMP/chat.txt" <<'EOF'
import sys
b = open(sys.argv[1], "rb").read(100000)
while b and (b[-1] & 0xC0) == 0x80:  # cut back to a character boundary
    b = b[:-1]
if b and b[-1] >= 0xC0:
    b = b[:-1]
open(sys.argv[2], "wb").write(b)
chat = ("[gMASK]<sop><|system|>\nYou are GLM.<|user|>\nWhat's 12345 + 678?  I'm asking, you're answering."
        "<|assistant|>\n<think>12345+678=13023</think>\n13023 \u2014 caf\u00e9 na\u00efve \u4e2d\u6587\u6d4b\u8bd5 "
        "\u65e5\u672c\u8a9e \U0001f44d\n\n\n  <tool_call>f<arg_key>x</arg_key><arg_value>1</arg_value></tool_call>"
        "<|observation|>\r\n\tok<|endoftext|>")
open(sys.argv[3], "w", encoding="utf-8").write(chat)
EOF
same_ids "$G16" "$TMP/wiki.txt" "tokenize 100 KB of wiki.test.raw"
for ps in 0 1; do
  for as in 0 1; do
    same_ids "$G16" "$TMP/chat.txt" "tokenize GLM chat text, add_special $as parse_special $ps" --add-special $as --parse-special $ps
  done
done
[[ -f "$TPL" ]] && same_ids "$TPL" "$TMP/chat.txt" "tokenize, [gMASK] <sop> template, add_special 1" --add-special 1 --parse-special 1

head -c 60000 "$SHARED/data/wiki.test.raw" >"$TMP/ppl.txt"
"$TS_LLAMA" perplexity "$G32" "$TMP/ppl.txt" -c 128 --chunks 8 -t 1 --json >"$TMP/ppl.ref" 2>/dev/null &
pa=$!
"$TESSERA" perplexity "$G32" -f "$TMP/ppl.txt" -c 128 --chunks 8 -t "$THREADS" --json -q >"$TMP/ppl.ours" 2>"$TMP/ppl.log" || true
if wait "$pa" && [[ -s "$TMP/ppl.ours" ]]; then
  p_ref=$(json_num ppl <"$TMP/ppl.ref") p_ours=$(json_num ppl <"$TMP/ppl.ours")
  line=$(awk -v a="$p_ref" -v b="$p_ours" 'BEGIN { printf "glm4moe f32 perplexity: llama.cpp %.4f tessera %.4f (%+.4f%%, bound 0.1%%)", a, b, 100 * (b / a - 1) }')
  if awk -v a="$p_ref" -v b="$p_ours" 'BEGIN { d = b / a - 1; if (d < 0) d = -d; exit !(d <= 0.001) }'
  then row "$line"; else bad "$line"; fi
else
  bad "glm4moe perplexity: ts_llama or tessera failed: $(tail -1 "$TMP/ppl.log")"
fi
rm -f "$G32"

# ---- 3. quantization mixes (as test_quant_mixes.sh) ----
FTYPES=(Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_0 Q4_1 Q5_0 Q5_1 Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K Q8_0 IQ4_NL IQ4_XS F16 BF16 F32)
IMATRIX_FTYPES=(Q2_K_S Q4_0 Q5_0 IQ4_NL IQ4_XS Q4_K_M)
n_checked=0

# check LABEL FTYPE [options...]: llama.cpp's dry run on the F16 file vs tessera's plan
# (on the F16 file, and for Q4_K_M on the checkpoint folder too).
check() {
  local label=$1 ft=$2 input inputs=("$G16")
  shift 2
  [[ $ft == Q4_K_M && $label != *+* ]] && inputs+=("$G")
  if ! "$TS_LLAMA" quantize "$G16" "$TMP/llama.gguf" "$ft" -t "$THREADS" --dry-run "$@" 2>"$TMP/llama.log" |
      sort >"$TMP/want.txt" || [[ ! -s "$TMP/want.txt" ]]; then
    bad "$label: llama.cpp failed: $(tail -1 "$TMP/llama.log")"
    return
  fi
  for input in "${inputs[@]}"; do
    if ! "$TESSERA" quantize "$input" "$ft" --dry-run --json -q "$@" >"$TMP/plan.json" 2>"$TMP/ts.log"; then
      bad "$label ($input): tessera failed: $(tail -1 "$TMP/ts.log")"
      return
    fi
    "$PY" -c 'import json,sys
print("\n".join(sorted("%s %s" % (t["name"], t["type"]) for t in json.load(open(sys.argv[1]))["tensors"])))' \
      "$TMP/plan.json" >"$TMP/got.txt"
    if ! diff -u "$TMP/want.txt" "$TMP/got.txt" >"$TMP/diff.txt"; then
      bad "$label ($input): types differ from llama.cpp's: $(grep '^[-+][^-+]' "$TMP/diff.txt" | head -6 | tr '\n' ' ')"
      return
    fi
  done
  n_checked=$((n_checked + 1))
}

t0=$SECONDS
"$TESSERA" quantize "$G16" F16 --dry-run --json -q >"$TMP/f16-plan.json"
"$PY" "$TS_SRC/tests/interop/make_imatrix.py" "$TMP/f16-plan.json" "$TMP/imatrix.gguf"
for ft in "${FTYPES[@]}"; do check "glm4moe/$ft" "$ft"; done
for ft in "${IMATRIX_FTYPES[@]}"; do check "glm4moe/$ft+imatrix" "$ft" --imatrix "$TMP/imatrix.gguf"; done
check "glm4moe/Q4_K_M+pure" Q4_K_M --pure
check "glm4moe/Q4_K_M+overrides" Q4_K_M --tensor-type 'blk\.[01]\.attn_v=q8_0' --tensor-type 'ffn_up=q5_K' \
  --tensor-type 'ffn_=iq4_nl' --output-tensor-type q5_0 --token-embedding-type q8_0
check "glm4moe/Q3_K_M+override" Q3_K_M --tensor-type 'attn_output=q4_0'
check "glm4moe/Q4_K_M+mxfp4-override" Q4_K_M --tensor-type '_exps=mxfp4'
n_loaded=0
for ft in Q4_K_M Q2_K; do
  out="$TMP/glm-$ft.gguf"
  if ! "$TESSERA" quantize "$G16" "$out" "$ft" -q -t "$THREADS" 2>"$TMP/ts.log"; then
    bad "glm4moe/$ft: tessera quantize failed: $(tail -1 "$TMP/ts.log")"
    continue
  fi
  if "$TS_LLAMA" logits "$out" --ids 7971,7973,100,200,300 -o "$TMP/logits.f32" -t "$THREADS" >/dev/null 2>"$TMP/llama.log" &&
      "$PY" -c 'import sys, numpy as np; x = np.fromfile(sys.argv[1], np.float32); sys.exit(not (x.size and np.isfinite(x).all()))' \
        "$TMP/logits.f32"; then
    n_loaded=$((n_loaded + 1))
  else
    bad "glm4moe/$ft: llama.cpp cannot run tessera's output: $(tail -1 "$TMP/llama.log")"
  fi
  rm -f "$out"
done
row "glm4moe: $n_checked mixes identical to llama.cpp's, $n_loaded outputs loaded by llama.cpp ($((SECONDS - t0)) s)"

((${#failures[@]} == 0)) || fail "${#failures[@]} check(s) failed: ${failures[*]}"
echo "PASS: GLM-4.5's tokenizer converts as llama.cpp's converter does, tokenizes as llama.cpp does, and its mixes match"
