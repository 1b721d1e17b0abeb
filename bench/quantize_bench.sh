#!/usr/bin/env bash
# tessera quantize vs llama.cpp's llama_model_quantize (ts_llama quantize),
# same F16 GGUF, same thread count, same run: wall time and peak RSS (best of
# RUNS, page cache warm), and the error of each output beside its speed:
# relative RMSE of all quantized tensors against the F16 file, plain and
# weighted by w^2 (ggml's default importance when there is no imatrix), both
# sides dequantized by ggml's own to_float (ts_llama rmse), and, for the trained
# models, llama.cpp's perplexity (ts_llama perplexity, -c 512, PPL_CHUNKS
# chunks of wiki.test.raw).
#
#   bench/quantize_bench.sh [--write-docs] [--types "Q4_K_M Q6_K"] [F16.gguf ...]
#
# Without files: a 0.86 GB F16 random-weight Llama (hidden 2048, 8 layers,
# vocab 4096; bench/make_big_checkpoint.py, then tessera convert --outtype
# f16), kept in $BENCH_DIR between runs, plus every model in ../shared/models.
# --write-docs puts the table and the machine into docs/benchmarks.md,
# between the quantize_bench markers of its "## Quantize" section.
# Env: TS_BUILD (ts_llama, tessera), TS_THREADS (default nproc), RUNS (2),
# PPL_CHUNKS (8), BENCH_DIR (/tmp/tessera-qbench).
set -euo pipefail
TS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TS_BUILD="${TS_BUILD:-$TS_SRC/build}"
SHARED="${TS_SHARED:-$TS_SRC/../shared}"
TESSERA="${TESSERA:-$TS_BUILD/tessera}"
TS_LLAMA="${TS_LLAMA:-$TS_BUILD/ts_llama}"
THREADS="${TS_THREADS:-$(nproc)}"
RUNS="${RUNS:-2}"
PPL_CHUNKS="${PPL_CHUNKS:-8}"
BENCH_DIR="${BENCH_DIR:-/tmp/tessera-qbench}"
TYPES="Q4_K_M Q6_K Q8_0 IQ4_XS"
WRITE_DOCS=0
inputs=()
while (($#)); do
  case $1 in
    --write-docs) WRITE_DOCS=1 ;;
    --types) TYPES=$2; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) inputs+=("$1") ;;
  esac
  shift
done

die() { echo "quantize_bench: $*" >&2; exit 1; }
[[ -x $TS_LLAMA ]] || die "$TS_LLAMA not built (scripts/deps.sh, then cmake)"
[[ $("$TS_LLAMA" quantize 2>&1 || true) != *"unknown command"* ]] || die "$TS_LLAMA has no quantize subcommand"
[[ -x $TESSERA ]] || die "$TESSERA not built"
command -v /usr/bin/time >/dev/null || die "/usr/bin/time missing (apt-get install time)"
HAVE_TESSERA=1
"$TESSERA" quantize --help >/dev/null 2>&1 || HAVE_TESSERA=0
WORK="$(mktemp -d /tmp/tessera-qbench-run-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$BENCH_DIR"

# -- inputs --------------------------------------------------------------------
TEXT="$WORK/wiki.txt" # perplexity text: enough of wiki.test.raw for PPL_CHUNKS
head -c $((PPL_CHUNKS * 512 * 8 + 65536)) "$SHARED/data/wiki.test.raw" | sed '$d' >"$TEXT"
declare -A TRAINED=()
if ((${#inputs[@]} == 0)); then
  big="$BENCH_DIR/llama-random-2048x8.f16.gguf"
  if [[ ! -f $big ]]; then
    /usr/bin/python3 "$TS_SRC/bench/make_big_checkpoint.py" "$BENCH_DIR/ckpt" --hidden 2048 --layers 8 \
      --vocab 4096 --shards 1 --tokenizer-from "$SHARED/models/llama-spm-8m" >&2
    "$TESSERA" convert "$BENCH_DIR/ckpt" -o "$big" --outtype f16 -q
    rm -rf "$BENCH_DIR/ckpt"
  fi
  inputs+=("$big")
  for dir in "$SHARED"/models/*/; do
    name=$(basename "$dir")
    f="$BENCH_DIR/$name.f16.gguf"
    [[ -f $f ]] || "$TESSERA" convert "$dir" -o "$f" --outtype f16 -q
    inputs+=("$f")
    TRAINED[$f]=1
  done
fi

# -- measuring -----------------------------------------------------------------
# timed OUT CMD...: best wall time of RUNS runs; sets T_S and T_RSS_MB.
timed() {
  local out=$1 s k best="" rss=0
  shift
  for ((r = 0; r < RUNS; r++)); do
    rm -f "$out"
    /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >"$WORK/log" 2>&1 || { tail -3 "$WORK/log" >&2; return 1; }
    read -r s k <"$WORK/time"
    if [[ -z $best ]] || awk -v a="$s" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$s rss=$k; fi
  done
  T_S=$best
  T_RSS_MB=$(awk -v k="$rss" 'BEGIN { printf "%.0f", k / 1024 }')
}

json_field() { sed -n "s/.*\"$2\": *\\([0-9.eE+-]*\\).*/\\1/p" <<<"$1"; }

# measure F16 OUT: error columns of one output (rel RMSE, bpw, PPL).
measure() {
  local f16=$1 out=$2 j
  j=$("$TS_LLAMA" rmse "$f16" "$out" --json)
  M_REL=$(awk -v r="$(json_field "$j" rel_rmse)" 'BEGIN { printf "%.5f", r }')
  M_REL2=$(awk -v r="$(json_field "$j" rel_rmse_w2)" 'BEGIN { printf "%.5f", r }')
  M_BPW=$(awk -v b="$(json_field "$j" bpw)" 'BEGIN { printf "%.3f", b }')
  M_PPL="-"
  if [[ -n ${TRAINED[$f16]:-} ]]; then
    j=$("$TS_LLAMA" perplexity "$out" "$TEXT" -c 512 --chunks "$PPL_CHUNKS" -t "$THREADS" --json)
    M_PPL=$(awk -v p="$(json_field "$j" ppl)" 'BEGIN { printf "%.3f", p }')
  fi
}

row() { printf '| %-22s | %-7s | %-9s | %7s | %7s | %6s | %6s | %9s | %9s | %10s |\n' "$@"; }

TABLE="$WORK/table.md"
{
  row model type tool seconds speedup "RSS MB" bpw "rel. RMSE" "w2 RMSE" PPL
  echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
} >"$TABLE"
for f16 in "${inputs[@]}"; do
  name=$(basename "$f16" .gguf)
  name=${name%.f16}
  base_ppl="-"
  if [[ -n ${TRAINED[$f16]:-} ]]; then
    j=$("$TS_LLAMA" perplexity "$f16" "$TEXT" -c 512 --chunks "$PPL_CHUNKS" -t "$THREADS" --json)
    base_ppl=$(awk -v p="$(json_field "$j" ppl)" 'BEGIN { printf "%.3f", p }')
  fi
  cat "$f16" >/dev/null # warm the page cache for both tools alike
  row "$name" F16 - - - - 16 0 0 "$base_ppl" | tee -a "$TABLE"
  for t in $TYPES; do
    out="$WORK/out.gguf"
    timed "$out" "$TS_LLAMA" quantize "$f16" "$out" "$t" -t "$THREADS" || die "ts_llama quantize $t failed on $f16"
    l_s=$T_S
    measure "$f16" "$out"
    row "$name" "$t" llama.cpp "$l_s" 1.00 "$T_RSS_MB" "$M_BPW" "$M_REL" "$M_REL2" "$M_PPL" | tee -a "$TABLE"
    if ((HAVE_TESSERA)); then
      if timed "$out" "$TESSERA" quantize "$f16" "$out" "$t" -t "$THREADS"; then
        measure "$f16" "$out"
        speedup=$(awk -v a="$l_s" -v b="$T_S" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
        row "$name" "$t" tessera "$T_S" "$speedup" "$T_RSS_MB" "$M_BPW" "$M_REL" "$M_REL2" "$M_PPL" | tee -a "$TABLE"
      else
        row "$name" "$t" tessera failed - - - - - - | tee -a "$TABLE"
      fi
    fi
    rm -f "$out"
  done
done >&2

# -- report --------------------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -1)
MACHINE="Machine: $(nproc) cores ($cpu), $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo), $(date +%Y-%m-%d); $THREADS threads for both tools, best of $RUNS runs."
NOTE=""
((HAVE_TESSERA)) || NOTE="\`tessera quantize\` was not built when this ran: llama.cpp's side only."
{
  echo "$MACHINE"
  [[ -z $NOTE ]] || { echo; echo "$NOTE"; }
  echo
  cat "$TABLE"
} >"$WORK/section.md"
cat "$WORK/section.md"

if ((WRITE_DOCS)); then
  docs="$TS_SRC/docs/benchmarks.md"
  if ! grep -q '^<!-- quantize_bench:begin -->$' "$docs" || ! grep -q '^<!-- quantize_bench:end -->$' "$docs"; then
    die "$docs has no quantize_bench markers in its ## Quantize section"
  fi
  awk -v sec="$WORK/section.md" '
    /^<!-- quantize_bench:begin -->$/ { print; while ((getline l < sec) > 0) print l; skip = 1; next }
    /^<!-- quantize_bench:end -->$/ { skip = 0 }
    !skip { print }' "$docs" >"$WORK/docs.md"
  cat "$WORK/docs.md" >"$docs"
  echo "quantize_bench: wrote the results into $docs" >&2
fi
