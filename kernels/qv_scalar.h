/* The quant template vector API in plain C (see quant_simd.h): the
 * reference semantics every ISA's version reproduces lane for lane. */
#ifndef TS_QV_SCALAR_H
#define TS_QV_SCALAR_H

#include <float.h>
#include <math.h>
#include <stdint.h>

typedef struct {
    float f[8];
} qv;
typedef struct {
    float f[16]; /* problem a in 0..7, problem b in 8..15 */
} qp;

#define QV_LANES(n, expr)                                                                                              \
    for (int k_ = 0; k_ < (n); k_++)                                                                                   \
    expr

static inline qv qv_zero(void) { return (qv){{0}}; }
static inline qv qv_set1(float a) { qv r; QV_LANES(8, r.f[k_] = a;) return r; }
static inline qv qv_load(const float *p) { qv r; QV_LANES(8, r.f[k_] = p[k_];) return r; }
static inline void qv_store(float *p, qv a) { QV_LANES(8, p[k_] = a.f[k_];) }
static inline qv qv_load_u8(const uint8_t *p) { qv r; QV_LANES(8, r.f[k_] = (float)p[k_];) return r; }
/* Lanes hold integer values in 0..255. */
static inline void qv_store_u8(uint8_t *p, qv a) { QV_LANES(8, p[k_] = (uint8_t)a.f[k_];) }
static inline qv qv_add(qv a, qv b) { QV_LANES(8, a.f[k_] = a.f[k_] + b.f[k_];) return a; }
static inline qv qv_sub(qv a, qv b) { QV_LANES(8, a.f[k_] = a.f[k_] - b.f[k_];) return a; }
static inline qv qv_mul(qv a, qv b) { QV_LANES(8, a.f[k_] = a.f[k_] * b.f[k_];) return a; }
static inline qv qv_max(qv v, qv lo) { QV_LANES(8, v.f[k_] = v.f[k_] > lo.f[k_] ? v.f[k_] : lo.f[k_];) return v; }
static inline qv qv_min(qv v, qv hi) { QV_LANES(8, v.f[k_] = v.f[k_] < hi.f[k_] ? v.f[k_] : hi.f[k_];) return v; }
/* Nearest integer, ties to even, for |v| < 2^22. */
static inline qv qv_round(qv v) { QV_LANES(8, v.f[k_] = (v.f[k_] + 12582912.0f) - 12582912.0f;) return v; }
static inline qv qv_abs(qv v) { QV_LANES(8, v.f[k_] = fabsf(v.f[k_]);) return v; }
/* v where |v| <= FLT_MAX, else +0 (NaN and +-inf). */
static inline qv qv_finite0(qv v) { QV_LANES(8, v.f[k_] = fabsf(v.f[k_]) <= FLT_MAX ? v.f[k_] : 0.0f;) return v; }
/* v where 0 < v <= FLT_MAX, else +0. */
static inline qv qv_posfinite0(qv v)
{
    QV_LANES(8, v.f[k_] = v.f[k_] > 0.0f && v.f[k_] <= FLT_MAX ? v.f[k_] : 0.0f;)
    return v;
}
/* The largest lane (no NaN lanes). */
static inline float qv_hmax(qv v)
{
    float m = v.f[0];
    QV_LANES(8, m = v.f[k_] > m ? v.f[k_] : m;)
    return m;
}
static inline float qv_hsum(qv a)
{
    return ((a.f[0] + a.f[4]) + (a.f[2] + a.f[6])) + ((a.f[1] + a.f[5]) + (a.f[3] + a.f[7]));
}

static inline qp qp_zero(void) { return (qp){{0}}; }
static inline qp qp_set2(float a, float b) { qp r; QV_LANES(8, { r.f[k_] = a; r.f[k_ + 8] = b; }) return r; }
static inline qp qp_dup(const float *p) { qp r; QV_LANES(8, { r.f[k_] = p[k_]; r.f[k_ + 8] = p[k_]; }) return r; }
static inline qp qp_load2(const float *pa, const float *pb)
{
    qp r;
    QV_LANES(8, { r.f[k_] = pa[k_]; r.f[k_ + 8] = pb[k_]; })
    return r;
}
static inline qp qp_load2_u8(const uint8_t *pa, const uint8_t *pb)
{
    qp r;
    QV_LANES(8, { r.f[k_] = (float)pa[k_]; r.f[k_ + 8] = (float)pb[k_]; })
    return r;
}
static inline qp qp_add(qp a, qp b) { QV_LANES(16, a.f[k_] = a.f[k_] + b.f[k_];) return a; }
static inline qp qp_sub(qp a, qp b) { QV_LANES(16, a.f[k_] = a.f[k_] - b.f[k_];) return a; }
static inline qp qp_mul(qp a, qp b) { QV_LANES(16, a.f[k_] = a.f[k_] * b.f[k_];) return a; }
static inline qp qp_max(qp v, qp lo) { QV_LANES(16, v.f[k_] = v.f[k_] > lo.f[k_] ? v.f[k_] : lo.f[k_];) return v; }
static inline qp qp_min(qp v, qp hi) { QV_LANES(16, v.f[k_] = v.f[k_] < hi.f[k_] ? v.f[k_] : hi.f[k_];) return v; }
static inline qp qp_round(qp v) { QV_LANES(16, v.f[k_] = (v.f[k_] + 12582912.0f) - 12582912.0f;) return v; }
static inline void qp_hsum2(qp v, float *a, float *b)
{
    *a = ((v.f[0] + v.f[4]) + (v.f[2] + v.f[6])) + ((v.f[1] + v.f[5]) + (v.f[3] + v.f[7]));
    *b = ((v.f[8] + v.f[12]) + (v.f[10] + v.f[14])) + ((v.f[9] + v.f[13]) + (v.f[11] + v.f[15]));
}
/* qp_hsum2 of two and of four qp: out = a's two sums, then b's, ... */
static inline void qp_hsum4(qp a, qp b, float *out)
{
    qp_hsum2(a, &out[0], &out[1]);
    qp_hsum2(b, &out[2], &out[3]);
}
static inline void qp_hsum8(qp a, qp b, qp c, qp d, float *out)
{
    qp_hsum4(a, b, out);
    qp_hsum4(c, d, out + 4);
}

#undef QV_LANES
#endif
