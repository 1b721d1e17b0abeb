/* q4_K and q5_K: 8 sub-blocks of 32, value = (d*sc)*l - (dmin*m) with 6-bit
 * codes sc, m packed into 12 bytes and 4- or 5-bit levels l. Block layouts
 * in docs/formats/quant-types.md; the search is in quant_k.c. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#else
/* d1 * l - m1 must round twice, as ggml's x86 build does. */
#pragma GCC optimize("fp-contract=off")
#endif

#include "kernels/quant_simd.h"

/* Byte offsets in a block. */
enum { Q45_D = 0, Q45_DMIN = 2, Q45_SCALES = 4, Q4_QS = 16, Q5_QH = 16, Q5_QS = 48 };

/* Codes 0..3 sit whole in bytes 0..3 (scales) and 4..7 (mins); codes 4..7
 * keep their low nibbles in bytes 8..11 (scale low, min high) and their top
 * two bits in the spare top bits of bytes 0..3 (scales) and 4..7 (mins). */
void ts_k_pack_scales_q4_k(const uint8_t scales[8], const uint8_t mins[8], uint8_t out[12])
{
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)((scales[j] & 63) | ((scales[j + 4] >> 4) << 6));
        out[j + 4] = (uint8_t)((mins[j] & 63) | ((mins[j + 4] >> 4) << 6));
        out[j + 8] = (uint8_t)((scales[j + 4] & 0xf) | ((mins[j + 4] & 0xf) << 4));
    }
}

void ts_k_unpack_scales_q4_k(const uint8_t in[12], uint8_t scales[8], uint8_t mins[8])
{
    for (int j = 0; j < 4; j++) {
        scales[j] = in[j] & 63;
        mins[j] = in[j + 4] & 63;
        scales[j + 4] = (uint8_t)((in[j + 8] & 0xf) | ((in[j] >> 6) << 4));
        mins[j + 4] = (uint8_t)((in[j + 8] >> 4) | ((in[j + 4] >> 6) << 4));
    }
}

static const qk_affine_shape shape_q4 = {
    .n_sub = 8, .sub_len = 32, .nmax = 15, .code_max = 63, .n_grid = 21, .grid_lo = -1.0f, .grid_step = 0.2f};
static const qk_affine_shape shape_q5 = {
    .n_sub = 8, .sub_len = 32, .nmax = 31, .code_max = 63, .n_grid = 21, .grid_lo = -1.0f, .grid_step = 0.2f};

static void put_header(uint8_t *blk, const qk_affine_result *r)
{
    qk_store_f16(blk + Q45_D, r->d_bits);
    qk_store_f16(blk + Q45_DMIN, r->dmin_bits);
    ts_k_pack_scales_q4_k(r->sc, r->mn, blk + Q45_SCALES);
}

void ts_k_quantize_row_q4_k(const float *src, void *dst, int64_t n, const float *imatrix)
{
    uint8_t *blk = dst;
    qk_block_in in;
    qk_affine_result r;
    for (int64_t b = 0; b < n / TS_QK_K; b++, blk += TS_Q4_K_BLOCK_BYTES) {
        qk_prepare(src + b * TS_QK_K, imatrix ? imatrix + b * TS_QK_K : NULL, &in);
        qk_affine_quantize(&shape_q4, &in, &r);
        put_header(blk, &r);
        /* 32 bytes per pair of sub-blocks: the first in the low nibbles */
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                blk[Q4_QS + 32 * c + l] = (uint8_t)(r.L[64 * c + l] | (r.L[64 * c + 32 + l] << 4));
    }
}

void ts_k_quantize_row_q5_k(const float *src, void *dst, int64_t n, const float *imatrix)
{
    uint8_t *blk = dst;
    qk_block_in in;
    qk_affine_result r;
    for (int64_t b = 0; b < n / TS_QK_K; b++, blk += TS_Q5_K_BLOCK_BYTES) {
        qk_prepare(src + b * TS_QK_K, imatrix ? imatrix + b * TS_QK_K : NULL, &in);
        qk_affine_quantize(&shape_q5, &in, &r);
        put_header(blk, &r);
        /* low nibbles as q4_K; bit 4 of value 32*k + l goes to qh[l] bit k */
        for (int l = 0; l < 32; l++) {
            uint8_t h = 0;
            for (int k = 0; k < 8; k++)
                h |= (uint8_t)((r.L[32 * k + l] >> 4) << k);
            blk[Q5_QH + l] = h;
        }
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                blk[Q5_QS + 32 * c + l] = (uint8_t)((r.L[64 * c + l] & 0xf) | ((r.L[64 * c + 32 + l] & 0xf) << 4));
    }
}

/* One sub-block of 32: y = d1 * l - m1, two roundings, as ggml. Blocks with
 * a non-finite d or dmin take the x86-semantics path (quant_k_impl.h). */
static void dequant_sub(const uint8_t *lv, float d, float dmin, uint8_t sc, uint8_t mn, int finite, float *y)
{
    if (finite) {
        const float d1 = d * (float)sc, m1 = dmin * (float)mn;
        for (int l = 0; l < 32; l++)
            y[l] = d1 * (float)lv[l] - m1;
        return;
    }
    const float d1 = qk_x86_mul(d, (float)sc), m1 = qk_x86_mul(dmin, (float)mn);
    for (int l = 0; l < 32; l++)
        y[l] = qk_x86_sub(qk_x86_mul(d1, (float)lv[l]), m1);
}

static void dequant_q45(const uint8_t *blk, int five, float *y)
{
    const float d = qk_load_f16(blk + Q45_D), dmin = qk_load_f16(blk + Q45_DMIN);
    const int finite = !qk_f16_nonfinite(blk + Q45_D) && !qk_f16_nonfinite(blk + Q45_DMIN);
    uint8_t sc[8], mn[8], lv[32];
    ts_k_unpack_scales_q4_k(blk + Q45_SCALES, sc, mn);
    const uint8_t *qs = blk + (five ? Q5_QS : Q4_QS);
    for (int j = 0; j < 8; j++) {
        const int shift = (j & 1) * 4;
        for (int l = 0; l < 32; l++) {
            lv[l] = (uint8_t)((qs[32 * (j / 2) + l] >> shift) & 0xf);
            if (five)
                lv[l] |= (uint8_t)(((blk[Q5_QH + l] >> j) & 1) << 4);
        }
        dequant_sub(lv, d, dmin, sc[j], mn[j], finite, y + 32 * j);
    }
}

void ts_kq_scalar_dequantize_row_q4_k(const void *src, float *dst, int64_t n)
{
    const uint8_t *blk = src;
    for (int64_t b = 0; b < n / TS_QK_K; b++)
        dequant_q45(blk + b * TS_Q4_K_BLOCK_BYTES, 0, dst + b * TS_QK_K);
}

void ts_kq_scalar_dequantize_row_q5_k(const void *src, float *dst, int64_t n)
{
    const uint8_t *blk = src;
    for (int64_t b = 0; b < n / TS_QK_K; b++)
        dequant_q45(blk + b * TS_Q5_K_BLOCK_BYTES, 1, dst + b * TS_QK_K);
}

void ts_k_dequantize_row_q4_k(const void *src, float *dst, int64_t n)
{
    ts_kq_active()->dequantize_row_q4_k(src, dst, n);
}

void ts_k_dequantize_row_q5_k(const void *src, float *dst, int64_t n)
{
    ts_kq_active()->dequantize_row_q5_k(src, dst, n);
}
