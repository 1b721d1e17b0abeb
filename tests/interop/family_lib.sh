# Shared by test_family_forward.sh and test_family_mixtral.sh (sourced after
# lib.sh; they set TESSERA, TS_LLAMA, PY, HERE, TMP, THREADS and failures=()).
# Not a test itself: ctest runs tests/interop/test_*.sh only.

row() { printf '%s\n' "$1"; }
bad() { row "FAIL $1"; failures+=("$1"); }
ids_of() { "$PY" -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["token_ids"])))' "$1"; }
json_num() { sed -n "s/.*\"$1\": *\\([0-9.eE+-]*\\).*/\\1/p" | head -1; }

# convert DIR OUT TYPE
convert() {
  "$TESSERA" convert "$1" -o "$2" --outtype "$3" -q -t "$THREADS" >"$TMP/log" 2>&1 ||
    { bad "$(basename "$2"): convert: $(tail -1 "$TMP/log")"; return 1; }
}

# vs_reference REF.json GOT.f32 LABEL: reference.json's positions within 1e-3, same top-5 ids.
vs_reference() {
  local line
  if line=$("$PY" - "$@" <<'EOF'
import base64, json, sys
import numpy as np
r = json.load(open(sys.argv[1]))
pos = r["logit_positions"]
want = np.frombuffer(base64.b64decode(r["logits_f32_b64"]), dtype="<f4").reshape(len(pos), -1)
got = np.fromfile(sys.argv[2], dtype="<f4").reshape(len(r["token_ids"]), -1)[pos]
d = float(np.abs(got.astype(np.float64) - want).max())
top5 = sum(list(np.argsort(-got[i], kind="stable")[:5]) == r["top5_ids"][i] for i in range(len(pos)))
print(f"{sys.argv[3]:<34} max_abs={d:.3e} (bound 1e-3) top-5 identical {top5}/{len(pos)}")
sys.exit(0 if d < 1e-3 and top5 == len(pos) else 1)
EOF
  ); then row "$line"; else bad "$line"; fi
}

# vs_llama GGUF IDS N LABEL [REF.f32]: tessera logits vs llama.cpp's (F32 KV) on
# every position, and vs REF.f32 (a PyTorch port's) when given; leaves $TMP/ours.f32.
vs_llama() {
  local g=$1 ids=$2 n=$3 label=$4 line
  "$TESSERA" logits "$g" --ids "$ids" -o "$TMP/ours.f32" -t "$THREADS" 2>"$TMP/log" ||
    { bad "$label: tessera logits: $(tail -1 "$TMP/log")"; return 1; }
  "$TS_LLAMA" logits "$g" --ids "$ids" -o "$TMP/llama.f32" -t 1 2>"$TMP/log" ||
    { bad "$label: ts_llama logits: $(tail -1 "$TMP/log")"; return 1; }
  if line=$("$PY" "$HERE/compare_logits.py" "$TMP/llama.f32" "$TMP/ours.f32" --n "$n" --max-abs 1e-3 --top1 1.0 \
      --label "$label vs llama.cpp" 2>&1); then row "$line"; else bad "$line"; fi
  if [[ -n ${5:-} ]]; then
    if line=$("$PY" "$HERE/compare_logits.py" "$5" "$TMP/ours.f32" --n "$n" --max-abs 1e-3 --top1 1.0 \
        --label "$label vs PyTorch" 2>&1); then row "$line"; else bad "$line"; fi
  fi
  rm -f "$TMP/llama.f32"
}
