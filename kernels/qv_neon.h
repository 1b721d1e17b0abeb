/* The quant template vector API on AArch64 Advanced SIMD (see quant_simd.h,
 * qv_scalar.h for the semantics): a qv is two 4-lane registers. */
#ifndef TS_QV_NEON_H
#define TS_QV_NEON_H

#include <arm_neon.h>
#include <float.h>
#include <stdint.h>

typedef struct {
    float32x4_t lo, hi; /* lanes 0..3, 4..7 */
} qv;
typedef struct {
    qv a, b;
} qp;

static inline qv qv_zero(void) { return (qv){vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}; }
static inline qv qv_set1(float a) { return (qv){vdupq_n_f32(a), vdupq_n_f32(a)}; }
static inline qv qv_load(const float *p) { return (qv){vld1q_f32(p), vld1q_f32(p + 4)}; }
static inline void qv_store(float *p, qv a)
{
    vst1q_f32(p, a.lo);
    vst1q_f32(p + 4, a.hi);
}
static inline qv qv_load_u8(const uint8_t *p)
{
    const uint16x8_t h = vmovl_u8(vld1_u8(p));
    return (qv){vcvtq_f32_u32(vmovl_u16(vget_low_u16(h))), vcvtq_f32_u32(vmovl_high_u16(h))};
}
static inline void qv_store_u8(uint8_t *p, qv a)
{
    const uint16x8_t h = vcombine_u16(vmovn_u32(vcvtq_u32_f32(a.lo)), vmovn_u32(vcvtq_u32_f32(a.hi)));
    vst1_u8(p, vmovn_u16(h));
}
static inline qv qv_add(qv a, qv b) { return (qv){vaddq_f32(a.lo, b.lo), vaddq_f32(a.hi, b.hi)}; }
static inline qv qv_sub(qv a, qv b) { return (qv){vsubq_f32(a.lo, b.lo), vsubq_f32(a.hi, b.hi)}; }
static inline qv qv_mul(qv a, qv b) { return (qv){vmulq_f32(a.lo, b.lo), vmulq_f32(a.hi, b.hi)}; }
/* FMAX would propagate NaN and FMAXNM treats -0 < +0: a compare and a
 * select give the SSE result (v > lo ? v : lo) in every case. */
static inline float32x4_t qv_gt_sel(float32x4_t v, float32x4_t lo) { return vbslq_f32(vcgtq_f32(v, lo), v, lo); }
static inline float32x4_t qv_lt_sel(float32x4_t v, float32x4_t hi) { return vbslq_f32(vcltq_f32(v, hi), v, hi); }
static inline qv qv_max(qv v, qv lo) { return (qv){qv_gt_sel(v.lo, lo.lo), qv_gt_sel(v.hi, lo.hi)}; }
static inline qv qv_min(qv v, qv hi) { return (qv){qv_lt_sel(v.lo, hi.lo), qv_lt_sel(v.hi, hi.hi)}; }
static inline qv qv_round(qv v) { return (qv){vrndnq_f32(v.lo), vrndnq_f32(v.hi)}; }
static inline qv qv_abs(qv v) { return (qv){vabsq_f32(v.lo), vabsq_f32(v.hi)}; }
static inline float32x4_t qv_keep(uint32x4_t ok, float32x4_t v)
{
    return vreinterpretq_f32_u32(vandq_u32(ok, vreinterpretq_u32_f32(v)));
}
static inline float32x4_t qv_finite0_4(float32x4_t v)
{
    return qv_keep(vcleq_f32(vabsq_f32(v), vdupq_n_f32(FLT_MAX)), v);
}
static inline float32x4_t qv_posfinite0_4(float32x4_t v)
{
    return qv_keep(vandq_u32(vcgtq_f32(v, vdupq_n_f32(0.0f)), vcleq_f32(v, vdupq_n_f32(FLT_MAX))), v);
}
static inline qv qv_finite0(qv v) { return (qv){qv_finite0_4(v.lo), qv_finite0_4(v.hi)}; }
static inline qv qv_posfinite0(qv v) { return (qv){qv_posfinite0_4(v.lo), qv_posfinite0_4(v.hi)}; }
static inline float qv_hmax(qv v) { return vmaxvq_f32(vmaxq_f32(v.lo, v.hi)); }
static inline float qv_hsum(qv a)
{
    const float32x4_t s = vaddq_f32(a.lo, a.hi);                       /* a0+a4 .. a3+a7 */
    const float32x2_t t = vadd_f32(vget_low_f32(s), vget_high_f32(s)); /* (a0+a4)+(a2+a6), (a1+a5)+(a3+a7) */
    return vget_lane_f32(t, 0) + vget_lane_f32(t, 1);
}

static inline qp qp_zero(void) { return (qp){qv_zero(), qv_zero()}; }
static inline qp qp_set2(float a, float b) { return (qp){qv_set1(a), qv_set1(b)}; }
static inline qp qp_dup(const float *p)
{
    const qv v = qv_load(p);
    return (qp){v, v};
}
static inline qp qp_load2(const float *pa, const float *pb) { return (qp){qv_load(pa), qv_load(pb)}; }
static inline qp qp_load2_u8(const uint8_t *pa, const uint8_t *pb) { return (qp){qv_load_u8(pa), qv_load_u8(pb)}; }
static inline qp qp_add(qp x, qp y) { return (qp){qv_add(x.a, y.a), qv_add(x.b, y.b)}; }
static inline qp qp_sub(qp x, qp y) { return (qp){qv_sub(x.a, y.a), qv_sub(x.b, y.b)}; }
static inline qp qp_mul(qp x, qp y) { return (qp){qv_mul(x.a, y.a), qv_mul(x.b, y.b)}; }
static inline qp qp_max(qp v, qp lo) { return (qp){qv_max(v.a, lo.a), qv_max(v.b, lo.b)}; }
static inline qp qp_min(qp v, qp hi) { return (qp){qv_min(v.a, hi.a), qv_min(v.b, hi.b)}; }
static inline qp qp_round(qp v) { return (qp){qv_round(v.a), qv_round(v.b)}; }
static inline void qp_hsum2(qp v, float *a, float *b)
{
    *a = qv_hsum(v.a);
    *b = qv_hsum(v.b);
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

#endif
