/* The quant template vector API on AVX-512 (F + VL, see quant_simd.h): qv
 * as on AVX2, qp as one 512-bit register holding both problems, which is
 * where AVX-512 gains (the searches run two candidates per instruction).
 * Only AVX-512F / VL instructions: dispatch.c does not require DQ. */
#ifndef TS_QV_AVX512_H
#define TS_QV_AVX512_H

#define TS_QV_NO_QP
#include "kernels/qv_avx2.h"

typedef __m512 qp;

static inline __m512 qp_join(__m256 a, __m256 b)
{
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(a)), _mm256_castps_pd(b), 1));
}
static inline __m256 qp_hi(__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }

static inline __m512 qp_zero(void) { return _mm512_setzero_ps(); }
static inline __m512 qp_set2(float a, float b) { return qp_join(_mm256_set1_ps(a), _mm256_set1_ps(b)); }
static inline __m512 qp_dup(const float *p)
{
    return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(p))));
}
static inline __m512 qp_load2(const float *pa, const float *pb)
{
    return qp_join(_mm256_loadu_ps(pa), _mm256_loadu_ps(pb));
}
static inline __m512 qp_load2_u8(const uint8_t *pa, const uint8_t *pb)
{
    const __m128i b = _mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)pa), _mm_loadl_epi64((const __m128i *)pb));
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b));
}
static inline __m512 qp_add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
static inline __m512 qp_sub(__m512 a, __m512 b) { return _mm512_sub_ps(a, b); }
static inline __m512 qp_mul(__m512 a, __m512 b) { return _mm512_mul_ps(a, b); }
/* vmaxps / vminps: the second operand on NaN or equality, as SSE. */
static inline __m512 qp_max(__m512 v, __m512 lo) { return _mm512_max_ps(v, lo); }
static inline __m512 qp_min(__m512 v, __m512 hi) { return _mm512_min_ps(v, hi); }
static inline __m512 qp_round(__m512 v) { return _mm512_roundscale_ps(v, QV_RNE); }
static inline void qp_hsum2(__m512 v, float *a, float *b)
{
    *a = qv_hsum(_mm512_castps512_ps256(v));
    *b = qv_hsum(qp_hi(v));
}

/* The same sums for two / four registers at once, transposed: 128-bit
 * quarters k and k+4 of each problem added (shuffle_f32x4), then lanes k
 * and k+2, then 0 and 1, which is exactly qv_hsum's order. */
static inline __m512 qp_sum_quarters(__m512 a, __m512 b)
{
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}
static inline void qp_hsum4(__m512 a, __m512 b, float *out)
{
    /* s: per 128-bit block (a.A, a.B, b.A, b.B) the lanes s_k = x_k + x_{k+4} */
    const __m512 s = qp_sum_quarters(a, b);
    const __m512 t = _mm512_add_ps(_mm512_shuffle_ps(s, s, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_ps(s, s, _MM_SHUFFLE(3, 2, 3, 2))); /* s0+s2, s1+s3 */
    const __m512 r = _mm512_add_ps(t, _mm512_shuffle_ps(t, t, _MM_SHUFFLE(1, 1, 1, 1)));
    float v[16];
    _mm512_storeu_ps(v, r);
    out[0] = v[0], out[1] = v[4], out[2] = v[8], out[3] = v[12];
}
static inline void qp_hsum8(__m512 a, __m512 b, __m512 c, __m512 d, float *out)
{
    const __m512 p = qp_sum_quarters(a, b), q = qp_sum_quarters(c, d);
    /* per block: [p0+p2, p1+p3, q0+q2, q1+q3] */
    const __m512 t = _mm512_add_ps(_mm512_shuffle_ps(p, q, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_ps(p, q, _MM_SHUFFLE(3, 2, 3, 2)));
    /* per block: [p, q, p, q] */
    const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(t, t, _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_ps(t, t, _MM_SHUFFLE(3, 1, 3, 1)));
    float v[16];
    _mm512_storeu_ps(v, r);
    for (int k = 0; k < 4; k++)
        out[k] = v[4 * k], out[4 + k] = v[4 * k + 1];
}

#endif
