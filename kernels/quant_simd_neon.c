/* The quant kernels' AArch64 Advanced SIMD instance (quant_simd.h): NEON is
 * part of base ARMv8-A, so dispatch.c selects it on every AArch64 CPU.
 * AArch64 always has FMA and GCC contracts a*b+c by default, hence
 * contraction off here. Bytes identical to the scalar instance in quant_k.c. */
#include "kernels/quant_simd.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#include <float.h>
#include <math.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#else
#pragma GCC optimize("fp-contract=off", "no-trapping-math")
#endif

#define QK_FN(name) name##_neon
#include "kernels/qv_neon.h"
#include "kernels/quant_k_search.h"
#include "kernels/quant_k_rows.h"

const ts_kq_impl ts_kq_impl_neon = {
    .name = "neon",
    .prepare = prepare_neon,
    .affine_quantize = qk_affine_quantize_neon,
    .q6k_block = q6k_block_neon,
    .dequantize_row_q4_k = dequantize_row_q4_k_neon,
    .dequantize_row_q5_k = dequantize_row_q5_k_neon,
    .dequantize_row_q6_k = dequantize_row_q6_k_neon,
#define TS_KQ_INIT_NEON(t) TS_KQ_ROW_INIT(neon, t)
    TS_KQ_FILE_TYPES(TS_KQ_INIT_NEON)
};

#else
/* Not an AArch64 build: nothing to compile, but keep the unit non-empty. */
typedef int ts_kq_neon_unused;
#endif
