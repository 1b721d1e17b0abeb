/* The quant kernels' AVX2 instance (quant_simd.h): the templates compiled
 * for AVX2 without FMA; dispatch.c only selects it on a CPU with AVX2 and
 * F16C. Bytes identical to the scalar instance in quant_k.c. */
#include "kernels/quant_simd.h"

#if defined(__x86_64__) || defined(__i386__)
#include <float.h>
#include <immintrin.h>
#include <math.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,f16c"))), apply_to = function)
#pragma STDC FP_CONTRACT OFF
#else
#pragma GCC push_options
#pragma GCC target("avx2,f16c")
#pragma GCC optimize("fp-contract=off", "no-trapping-math")
#endif

#define QK_FN(name) name##_avx2
#include "kernels/qv_avx2.h"
#include "kernels/quant_k_search.h"
#include "kernels/quant_k_rows.h"

const ts_kq_impl ts_kq_impl_avx2 = {
    .name = "avx2",
    .prepare = prepare_avx2,
    .affine_quantize = qk_affine_quantize_avx2,
    .q6k_block = q6k_block_avx2,
    .dequantize_row_q4_k = dequantize_row_q4_k_avx2,
    .dequantize_row_q5_k = dequantize_row_q5_k_avx2,
    .dequantize_row_q6_k = dequantize_row_q6_k_avx2,
#define TS_KQ_INIT_AVX2(t) TS_KQ_ROW_INIT(avx2, t)
    TS_KQ_FILE_TYPES(TS_KQ_INIT_AVX2)
};

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
/* Not an x86 build: nothing to compile, but keep the unit non-empty. */
typedef int ts_kq_avx2_unused;
#endif
