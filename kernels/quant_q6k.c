/* q6_K: super-blocks of 256 = 16 sub-blocks of 16, 6-bit codes, an int8
 * scale per sub-block and an fp16 super-block scale (layout in
 * docs/formats/quant-types.md).
 *
 * As ggml's quantize_row_q6_K_impl: each sub-block's scale comes from the
 * symmetric grid search (ts_kq_search_sym, nmax 32; without an imatrix
 * weighted x^2 + mean(x^2), ggml: x^2), and the largest becomes int8 code
 * -128. Ours on top: a wider, coarser grid; each sub-block keeps whichever
 * of the int8 codes next to its ideal scale gives the least error once its
 * 6-bit codes are re-rounded at that scale. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off") /* see kernels/quant_legacy.c */
#endif
#include "kernels/quant_kernels.h"
#include "kernels/kernel_impl.h"

#include <math.h>

#define SUB 16
#define NSUB (TS_QK_K / SUB)

/* ggml searches -(32 + 0.1 t), t in [-9, 9]; coarser scales (the largest
 * |x| at level -20 .. -35) find much better fits for 16 values weighted by
 * x^2 or an imatrix, at fewer trials. */
static const ts_kq_grid GRID = {-12, 3, 1.f};

/* Codes L (0..63, value L - 32) and int8 scales for one super-block;
 * returns the fp16 bits of d, or 0 with everything zero for a block that
 * quantizes to zero. */
static uint16_t quant_q6k_block(const float *src, const float *imatrix, uint8_t *L, int8_t *sc)
{
    float x[TS_QK_K], w[TS_QK_K], scales[NSUB];
    int e;
    if (!ts_kq_load(src, TS_QK_K, x, &e))
        return 0;
    ts_kq_weights(x, imatrix, TS_QK_K, 1, -1.f, w); /* ggml: the imatrix as is */
    float max_scale = 0.f, amax_scale = 0.f;
    for (int ib = 0; ib < NSUB; ib++) {
        scales[ib] = ts_kq_search_sym(x + ib * SUB, w + ib * SUB, SUB, 32, &GRID);
        if (fabsf(scales[ib]) > amax_scale) {
            amax_scale = fabsf(scales[ib]);
            max_scale = scales[ib];
        }
    }
    float d;
    uint16_t h = ts_kq_f16_scaled_super(max_scale / -128.f, e, &d);
    if (d == 0.f)
        return 0;
    float id = 1.f / d;
    for (int ib = 0; ib < NSUB; ib++) {
        const float *xb = x + ib * SUB, *wb = w + ib * SUB;
        uint8_t L2[SUB];
        int c0 = ts_kq_round_clamp(id * scales[ib], -128, 127);
        float best = INFINITY;
        sc[ib] = (int8_t)c0;
        for (int c = c0 - 1; c <= c0 + 1; c++) {
            if (c < -128 || c > 127)
                continue;
            float err = ts_kq_err_sym(xb, wb, SUB, 32, d * (float)c, L2);
            if (err < best) {
                best = err;
                sc[ib] = (int8_t)c;
                memcpy(L + ib * SUB, L2, SUB);
            }
        }
    }
    return h;
}

/* ggml's packing, per half (128 values): ql[l] holds the low nibbles of
 * values l and l + 64, ql[l + 32] those of l + 32 and l + 96; qh[l] holds
 * the high two bits of l, l + 32, l + 64, l + 96 at bits 0, 2, 4, 6. */
void ts_k_quantize_row_q6_k(const float *src, void *dst, int64_t n, const float *imatrix)
{
    uint8_t *out = dst;
    for (int64_t b = 0; b < n / TS_QK_K; b++, out += TS_Q6_K_BLOCK_BYTES) {
        uint8_t L[TS_QK_K];
        int8_t sc[NSUB];
        uint16_t h = quant_q6k_block(src + b * TS_QK_K, imatrix ? imatrix + b * TS_QK_K : NULL, L, sc);
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
        memcpy(out + TS_QK_K / 2 + TS_QK_K / 4, sc, NSUB);
        out[TS_Q6_K_BLOCK_BYTES - 2] = (uint8_t)(h & 0xff);
        out[TS_Q6_K_BLOCK_BYTES - 1] = (uint8_t)(h >> 8);
    }
}

static inline float mul_(int bad, float a, float b) { return bad ? ts_kq_x86_mul(a, b) : a * b; }

/* Exactly ggml's dequantize_row_q6_K: (d * scale) * (code - 32)
 * (x86-faithful for a non-finite d, see ts_kq_x86_mul). */
void ts_k_dequantize_row_q6_k(const void *src, float *y, int64_t n)
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
