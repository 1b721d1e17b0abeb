#!/usr/bin/env bash
# PyTorch checkpoints end to end:
#  1. every file in ../shared/fixtures/torch reads exactly as its MANIFEST.json
#     says (names, shapes, dtypes, sha256 of the C-order bytes);
#  2. checkpoints python3-torch writes now (random dtypes, shapes, views, zip
#     and legacy, pickle protocols 2 and 4, plain pickles, deflated zip,
#     training checkpoint, sharded) read byte for byte as torch says;
#  3. llama-spm-8m's pytorch_model.bin and model.safetensors convert to the
#     same GGUF file, and so do that model repacked as a sharded .bin set, as
#     legacy-format shards and as a training checkpoint;
#  4. Meta's layout of the same model (2 and 4 tensor-parallel
#     consolidated.NN.pth + params.json) merges to Meta's full tensors, and
#     (once convert reads params.json) converts to the same tensor data;
#  5. every hostile fixture is refused by inspect and convert with a message,
#     leaves no output file, and nothing ran (/tmp/pwned-by-checkpoint).
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_shared
need_tessera
[[ -x "$PY" ]] && "$PY" -c 'import torch' 2>/dev/null || skip "python3-torch not installed"
CHECK="$TS_BUILD/tests/test_torch"
[[ -x "$CHECK" ]] || skip "$CHECK not built"
GEN="$TS_SRC/tests/interop/make_torch_ckpt.py"
MODEL="$SHARED/models/llama-spm-8m"
FIX="$SHARED/fixtures/torch"

echo "== 1. shared fixtures"
"$CHECK" --manifest "$FIX/MANIFEST.json" || fail "fixtures differ from MANIFEST.json"

echo "== 2. checkpoints written now by python3-torch"
for seed in 11 12; do
  "$PY" "$GEN" random "$TMP/rand$seed" --seed "$seed"
  "$CHECK" --manifest "$TMP/rand$seed/MANIFEST.json" || fail "random checkpoints (seed $seed) differ"
done

echo "== 3. .bin and safetensors convert to the same GGUF"
"$TESSERA" inspect "$MODEL/pytorch_model.bin" >"$TMP/inspect.txt" || fail "inspect pytorch_model.bin"
grep -q "75 tensors" "$TMP/inspect.txt" || fail "inspect: expected 75 tensors: $(head -1 "$TMP/inspect.txt")"
"$TESSERA" convert "$MODEL/model.safetensors" -o "$TMP/st.gguf" -q
for t in auto q8_0; do
  "$TESSERA" convert "$MODEL/model.safetensors" -o "$TMP/st-$t.gguf" --outtype "$t" -q
  "$TESSERA" convert "$MODEL/pytorch_model.bin" -o "$TMP/pt-$t.gguf" --outtype "$t" -q
  cmp "$TMP/st-$t.gguf" "$TMP/pt-$t.gguf" || fail "pytorch_model.bin and model.safetensors give different GGUFs ($t)"
done
for variant in "--shards 3" "--shards 2 --legacy" "--wrap model" "--shards 2 --wrap state_dict --legacy"; do
  dir="$TMP/repack-${variant//[ -]/}"
  # shellcheck disable=SC2086
  "$PY" "$GEN" repack "$MODEL" "$dir" $variant
  "$TESSERA" convert "$dir" -o "$TMP/repack.gguf" --name llama-spm-8m -q || fail "convert repacked ($variant)"
  cmp "$TMP/st-auto.gguf" "$TMP/repack.gguf" || fail "repacked checkpoint ($variant) converts differently"
done

echo "== 4. Meta consolidated layout"
for n in 2 4; do
  "$PY" "$GEN" meta "$MODEL" "$TMP/meta$n" --shards "$n"
  "$CHECK" --manifest "$TMP/meta$n/MANIFEST.json" || fail "merged consolidated shards ($n) differ from Meta's tensors"
done
if grep -q ts_meta_read_hparams "$TS_SRC/convert/convert.c"; then
  "$TESSERA" convert "$TMP/meta2" -o "$TMP/meta.gguf" -q || fail "convert Meta layout"
  "$PY" "$GEN" compare-gguf "$TESSERA" "$TMP/meta.gguf" "$TMP/st-auto.gguf" ||
    fail "Meta layout converts to different tensors than the HF layout"
else
  echo "note: convert/convert.c does not read params.json yet; Meta conversion not checked"
fi

echo "== 5. hostile files"
rm -f /tmp/pwned-by-checkpoint
mkdir -p "$TMP/hostile"
cp "$MODEL"/*.json "$MODEL/tokenizer.model" "$TMP/hostile/"
for f in "$FIX"/hostile/*; do
  name=$(basename "$f")
  cp "$f" "$TMP/hostile/$name"
  if "$TESSERA" inspect "$TMP/hostile/$name" >"$TMP/out.txt" 2>&1; then
    fail "inspect accepted $name"
  fi
  grep -q "$name" "$TMP/out.txt" || fail "inspect $name: message does not name the file: $(cat "$TMP/out.txt")"
  if "$TESSERA" convert "$TMP/hostile/$name" -o "$TMP/hostile-out.gguf" -q >"$TMP/out.txt" 2>&1; then
    fail "convert accepted $name"
  fi
  echo "  $name: $(tail -1 "$TMP/out.txt")"
  [[ ! -e "$TMP/hostile-out.gguf" ]] || fail "convert $name left an output file"
  ! compgen -G "$TMP/hostile-out.gguf.tmp.*" >/dev/null || fail "convert $name left a temp file"
  [[ ! -e /tmp/pwned-by-checkpoint ]] || fail "$name ran code: /tmp/pwned-by-checkpoint exists"
done
echo "PASS"
