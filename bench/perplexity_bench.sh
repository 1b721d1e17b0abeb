#!/usr/bin/env bash
# tessera perplexity vs llama.cpp's perplexity (ts_llama perplexity: the
# prebuilt libraries the interop tests use, llama-perplexity's method and
# defaults) on the same GGUF, same text, same -c, chunks and threads:
# throughput in evaluated tokens per second (chunks x n_ctx / wall time of
# the whole command, best of RUNS, page cache warm), and both perplexities
# beside it so that speed is never bought with accuracy.
#
#   bench/perplexity_bench.sh [--write-docs] [--types "F16 Q8_0 Q4_K_M"] [F16.gguf ...]
#
# Without files: the 0.86 GB F16 random-weight Llama of the quantize
# benchmark (hidden 2048, 8 layers, vocab 4096; made here when absent) and
# every model in ../shared/models, each quantized by tessera to TYPES.
# --write-docs puts the table and the machine into docs/benchmarks.md,
# between the perplexity_bench markers of its "## Perplexity" section.
# Env: TS_BUILD (ts_llama, tessera), TS_THREADS (default nproc), RUNS (2),
# CHUNKS (4), N_CTX (512), BENCH_DIR (/tmp/tessera-qbench).
set -euo pipefail
TS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TS_BUILD="${TS_BUILD:-$TS_SRC/build}"
SHARED="${TS_SHARED:-$TS_SRC/../shared}"
TESSERA="${TESSERA:-$TS_BUILD/tessera}"
TS_LLAMA="${TS_LLAMA:-$TS_BUILD/ts_llama}"
THREADS="${TS_THREADS:-$(nproc)}"
RUNS="${RUNS:-2}"
CHUNKS="${CHUNKS:-4}"
N_CTX="${N_CTX:-512}"
BENCH_DIR="${BENCH_DIR:-/tmp/tessera-qbench}"
TYPES="F16 Q8_0 Q4_K_M"
WRITE_DOCS=0
inputs=()
while (($#)); do
  case $1 in
    --write-docs) WRITE_DOCS=1 ;;
    --types) TYPES=$2; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) inputs+=("$1") ;;
  esac
  shift
done

die() { echo "perplexity_bench: $*" >&2; exit 1; }
[[ -x $TS_LLAMA ]] || die "$TS_LLAMA not built (scripts/deps.sh, then cmake)"
[[ $("$TS_LLAMA" perplexity 2>&1 || true) != *"unknown command"* ]] || die "$TS_LLAMA has no perplexity subcommand"
[[ -x $TESSERA ]] || die "$TESSERA not built"
"$TESSERA" perplexity --help >/dev/null 2>&1 || die "$TESSERA has no perplexity command"
command -v /usr/bin/time >/dev/null || die "/usr/bin/time missing (apt-get install time)"
WORK="$(mktemp -d /tmp/tessera-pbench-run-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$BENCH_DIR"

# -- inputs --------------------------------------------------------------------
# Enough of wiki.test.raw for CHUNKS chunks with any of the tokenizers, and
# little more, so that tokenizing costs both tools next to nothing.
TEXT="$WORK/wiki.txt"
head -c $((CHUNKS * N_CTX * 6 + 4096)) "$SHARED/data/wiki.test.raw" | sed '$d' >"$TEXT"
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
  done
fi

# timed CMD...: best wall time of RUNS runs into T_S, the last stdout into T_OUT.
timed() {
  local s best=""
  for ((r = 0; r < RUNS; r++)); do
    /usr/bin/time -f "%e" -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/log" || { tail -3 "$WORK/log" >&2; return 1; }
    read -r s <"$WORK/time"
    if [[ -z $best ]] || awk -v a="$s" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$s; fi
  done
  T_S=$best
  T_OUT=$(cat "$WORK/out")
}

ppl_of() { sed -n 's/^PPL = \([0-9.]*\).*/\1/p' <<<"$1"; }
tps() { awk -v s="$1" -v n="$((CHUNKS * N_CTX))" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }
row() { printf '| %-22s | %-7s | %8s | %8s | %6s | %11s | %11s | %9s |\n' "$@"; }

TABLE="$WORK/table.md"
{
  row model type "llama.cpp tok/s" "tessera tok/s" ratio "llama.cpp PPL" "tessera PPL" "PPL diff"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
} >"$TABLE"
for f16 in "${inputs[@]}"; do
  name=$(basename "$f16" .gguf)
  name=${name%.f16}
  for t in $TYPES; do
    f="$f16"
    if [[ $t != F16 ]]; then
      f="$WORK/$name.$t.gguf"
      "$TESSERA" quantize "$f16" "$f" "$t" -q || die "tessera quantize $t failed on $f16"
    fi
    cat "$f" >/dev/null # warm the page cache for both tools alike
    opts=(-c "$N_CTX" --chunks "$CHUNKS" -t "$THREADS")
    timed "$TS_LLAMA" perplexity "$f" "$TEXT" "${opts[@]}" || die "ts_llama perplexity failed on $f"
    l_s=$T_S l_ppl=$(ppl_of "$T_OUT")
    timed "$TESSERA" perplexity "$f" -f "$TEXT" "${opts[@]}" -q || die "tessera perplexity failed on $f"
    t_s=$T_S t_ppl=$(ppl_of "$T_OUT")
    ratio=$(awk -v a="$l_s" -v b="$t_s" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    diff=$(awk -v a="$l_ppl" -v b="$t_ppl" 'BEGIN { printf "%+.4f%%", 100 * (b / a - 1) }')
    row "$name" "$t" "$(tps "$l_s")" "$(tps "$t_s")" "$ratio" "$l_ppl" "$t_ppl" "$diff" | tee -a "$TABLE"
    [[ $t == F16 ]] || rm -f "$f"
  done
done >&2

# -- report --------------------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -1)
MACHINE="Machine: $(nproc) cores ($cpu), $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo), $(date +%Y-%m-%d); $THREADS threads for both tools, -c $N_CTX, $CHUNKS chunks, best of $RUNS runs, load average $(cut -d' ' -f1 /proc/loadavg) at the end."
{
  echo "$MACHINE"
  echo
  cat "$TABLE"
} >"$WORK/section.md"
cat "$WORK/section.md"

if ((WRITE_DOCS)); then
  docs="$TS_SRC/docs/benchmarks.md"
  if ! grep -q '^<!-- perplexity_bench:begin -->$' "$docs" || ! grep -q '^<!-- perplexity_bench:end -->$' "$docs"; then
    die "$docs has no perplexity_bench markers in its ## Perplexity section"
  fi
  awk -v sec="$WORK/section.md" '
    /^<!-- perplexity_bench:begin -->$/ { print; while ((getline l < sec) > 0) print l; skip = 1; next }
    /^<!-- perplexity_bench:end -->$/ { skip = 0 }
    !skip { print }' "$docs" >"$WORK/docs.md"
  cat "$WORK/docs.md" >"$docs"
  echo "perplexity_bench: wrote the results into $docs" >&2
fi
