#!/usr/bin/env bash
# tessera release (issue 9) against `tessera quantize` and llama.cpp:
#  1. every model in ../shared/models: a release of six types is byte for byte
#     the six `tessera quantize` runs (cmp);
#     (MoE models: the card says routing agreement is not measured);
#  2. llama-spm-8m (the smallest: the heavy part) with --imatrix auto, --eval
#     and a small --split-max-size: DIR/imatrix.gguf is `tessera imatrix`'s
#     file; llama.cpp loads every variant from its first part, its perplexity
#     of each equals the card's within 0.1% (2032 scored tokens: fewer leave
#     rounding noise of ~0.1% between the two forward passes, see
#     docs/perplexity.md), and for Q4_K_M equals exactly its perplexity of
#     the unsplit `tessera quantize --imatrix` file; SHA256SUMS checks;
#  3. kill -9 in the middle of a release, then again: complete, and no file
#     under a final name ever differs from tessera quantize's;
#  4. a full disk (a small tmpfs, when this runs as root): exit 1, no partial
#     file left; with room again the rerun completes;
#  5. bad options: an unknown type, a split size below the largest tensor,
#     --imatrix auto without --calib, a missing model: exit 2, clear errors.
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_shared
need_tessera
tessera_has release || skip "tessera release not built"
TEXT="$SHARED/data/wiki.test.raw"
CALIB="$SHARED/data/calibration.txt"
TYPES=(Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K Q8_0)
LIST=$(IFS=,; echo "${TYPES[*]}")
T0=$SECONDS
step() { echo "[$((SECONDS - T0)) s] $*"; }

# -- 1. one pass == six quantize runs, every model ------------------------------
for m in "$SHARED"/models/*/; do
  m=${m%/}
  name=$(basename "$m")
  [[ -f $m/config.json ]] || continue
  "$TESSERA" release "$m" -o "$TMP/$name" --types "$LIST" -t 2 -q || fail "$name: tessera release"
  mkdir -p "$TMP/ref-$name"
  for t in "${TYPES[@]}"; do
    "$TESSERA" quantize "$m" "$TMP/ref-$name/$t.gguf" "$t" -t 2 -q || fail "$name: tessera quantize $t"
    cmp "$TMP/ref-$name/$t.gguf" "$TMP/$name/$name-$t.gguf" || fail "$name $t: release differs from tessera quantize"
  done
  [[ -f $TMP/$name/README.md && -f $TMP/$name/release.json ]] || fail "$name: no card"
  (cd "$TMP/$name" && sha256sum -c --quiet SHA256SUMS) || fail "$name: SHA256SUMS does not check"
  if grep -q '"num_experts"' "$m/config.json"; then
    grep -q "Routing agreement" "$TMP/$name/README.md" || fail "$name: the MoE card does not mention routing agreement"
  fi
  step "$name: 6 types byte-identical to tessera quantize"
  [[ $name == llama-spm-8m ]] || rm -rf "${TMP:?}/$name" "${TMP:?}/ref-$name"
done
[[ -d $TMP/ref-llama-spm-8m ]] || skip "llama-spm-8m not found in $SHARED/models"

# -- 2. imatrix auto, eval, split; llama.cpp loads and scores every file ---------
M="$SHARED/models/llama-spm-8m"
D="$TMP/full-release"
EVAL=(-c 128 --chunks 32)
"$TESSERA" release "$M" -o "$D" --types "$LIST" --imatrix auto --calib "$CALIB" --calib-chunks 4 \
  --eval "$TEXT" "${EVAL[@]}" --split-max-size 4M -t 2 -q --json >"$TMP/rel.json" ||
  fail "llama-spm-8m: tessera release with imatrix, eval and split"
"$TESSERA" imatrix "$D/.work/base.gguf" -f "$CALIB" -o "$TMP/im.gguf" -c 128 --chunks 4 -q || fail "tessera imatrix"
cmp "$TMP/im.gguf" "$D/imatrix.gguf" || fail "imatrix auto differs from tessera imatrix's"
(cd "$D" && sha256sum -c --quiet SHA256SUMS) || fail "llama-spm-8m: SHA256SUMS does not check"
for f in "$D"/*.gguf; do # nothing over the split size
  (($(stat -c %s "$f") <= 4000000)) || fail "$f: $(stat -c %s "$f") bytes, over --split-max-size 4M"
done
step "llama-spm-8m: release with imatrix auto, eval, split"
if [[ -x $TS_LLAMA && -d $LLAMA_LIB_DIR ]]; then
  "$PY" -c '
import json, sys
for v in json.load(open(sys.argv[1]))["variants"]:
    print(v["type"], v["files"][0]["name"], len(v["files"]), repr(v["ppl"]))' "$TMP/rel.json" >"$TMP/cards.txt"
  llama_ppl() { "$TS_LLAMA" perplexity "$1" "$TEXT" "${EVAL[@]}" -t 2 --json | "$PY" -c 'import json, sys; print(repr(json.load(sys.stdin)["ppl"]))'; }
  split_seen=0
  while read -r t first n_files card; do
    l=$(llama_ppl "$D/$first") || fail "llama.cpp cannot load or score $first"
    printf '  %-7s %s part(s)  card PPL %.4f  llama.cpp %.4f  (%+.4f%%)\n' "$t" "$n_files" "$card" "$l" \
      "$(awk -v a="$card" -v b="$l" 'BEGIN { print 100 * (a / b - 1) }')"
    awk -v a="$card" -v b="$l" 'BEGIN { d = a / b - 1; exit !(d <= 0.001 && d >= -0.001) }' ||
      fail "$t: card perplexity $card vs llama.cpp's $l: more than 0.1% apart"
    ((n_files > 1)) && split_seen=$((split_seen + 1))
    if [[ $t == Q4_K_M ]]; then # the tensors of the unsplit file: the same score, exactly
      "$TESSERA" quantize "$M" "$TMP/u.gguf" "$t" --imatrix "$D/imatrix.gguf" -t 2 -q || fail "quantize $t"
      u=$(llama_ppl "$TMP/u.gguf")
      [[ $u == "$l" ]] || fail "$t: llama.cpp scores the split parts $l, the unsplit quantize file $u"
    fi
  done <"$TMP/cards.txt"
  ((split_seen >= 2)) || fail "expected split variants at 4M, saw $split_seen"
  step "llama.cpp: every variant loads (split ones from the first part), perplexity within 0.1% of the card"
else
  echo "SKIP (part): llama.cpp not available (scripts/deps.sh); the perplexity comparison did not run"
fi
rm -rf "$D"

# -- 3. kill -9 mid-release, then again --------------------------------------------
REF="$TMP/ref-llama-spm-8m"
D="$TMP/kill"
# check_final DIR: every file under a final name is tessera quantize's, byte for byte
check_final() {
  local f t
  for f in "$1"/llama-spm-8m-*.gguf; do
    [[ -e $f ]] || continue
    t=${f##*/llama-spm-8m-}
    t=${t%.gguf}
    cmp -s "$f" "$REF/$t.gguf" || fail "$f: under its final name but not tessera quantize's bytes"
  done
}
"$TESSERA" release "$M" -o "$D" --types "$LIST" --eval "$TEXT" -c 128 --chunks 4 -t 2 -q &
pid=$!
for _ in $(seq 1 400); do # until the pass has begun writing
  compgen -G "$D/*.gguf.tmp.*" >/dev/null && break
  sleep 0.02
done
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
echo "  killed with $(compgen -G "$D/*.tmp.*" | wc -l) temp file(s) and $(compgen -G "$D/*.gguf" | wc -l) final file(s) there"
check_final "$D"
"$TESSERA" release "$M" -o "$D" --types "$LIST" --eval "$TEXT" -c 128 --chunks 4 -t 2 -q ||
  fail "the release after kill -9 did not complete"
check_final "$D"
for t in "${TYPES[@]}"; do [[ -f $D/llama-spm-8m-$t.gguf ]] || fail "$t missing after the rerun"; done
! compgen -G "$D/*.tmp.*" >/dev/null || fail "temp files left: $(ls "$D")"
"$PY" -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert [v["type"] for v in j["variants"]] == sys.argv[2].split(","), j["variants"]
assert all(v["ppl"] and v["kld"] is not None and v["same_top_percent"] for v in j["variants"]), j["variants"]
assert j["eval"]["base_ppl"] > 1' "$D/release.json" "$LIST" || fail "release.json after the rerun"
step "kill -9 mid-release: rerun completes, no partial file under a final name"

# -- 4. a full disk -----------------------------------------------------------------
D="$TMP/full"
mkdir -p "$D"
if [[ $(id -u) -eq 0 ]] && mount -t tmpfs -o size=20m tmpfs "$D" 2>/dev/null; then
  trap 'umount "$D" 2>/dev/null || true; rm -rf "$TMP"' EXIT
  rc=0
  "$TESSERA" release "$M" -o "$D/out" --types "$LIST" -t 2 -q 2>"$TMP/full.err" || rc=$?
  ((rc == 1)) || fail "full disk: exit $rc, expected 1"
  grep -qi "no space" "$TMP/full.err" || fail "full disk: unclear error: $(cat "$TMP/full.err")"
  ! compgen -G "$D/out/*.tmp.*" >/dev/null || fail "full disk: temp files left: $(ls "$D/out")"
  check_final "$D/out"
  mount -o remount,size=64m "$D" || fail "cannot grow the tmpfs"
  "$TESSERA" release "$M" -o "$D/out" --types "$LIST" -t 2 -q || fail "full disk: the rerun did not complete"
  check_final "$D/out"
  (cd "$D/out" && sha256sum -c --quiet SHA256SUMS) || fail "full disk: SHA256SUMS after the rerun"
  umount "$D"
  trap 'rm -rf "$TMP"' EXIT
  step "full disk: exit 1, nothing partial; the rerun completes"
else
  echo "SKIP (part): a small tmpfs needs root; the full-disk case did not run"
fi

# -- 5. bad options -------------------------------------------------------------------
# expect CODE PATTERN ARGS...: tessera release ARGS exits CODE and says PATTERN
expect() {
  local want=$1 pattern=$2 rc=0
  shift 2
  "$TESSERA" release "$@" >"$TMP/out.txt" 2>&1 || rc=$?
  ((rc == want)) || fail "release $*: exit $rc, expected $want: $(cat "$TMP/out.txt")"
  grep -q -- "$pattern" "$TMP/out.txt" || fail "release $*: no '$pattern' in: $(cat "$TMP/out.txt")"
}
expect 2 "Q7_K: expected one of" "$M" -o "$TMP/bad" --types Q4_K_M,Q7_K
expect 2 "smaller than tensor token_embd.weight" "$M" -o "$TMP/bad" --types Q8_0 --split-max-size 100K
expect 2 "needs --calib" "$M" -o "$TMP/bad" --types Q8_0 --imatrix auto
expect 2 "no such model" "$TMP/nothing" -o "$TMP/bad" --types Q8_0
expect 2 "split-max-size" "$M" -o "$TMP/bad" --types Q8_0 --split-max-size 12X
step "bad options: exit 2 with the reason"
echo "PASS: release == quantize on every model; llama.cpp loads and scores every file as the card says; resumes after kill -9 and a full disk"
