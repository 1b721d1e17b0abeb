#!/usr/bin/env bash
# The NEON quant kernels against the scalar ones, across machines: builds
# tests/interop/ts_quant_hash.c with the kernels/ sources twice, natively and
# with Debian's aarch64-linux-gnu-gcc, and compares the hashes of every byte
# and float each type produces (quantize with and without an imatrix,
# dequantize, random blocks) on the rows of tests/unit/quant_cases.h plus
# real weight rows of ../shared/models:
#
#   x86 scalar == AArch64 NEON (qemu-aarch64) == AArch64 scalar (qemu-aarch64)
#
# and, on x86, == every SIMD kernel set this CPU has. The first equality is
# the one that matters: NEON must give the bytes the scalar reference gives
# on x86, where ggml's own build is measured. Skips (77) without the cross
# compiler or qemu-user (scripts/deps.sh installs both).
# shellcheck source=tests/interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CROSS_CC="${CROSS_CC:-aarch64-linux-gnu-gcc}"
HOST_CC="${CC:-cc}"
QEMU=""
for q in qemu-aarch64 qemu-aarch64-static; do
  command -v "$q" >/dev/null && { QEMU=$q; break; }
done
command -v "$CROSS_CC" >/dev/null || skip "$CROSS_CC not found (apt-get install gcc-aarch64-linux-gnu)"
[[ -n $QEMU ]] || skip "qemu-aarch64 not found (apt-get install qemu-user)"
command -v "$HOST_CC" >/dev/null || skip "no host C compiler"
SYSROOT="${QEMU_LD_PREFIX:-/usr/aarch64-linux-gnu}"

# The element kernels, the dispatcher and every quant kernel file: all that
# ts_quant_hash needs, and nothing that needs the rest of the library.
SOURCES=("$TS_SRC"/kernels/{dispatch,scalar,avx2,avx512,neon}.c "$TS_SRC"/kernels/quant_*.c
  "$TS_SRC/tests/interop/ts_quant_hash.c")
FLAGS=(-std=gnu11 -O2 -Wall -Wextra -Werror -I"$TS_SRC" -I"$TS_SRC/tests/unit")
export FLAGS_STR="${FLAGS[*]}"
# build CC OUT: one object per source, all cores, then link.
build() {
  mkdir -p "$2.o"
  # shellcheck disable=SC2016 # expanded by the inner sh
  printf '%s\n' "${SOURCES[@]}" |
    xargs -P "$(nproc)" -I{} sh -c '"$0" $FLAGS_STR -c "$1" -o "$2/$(basename "$1" .c).o"' "$1" {} "$2.o" &&
    "$1" "$2.o"/*.o -lm -lpthread -o "$2"
}
build "$HOST_CC" "$TMP/host" || fail "native build failed"
build "$CROSS_CC" "$TMP/arm" || fail "cross build failed"

# Real rows: two rows of each 2-D BF16 tensor of two shared models, the
# first 8192 values of each model (rows test_quant_simd.c takes too; fewer,
# as qemu is slow), as raw f32.
ROWS=()
if [[ -d "$SHARED/models" && -x $PY ]]; then
  "$PY" - "$SHARED" "$TMP/rows.f32" <<'EOF' && ROWS=("$TMP/rows.f32")
import json, struct, sys
shared, out = sys.argv[1], sys.argv[2]
vals = bytearray()
for model in ("llama-spm-8m", "qwen3moe-spm-9m"):
    path = f"{shared}/models/{model}/model.safetensors"
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        got = 0
        # the reader's order: by offset in the file
        for name, t in sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                              key=lambda kv: kv[1]["data_offsets"][0]):
            shape = t["shape"]
            if t["dtype"] != "BF16" or len(shape) != 2 or shape[1] % 256:
                continue
            cols = shape[1]
            for row in (0, shape[0] // 2):
                if got + cols > 8192:
                    break
                f.seek(base + t["data_offsets"][0] + row * cols * 2)
                raw = f.read(cols * 2)
                for i in range(0, len(raw), 2):  # bf16 -> f32: the bits shifted left 16
                    vals += b"\0\0" + raw[i:i + 2]
                got += cols
open(out, "wb").write(vals)
EOF
fi
[[ ${#ROWS[@]} -gt 0 ]] || echo "note: no real rows (../shared or python3 missing); random rows only"

"$TMP/host" scalar "${ROWS[@]}" >"$TMP/x86-scalar" || fail "x86 scalar run failed"
"$QEMU" -L "$SYSROOT" "$TMP/arm" neon "${ROWS[@]}" >"$TMP/arm-neon" || fail "NEON run under $QEMU failed"
"$QEMU" -L "$SYSROOT" "$TMP/arm" scalar "${ROWS[@]}" >"$TMP/arm-scalar" || fail "AArch64 scalar run failed"
status=0
for run in arm-neon arm-scalar; do
  if ! diff "$TMP/x86-scalar" "$TMP/$run" >"$TMP/diff"; then
    echo "FAIL: $run differs from x86 scalar (type, hash):" >&2
    cat "$TMP/diff" >&2
    status=1
  fi
done
for impl in avx2 avx512; do
  rc=0
  "$TMP/host" "$impl" "${ROWS[@]}" >"$TMP/x86-$impl" 2>/dev/null || rc=$?
  ((rc == 2)) && continue # not on this CPU
  ((rc == 0)) || fail "x86 $impl run failed"
  diff "$TMP/x86-scalar" "$TMP/x86-$impl" >"$TMP/diff" || { echo "FAIL: x86 $impl differs:" >&2; cat "$TMP/diff" >&2; status=1; }
done
((status == 0)) || exit 1
echo "PASS: NEON (qemu) == AArch64 scalar == x86 scalar for $(wc -l <"$TMP/x86-scalar") types"
cat "$TMP/x86-scalar"
