/* Private to kernels/: the per-implementation function table and the scalar
 * element conversions, which the SIMD files also use for their tails so a
 * tail can never disagree with the body.
 *
 * Rule for every file here: never write a product that feeds an addition
 * (a*b+c). GCC contracts those into FMA under gnu11 wherever FMA is enabled
 * (aarch64 always, x86 avx512f targets), and a fused result differs from
 * the scalar reference in the last bit. */
#ifndef TS_KERNEL_IMPL_H
#define TS_KERNEL_IMPL_H

#include "kernels/kernels.h"

#include <string.h>

typedef struct {
    const char *name;
    void (*f16_to_f32)(const uint16_t *, float *, size_t);
    void (*f32_to_f16)(const float *, uint16_t *, size_t);
    void (*bf16_to_f32)(const uint16_t *, float *, size_t);
    void (*f32_to_bf16)(const float *, uint16_t *, size_t);
    void (*f8e4m3_to_f32)(const uint8_t *, float *, size_t);
    void (*f8e5m2_to_f32)(const uint8_t *, float *, size_t);
    void (*f64_to_f32)(const double *, float *, size_t);
    void (*quantize_row_q8_0)(const float *, void *, int64_t);
    void (*dequantize_row_q8_0)(const void *, float *, int64_t);
} ts_k_impl;

extern const ts_k_impl ts_k_impl_scalar;
#if defined(__x86_64__) || defined(__i386__)
extern const ts_k_impl ts_k_impl_avx2;
extern const ts_k_impl ts_k_impl_avx512;
#endif
#if defined(__aarch64__)
extern const ts_k_impl ts_k_impl_neon;
#endif

/* One q8_0 block the reference way; SIMD bodies fall back to it for blocks
 * holding NaN, inf or values so small that 1/d overflows. */
void ts_k_scalar_q8_0_block(const float *x, uint8_t *out);
/* One q8_0 block dequantized the reference way (fixes the NaN of 0 * inf). */
void ts_k_scalar_dq8_0_block(const uint8_t *blk, float *y);

static inline uint32_t ts_k_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float ts_k_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Integer-only so it is exact and independent of the FP environment. */
static inline uint32_t ts_k_f16_bits_to_f32_bits(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0x1f) /* inf, or NaN quieted like F16C / FCVT */
        return sign | 0x7f800000u | (m ? 0x400000u | (m << 13) : 0);
    if (e == 0) {
        if (m == 0)
            return sign;
        /* subnormal m * 2^-24: normalize so bit 10 is the implicit one */
        int sh = __builtin_clz(m) - 21;
        return sign | ((uint32_t)(113 - sh) << 23) | (((m << sh) & 0x3ffu) << 13);
    }
    return sign | ((e + 112u) << 23) | (m << 13);
}

static inline uint16_t ts_k_f32_bits_to_f16_bits(uint32_t w)
{
    uint16_t sign = (uint16_t)((w >> 16) & 0x8000u);
    uint32_t a = w & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: quiet, keep the top payload bits (F16C) */
        return sign | 0x7e00u | ((a >> 13) & 0x3ffu);
    if (a >= 0x477ff000u) /* >= 65520 (the tie above 65504) rounds to inf */
        return sign | 0x7c00u;
    if (a >= 0x38800000u) { /* normal binary16: rebias, round the 13 dropped bits */
        uint32_t r = a - 0x38000000u;
        r += 0xfffu + ((r >> 13) & 1u);
        return sign | (uint16_t)(r >> 13);
    }
    if (a <= 0x33000000u) /* <= 2^-25 (a tie with zero) rounds to zero */
        return sign;
    /* subnormal result in units of 2^-24: mantissa >> (126 - exponent), RNE */
    uint32_t e = a >> 23;
    uint32_t mant = (a & 0x7fffffu) | 0x800000u;
    uint32_t sh = 126u - e; /* 14..24 */
    uint32_t q = mant >> sh;
    uint32_t rem = mant & ((1u << sh) - 1u);
    uint32_t half = 1u << (sh - 1u);
    if (rem > half || (rem == half && (q & 1u)))
        q++;
    return sign | (uint16_t)q;
}

/* ggml_compute_fp32_to_bf16. */
static inline uint16_t ts_k_f32_bits_to_bf16_bits(uint32_t u)
{
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 64u);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

static inline uint32_t ts_k_f8e4m3_bits_to_f32_bits(uint8_t b)
{
    uint32_t sign = (uint32_t)(b & 0x80u) << 24;
    uint32_t nonsign = b & 0x7fu;
    if (nonsign == 0x7f)
        return sign | 0x7ff00000u; /* PyTorch's bits for E4M3FN NaN */
    if (nonsign >= 8) /* normal: exponent bias 7 -> 127 */
        return sign | ((nonsign << 20) + (120u << 23));
    if (nonsign == 0)
        return sign;
    /* subnormal m * 2^-9 with m in 1..7: p = index of the top bit */
    uint32_t p = 31u - (uint32_t)__builtin_clz(nonsign);
    return sign | ((118u + p) << 23) | (((nonsign << (23u - p)) & 0x7fffffu));
}

/* ggml's GGML_FP32_TO_FP16 (ggml-impl.h), used for the q8_0 scale: it agrees
 * with ts_k_f32_bits_to_f16_bits except that every NaN becomes sign | 0x7e00. */
static inline uint16_t ts_k_ggml_f32_to_f16(float f)
{
    uint32_t w = ts_k_f32_bits(f);
    if ((w & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)(((w >> 16) & 0x8000u) | 0x7e00u);
    return ts_k_f32_bits_to_f16_bits(w);
}

#endif
