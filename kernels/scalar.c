/* The reference implementation: every other kernel file must match these
 * bytes exactly. Element rules are in kernel_impl.h and docs/kernels.md. */
#include "kernels/kernel_impl.h"

#include <math.h>

static void scalar_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = ts_k_bits_f32(ts_k_f16_bits_to_f32_bits(src[i]));
}

static void scalar_f32_to_f16(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = ts_k_f32_bits_to_f16_bits(ts_k_f32_bits(src[i]));
}

static void scalar_bf16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = ts_k_bits_f32((uint32_t)src[i] << 16);
}

static void scalar_f32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = ts_k_f32_bits_to_bf16_bits(ts_k_f32_bits(src[i]));
}

static void scalar_f8e4m3_to_f32(const uint8_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = ts_k_bits_f32(ts_k_f8e4m3_bits_to_f32_bits(src[i]));
}

static void scalar_f8e5m2_to_f32(const uint8_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = ts_k_bits_f32(ts_k_f16_bits_to_f32_bits((uint16_t)(src[i] << 8)));
}

static void scalar_f64_to_f32(const double *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)src[i];
}

/* ggml stores roundf(x) into an int8 through cvttss2si: a value outside the
 * int32 range (NaN, inf) gives 0x80000000, whose low byte is 0. Only NaN and
 * inf get here in practice: with a finite 1/d, |x/d| stays below 127.5. */
static uint8_t q8_from_rounded(float r)
{
    if (!(r >= -2147483648.0f && r < 2147483648.0f))
        return 0;
    return (uint8_t)(uint32_t)(int32_t)r;
}

/* quantize_row_q8_0_ref, step for step: the running max keeps ggml's
 * MAX(a, b) = a > b ? a : b, so a NaN only survives as the last element. */
void ts_k_scalar_q8_0_block(const float *x, uint8_t *out)
{
    float amax = 0.0f;
    for (int j = 0; j < TS_QK8_0; j++) {
        const float v = fabsf(x[j]);
        amax = amax > v ? amax : v;
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t h = ts_k_ggml_f32_to_f16(d);
    out[0] = (uint8_t)(h & 0xff);
    out[1] = (uint8_t)(h >> 8);
    for (int j = 0; j < TS_QK8_0; j++)
        out[2 + j] = q8_from_rounded(roundf(x[j] * id));
}

static void scalar_quantize_row_q8_0(const float *src, void *dst, int64_t n)
{
    uint8_t *out = dst;
    for (int64_t b = 0; b < n / TS_QK8_0; b++)
        ts_k_scalar_q8_0_block(src + b * TS_QK8_0, out + b * TS_Q8_0_BLOCK_BYTES);
}

/* dequantize_row_q8_0 for one block. With d = inf, 0 * d has no NaN operand
 * to propagate, so the FPU makes one: 0xffc00000 on x86, 0x7fc00000 on ARM.
 * We write x86's (what ggml gives there) on every machine, so a dequantized
 * tensor never depends on where it was computed. */
void ts_k_scalar_dq8_0_block(const uint8_t *blk, float *y)
{
    const uint16_t h = (uint16_t)(blk[0] | (blk[1] << 8));
    const float d = ts_k_bits_f32(ts_k_f16_bits_to_f32_bits(h));
    const bool d_inf = (h & 0x7fffu) == 0x7c00u;
    for (int j = 0; j < TS_QK8_0; j++) {
        const int8_t q = (int8_t)blk[2 + j];
        y[j] = d_inf && q == 0 ? ts_k_bits_f32(0xffc00000u) : (float)q * d;
    }
}

static void scalar_dequantize_row_q8_0(const void *src, float *dst, int64_t n)
{
    const uint8_t *in = src;
    for (int64_t b = 0; b < n / TS_QK8_0; b++)
        ts_k_scalar_dq8_0_block(in + b * TS_Q8_0_BLOCK_BYTES, dst + b * TS_QK8_0);
}

const ts_k_impl ts_k_impl_scalar = {
    .name = "scalar",
    .f16_to_f32 = scalar_f16_to_f32,
    .f32_to_f16 = scalar_f32_to_f16,
    .bf16_to_f32 = scalar_bf16_to_f32,
    .f32_to_bf16 = scalar_f32_to_bf16,
    .f8e4m3_to_f32 = scalar_f8e4m3_to_f32,
    .f8e5m2_to_f32 = scalar_f8e5m2_to_f32,
    .f64_to_f32 = scalar_f64_to_f32,
    .quantize_row_q8_0 = scalar_quantize_row_q8_0,
    .dequantize_row_q8_0 = scalar_dequantize_row_q8_0,
};
