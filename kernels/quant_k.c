/* The search shared by the affine k-quants (q2_K, q4_K, q5_K): for each
 * super-block, find the fp16 d and dmin, the per-sub-block scale and min
 * codes and the levels that minimize sum w * (x - deq)^2, where deq is
 * computed exactly as ggml's dequantizer computes it.
 *
 * 1. Per sub-block, a continuous fit x ~ s*l - m (s, m >= 0): a grid of
 *    candidate scales anchored at the sub-block's minimum, each followed by
 *    a weighted least-squares solve, then a few rounds of re-rounding and
 *    re-solving from the best one.
 * 2. Candidate d / dmin from the fitted s and m: the largest over code_max,
 *    and a weighted least-squares fit of codes to the s (or m), weighted by
 *    how much each sub-block's error grows with a wrong scale (sum w l^2) or
 *    min (sum w).
 * 3. For each candidate pair, the best codes per sub-block among the
 *    neighbours of s/d and m/dmin, and of the least-squares scale and min
 *    for the levels those give; the levels are then the nearest ones, which
 *    is optimal once the codes are fixed. The pair with the least total error
 *    wins.
 * 4. With codes and levels fixed, d and dmin are re-fitted jointly by least
 *    squares over the whole super-block and step 3 repeats while the error
 *    drops.
 * ggml's search does steps 1-3 with fewer candidates and chooses codes by
 * rounding alone, and never re-fits d / dmin; see docs/formats/quant-types.md.
 *
 * The code is in templates (quant_k_search.h, and q6_K's search and the
 * q4_K..q6_K dequantizers in quant_k_rows.h) compiled here as the scalar
 * reference and once per ISA in quant_simd_<isa>.c (see quant_simd.h); this
 * file holds the scalar instance and the entry points, which call the
 * instance dispatch.c selected. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#else
/* No a*b+c may fuse into an FMA: the search must give the same bytes on
 * every machine, and its error must be that of ggml's unfused dequantizer. */
#pragma GCC optimize("fp-contract=off")
#endif

#include "kernels/quant_simd.h"

#include <float.h>

/* The scalar reference instance of the templates (quant_simd.h). */
#define QK_FN(name) name##_scalar
#define QK_NO_DEQUANT
#include "kernels/qv_scalar.h"
#include "kernels/quant_k_search.h"
#include "kernels/quant_k_rows.h"

const ts_kq_impl ts_kq_impl_scalar = {
    .name = "scalar",
    .prepare = prepare_scalar,
    .affine_quantize = qk_affine_quantize_scalar,
    .q6k_block = q6k_block_scalar,
    .dequantize_row_q4_k = ts_kq_scalar_dequantize_row_q4_k,
    .dequantize_row_q5_k = ts_kq_scalar_dequantize_row_q5_k,
    .dequantize_row_q6_k = ts_kq_scalar_dequantize_row_q6_k,
#define TS_KQ_INIT_SCALAR(t) TS_KQ_ROW_INIT(scalar, t)
    TS_KQ_FILE_TYPES(TS_KQ_INIT_SCALAR)
};

void qk_prepare(const float *x, const float *imatrix, qk_block_in *in)
{
    ts_kq_active()->prepare(x, imatrix, in);
}

void qk_affine_quantize(const qk_affine_shape *sh, const qk_block_in *in, qk_affine_result *out)
{
    ts_kq_active()->affine_quantize(sh, in, out);
}
