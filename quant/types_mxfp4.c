/* mxfp4: ggml's block_mxfp4 (ggml-common.h; docs/formats/quant-types.md):
 * one E8M0 scale byte, then 16 bytes whose low nibbles hold elements 0..15
 * and high nibbles elements 16..31, each an FP4 E2M1 code. gpt-oss ships its
 * experts this way; the planner keeps them as they are unless a type is
 * forced, so dequantizing (for --allow-requantize, --tensor-type, the forward
 * pass) is what matters most. The quantizer is ggml's reference one, kept
 * here rather than in kernels/ because it is plain table lookups. */
#include "quant.h"

#include <math.h>
#include <string.h>

#define QK_MXFP4 32
#define MXFP4_BLOCK_BYTES 17

/* ggml's kvalues_mxfp4: the E2M1 values doubled, so they are integers; the
 * scale is halved to match. */
static const int8_t KVALUES[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* 2^(e - 128), i.e. half of the E8M0 value 2^(e - 127), built from bits so
 * that e = 0 and 1 give the exact subnormals (ggml_e8m0_to_fp32_half). */
static float e8m0_half(uint8_t e)
{
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static void dequantize_row_mxfp4(const void *src, float *dst, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK_MXFP4; i++, b += MXFP4_BLOCK_BYTES) {
        const float d = e8m0_half(b[0]);
        for (int j = 0; j < QK_MXFP4 / 2; j++) {
            dst[i * QK_MXFP4 + j] = KVALUES[b[1 + j] & 15] * d;
            dst[i * QK_MXFP4 + j + QK_MXFP4 / 2] = KVALUES[b[1 + j] >> 4] * d;
        }
    }
}

/* The code whose value is nearest x (the first one on a tie, as ggml's search). */
static uint8_t best_index(float x, float d)
{
    int best = 0;
    float best_err = fabsf(KVALUES[0] * d - x);
    for (int i = 1; i < 16; i++) {
        float err = fabsf(KVALUES[i] * d - x);
        if (err < best_err) {
            best = i;
            best_err = err;
        }
    }
    return (uint8_t)best;
}

/* The largest value maps near the top code (12 = 6 doubled): e = floor(log2
 * amax) - 2 + 127. ggml casts that float to uint8_t unchecked; it is clamped
 * here so an all-subnormal or huge block stays defined (ggml's result there
 * depends on the compiler). The imatrix is ignored, as ggml does. */
static size_t quantize_rows_mxfp4(const float *src, void *dst, int64_t n_rows, int64_t n_per_row,
                                  const float *imatrix)
{
    (void)imatrix;
    uint8_t *b = dst;
    int64_t nb = n_rows * (n_per_row / QK_MXFP4);
    for (int64_t i = 0; i < nb; i++, b += MXFP4_BLOCK_BYTES) {
        const float *x = src + i * QK_MXFP4;
        float amax = 0.0f;
        for (int j = 0; j < QK_MXFP4; j++)
            if (amax < fabsf(x[j]))
                amax = fabsf(x[j]);
        float ef = amax > 0.0f ? floorf(log2f(amax)) - 2 + 127 : 0.0f;
        uint8_t e = ef <= 0.0f ? 0 : ef >= 255.0f ? 255 : (uint8_t)ef;
        const float d = e8m0_half(e);
        b[0] = e;
        for (int j = 0; j < QK_MXFP4 / 2; j++)
            b[1 + j] = (uint8_t)(best_index(x[j], d) | best_index(x[j + QK_MXFP4 / 2], d) << 4);
    }
    return (size_t)nb * MXFP4_BLOCK_BYTES;
}

const ts_quant_type ts_quant_types_mxfp4[] = {
    {TS_MXFP4, quantize_rows_mxfp4, dequantize_row_mxfp4},
    {TS_DTYPE_INVALID, NULL, NULL},
};
