/* iq4_nl (blocks of 32) and iq4_xs (super-blocks of 256): 4-bit codes into
 * ggml's fixed non-linear table (layouts in docs/formats/quant-types.md).
 *
 * The search is ggml's (quantize_row_iq4_nl_impl) in outline: a grid of
 * inverse scales mapping the largest |x| near the table's -127 end, each
 * followed by a least-squares scale. Then ours: the scale is rounded to fp16
 * and refitted with the codes re-rounded at the stored scale, and in iq4_xs
 * each 6-bit sub-block scale is chosen among its nearest codes by the error
 * it actually gives. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off") /* see kernels/quant_legacy.c */
#endif
#include "kernels/quant_kernels.h"
#include "kernels/kernel_impl.h"

#include <math.h>

#define NL 32 /* elements per iq4_nl block and per iq4_xs sub-block */

/* ggml's kvalues_iq4nl (exact in float). */
static const float kvalues_f[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* Decision points between neighbouring levels (exact in float); a value on
 * a midpoint takes the upper level, as ggml's best_index_int8 does. */
static const float mid[16] = {-115.5f, -93.5f, -74.f, -57.f, -42.f, -28.5f, -16.f, -4.5f,
                              7.f,     19.f,   31.5f, 45.5f, 61.f,  79.f,   101.f, INFINITY};

/* cell[i]: the nearest level to the integer i - 128 (ties up). Levels are
 * more than one apart, so within [k, k+1) the answer is cell[k] or the next
 * level. */
static const uint8_t cell[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 8, 8, 8,
    8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13,
    13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14,
    14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
};

static inline int nl_index(float a)
{
    a = !(a >= -128.f) ? -128.f : a > 127.f ? 127.f : a; /* NaN (inf * 0 from a tiny sub-block) too */
    int idx = cell[(int)(a + 128.f)];
    return idx + (a >= mid[idx]);
}

/* ggml's sigma^2 for the iq4 types: twice the mean square of the block
 * (of 32 for iq4_nl, of 256 for iq4_xs), here in normalized units. */
static float sigma2_nl(const float *x, int n)
{
    float acc[8] = {0};
    for (int i = 0; i < n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += x[i + k] * x[i + k];
    return ts_kq_hsum8(acc) * (2.f / (float)n);
}

/* The least-squares scale of the best grid point, for one block of 32
 * (normalized by ts_kq_load); 0 for a zero block. */
static float search_nl(const float *x, const float *w)
{
    float amax = 0.f, max = 0.f;
    for (int i = 0; i < NL; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax == 0.f)
        return 0.f;
    float wx[NL];
    for (int i = 0; i < NL; i++)
        wx[i] = w[i] * x[i];
    double best = 0.;
    float best_d = 0.f;
    /* 13 points with the largest |x| near the table's -127 end (ggml's
     * grid, widened: -127 - 3t), then 7 near its +113 end (113 + 3t). */
    for (int t = 0; t < 20; t++) {
        float id = t < 13 ? -(127.f + 3.f * (float)(t - 8)) / max : (113.f + 3.f * (float)(t - 13 - 4)) / max;
        float sqx[8] = {0}, sq2[8] = {0};
        for (int i = 0; i < NL; i += 8)
            for (int k = 0; k < 8; k++) {
                float q = kvalues_f[nl_index(id * x[i + k])];
                sqx[k] += wx[i + k] * q;
                sq2[k] += (w[i + k] * q) * q;
            }
        double sumqx = ts_kq_hsum8(sqx), sumq2 = ts_kq_hsum8(sq2);
        if (sumq2 > 0. && sumqx * sumqx > best * sumq2) {
            best = sumqx * sumqx / sumq2;
            best_d = (float)(sumqx / sumq2);
        }
    }
    return best_d;
}

/* Codes of a block at scale d (as the dequantizer applies it) and the
 * weighted error. */
static float err_nl(const float *x, const float *w, float d, uint8_t *L)
{
    float id = d != 0.f ? 1.f / d : 0.f;
    float acc[8] = {0};
    for (int i = 0; i < NL; i += 8)
        for (int k = 0; k < 8; k++) {
            int l = nl_index(id * x[i + k]);
            L[i + k] = (uint8_t)l;
            float diff = x[i + k] - d * kvalues_f[l];
            acc[k] += (w[i + k] * diff) * diff;
        }
    return ts_kq_hsum8(acc);
}

static float refit_nl(const float *x, const float *w, const uint8_t *L)
{
    float sqx[8] = {0}, sq2[8] = {0};
    for (int i = 0; i < NL; i += 8)
        for (int k = 0; k < 8; k++) {
            float q = kvalues_f[L[i + k]];
            sqx[k] += (w[i + k] * x[i + k]) * q;
            sq2[k] += (w[i + k] * q) * q;
        }
    float sumq2 = ts_kq_hsum8(sq2);
    return sumq2 > 0.f ? ts_kq_hsum8(sqx) / sumq2 : 0.f;
}

static void put_codes(uint8_t *qs, const uint8_t *L)
{
    for (int j = 0; j < NL / 2; j++)
        qs[j] = (uint8_t)(L[j] | (L[j + NL / 2] << 4));
}

static float get_f16(const uint8_t *p)
{
    return ts_k_bits_f32(ts_k_f16_bits_to_f32_bits((uint16_t)(p[0] | (p[1] << 8))));
}

void ts_kq_scalar_quantize_row_iq4_nl(const float *src, void *dst, int64_t n, const float *imatrix)
{
    uint8_t *out = dst;
    for (int64_t b = 0; b < n / NL; b++, out += TS_IQ4_NL_BLOCK_BYTES) {
        float x[NL], w[NL];
        uint8_t L[NL], L2[NL];
        int e;
        uint16_t h = 0;
        if (!ts_kq_load(src + b * NL, NL, x, &e)) {
            memset(L, 8, NL); /* the level nearest 0 */
        } else {
            ts_kq_weights(x, imatrix ? imatrix + b * NL : NULL, NL, 1, sigma2_nl(x, NL), w);
            float d;
            h = ts_kq_f16_scaled(search_nl(x, w), e, &d);
            float err = err_nl(x, w, d, L);
            for (int it = 0; it < 2; it++) {
                float d2;
                uint16_t h2 = ts_kq_f16_scaled(refit_nl(x, w, L), e, &d2);
                if (h2 == h)
                    break;
                float err2 = err_nl(x, w, d2, L2);
                if (!(err2 < err))
                    break;
                h = h2, err = err2;
                memcpy(L, L2, NL);
            }
        }
        out[0] = (uint8_t)(h & 0xff);
        out[1] = (uint8_t)(h >> 8);
        put_codes(out + 2, L);
    }
}

/* iq4_xs: each sub-block's scale is d * (ls - 32), ls a 6-bit code. For the
 * stored d, each sub-block tries the codes next to its ideal scale and keeps
 * the one whose re-rounded codes give the least error. */
static void quant_xs_block(const float *src, const float *imatrix, uint8_t *out)
{
    float x[TS_QK_K], w[TS_QK_K], scales[TS_QK_K / NL];
    uint8_t L[TS_QK_K], L2[NL];
    int ls[TS_QK_K / NL];
    int e;
    uint16_t h = 0;
    if (!ts_kq_load(src, TS_QK_K, x, &e)) {
        memset(L, 8, TS_QK_K);
        for (int ib = 0; ib < TS_QK_K / NL; ib++)
            ls[ib] = 0;
    } else {
        ts_kq_weights(x, imatrix, TS_QK_K, 1, sigma2_nl(x, TS_QK_K), w);
        float max_scale = 0.f, amax_scale = 0.f;
        for (int ib = 0; ib < TS_QK_K / NL; ib++) {
            scales[ib] = search_nl(x + ib * NL, w + ib * NL);
            if (fabsf(scales[ib]) > amax_scale) {
                amax_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        float d;
        /* ggml's choice: the largest sub-block scale becomes code -32. */
        h = ts_kq_f16_scaled_super(-max_scale / 32.f, e, &d);
        float id = d != 0.f ? 1.f / d : 0.f;
        for (int ib = 0; ib < TS_QK_K / NL; ib++) {
            const float *xb = x + ib * NL, *wb = w + ib * NL;
            int c0 = ts_kq_round_clamp(id * scales[ib], -32, 31);
            float best = INFINITY;
            ls[ib] = c0;
            for (int c = c0 - 1; c <= c0 + 1; c++) {
                if (c < -32 || c > 31)
                    continue;
                float err = err_nl(xb, wb, d * (float)c, L2);
                if (err < best) {
                    best = err;
                    ls[ib] = c;
                    memcpy(L + ib * NL, L2, NL);
                }
            }
        }
    }
    out[0] = (uint8_t)(h & 0xff);
    out[1] = (uint8_t)(h >> 8);
    uint16_t sh = 0;
    for (int ib = 0; ib < TS_QK_K / NL; ib++) {
        int c = ls[ib] + 32;
        sh |= (uint16_t)((c >> 4) << (2 * ib));
        if (ib % 2 == 0)
            out[4 + ib / 2] = (uint8_t)(c & 0xf);
        else
            out[4 + ib / 2] |= (uint8_t)((c & 0xf) << 4);
        put_codes(out + 8 + ib * (NL / 2), L + ib * NL);
    }
    out[2] = (uint8_t)(sh & 0xff);
    out[3] = (uint8_t)(sh >> 8);
}

void ts_kq_scalar_quantize_row_iq4_xs(const float *src, void *dst, int64_t n, const float *imatrix)
{
    uint8_t *out = dst;
    for (int64_t b = 0; b < n / TS_QK_K; b++, out += TS_IQ4_XS_BLOCK_BYTES)
        quant_xs_block(src + b * TS_QK_K, imatrix ? imatrix + b * TS_QK_K : NULL, out);
}

static inline float mul_(int bad, float a, float b) { return bad ? ts_kq_x86_mul(a, b) : a * b; }

/* Exactly ggml's dequantize_row_iq4_nl: d * value (x86-faithful for a
 * non-finite d, see ts_kq_x86_mul). */
void ts_kq_scalar_dequantize_row_iq4_nl(const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / NL; i++, b += TS_IQ4_NL_BLOCK_BYTES, y += NL) {
        float d = get_f16(b);
        int bad = ts_kq_f16_nonfinite(b);
        for (int j = 0; j < NL / 2; j++) {
            y[j] = mul_(bad, d, kvalues_f[b[2 + j] & 0xf]);
            y[j + NL / 2] = mul_(bad, d, kvalues_f[b[2 + j] >> 4]);
        }
    }
}

/* Exactly ggml's dequantize_row_iq4_xs: dl = d * (ls - 32), then dl * value. */
void ts_kq_scalar_dequantize_row_iq4_xs(const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / TS_QK_K; i++, b += TS_IQ4_XS_BLOCK_BYTES) {
        float d = get_f16(b);
        int bad = ts_kq_f16_nonfinite(b);
        unsigned sh = (unsigned)(b[2] | (b[3] << 8));
        for (int ib = 0; ib < TS_QK_K / NL; ib++, y += NL) {
            int ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xf) | (int)(((sh >> (2 * ib)) & 3) << 4);
            float dl = mul_(bad, d, (float)(ls - 32));
            const uint8_t *qs = b + 8 + ib * (NL / 2);
            for (int j = 0; j < NL / 2; j++) {
                y[j] = mul_(bad, dl, kvalues_f[qs[j] & 0xf]);
                y[j + NL / 2] = mul_(bad, dl, kvalues_f[qs[j] >> 4]);
            }
        }
    }
}
