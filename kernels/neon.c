/* AArch64 Advanced SIMD kernels; bit-identical to scalar.c. NEON and the
 * half-precision conversions (FCVTL/FCVTN) are part of base ARMv8-A, so no
 * runtime check is needed. FMA always exists here and GCC contracts a*b+c
 * by default, hence the rule in kernel_impl.h: no product feeds an add. */
#include "kernels/kernel_impl.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#include <float.h>

static void neon_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(src + i));
        vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(dst + i + 4, vcvt_high_f32_f16(h));
    }
    for (; i < n; i++)
        dst[i] = ts_k_bits_f32(ts_k_f16_bits_to_f32_bits(src[i]));
}

static void neon_f32_to_f16(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float16x4_t lo = vcvt_f16_f32(vld1q_f32(src + i));
        float16x8_t h = vcvt_high_f16_f32(lo, vld1q_f32(src + i + 4));
        vst1q_u16(dst + i, vreinterpretq_u16_f16(h));
    }
    for (; i < n; i++)
        dst[i] = ts_k_f32_bits_to_f16_bits(ts_k_f32_bits(src[i]));
}

static void neon_bf16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint16x8_t h = vld1q_u16(src + i);
        vst1q_f32(dst + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)));
        vst1q_f32(dst + i + 4, vreinterpretq_f32_u32(vshll_n_u16(vget_high_u16(h), 16)));
    }
    for (; i < n; i++)
        dst[i] = ts_k_bits_f32((uint32_t)src[i] << 16);
}

/* ggml's rounding (u + 0x7fff + lsb) >> 16, NaN -> (u >> 16) | 0x40. */
static uint16x4_t neon_bf16_bits(uint32x4_t u)
{
    const uint32x4_t is_nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7fffffff)), vdupq_n_u32(0x7f800000));
    const uint32x4_t hi = vshrq_n_u32(u, 16);
    const uint32x4_t bias = vaddq_u32(vandq_u32(hi, vdupq_n_u32(1)), vdupq_n_u32(0x7fff));
    const uint32x4_t rounded = vshrq_n_u32(vaddq_u32(u, bias), 16);
    const uint32x4_t quiet = vorrq_u32(hi, vdupq_n_u32(64));
    return vmovn_u32(vbslq_u32(is_nan, quiet, rounded));
}

static void neon_f32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint16x4_t lo = neon_bf16_bits(vreinterpretq_u32_f32(vld1q_f32(src + i)));
        uint16x4_t hi = neon_bf16_bits(vreinterpretq_u32_f32(vld1q_f32(src + i + 4)));
        vst1q_u16(dst + i, vcombine_u16(lo, hi));
    }
    for (; i < n; i++)
        dst[i] = ts_k_f32_bits_to_bf16_bits(ts_k_f32_bits(src[i]));
}

/* Integer-only: rebias normals; subnormals m * 2^-9 normalized with CLZ. */
static uint32x4_t neon_e4m3_bits(uint32x4_t x)
{
    const uint32x4_t nonsign = vandq_u32(x, vdupq_n_u32(0x7f));
    const uint32x4_t normal = vaddq_u32(vshlq_n_u32(nonsign, 20), vdupq_n_u32(120u << 23));
    /* p = 31 - clz(m): exponent 118 + p, fraction m << (23 - p) without the top bit */
    const int32x4_t p = vsubq_s32(vdupq_n_s32(31), vreinterpretq_s32_u32(vclzq_u32(nonsign)));
    const uint32x4_t exp = vshlq_n_u32(vreinterpretq_u32_s32(vaddq_s32(p, vdupq_n_s32(118))), 23);
    const uint32x4_t frac = vandq_u32(vshlq_u32(nonsign, vsubq_s32(vdupq_n_s32(23), p)), vdupq_n_u32(0x7fffff));
    uint32x4_t sub = vorrq_u32(exp, frac);
    sub = vbslq_u32(vceqq_u32(nonsign, vdupq_n_u32(0)), vdupq_n_u32(0), sub);
    uint32x4_t r = vbslq_u32(vcltq_u32(nonsign, vdupq_n_u32(8)), sub, normal);
    r = vbslq_u32(vceqq_u32(nonsign, vdupq_n_u32(0x7f)), vdupq_n_u32(0x7ff00000), r);
    return vorrq_u32(r, vshlq_n_u32(vandq_u32(x, vdupq_n_u32(0x80)), 24));
}

static void neon_f8e4m3_to_f32(const uint8_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint16x8_t w = vmovl_u8(vld1_u8(src + i));
        vst1q_f32(dst + i, vreinterpretq_f32_u32(neon_e4m3_bits(vmovl_u16(vget_low_u16(w)))));
        vst1q_f32(dst + i + 4, vreinterpretq_f32_u32(neon_e4m3_bits(vmovl_u16(vget_high_u16(w)))));
    }
    for (; i < n; i++)
        dst[i] = ts_k_bits_f32(ts_k_f8e4m3_bits_to_f32_bits(src[i]));
}

static void neon_f8e5m2_to_f32(const uint8_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint16x8_t w = vshlq_n_u16(vmovl_u8(vld1_u8(src + i)), 8);
        float16x8_t h = vreinterpretq_f16_u16(w);
        vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(dst + i + 4, vcvt_high_f32_f16(h));
    }
    for (; i < n; i++)
        dst[i] = ts_k_bits_f32(ts_k_f16_bits_to_f32_bits((uint16_t)(src[i] << 8)));
}

static void neon_f64_to_f32(const double *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x2_t lo = vcvt_f32_f64(vld1q_f64(src + i));
        vst1q_f32(dst + i, vcvt_high_f32_f64(lo, vld1q_f64(src + i + 2)));
    }
    for (; i < n; i++)
        dst[i] = (float)src[i];
}

static void neon_quantize_row_q8_0(const float *src, void *dst, int64_t n)
{
    uint8_t *out = dst;
    const uint32x4_t abs_mask = vdupq_n_u32(0x7fffffff);
    for (int64_t b = 0; b < n / TS_QK8_0; b++, src += TS_QK8_0, out += TS_Q8_0_BLOCK_BYTES) {
        float32x4_t v[8];
        uint32x4_t m = vdupq_n_u32(0);
        for (int k = 0; k < 8; k++) {
            v[k] = vld1q_f32(src + 4 * k);
            /* |x| bit patterns order like the values, and NaN sorts above inf */
            m = vmaxq_u32(m, vandq_u32(vreinterpretq_u32_f32(v[k]), abs_mask));
        }
        const uint32_t amax_bits = vmaxvq_u32(m);
        if (amax_bits >= 0x7f800000u) { /* NaN or inf: ggml's order-dependent max */
            ts_k_scalar_q8_0_block(src, out);
            continue;
        }
        const float d = ts_k_bits_f32(amax_bits) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        if (!(id <= FLT_MAX)) { /* tiny denormal d: x*id is inf/NaN */
            ts_k_scalar_q8_0_block(src, out);
            continue;
        }
        const uint16_t h = ts_k_ggml_f32_to_f16(d);
        out[0] = (uint8_t)(h & 0xff);
        out[1] = (uint8_t)(h >> 8);
        int16x4_t q16[8];
        for (int k = 0; k < 8; k++) /* FCVTAS: round half away from zero, i.e. roundf */
            q16[k] = vqmovn_s32(vcvtaq_s32_f32(vmulq_n_f32(v[k], id)));
        for (int k = 0; k < 4; k++) {
            int8x8_t q8 = vqmovn_s16(vcombine_s16(q16[2 * k], q16[2 * k + 1]));
            vst1_s8((int8_t *)(out + 2 + 8 * k), q8);
        }
    }
}

static void neon_dequantize_row_q8_0(const void *src, float *dst, int64_t n)
{
    const uint8_t *in = src;
    for (int64_t b = 0; b < n / TS_QK8_0; b++, in += TS_Q8_0_BLOCK_BYTES, dst += TS_QK8_0) {
        const uint16_t h = (uint16_t)(in[0] | (in[1] << 8));
        if ((h & 0x7fffu) == 0x7c00u) { /* d = inf: ARM's 0 * inf NaN differs from x86's */
            ts_k_scalar_dq8_0_block(in, dst);
            continue;
        }
        const float d = ts_k_bits_f32(ts_k_f16_bits_to_f32_bits(h));
        for (int k = 0; k < 4; k++) {
            int16x8_t w = vmovl_s8(vld1_s8((const int8_t *)(in + 2 + 8 * k)));
            float32x4_t lo = vcvtq_f32_s32(vmovl_s16(vget_low_s16(w)));
            float32x4_t hi = vcvtq_f32_s32(vmovl_s16(vget_high_s16(w)));
            vst1q_f32(dst + 8 * k, vmulq_n_f32(lo, d));
            vst1q_f32(dst + 8 * k + 4, vmulq_n_f32(hi, d));
        }
    }
}

const ts_k_impl ts_k_impl_neon = {
    .name = "neon",
    .f16_to_f32 = neon_f16_to_f32,
    .f32_to_f16 = neon_f32_to_f16,
    .bf16_to_f32 = neon_bf16_to_f32,
    .f32_to_bf16 = neon_f32_to_bf16,
    .f8e4m3_to_f32 = neon_f8e4m3_to_f32,
    .f8e5m2_to_f32 = neon_f8e5m2_to_f32,
    .f64_to_f32 = neon_f64_to_f32,
    .quantize_row_q8_0 = neon_quantize_row_q8_0,
    .dequantize_row_q8_0 = neon_dequantize_row_q8_0,
};

#else
/* Not an AArch64 build: nothing to compile, but keep the unit non-empty. */
typedef int ts_k_neon_unused;
#endif
