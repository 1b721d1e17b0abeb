#!/usr/bin/env bash
# tessera release (one pass over the input, every type written side by side)
# against the same files made one at a time, same thread count, same run:
# wall time and peak RSS.
#
#   bench/release_bench.sh [--write-docs] [--big-types "Q4_K_M Q5_K_M Q6_K Q8_0"]
#
#  - the 0.86 GB F16 random-weight Llama of bench/quantize_bench.sh (made the
#    same way when $BENCH_DIR does not hold it): one `tessera release` of
#    BIG_TYPES against one `tessera quantize` per type and one llama.cpp
#    quantization per type (ts_llama quantize = llama_model_quantize);
#  - every checkpoint in ../shared/models (converted and quantized in the
#    same pass): a release of six types against six `tessera quantize` runs.
# The release is timed without --eval (no measuring): what is compared is
# writing the files; its time includes the checks and SHA-256 of collect,
# which the separate runs do not do (the "write s" column is the pass alone,
# from the release's own summary); "x release" is a row's time over the
# release's. Every release file is compared (cmp) with its `tessera
# quantize` twin.
# --write-docs puts the table into docs/benchmarks.md between the
# release_bench markers of its "## Release" section.
# Env: TS_BUILD (tessera, ts_llama), TS_THREADS (default nproc), RUNS (rounds,
# best time of each command, default 2), BENCH_DIR (/tmp/tessera-qbench, shared with quantize_bench.sh).
set -euo pipefail
TS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TS_BUILD="${TS_BUILD:-$TS_SRC/build}"
SHARED="${TS_SHARED:-$TS_SRC/../shared}"
TESSERA="${TESSERA:-$TS_BUILD/tessera}"
TS_LLAMA="${TS_LLAMA:-$TS_BUILD/ts_llama}"
THREADS="${TS_THREADS:-$(nproc)}"
BENCH_DIR="${BENCH_DIR:-/tmp/tessera-qbench}"
RUNS="${RUNS:-2}"
BIG_TYPES="Q4_K_M Q5_K_M Q6_K Q8_0"
SMALL_TYPES="Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K Q8_0"
WRITE_DOCS=0
while (($#)); do
  case $1 in
    --write-docs) WRITE_DOCS=1 ;;
    --big-types) BIG_TYPES=$2; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "release_bench: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

die() { echo "release_bench: $*" >&2; exit 1; }
[[ -x $TESSERA ]] || die "$TESSERA not built"
"$TESSERA" release --help >/dev/null 2>&1 || die "$TESSERA has no release command"
command -v /usr/bin/time >/dev/null || die "/usr/bin/time missing (apt-get install time)"
HAVE_LLAMA=1
[[ -x $TS_LLAMA ]] || HAVE_LLAMA=0
WORK="$(mktemp -d /tmp/tessera-rbench-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$BENCH_DIR"

big="$BENCH_DIR/llama-random-2048x8.f16.gguf"
if [[ ! -f $big ]]; then
  /usr/bin/python3 "$TS_SRC/bench/make_big_checkpoint.py" "$BENCH_DIR/ckpt" --hidden 2048 --layers 8 \
    --vocab 4096 --shards 1 --tokenizer-from "$SHARED/models/llama-spm-8m" >&2
  "$TESSERA" convert "$BENCH_DIR/ckpt" -o "$big" --outtype f16 -q
  rm -rf "$BENCH_DIR/ckpt"
fi

# timed CMD...: wall seconds and peak RSS (MB) of one run into T_S, T_RSS;
# its stderr in $WORK/log.
timed() {
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/log" || { tail -3 "$WORK/log" >&2; return 1; }
  read -r T_S T_RSS <"$WORK/time"
  T_RSS=$(awk -v k="$T_RSS" 'BEGIN { printf "%.0f", k / 1024 }')
}
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b < a) ? b : a }'; }

row() { printf '| %-20s | %-28s | %-24s | %8s | %8s | %7s | %6s |\n' "$@"; }
TABLE="$WORK/table.md"
{
  row input types how seconds "write s" "x release" "RSS MB"
  echo "|---|---|---|---:|---:|---:|---:|"
} >"$TABLE"

# bench NAME INPUT "TYPES" LLAMA(0|1): RUNS rounds, each the release then
# every separate run, so that load from other jobs falls on both alike; the
# best time of each command over the rounds.
bench() {
  local name=$1 in=$2 types=$3 with_llama=$4 t r list rel
  local r_s="" r_rss=0 w_s="" sum=0 rss=0 lsum=0 lrss=0
  declare -A q_s=() l_s=()
  list=$(tr ' ' ',' <<<"$types")
  cat "$in"/* "$in" >/dev/null 2>&1 || true # warm the page cache alike for every run
  mkdir -p "$WORK/one"
  for ((r = 0; r < RUNS; r++)); do
    rm -rf "$WORK/rel"
    timed "$TESSERA" release "$in" -o "$WORK/rel" --types "$list" -t "$THREADS" || die "release $name"
    if [[ -z $r_s ]] || awk -v a="$T_S" -v b="$r_s" 'BEGIN { exit !(a < b) }'; then
      r_s=$T_S
      w_s=$(sed -n 's/.*write \([0-9.]*\) s.*/\1/p' "$WORK/log" | tail -1)
    fi
    r_rss=$((T_RSS > r_rss ? T_RSS : r_rss))
    for t in $types; do
      timed "$TESSERA" quantize "$in" "$WORK/one/$t.gguf" "$t" -t "$THREADS" -q || die "quantize $name $t"
      q_s[$t]=$(min "${q_s[$t]:-}" "$T_S")
      rss=$((T_RSS > rss ? T_RSS : rss))
      rel=$(ls "$WORK/rel/"*"-$t.gguf")
      cmp "$WORK/one/$t.gguf" "$rel" || die "$name $t: release and quantize differ"
      rm -f "$WORK/one/$t.gguf"
      if ((with_llama && HAVE_LLAMA)); then
        timed "$TS_LLAMA" quantize "$in" "$WORK/one/l.gguf" "$t" -t "$THREADS" || die "ts_llama quantize $name $t"
        l_s[$t]=$(min "${l_s[$t]:-}" "$T_S")
        lrss=$((T_RSS > lrss ? T_RSS : lrss))
        rm -f "$WORK/one/l.gguf"
      fi
    done
  done
  for t in $types; do
    sum=$(awk -v a="$sum" -v b="${q_s[$t]}" 'BEGIN { print a + b }')
    ((with_llama && HAVE_LLAMA)) && lsum=$(awk -v a="$lsum" -v b="${l_s[$t]}" 'BEGIN { print a + b }')
  done
  row "$name" "$types" "tessera release (1 pass)" "$r_s" "$w_s" "1.00" "$r_rss"
  row "$name" "$types" "tessera quantize x $(wc -w <<<"$types")" "$sum" "-" "$(awk -v a="$sum" -v b="$r_s" 'BEGIN { printf "%.2f", a / b }')" "$rss"
  if ((with_llama && HAVE_LLAMA)); then
    row "$name" "$types" "llama.cpp x $(wc -w <<<"$types")" "$lsum" "-" "$(awk -v a="$lsum" -v b="$r_s" 'BEGIN { printf "%.2f", a / b }')" "$lrss"
  fi
  rm -rf "$WORK/rel"
}

{
  bench "$(basename "$big" .f16.gguf) (GGUF)" "$big" "$BIG_TYPES" 1
  for dir in "$SHARED"/models/*/; do
    dir=${dir%/}
    bench "$(basename "$dir")" "$dir" "$SMALL_TYPES" 0
  done
} | tee -a "$TABLE" >&2

cpu=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -1)
load=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "Machine: $(nproc) cores ($cpu), $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo), $(date +%Y-%m-%d); $THREADS threads for every tool; best of $RUNS rounds (each: the release, then the separate runs), page cache warm; load average at the end $load."
  echo
  cat "$TABLE"
} >"$WORK/section.md"
cat "$WORK/section.md"

if ((WRITE_DOCS)); then
  docs="$TS_SRC/docs/benchmarks.md"
  grep -q '^<!-- release_bench:begin -->$' "$docs" && grep -q '^<!-- release_bench:end -->$' "$docs" ||
    die "$docs has no release_bench markers in its ## Release section"
  awk -v sec="$WORK/section.md" '
    /^<!-- release_bench:begin -->$/ { print; while ((getline l < sec) > 0) print l; skip = 1; next }
    /^<!-- release_bench:end -->$/ { skip = 0 }
    !skip { print }' "$docs" >"$WORK/docs.md"
  cat "$WORK/docs.md" >"$docs"
  echo "release_bench: wrote the results into $docs" >&2
fi
