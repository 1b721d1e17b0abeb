/* Private to kernels/: how the quant kernels are compiled once per ISA.
 *
 * The hot parts of the quantizers (the k-quant searches, q6_K's symmetric
 * grid search, the dequantizers) are written once, in templates
 * (quant_k_search.h, quant_k_rows.h), against a small
 * vector API of eight float lanes, "qv", and of two independent eight-lane
 * problems side by side, "qp". Each ISA supplies the API (qv_scalar.h,
 * qv_avx2.h, qv_avx512.h, qv_neon.h) and includes the templates, which
 * name their functions QK_FN(name) = name##_<isa>; quant_k.c instantiates
 * the scalar reference and the quant_simd_<isa>.c files the others.
 *
 * Why the bytes cannot differ between ISAs:
 * - every API operation is one IEEE operation per lane (add, sub, mul, div,
 *   round to nearest even) or a select written as SSE defines it
 *   (qv_max(v, lo) = v > lo ? v : lo, so a NaN v gives lo), and no file
 *   lets a product fuse with an addition (fp-contract off: AVX-512 and
 *   AArch64 have FMA);
 * - a lane accumulates the elements i = k, k + 8, k + 16, ... in order, and
 *   qv_hsum adds the eight lanes in one fixed order (ts_kq_hsum8);
 * - a qp holds two problems that never mix; AVX-512 runs them in one
 *   register, the others in two.
 * qv_round is only ever given values already clamped into a small integer
 * range, where the scalar add-1.5*2^23 trick and the round instructions
 * agree. */
#ifndef TS_QUANT_SIMD_H
#define TS_QUANT_SIMD_H

#include "kernels/quant_k_impl.h"

/* The types whose whole scalar file is compiled once more per ISA
 * (quant_simd_names.h): X(type) for each. */
#define TS_KQ_FILE_TYPES(X) X(q4_0) X(q4_1) X(q5_0) X(q5_1) X(iq4_nl) X(iq4_xs) X(q2_k) X(q3_k)

#define TS_KQ_ROW_PROTOS(isa, t)                                                                                       \
    void ts_kq_##isa##_quantize_row_##t(const float *x, void *dst, int64_t n, const float *imatrix);                  \
    void ts_kq_##isa##_dequantize_row_##t(const void *src, float *dst, int64_t n);
#define TS_KQ_SCALAR_PROTOS(t) TS_KQ_ROW_PROTOS(scalar, t)
TS_KQ_FILE_TYPES(TS_KQ_SCALAR_PROTOS)
#if defined(__x86_64__) || defined(__i386__)
#define TS_KQ_AVX2_PROTOS(t) TS_KQ_ROW_PROTOS(avx2, t)
#define TS_KQ_AVX512_PROTOS(t) TS_KQ_ROW_PROTOS(avx512, t)
TS_KQ_FILE_TYPES(TS_KQ_AVX2_PROTOS)
TS_KQ_FILE_TYPES(TS_KQ_AVX512_PROTOS)
#endif
#if defined(__aarch64__)
#define TS_KQ_NEON_PROTOS(t) TS_KQ_ROW_PROTOS(neon, t)
TS_KQ_FILE_TYPES(TS_KQ_NEON_PROTOS)
#endif

/* Table fields for those types, and their initializers for one ISA. */
#define TS_KQ_ROW_FIELDS(t)                                                                                            \
    void (*quantize_row_##t)(const float *x, void *dst, int64_t n, const float *imatrix);                            \
    void (*dequantize_row_##t)(const void *src, float *dst, int64_t n);
#define TS_KQ_ROW_INIT(isa, t)                                                                                         \
    .quantize_row_##t = ts_kq_##isa##_quantize_row_##t, .dequantize_row_##t = ts_kq_##isa##_dequantize_row_##t,

/* The per-ISA entry points of the quant kernels; dispatch.c picks the table
 * that matches the element kernels' choice (ts_k_impl_name). */
typedef struct {
    const char *name;
    /* qk_prepare (quant_k_impl.h). */
    void (*prepare)(const float *x, const float *imatrix, qk_block_in *in);
    /* One k-quant super-block search (quant_k.c). */
    void (*affine_quantize)(const qk_affine_shape *shape, const qk_block_in *in, qk_affine_result *out);
    /* One q6_K super-block: codes L (0..63) and int8 scales; returns the fp16
     * bits of d, 0 for a block stored as zeros (quant_q6k.c). */
    uint16_t (*q6k_block)(const float *src, const float *imatrix, uint8_t *L, int8_t *sc);
    void (*dequantize_row_q4_k)(const void *src, float *dst, int64_t n);
    void (*dequantize_row_q5_k)(const void *src, float *dst, int64_t n);
    void (*dequantize_row_q6_k)(const void *src, float *dst, int64_t n);
    TS_KQ_FILE_TYPES(TS_KQ_ROW_FIELDS)
} ts_kq_impl;

extern const ts_kq_impl ts_kq_impl_scalar;
#if defined(__x86_64__) || defined(__i386__)
extern const ts_kq_impl ts_kq_impl_avx2;
extern const ts_kq_impl ts_kq_impl_avx512;
#endif
#if defined(__aarch64__)
extern const ts_kq_impl ts_kq_impl_neon;
#endif

/* The table for the active kernel implementation (dispatch.c). */
const ts_kq_impl *ts_kq_active(void);

/* The scalar row dequantizers; the SIMD ones hand them blocks whose fp16
 * scales are inf or NaN (corrupt input), whose x86-faithful garbage is not
 * worth vectorizing. */
void ts_kq_scalar_dequantize_row_q4_k(const void *src, float *dst, int64_t n);
void ts_kq_scalar_dequantize_row_q5_k(const void *src, float *dst, int64_t n);
void ts_kq_scalar_dequantize_row_q6_k(const void *src, float *dst, int64_t n);

#endif
