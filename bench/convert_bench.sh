#!/usr/bin/env bash
# Convert throughput and peak RSS on a multi-GB BF16 checkpoint, beside `cp` of
# the same bytes (the physical reference) and llama.cpp's own converter
# (convert_hf_to_gguf.py from the llama.cpp release that scripts/deps.sh fetched).
#   bench/convert_bench.sh [CKPT_DIR]   (default: writes a 2.5 GB one to /tmp/tessera-bench-ckpt)
# Results go to stdout as a Markdown table; copy them into docs/benchmarks.md.
set -euo pipefail
TS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TS_DEPS="${TS_DEPS:-$TS_SRC/.deps}"
SHARED="${TS_SHARED:-$TS_SRC/../shared}"
CKPT="${1:-/tmp/tessera-bench-ckpt}"
WORK="$(mktemp -d /tmp/tessera-bench-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
TESSERA="${TESSERA:-$TS_SRC/build/tessera}"
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null

if [[ ! -f "$CKPT/config.json" ]]; then
  /usr/bin/python3 "$TS_SRC/bench/make_big_checkpoint.py" "$CKPT" --tokenizer-from "$SHARED/models/llama-spm-8m"
fi
bytes=$(cat "$CKPT"/*.safetensors | wc -c)

# llama.cpp's converter, from the release bundle inside node-llama-cpp (not committed)
LLSRC="$TS_DEPS/llama/src"
if [[ ! -f "$LLSRC/convert_hf_to_gguf.py" ]]; then
  (cd "$WORK" && npm pack --silent node-llama-cpp@3.22.1 >/dev/null && tar xzf node-llama-cpp-3.22.1.tgz &&
   git clone -q package/llama/gitRelease.bundle "$LLSRC") || LLSRC=""
fi

# run LABEL CMD...: best of 2 runs (warm page cache), prints "label seconds MB/s peakRSS_MB"
run() {
  local label=$1 best="" rss=0; shift
  for _ in 1 2; do
    rm -f "$WORK/out"*
    /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err"; return 1; }
    read -r s k <"$WORK/time"
    if [[ -z $best ]] || awk -v a="$s" -v b="$best" 'BEGIN{exit !(a<b)}'; then best=$s; rss=$k; fi
  done
  awk -v l="$label" -v s="$best" -v b="$bytes" -v k="$rss" \
    'BEGIN { printf "| %-44s | %7.2f | %7.0f | %7.0f |\n", l, s, b / 1e6 / s, k / 1024 }'
}

cat "$CKPT"/*.safetensors >/dev/null # warm the page cache
nproc_=$(nproc)
echo "checkpoint: $CKPT, $(awk -v b="$bytes" 'BEGIN{printf "%.2f", b/1e9}') GB BF16, $nproc_ cores"
echo
echo "| command | seconds | MB/s (input) | peak RSS MB |"
echo "|---|---|---|---|"
run "cp (same bytes, page cache only)" sh -c "cat '$CKPT'/*.safetensors > '$WORK/out.cp'"
# tessera fsyncs its output before the rename; this is the comparable copy
run "cp + fsync (same bytes, physical reference)" sh -c "cat '$CKPT'/*.safetensors > '$WORK/out.cp' && sync -f '$WORK/out.cp'"
for t in bf16 f16 q8_0; do
  run "tessera convert --outtype $t -t $nproc_" "$TESSERA" convert "$CKPT" -o "$WORK/out.gguf" --outtype "$t" -q
done
run "tessera convert --outtype f16 -t 1" "$TESSERA" convert "$CKPT" -o "$WORK/out.gguf" --outtype f16 -q -t 1
if [[ -n $LLSRC ]]; then
  for t in bf16 f16 q8_0; do
    run "llama.cpp convert_hf_to_gguf.py --outtype $t" env PYTHONPATH="$TS_SRC/bench/shim:$LLSRC/gguf-py" \
      /usr/bin/python3 "$LLSRC/convert_hf_to_gguf.py" "$CKPT" --outfile "$WORK/out.gguf" --outtype "$t"
  done
fi
