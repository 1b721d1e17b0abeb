#!/usr/bin/env bash
# DeepseekV3ForCausalLM (DeepSeek-V3 / R1, Kimi K2) -> deepseek2: tessera
# convert, then llama.cpp's own forward pass (F32 KV cache, ts_llama logits)
# against float32 PyTorch references.
#
# 1. The families fixture (FP8 release layout, real DeepSeek-V3 tokenizer):
#    f32, f16 and q8_0 load in llama.cpp; f32 logits at reference.json's
#    positions match below 1e-3 (measured 2.9e-6); f16 / q8_0 are reported
#    with loose bounds (llama.cpp also rounds the activations of f16 / q8_0
#    matmuls; hidden_size 12 leaves most q8_0 rows in f16). llama.cpp's
#    tokenizer gives the reference ids from the text (pre "deepseek-v3").
# 2. ref_deepseek.py (an independent port of the official modeling code)
#    reproduces reference.json, so it can judge the shapes below.
# 3. Checkpoints make_deepseek.py generates at other shapes: several FP8
#    blocks with partial edges, odd expert counts with and without groups,
#    q_lora_rank null and set, 0 / 1 / 2 dense-first layers, a BF16 release,
#    a non-square block size, the MTP layer (dropped), and Kimi K2's
#    tiktoken vocabulary (tokens and merges equal to llama.cpp's converter's,
#    tokenization equal to tiktoken's algorithm).
# 4. Broken inputs (missing / misshapen / orphan scale, unknown
#    quantization method, unusable tiktoken.model): an error naming the
#    tensor or file, and no output file.
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_shared
need_deps
tessera_has convert || skip "tessera convert not built"
FIX="$SHARED/fixtures/families/deepseek_v3"
[[ -f "$FIX/reference.json" ]] || skip "fixture $FIX not found"
HERE="$TS_SRC/tests/interop"
THREADS="${TS_THREADS:-2}"
SPM_TOK="$SHARED/models/llama-spm-8m"
failures=()
row() { printf '%s\n' "$1"; }
bad() { row "FAIL $1"; failures+=("$1"); }

# ---- 1. the fixture ----
declare -A FIX_MAX=([f32]=1e-3 [f16]=5e-2 [q8_0]=1.0)
ids=$("$PY" -c "import json,sys; print(','.join(map(str, json.load(open(sys.argv[1]))['token_ids'])))" \
  "$FIX/reference.json")
for t in f32 f16 q8_0; do
  g="$TMP/fixture-$t.gguf"
  if ! "$TESSERA" convert "$FIX" -o "$g" --outtype "$t" -q -t "$THREADS" >"$TMP/log" 2>&1; then
    bad "fixture/$t: convert: $(tail -1 "$TMP/log")"; continue
  fi
  if ! "$TS_LLAMA" logits "$g" --ids "$ids" -o "$TMP/fixture-$t.f32" -t "$THREADS" 2>"$TMP/log"; then
    bad "fixture/$t: llama.cpp: $(tail -1 "$TMP/log")"; continue
  fi
  if line=$("$PY" - "$FIX/reference.json" "$TMP/fixture-$t.f32" "${FIX_MAX[$t]}" "fixture/$t" <<'EOF'
import base64, json, sys
import numpy as np
r = json.load(open(sys.argv[1]))
pos, n = r["logit_positions"], len(r["token_ids"])
want = np.frombuffer(base64.b64decode(r["logits_f32_b64"]), dtype="<f4").reshape(len(pos), -1)
got = np.fromfile(sys.argv[2], dtype="<f4").reshape(n, -1)[pos]
d = float(np.abs(got.astype(np.float64) - want).max())
top5 = sum(list(np.argsort(-got[i], kind="stable")[:5]) == r["top5_ids"][i] for i in range(len(pos)))
print(f"{sys.argv[4]:<24} max_abs={d:.3e} (bound {sys.argv[3]}) top5 identical {top5}/{len(pos)}")
sys.exit(0 if d < float(sys.argv[3]) else 1)
EOF
  ); then row "$line"; else bad "$line"; fi
  [[ $t == f32 ]] || rm -f "$g"
done
text=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['text'], end='')" "$FIX/reference.json")
printf '%s' "$text" >"$TMP/text.txt"
got=$("$TS_LLAMA" tokenize "$TMP/fixture-f32.gguf" "$TMP/text.txt" --add-special 1 2>&1 | paste -sd, -) || true
[[ "$got" == "$ids" ]] && row "fixture tokenizer         llama.cpp ids == reference ids (${#got} chars)" \
  || bad "fixture tokenizer: llama.cpp gives $got, reference $ids"
rm -f "$TMP"/fixture-*

# ---- 2. the independent reference reproduces the fixture's ----
if "$PY" "$HERE/ref_deepseek.py" "$FIX" --reference-ids --check --threads "$THREADS" >"$TMP/log" 2>&1; then
  row "ref_deepseek.py vs reference.json: $(tail -1 "$TMP/log")"
else
  bad "ref_deepseek.py vs reference.json: $(tail -1 "$TMP/log")"
fi

# ---- 3. generated shapes, f32 logits vs ref_deepseek.py ----
# shape NAME MAKE_ARGS...: make, convert (f32), compare over 48 positions.
shape() {
  local name=$1 dir="$TMP/$1" g="$TMP/$1.gguf" n_vocab ids line
  shift
  if ! "$PY" "$HERE/make_deepseek.py" -o "$dir" "$@" >"$TMP/log" 2>&1; then
    bad "$name: make_deepseek.py: $(tail -1 "$TMP/log")"; return
  fi
  if ! "$TESSERA" convert "$dir" -o "$g" --outtype f32 -q -t "$THREADS" >"$TMP/log" 2>&1; then
    bad "$name: convert: $(tail -1 "$TMP/log")"; return
  fi
  n_vocab=$("$TS_LLAMA" meta "$g" | sed -n 's/^n_vocab=//p')
  ids=$("$PY" -c "import random,sys; r=random.Random(7); n=int(sys.argv[1]); \
print(','.join(str(r.randrange(n)) for _ in range(48)))" "$n_vocab")
  if ! "$TS_LLAMA" logits "$g" --ids "$ids" -o "$TMP/$name.llama" -t "$THREADS" 2>"$TMP/log"; then
    bad "$name: llama.cpp: $(tail -1 "$TMP/log")"; return
  fi
  if ! "$PY" "$HERE/ref_deepseek.py" "$dir" --ids "$ids" -o "$TMP/$name.ref" --threads "$THREADS" >"$TMP/log" 2>&1; then
    bad "$name: ref_deepseek.py: $(tail -1 "$TMP/log")"; return
  fi
  if line=$("$PY" "$HERE/compare_logits.py" "$TMP/$name.ref" "$TMP/$name.llama" --n 48 --label "$name" \
      --max-abs 1e-3 --top1 1.0 2>&1); then row "$line"; else bad "$line"; fi
  rm -f "$TMP/$name.llama" "$TMP/$name.ref"
}

# V3 layout at dims past one 128x128 block: hidden 160, kv_b 4*(24+36)=240 rows,
# intermediate 200 (edge blocks partial); 9 experts in 3 groups; MTP layer.
shape v3-blocks-9exp-mtp --tokenizer-from "$SPM_TOK" --hidden 160 --nope 24 --v 36 --inter 200 \
  --experts 9 --n-group 3 --topk-group 2 --topk 3 --mtp
# DeepSeek-V2-Lite-like attention (q_lora_rank null), 2 dense layers, BF16 release.
shape qnull-dense2-bf16 --tokenizer-from "$SPM_TOK" --q-lora 0 --dense 2 --layers 3 --block none
# q_lora_rank null with FP8 in 32x48 blocks, no dense layer, 5 experts without groups.
shape qnull-fp8-32x48 --tokenizer-from "$SPM_TOK" --q-lora 0 --dense 0 --layers 2 --block 32,48 \
  --experts 5 --n-group 1 --topk-group 1 --topk 2 --shared 2
# Kimi K2: tiktoken vocabulary, 7 experts, one group, its routed scale and YaRN factor.
shape kimi-k2-tiktoken --tiktoken --experts 7 --n-group 1 --topk-group 1 --topk 3 --routed-scale 2.827 \
  --yarn-factor 32
if [[ -f "$TMP/kimi-k2-tiktoken.gguf" ]]; then
  if line=$("$PY" "$HERE/make_deepseek.py" --check-vocab "$TMP/kimi-k2-tiktoken" "$TMP/kimi-k2-tiktoken.gguf" 2>&1)
  then row "kimi-k2 vocabulary        $line"; else bad "kimi-k2 vocabulary: $line"; fi
  printf "The quick brown fox jumps over the lazy dog. It's 2024, we're testing 12345 numbers!!\n\nNew   \
paragraph  here; Peter Piper's PEPPERS and seashells.\n" >"$TMP/kimi.txt"
  want=$("$PY" "$HERE/make_deepseek.py" --encode "$TMP/kimi-k2-tiktoken" "$TMP/kimi.txt" | paste -sd, -)
  got=$("$TS_LLAMA" tokenize "$TMP/kimi-k2-tiktoken.gguf" "$TMP/kimi.txt" --add-special 0 2>&1 | paste -sd, -) || true
  [[ -n "$want" && "$got" == "$want" ]] && row "kimi-k2 tokenization      llama.cpp == tiktoken's algorithm" \
    || bad "kimi-k2 tokenization: llama.cpp $got, tiktoken $want"
fi
rm -rf "$TMP"/v3-* "$TMP"/qnull-* "$TMP"/*.gguf

# ---- 4. broken inputs ----
# refuse NAME EXPECTED_TEXT DIR [ARGS]: convert must fail, say EXPECTED_TEXT, leave no file.
refuse() {
  local name=$1 want=$2 dir=$3 out="$TMP/refused.gguf"
  shift 3
  if "$TESSERA" convert "$dir" -o "$out" -q "$@" >"$TMP/log" 2>&1; then
    bad "$name: converted, expected an error"
  elif ! grep -qF -- "$want" "$TMP/log"; then
    bad "$name: error does not say '$want': $(tail -1 "$TMP/log")"
  elif compgen -G "$TMP/refused.gguf*" >/dev/null; then
    bad "$name: output file left behind"
  else
    row "$(printf '%-25s refused: %s' "$name" "$(tail -1 "$TMP/log" | cut -c1-110)")"
  fi
}
for b in missing-scale scale-shape method scale-orphan; do
  "$PY" "$HERE/make_deepseek.py" -o "$TMP/broken-$b" --tokenizer-from "$SPM_TOK" --layers 1 --break "$b" \
    >"$TMP/log" 2>&1 || bad "broken-$b: make_deepseek.py: $(tail -1 "$TMP/log")"
done
refuse missing-scale "self_attn.kv_b_proj.weight_scale_inv" "$TMP/broken-missing-scale"
refuse scale-shape "kv_b_proj.weight_scale_inv: shape [4, 1]; expected [2, 1]" "$TMP/broken-scale-shape"
refuse unknown-method 'quant_method "awq" is not supported' "$TMP/broken-method"
refuse orphan-scale "k_proj.weight_scale_inv: the checkpoint has no weight" "$TMP/broken-scale-orphan"
# tiktoken.model: a tokenizer that is not Kimi's, a duplicate rank, a line that is not "<base64> <rank>"
k="$TMP/broken-tiktoken"
if "$PY" "$HERE/make_deepseek.py" -o "$k" --tiktoken --layers 1 >"$TMP/log" 2>&1; then
  cp "$k/tokenizer_config.json" "$TMP/kimi_config.json"
  echo '{"tokenizer_class": "TikTokenTokenizer"}' >"$k/tokenizer_config.json"
  refuse tiktoken-not-kimi "only Kimi K2's" "$k"
  cp "$TMP/kimi_config.json" "$k/tokenizer_config.json"
  printf 'AA== 0\nAQ== 0\n' >"$k/tiktoken.model"
  refuse tiktoken-dup-rank "rank 0 appears twice" "$k"
  printf 'AA== 0\nnot-base64 1\n' >"$k/tiktoken.model"
  refuse tiktoken-bad-line "tiktoken.model: line 2: expected" "$k" --vocab-only
else
  bad "broken-tiktoken: make_deepseek.py: $(tail -1 "$TMP/log")"
fi

((${#failures[@]} == 0)) || fail "${#failures[@]} check(s) failed: ${failures[*]}"
echo "PASS: deepseek2 conversions load in llama.cpp and match the PyTorch references"
