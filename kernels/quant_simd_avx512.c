/* The quant kernels' AVX-512 instance (quant_simd.h): the templates compiled
 * for AVX-512 (F, BW, VL; FMA is implied, and contraction is off); dispatch.c only
 * selects it on a CPU with AVX-512 F, BW, VL, AVX2 and
 * F16C. Bytes identical to the scalar instance in quant_k.c. */
#include "kernels/quant_simd.h"

#if defined(__x86_64__) || defined(__i386__)
#include <float.h>
#include <immintrin.h>
#include <math.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx2,f16c"))), apply_to = function)
#pragma STDC FP_CONTRACT OFF
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,f16c")
#pragma GCC optimize("fp-contract=off", "no-trapping-math")
#endif

#define QK_FN(name) name##_avx512
#include "kernels/qv_avx512.h"
#include "kernels/quant_k_search.h"
#include "kernels/quant_k_rows.h"

const ts_kq_impl ts_kq_impl_avx512 = {
    .name = "avx512",
    .prepare = prepare_avx512,
    .affine_quantize = qk_affine_quantize_avx512,
    .q6k_block = q6k_block_avx512,
    .dequantize_row_q4_k = dequantize_row_q4_k_avx512,
    .dequantize_row_q5_k = dequantize_row_q5_k_avx512,
    .dequantize_row_q6_k = dequantize_row_q6_k_avx512,
#define TS_KQ_INIT_AVX512(t) TS_KQ_ROW_INIT(avx512, t)
    TS_KQ_FILE_TYPES(TS_KQ_INIT_AVX512)
};

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
/* Not an x86 build: nothing to compile, but keep the unit non-empty. */
typedef int ts_kq_avx512_unused;
#endif
