/* q6_K: super-blocks of 256 = 16 sub-blocks of 16, 6-bit codes, an int8
 * scale per sub-block and an fp16 super-block scale (layout in
 * docs/formats/quant-types.md).
 *
 * As ggml's quantize_row_q6_K_impl: each sub-block's scale comes from the
 * symmetric grid search over ggml's grid (nmax 32; weights: the imatrix, or
 * x^2 without one), and the largest becomes int8 code -128. Ours on top:
 * each sub-block keeps whichever of the int8 codes next to its ideal scale
 * gives the least error once its 6-bit codes are re-rounded at that scale,
 * which can only lower the error for the scales found (test_quant_types.sh:
 * below ggml's error with and without an imatrix). The search is the q6k_block of
 * quant_k_rows.h, one instance per ISA (quant_simd.h); here the packing. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off") /* see kernels/quant_legacy.c */
#endif
#include "kernels/quant_simd.h"

#include <math.h>

/* ggml's packing, per half (128 values): ql[l] holds the low nibbles of
 * values l and l + 64, ql[l + 32] those of l + 32 and l + 96; qh[l] holds
 * the high two bits of l, l + 32, l + 64, l + 96 at bits 0, 2, 4, 6. */
void ts_k_quantize_row_q6_k(const float *src, void *dst, int64_t n, const float *imatrix)
{
    uint8_t *out = dst;
    const ts_kq_impl *impl = ts_kq_active();
    for (int64_t b = 0; b < n / TS_QK_K; b++, out += TS_Q6_K_BLOCK_BYTES) {
        uint8_t L[TS_QK_K];
        int8_t sc[TS_QK_K / 16];
        uint16_t h = impl->q6k_block(src + b * TS_QK_K, imatrix ? imatrix + b * TS_QK_K : NULL, L, sc);
        if (h == 0) {
            memset(out, 0, TS_Q6_K_BLOCK_BYTES); /* as ggml writes a zero block */
            continue;
        }
        uint8_t *ql = out, *qh = out + TS_QK_K / 2;
        for (int half = 0; half < 2; half++) {
            const uint8_t *Lh = L + 128 * half;
            for (int l = 0; l < 32; l++) {
                ql[64 * half + l] = (uint8_t)((Lh[l] & 0xf) | ((Lh[l + 64] & 0xf) << 4));
                ql[64 * half + l + 32] = (uint8_t)((Lh[l + 32] & 0xf) | ((Lh[l + 96] & 0xf) << 4));
                qh[32 * half + l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                              ((Lh[l + 96] >> 4) << 6));
            }
        }
        memcpy(out + TS_QK_K / 2 + TS_QK_K / 4, sc, sizeof sc);
        out[TS_Q6_K_BLOCK_BYTES - 2] = (uint8_t)(h & 0xff);
        out[TS_Q6_K_BLOCK_BYTES - 1] = (uint8_t)(h >> 8);
    }
}

static inline float mul_(int bad, float a, float b) { return bad ? ts_kq_x86_mul(a, b) : a * b; }

/* Exactly ggml's dequantize_row_q6_K: (d * scale) * (code - 32)
 * (x86-faithful for a non-finite d, see ts_kq_x86_mul). */
void ts_kq_scalar_dequantize_row_q6_k(const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / TS_QK_K; i++, b += TS_Q6_K_BLOCK_BYTES) {
        const uint8_t *ql = b, *qh = b + TS_QK_K / 2;
        const int8_t *sc = (const int8_t *)(b + TS_QK_K / 2 + TS_QK_K / 4);
        float d = ts_k_bits_f32(
            ts_k_f16_bits_to_f32_bits((uint16_t)(b[TS_Q6_K_BLOCK_BYTES - 2] | (b[TS_Q6_K_BLOCK_BYTES - 1] << 8))));
        int bad = ts_kq_f16_nonfinite(b + TS_Q6_K_BLOCK_BYTES - 2);
        for (int half = 0; half < 2; half++, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = mul_(bad, mul_(bad, d, (float)sc[is]), (float)q1);
                y[l + 32] = mul_(bad, mul_(bad, d, (float)sc[is + 2]), (float)q2);
                y[l + 64] = mul_(bad, mul_(bad, d, (float)sc[is + 4]), (float)q3);
                y[l + 96] = mul_(bad, mul_(bad, d, (float)sc[is + 6]), (float)q4);
            }
        }
    }
}

void ts_k_dequantize_row_q6_k(const void *src, float *dst, int64_t n)
{
    ts_kq_active()->dequantize_row_q6_k(src, dst, n);
}
