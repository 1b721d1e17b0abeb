#!/usr/bin/env bash
# Tessera's own forward pass on gpt-oss GGUFs (verify/forward_gptoss.c:
# attention sinks, Q/K/V/O biases, sliding-window layers, clamped SwiGLU
# with expert biases, router bias + softmax over the chosen logits, YaRN with
# the official, unrounded correction range), against float32 PyTorch ports of
# the official modeling code and against llama.cpp on the same files.
#
# llama.cpp floors / ceils YaRN's correction range (ggml_rope_yarn_corr_dims)
# where the gpt-oss config says truncate: false, so its logits differ from
# the official code's by a few 1e-3 (the fixture's README). Tessera follows
# the official code by default; a GGUF with the bool key
# gpt-oss.rope.scaling.yarn_truncate = true (added here by with_truncate) makes
# it round like llama.cpp, which isolates that one difference: with it, every
# other step must agree with llama.cpp to rounding.
#
# 1. The fixture (../shared/fixtures/families/gpt_oss: 2 layers, sliding +
#    full, window 8, 8 MXFP4 experts, vocabulary 8192), converted to f32
#    (experts expanded exactly) and q8_0 (experts kept MXFP4):
#    - tessera logits on reference.json's ids: the last 4 positions within
#      1e-3 of reference.json, top-5 identical; every position within 1e-3
#      of llama.cpp's with yarn_truncate, within 1e-2 without (the YaRN
#      range: measured 5.5e-3 over all 40 positions);
#    - perplexity vs llama.cpp's (ts_llama perplexity), -c 128, 8 chunks of
#      the start of wiki.test.raw: f32 within 0.25%, q8_0 within 0.5%
#      (measured 0.002-0.07%, docs/perplexity.md "gpt-oss"); with
#      yarn_truncate f32 within 0.01% (measured 2e-6 %);
#    - KL divergence of q8_0 against f32 vs llama-perplexity's statistic
#      from llama.cpp's logits (llama_kld.py): within 5%;
#    - tessera imatrix vs llama.cpp's collection: the same weights, expert
#      stacks included, the same expert row totals, layer 0's dense weights'
#      mean squares within 1e-3;
#    - tessera verify q8_0 --base f32 passes.
# 2. make_moe_ckpt.py's gpt_oss (3 layers [full, sliding, sliding] — not
#    the default alternation —, window 5, 5 experts top-3, head_dim 32,
#    MXFP4 experts): logits on 48 ids within 1e-3 of ref_moe_families.py
#    (truncate false, as its config) and, with yarn_truncate, of llama.cpp
#    (without: within 0.05, measured 1.8e-2 at head_dim 32 and 48
#    positions); perplexity f32 / q8_0 vs llama.cpp as in 1.
# TS_THREADS sets tessera's threads (default 2); llama.cpp runs on one thread.
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_shared
need_tessera
for c in convert logits perplexity imatrix verify; do
  tessera_has $c || skip "tessera $c not built"
done
FIX="$SHARED/fixtures/families/gpt_oss"
[[ -f "$FIX/reference.json" ]] || skip "gpt_oss fixture not found in $FIX (set TS_SHARED)"
need_deps
"$PY" -c "import torch, numpy" 2>/dev/null || skip "python3-torch / numpy not available"
HERE="$TS_SRC/tests/interop"
THREADS="${TS_THREADS:-2}"
TEXT="$TMP/wiki.txt"
head -c 60000 "$SHARED/data/wiki.test.raw" >"$TEXT"
CTX=128
CHUNKS=8
failures=()
row() { printf '%s\n' "$1"; }
bad() { row "FAIL $1"; failures+=("$1"); }
json_num() { sed -n "s/.*\"$1\": *\\([0-9.eE+-]*\\).*/\\1/p" | head -1; }

convert() { # DIR OUT TYPE
  "$TESSERA" convert "$1" -o "$2" --outtype "$3" -q -t "$THREADS" >"$TMP/log" 2>&1 ||
    { bad "$(basename "$2"): convert: $(tail -1 "$TMP/log")"; return 1; }
}

# with_truncate IN OUT: IN plus gpt-oss.rope.scaling.yarn_truncate = true (a
# bool KV appended to the header; tensor data re-aligned, bytes unchanged).
with_truncate() {
  "$PY" - "$1" "$2" <<'EOF'
import struct, sys
buf = open(sys.argv[1], "rb").read()
pos = 0
def take(fmt):
    global pos
    v = struct.unpack_from("<" + fmt, buf, pos)[0]
    pos += struct.calcsize(fmt)
    return v
SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def skip(t):
    global pos
    if t == 8:
        n = take("Q")
        pos += n
    elif t == 9:
        et, n = take("I"), take("Q")
        if et in SIZE:
            pos += SIZE[et] * n
        else:
            for _ in range(n):
                skip(et)
    else:
        pos += SIZE[t]
assert take("4s") == b"GGUF"
take("I")
n_tensors, n_kv = take("Q"), take("Q")
align = 32
for _ in range(n_kv):
    n = take("Q")
    key = buf[pos:pos + n]
    pos += n
    t = take("I")
    if key == b"general.alignment":
        align = struct.unpack_from("<I", buf, pos)[0]
    skip(t)
kv_end = pos
for _ in range(n_tensors):
    n = take("Q")
    pos += n
    n = take("I")
    pos += 8 * n + 12
data = pos + (-pos % align)
key = b"gpt-oss.rope.scaling.yarn_truncate"
out = buf[:16] + struct.pack("<Q", n_kv + 1) + buf[24:kv_end] + struct.pack("<Q", len(key)) + key
out += struct.pack("<I?", 7, True) + buf[kv_end:pos]
out += b"\0" * (-len(out) % align)
open(sys.argv[2], "wb").write(out + buf[data:])
EOF
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
print(f"{sys.argv[3]:<38} max_abs={d:.3e} (bound 1e-3) top-5 identical {top5}/{len(pos)}")
sys.exit(0 if d < 1e-3 and top5 == len(pos) else 1)
EOF
  ); then row "$line"; else bad "$line"; fi
}

# logits GGUF IDS OUT: tessera's logits into OUT.
logits() {
  "$TESSERA" logits "$1" --ids "$2" -o "$3" -t "$THREADS" 2>"$TMP/log" ||
    { bad "$(basename "$1"): tessera logits: $(tail -1 "$TMP/log")"; return 1; }
}

# compare REF.f32 GOT.f32 N BOUND LABEL
compare() {
  local line
  if line=$("$PY" "$HERE/compare_logits.py" "$1" "$2" --n "$3" --max-abs "$4" --top1 1.0 --label "$5" 2>&1)
  then row "$line"; else bad "$line"; fi
}

# vs_llama GGUF IDS N LABEL BOUND: tessera on GGUF within BOUND of llama.cpp
# (the YaRN range), on GGUF + yarn_truncate within 1e-3; leaves $TMP/ours.f32.
vs_llama() {
  local g=$1 ids=$2 n=$3 label=$4 bound=$5
  "$TS_LLAMA" logits "$g" --ids "$ids" -o "$TMP/llama.f32" -t 1 2>"$TMP/log" ||
    { bad "$label: ts_llama logits: $(tail -1 "$TMP/log")"; return 1; }
  logits "${g%.gguf}-trunc.gguf" "$ids" "$TMP/trunc.f32" &&
    compare "$TMP/llama.f32" "$TMP/trunc.f32" "$n" 1e-3 "$label yarn_truncate vs llama.cpp"
  logits "$g" "$ids" "$TMP/ours.f32" || return 1
  compare "$TMP/llama.f32" "$TMP/ours.f32" "$n" "$bound" "$label vs llama.cpp"
}

# ppl GGUF LABEL TOL [TRUNC_TOL]: tessera perplexity vs ts_llama perplexity;
# with TRUNC_TOL also tessera on GGUF + yarn_truncate.
ppl() {
  local g=$1 label=$2 tol=$3 pa pb p_ref p_ours gg t
  "$TS_LLAMA" perplexity "$g" "$TEXT" -c "$CTX" --chunks "$CHUNKS" -t 1 --json >"$TMP/ppl.ref" 2>/dev/null & pa=$!
  "$TESSERA" perplexity "$g" -f "$TEXT" -c "$CTX" --chunks "$CHUNKS" -t "$THREADS" --json -q >"$TMP/ppl.ours" & pb=$!
  wait "$pa" || { bad "$label: ts_llama perplexity failed"; wait "$pb" || true; return; }
  wait "$pb" || { bad "$label: tessera perplexity failed"; return; }
  p_ref=$(json_num ppl <"$TMP/ppl.ref")
  for gg in "$g" ${4:+"${g%.gguf}-trunc.gguf"}; do
    t=$tol
    if [[ $gg != "$g" ]]; then
      t=$4
      "$TESSERA" perplexity "$gg" -f "$TEXT" -c "$CTX" --chunks "$CHUNKS" -t "$THREADS" --json -q >"$TMP/ppl.ours" ||
        { bad "$label: tessera perplexity (yarn_truncate) failed"; return; }
    fi
    p_ours=$(json_num ppl <"$TMP/ppl.ours")
    line=$(printf '%-38s PPL llama.cpp %.4f tessera %.4f (%s, bound %s)' \
      "$label ppl$([[ $gg != "$g" ]] && echo ' yarn_truncate')" "$p_ref" "$p_ours" \
      "$(awk -v a="$p_ref" -v b="$p_ours" 'BEGIN { printf "%+.5f%%", 100 * (b / a - 1) }')" "$t")
    if awk -v a="$p_ref" -v b="$p_ours" -v t="$t" 'BEGIN { d = b / a - 1; if (d < 0) d = -d; exit !(d <= t) }'
    then row "$line"; else bad "$line"; fi
  done
}

# ---- 1. the fixture ----
F32="$TMP/fx-f32.gguf" Q8="$TMP/fx-q8_0.gguf"
if convert "$FIX" "$F32" f32 && convert "$FIX" "$Q8" q8_0; then
  with_truncate "$F32" "$TMP/fx-f32-trunc.gguf"
  with_truncate "$Q8" "$TMP/fx-q8_0-trunc.gguf"
  ids=$("$PY" -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["token_ids"])))' "$FIX/reference.json")
  n=$(tr ',' '\n' <<<"$ids" | wc -l)
  if vs_llama "$F32" "$ids" "$n" "gpt_oss/f32" 1e-2; then
    vs_reference "$FIX/reference.json" "$TMP/ours.f32" "gpt_oss/f32 vs reference.json"
  fi
  ppl "$F32" gpt_oss/f32 0.0025 0.0001
  ppl "$Q8" gpt_oss/q8_0 0.005

  # KL divergence of q8_0 against f32: tessera's vs llama-perplexity's statistic from llama.cpp's logits.
  KC=2
  if "$TESSERA" perplexity "$F32" -f "$TEXT" -c "$CTX" --chunks $KC -q --kv-f32 --kld-save "$TMP/base.kld" \
      >/dev/null && "$TESSERA" perplexity "$Q8" --kld "$TMP/base.kld" --kv-f32 --json -q >"$TMP/kld.json"; then
    ours=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["kld"]["kld"]["value"])' "$TMP/kld.json")
    mkdir -p "$TMP/kl"
    # the .kld file: 20-byte header, then the chunks' int32 ids (gpt-oss adds no BOS)
    "$PY" -c '
import sys, numpy as np
t = np.fromfile(sys.argv[1], dtype="<i4", count=int(sys.argv[2]) * int(sys.argv[3]), offset=20).reshape(int(sys.argv[3]), -1)
print("\n".join(",".join(map(str, r)) for r in t))' "$TMP/base.kld" "$CTX" "$KC" >"$TMP/chunks.txt"
    i=0
    while read -r cids; do
      if ! "$TS_LLAMA" logits "$F32" --ids "$cids" -o "$TMP/kl/base.$i.f32" -t 1 2>/dev/null ||
          ! "$TS_LLAMA" logits "$Q8" --ids "$cids" -o "$TMP/kl/q.$i.f32" -t 1 2>/dev/null; then
        bad "gpt_oss KLD: ts_llama logits failed"
      fi
      i=$((i + 1))
    done <"$TMP/chunks.txt"
    ref=$("$PY" "$HERE/llama_kld.py" "$TMP/kl" "$CTX" "$KC")
    line=$(printf '%-38s mean KLD llama.cpp %.6g tessera %.6g (bound 5%%)' "gpt_oss q8_0 vs f32" "$ref" "$ours")
    if awk -v a="$ref" -v b="$ours" 'BEGIN { d = b - a; if (d < 0) d = -d; exit !(d <= 0.05 * a || d <= 1e-6) }'
    then row "$line"; else bad "$line"; fi
    rm -rf "$TMP/kl"
  else
    bad "gpt_oss KLD: tessera perplexity --kld-save / --kld failed"
  fi

  # imatrix: tessera's collection vs llama.cpp's on the same file and text.
  if "$TESSERA" imatrix "$F32" -f "$TEXT" -o "$TMP/im.ours.gguf" -c 64 --chunks 4 -t "$THREADS" -q &&
      "$TS_LLAMA" imatrix "$F32" "$TEXT" -o "$TMP/im.ref.gguf" -c 64 --chunks 4 -t 1 >/dev/null 2>&1; then
    if line=$("$PY" - "$TMP/im.ours.gguf" "$TMP/im.ref.gguf" "$HERE" <<'EOF'
import sys
import numpy as np
sys.dont_write_bytecode = True
sys.path.insert(0, sys.argv[3])
from check_mxfp4 import gguf_tensors

def load(path):
    """{weight: (sums of squares [n_mat, n_per_row], counts [n_mat])}"""
    t = gguf_tensors(path)
    out = {}
    for name in t:
        if name.endswith(".in_sum2"):
            w = name[: -len(".in_sum2")]
            s = np.frombuffer(t[name][2].tobytes(), "<f4", int(np.prod(t[name][1]))).astype(np.float64)
            c = np.frombuffer(t[w + ".counts"][2].tobytes(), "<f4", int(np.prod(t[w + ".counts"][1]))).astype(np.float64)
            out[w] = (s.reshape(len(c), -1), c)
    return out

ours, ref = load(sys.argv[1]), load(sys.argv[2])
errs = []
if set(ours) != set(ref):
    errs.append(f"weights differ: only ours {sorted(set(ours) - set(ref))}, only llama.cpp {sorted(set(ref) - set(ours))}")
exps = sorted(w for w in ours if "_exps" in w)
if not exps:
    errs.append("no expert weights collected")
worst, same_counts = 0.0, 0
for w in sorted(set(ours) & set(ref)):
    (so, co), (sr, cr) = ours[w], ref[w]
    if "_exps" in w:  # rows per expert: equal unless a router near-tie went the other way
        if co.sum() != cr.sum() or len(co) != len(cr):
            errs.append(f"{w}: {co.sum()} expert rows, llama.cpp {cr.sum()}")
        same_counts += bool((co == cr).all())
        continue
    mo, mr = (so / co[:, None]).ravel(), (sr / cr[:, None]).ravel()
    if mo.size != mr.size or co[0] != cr[0]:
        errs.append(f"{w}: {mo.size} values / count {co[0]}, llama.cpp {mr.size} / {cr[0]}")
    elif w.startswith("blk.0."):
        rel = float(np.abs(mo - mr).max() / max(np.abs(mr).max(), 1e-30))
        worst = max(worst, rel)
        if rel > 1e-3:
            errs.append(f"{w}: mean squares differ by {rel:.2e} (relative to the largest)")
print(f"{'gpt_oss imatrix':<38} {len(ours)} weights as llama.cpp's ({len(exps)} expert stacks, "
      f"{same_counts} with identical per-expert counts), layer 0 within {worst:.1e}"
      + ("" if not errs else ": " + "; ".join(errs[:4])))
sys.exit(1 if errs else 0)
EOF
    ); then row "$line"; else bad "$line"; fi
  else
    bad "gpt_oss imatrix: tessera imatrix or ts_llama imatrix failed"
  fi

  if "$TESSERA" verify "$Q8" --base "$F32" -f "$TEXT" -c "$CTX" --chunks 2 >"$TMP/verify.log" 2>&1 &&
      grep -q "gpt-oss: every tensor" "$TMP/verify.log"; then
    row "$(printf '%-38s %s' "gpt_oss verify q8_0" "$(grep -m1 'kld' "$TMP/verify.log" | sed 's/^ *//')")"
  else
    bad "gpt_oss verify q8_0 --base f32: $(tail -3 "$TMP/verify.log" | tr '\n' ' ')"
  fi
fi
rm -f "$TMP"/fx-* "$TMP"/im.* "$TMP"/base.kld

# ---- 2. a generated gpt-oss at other shapes ----
if "$PY" "$HERE/make_moe_ckpt.py" -o "$TMP/gen" gpt_oss >"$TMP/log" 2>&1; then
  G="$TMP/gen/gpt_oss"
  if convert "$G" "$TMP/gen-f32.gguf" f32 && convert "$G" "$TMP/gen-q8_0.gguf" q8_0; then
    with_truncate "$TMP/gen-f32.gguf" "$TMP/gen-f32-trunc.gguf"
    with_truncate "$TMP/gen-q8_0.gguf" "$TMP/gen-q8_0-trunc.gguf"
    ids=$("$PY" -c 'import random; r = random.Random(3); print(",".join(str(r.randrange(320)) for _ in range(48)))')
    if "$PY" "$HERE/ref_moe_families.py" "$G" --ids "$ids" -o "$TMP/gen.ref.f32" --threads "$THREADS" \
        >"$TMP/log" 2>&1; then
      if vs_llama "$TMP/gen-f32.gguf" "$ids" 48 "generated gpt_oss/f32" 0.05; then
        compare "$TMP/gen.ref.f32" "$TMP/ours.f32" 48 1e-3 "generated gpt_oss/f32 vs PyTorch"
      fi
    else
      bad "generated gpt_oss: ref_moe_families.py: $(tail -1 "$TMP/log")"
    fi
    ppl "$TMP/gen-f32.gguf" "generated gpt_oss/f32" 0.0025 0.0001
    ppl "$TMP/gen-q8_0.gguf" "generated gpt_oss/q8_0" 0.005
  fi
else
  bad "make_moe_ckpt.py gpt_oss: $(tail -1 "$TMP/log")"
fi

((${#failures[@]} == 0)) || fail "${#failures[@]} check(s) failed: ${failures[*]}"
echo "PASS: tessera's forward pass on gpt-oss matches the PyTorch references and llama.cpp"
