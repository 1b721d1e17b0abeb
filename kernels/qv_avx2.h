/* The quant template vector API on AVX2 (see quant_simd.h, qv_scalar.h for
 * the semantics). Included by quant_simd_avx2.c inside its target region. */
#ifndef TS_QV_AVX2_H
#define TS_QV_AVX2_H

#include <float.h>
#include <immintrin.h>
#include <stdint.h>

typedef __m256 qv;
#ifndef TS_QV_NO_QP
typedef struct {
    __m256 a, b;
} qp;
#endif

#define QV_RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

static inline qv qv_zero(void) { return _mm256_setzero_ps(); }
static inline qv qv_set1(float a) { return _mm256_set1_ps(a); }
static inline qv qv_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void qv_store(float *p, qv a) { _mm256_storeu_ps(p, a); }
static inline qv qv_load_u8(const uint8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
static inline void qv_store_u8(uint8_t *p, qv a)
{
    const __m256i i = _mm256_cvttps_epi32(a);
    const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    _mm_storel_epi64((__m128i *)p, _mm_packus_epi16(w, w));
}
static inline qv qv_add(qv a, qv b) { return _mm256_add_ps(a, b); }
static inline qv qv_sub(qv a, qv b) { return _mm256_sub_ps(a, b); }
static inline qv qv_mul(qv a, qv b) { return _mm256_mul_ps(a, b); }
/* maxps / minps return the second operand when either is NaN or both are
 * equal: exactly v > lo ? v : lo and v < hi ? v : hi. */
static inline qv qv_max(qv v, qv lo) { return _mm256_max_ps(v, lo); }
static inline qv qv_min(qv v, qv hi) { return _mm256_min_ps(v, hi); }
static inline qv qv_round(qv v) { return _mm256_round_ps(v, QV_RNE); }
static inline qv qv_abs(qv v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }
static inline qv qv_finite0(qv v)
{
    return _mm256_and_ps(_mm256_cmp_ps(qv_abs(v), _mm256_set1_ps(FLT_MAX), _CMP_LE_OQ), v);
}
static inline qv qv_posfinite0(qv v)
{
    const __m256 ok = _mm256_and_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ),
                                    _mm256_cmp_ps(v, _mm256_set1_ps(FLT_MAX), _CMP_LE_OQ));
    return _mm256_and_ps(ok, v);
}
static inline float qv_hmax(qv v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}
static inline float qv_hsum(qv a)
{
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1)); /* a0+a4 .. a3+a7 */
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s)); /* (a0+a4)+(a2+a6), (a1+a5)+(a3+a7) */
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

/* AVX-512 replaces the pairs with one 512-bit register (qv_avx512.h). */
#ifndef TS_QV_NO_QP
static inline qp qp_zero(void) { return (qp){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
static inline qp qp_set2(float a, float b) { return (qp){_mm256_set1_ps(a), _mm256_set1_ps(b)}; }
static inline qp qp_dup(const float *p)
{
    const __m256 v = _mm256_loadu_ps(p);
    return (qp){v, v};
}
static inline qp qp_load2(const float *pa, const float *pb) { return (qp){_mm256_loadu_ps(pa), _mm256_loadu_ps(pb)}; }
static inline qp qp_load2_u8(const uint8_t *pa, const uint8_t *pb) { return (qp){qv_load_u8(pa), qv_load_u8(pb)}; }
static inline qp qp_add(qp x, qp y) { return (qp){_mm256_add_ps(x.a, y.a), _mm256_add_ps(x.b, y.b)}; }
static inline qp qp_sub(qp x, qp y) { return (qp){_mm256_sub_ps(x.a, y.a), _mm256_sub_ps(x.b, y.b)}; }
static inline qp qp_mul(qp x, qp y) { return (qp){_mm256_mul_ps(x.a, y.a), _mm256_mul_ps(x.b, y.b)}; }
static inline qp qp_max(qp v, qp lo) { return (qp){_mm256_max_ps(v.a, lo.a), _mm256_max_ps(v.b, lo.b)}; }
static inline qp qp_min(qp v, qp hi) { return (qp){_mm256_min_ps(v.a, hi.a), _mm256_min_ps(v.b, hi.b)}; }
static inline qp qp_round(qp v) { return (qp){_mm256_round_ps(v.a, QV_RNE), _mm256_round_ps(v.b, QV_RNE)}; }
static inline void qp_hsum2(qp v, float *a, float *b)
{
    *a = qv_hsum(v.a);
    *b = qv_hsum(v.b);
}
/* qp_hsum2 of two and of four qp (out = a's two sums, then b's, ...),
 * transposed: halves added (s_k = x_k + x_{k+4}), then lanes k and k+2,
 * then 0 and 1, which is exactly qv_hsum's order. */
static inline __m256 qv_sum_halves(__m256 x, __m256 y) /* [s(x) | s(y)] */
{
    return _mm256_add_ps(_mm256_permute2f128_ps(x, y, 0x20), _mm256_permute2f128_ps(x, y, 0x31));
}
static inline __m256 qv_sum_pairs(__m256 p, __m256 q) /* per half [p0+p2, p1+p3, q0+q2, q1+q3] */
{
    return _mm256_add_ps(_mm256_shuffle_ps(p, q, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm256_shuffle_ps(p, q, _MM_SHUFFLE(3, 2, 3, 2)));
}
static inline void qp_hsum4(qp a, qp b, float *out)
{
    const __m256 t = qv_sum_pairs(qv_sum_halves(a.a, a.b), qv_sum_halves(b.a, b.b));
    const __m256 r = _mm256_add_ps(_mm256_shuffle_ps(t, t, _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm256_shuffle_ps(t, t, _MM_SHUFFLE(3, 1, 3, 1)));
    float w[8];
    _mm256_storeu_ps(w, r); /* [a.a, b.a, ., . | a.b, b.b, ., .] */
    out[0] = w[0], out[1] = w[4], out[2] = w[1], out[3] = w[5];
}
static inline void qp_hsum8(qp a, qp b, qp c, qp d, float *out)
{
    const __m256 t0 = qv_sum_pairs(qv_sum_halves(a.a, a.b), qv_sum_halves(b.a, b.b));
    const __m256 t1 = qv_sum_pairs(qv_sum_halves(c.a, c.b), qv_sum_halves(d.a, d.b));
    const __m256 r = _mm256_add_ps(_mm256_shuffle_ps(t0, t1, _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm256_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 1, 3, 1)));
    float w[8];
    _mm256_storeu_ps(w, r); /* [a.a, b.a, c.a, d.a | a.b, b.b, c.b, d.b] */
    for (int k = 0; k < 4; k++)
        out[2 * k] = w[k], out[2 * k + 1] = w[4 + k];
}
#endif

#endif
