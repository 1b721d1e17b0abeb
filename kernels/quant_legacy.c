/* q4_0 q4_1 q5_0 q5_1: ggml's "legacy" blocks of 32 (layouts in
 * docs/formats/quant-types.md), plus the search helpers the other quant
 * kernels share (kernels/quant_kernels.h).
 *
 * ggml's reference quantizers (quantize_row_q4_0_ref ...) just map the
 * block's extreme value to the extreme level; with an imatrix ggml searches
 * a grid of scales. We always search: a grid of inverse scales, a least-
 * squares fit of the scale (and min) for each, then the fp16 rounding of the
 * winner and a refit with the codes re-rounded at the stored scale.
 *
 * Without an imatrix, q4_0 / q5_0 weight the error by x^2 + mean(x^2) (as
 * iq4_* do) and q4_1 / q5_1 not at all. Plain squared error lets the
 * symmetric types shrink each block's largest values (a least-squares
 * scale leaves 3/4 of q4_0 blocks with their largest |x| 3.6% short), which
 * cost 0.6-1.2% perplexity against llama.cpp's q4_0 on both shared models;
 * the x^2 weighting keeps a lower KL divergence from the F16 model than
 * llama.cpp's and brings the perplexity to that of llama.cpp's own weighted
 * search (docs/formats/quant-types.md, "Measuring against llama.cpp"). */
#if defined(__GNUC__) && !defined(__clang__)
/* Products must not fuse with additions (FMA differs in the last bit), or
 * the bytes would depend on the target; see kernels/kernel_impl.h. */
#pragma GCC optimize("fp-contract=off")
#endif
#include "kernels/quant_kernels.h"
#include "kernels/kernel_impl.h"

#include <float.h>
#include <math.h>

#define QL 32 /* elements per legacy block */

/* ---------------------------------------------------------------- helpers */

uint16_t ts_kq_f16_scaled(float f, int e, float *val_scaled)
{
    float v = ldexpf(f, e);
    if (!(v <= 65504.f)) /* also NaN, which the searches never produce */
        v = v != v ? 0.f : 65504.f;
    if (v < -65504.f)
        v = -65504.f;
    uint16_t h = ts_k_f32_bits_to_f16_bits(ts_k_f32_bits(v));
    *val_scaled = ldexpf(ts_k_bits_f32(ts_k_f16_bits_to_f32_bits(h)), -e);
    return h;
}

uint16_t ts_kq_f16_scaled_super(float f, int e, float *val_scaled)
{
    uint16_t h = ts_kq_f16_scaled(f, e, val_scaled);
    if ((h & 0x7c00) == 0 && fabsf(*val_scaled) < fabsf(f)) {
        h = (uint16_t)((f < 0.f ? 0x8000 : 0) | ((h & 0x7fff) + 1));
        *val_scaled = ldexpf(ts_k_bits_f32(ts_k_f16_bits_to_f32_bits(h)), -e);
    }
    return h;
}

int ts_kq_load(const float *src, int n, float *x, int *e)
{
    float amax = 0.f;
    for (int i = 0; i < n; i++) {
        float v = src[i];
        if (!(fabsf(v) <= FLT_MAX)) /* NaN or inf */
            v = 0.f;
        x[i] = v;
        amax = fabsf(v) > amax ? fabsf(v) : amax;
    }
    *e = 0;
    if (amax < 0x1p-30f)
        return 0;
    int ex;
    frexpf(amax, &ex); /* amax = m * 2^ex, m in [0.5, 1) */
    /* 2^-ex in two exact steps: ex is in [-29, 128]. */
    float s1 = ldexpf(1.f, -ex / 2), s2 = ldexpf(1.f, -ex - (-ex / 2));
    for (int i = 0; i < n; i++)
        x[i] = (x[i] * s1) * s2;
    *e = ex;
    return 1;
}

void ts_kq_weights(const float *x, const float *imatrix, int n, int sq, float sigma2, float *w)
{
    if (imatrix) {
        float mx = 0.f;
        for (int i = 0; i < n; i++) {
            float v = imatrix[i];
            v = v > 0.f && v <= FLT_MAX ? v : 0.f; /* NaN, negative, inf -> 0 */
            w[i] = v;
            mx = v > mx ? v : mx;
        }
        if (mx > 0.f) {
            /* Scaled to max 1 (the search is scale-free, this keeps sums
             * finite); the floor keeps never-activated columns rounding to
             * the nearest level instead of anywhere. */
            float inv = 1.f / mx;
            for (int i = 0; i < n; i++) {
                w[i] = w[i] * inv + 1e-6f;
                if (sigma2 >= 0.f)
                    w[i] *= sqrtf(sigma2 + x[i] * x[i]);
            }
            return;
        }
    }
    float mean2 = 0.f;
    if (sq) {
        float acc[8] = {0};
        for (int i = 0; i < n; i += 8)
            for (int k = 0; k < 8; k++)
                acc[k] += x[i + k] * x[i + k];
        mean2 = ts_kq_hsum8(acc) / (float)n;
    }
    for (int i = 0; i < n; i++)
        w[i] = sq ? x[i] * x[i] + mean2 : 1.f;
}

float ts_kq_search_sym(const float *x, const float *w, int n, int nmax, const ts_kq_grid *grid)
{
    float amax = 0.f, max = 0.f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax == 0.f)
        return 0.f;
    float wx[256];
    for (int i = 0; i < n; i++)
        wx[i] = w[i] * x[i];
    double best = 0.;
    float best_d = 0.f;
    /* ggml's grid: the largest |x| lands near level -nmax (the side with one
     * more level), at -(nmax + 0.1 t), t in [-9, 9]. */
    for (int t = grid->lo; t <= grid->hi; t++) {
        float iscale = -((float)nmax + grid->step * (float)t) / max;
        float slx[8] = {0}, sl2[8] = {0};
        for (int i = 0; i < n; i += 8)
            for (int k = 0; k < 8; k++) {
                float q = (float)ts_kq_clampi(ts_kq_nearest(iscale * x[i + k]), -nmax, nmax - 1);
                slx[k] += wx[i + k] * q;
                sl2[k] += (w[i + k] * q) * q;
            }
        double sumlx = ts_kq_hsum8(slx), suml2 = ts_kq_hsum8(sl2);
        /* The least-squares scale sumlx/suml2 lowers the error by
         * sumlx^2/suml2: keep the largest. */
        if (suml2 > 0. && sumlx * sumlx > best * suml2) {
            best = sumlx * sumlx / suml2;
            best_d = (float)(sumlx / suml2);
        }
    }
    return best_d;
}

float ts_kq_err_sym(const float *x, const float *w, int n, int nmax, float d, uint8_t *q)
{
    float id = d != 0.f ? 1.f / d : 0.f;
    float acc[8] = {0};
    for (int i = 0; i < n; i += 8)
        for (int k = 0; k < 8; k++) {
            int l = ts_kq_round_clamp(id * x[i + k], -nmax, nmax - 1);
            if (q)
                q[i + k] = (uint8_t)(l + nmax);
            float diff = x[i + k] - d * (float)l;
            acc[k] += (w[i + k] * diff) * diff;
        }
    return ts_kq_hsum8(acc);
}

/* Least-squares scale for fixed codes q (offset by nmax); 0 if none. */
static float refit_sym(const float *x, const float *w, int n, int nmax, const uint8_t *q)
{
    float slx[8] = {0}, sl2[8] = {0};
    for (int i = 0; i < n; i += 8)
        for (int k = 0; k < 8; k++) {
            float l = (float)((int)q[i + k] - nmax);
            slx[k] += (w[i + k] * x[i + k]) * l;
            sl2[k] += (w[i + k] * l) * l;
        }
    float suml2 = ts_kq_hsum8(sl2);
    return suml2 > 0.f ? ts_kq_hsum8(slx) / suml2 : 0.f;
}

/* Search grids. Without an imatrix (plain squared error) ggml's narrow grid
 * is as good as any; with one, the best scale is often far from the one
 * set by the largest |x|, and a wide grid pays (measured on the shared
 * models, docs/formats/quant-types.md). */
static const ts_kq_grid GRID_IM = {-8, 8, 0.5f};
static const ts_kq_grid GRID_NOIM = {-3, 3, 0.3f};

/* q5_0 with an imatrix searches the narrow grid: at 31 levels clipping a
 * low-weight outlier rarely pays back, and the wide grid follows the
 * imatrix's noise. On the shared models whose matrices all fall back to
 * q5_0 / q4_0 (hidden 128), Q4_K_M's KL divergence with the imatrix was
 * 37% above the same file without one (6.7e-5 vs 4.9e-5 over 12k tokens)
 * and 4.7e-5 with the narrow grid; q4_0 keeps the wide one (Q3_K_M:
 * 1.9e-4 vs 2.5e-4 narrow). docs/formats/quant-types.md. */
static const ts_kq_grid *sym_grid(const float *imatrix, int nmax)
{
    return imatrix && nmax < 16 ? &GRID_IM : &GRID_NOIM;
}

/* ggml's sigma^2 for the legacy types: the mean square of the whole row
 * (non-finite values as 0), in double so that no input overflows it, summed
 * in eight lanes like everything else. */
static double row_sigma2(const float *x, int64_t n)
{
    double acc[8] = {0};
    for (int64_t i = 0; i < n; i += 8)
        for (int k = 0; k < 8; k++) {
            double v = fabsf(x[i + k]) <= FLT_MAX ? (double)x[i + k] : 0.;
            acc[k] += v * v;
        }
    double s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    return s / (double)n;
}

/* Row sigma^2 in a block's normalized units (x * 2^-e). Capped: past 1e6
 * times the block's own largest square it no longer changes the weights'
 * shape. Negative (no imatrix) stays negative. */
static float block_sigma2(double row_s2, int e)
{
    if (row_s2 < 0.)
        return -1.f;
    double v = ldexp(row_s2, -2 * e);
    return v < 1e6 ? (float)v : 1e6f;
}

/* One symmetric block: the searched scale rounded to fp16, then refits
 * with the codes re-rounded at the stored scale while that helps. */
static uint16_t quant_sym_block(const float *src, const float *imatrix, double row_s2, int nmax, uint8_t *q)
{
    float x[QL], w[QL];
    int e;
    if (!ts_kq_load(src, QL, x, &e)) {
        memset(q, nmax, QL);
        return 0;
    }
    ts_kq_weights(x, imatrix, QL, 1, block_sigma2(row_s2, e), w);
    float d;
    uint16_t h = ts_kq_f16_scaled(ts_kq_search_sym(x, w, QL, nmax, sym_grid(imatrix, nmax)), e, &d);
    float err = ts_kq_err_sym(x, w, QL, nmax, d, q);
    for (int it = 0; it < 2; it++) {
        uint8_t q2[QL];
        float d2;
        uint16_t h2 = ts_kq_f16_scaled(refit_sym(x, w, QL, nmax, q), e, &d2);
        if (h2 == h)
            break;
        float err2 = ts_kq_err_sym(x, w, QL, nmax, d2, q2);
        if (!(err2 < err))
            break;
        h = h2, err = err2;
        memcpy(q, q2, QL);
    }
    return h;
}

/* ----------------------------------------------------- affine (q4_1, q5_1) */

typedef struct {
    float d, m; /* normalized, as stored */
    uint16_t dh, mh;
    float err;
} aff_fit;

/* Codes for x ~ d * l + m (l in 0..nmax) at the given stored scale and min,
 * and the weighted error, computed the way the dequantizer rounds. */
static float err_aff(const float *x, const float *w, int nmax, float d, float m, uint8_t *q)
{
    float id = d > 0.f ? 1.f / d : 0.f;
    float acc[8] = {0};
    for (int i = 0; i < QL; i += 8)
        for (int k = 0; k < 8; k++) {
            int l = ts_kq_round_clamp((x[i + k] - m) * id, 0, nmax);
            q[i + k] = (uint8_t)l;
            float diff = x[i + k] - ((float)l * d + m);
            acc[k] += (w[i + k] * diff) * diff;
        }
    return ts_kq_hsum8(acc);
}

/* Weighted least squares of x on (l, 1): the scale and min for codes q.
 * Returns 0 when the codes are all equal (no scale to fit). */
static int fit_aff(const float *x, const float *w, const uint8_t *q, double sw, double swx, float *d,
                   float *m)
{
    float sl[8] = {0}, sl2[8] = {0}, sxl[8] = {0};
    for (int i = 0; i < QL; i += 8)
        for (int k = 0; k < 8; k++) {
            float l = (float)q[i + k], wl = w[i + k] * l;
            sl[k] += wl;
            sl2[k] += wl * l;
            sxl[k] += wl * x[i + k];
        }
    double swl = ts_kq_hsum8(sl), swl2 = ts_kq_hsum8(sl2), swxl = ts_kq_hsum8(sxl);
    double det = sw * swl2 - swl * swl;
    if (!(det > 0.))
        return 0;
    *d = (float)((sw * swxl - swx * swl) / det);
    *m = (float)((swl2 * swx - swl * swxl) / det);
    return *d > 0.f;
}

static void quant_aff_block(const float *src, const float *imatrix, double row_s2, int nmax, uint16_t *dh,
                            uint16_t *mh, uint8_t *q)
{
    float x[QL], w[QL];
    int e;
    if (!ts_kq_load(src, QL, x, &e)) {
        *dh = *mh = 0;
        memset(q, 0, QL);
        return;
    }
    ts_kq_weights(x, imatrix, QL, 0, block_sigma2(row_s2, e), w);
    float min = x[0], max = x[0];
    float a_w[8] = {0}, a_wx[8] = {0}, a_wx2[8] = {0};
    for (int i = 0; i < QL; i += 8)
        for (int k = 0; k < 8; k++) {
            float v = x[i + k], wv = w[i + k] * v;
            min = v < min ? v : min;
            max = v > max ? v : max;
            a_w[k] += w[i + k];
            a_wx[k] += wv;
            a_wx2[k] += wv * v;
        }
    double sw = ts_kq_hsum8(a_w), swx = ts_kq_hsum8(a_wx), swx2 = ts_kq_hsum8(a_wx2);
    float best_d = 0.f, best_m = min;
    if (max > min) {
        /* ggml's reference choice (min, (max - min) / nmax) is t = 0; each
         * grid point's codes get their least-squares scale and min, scored
         * by the closed-form error swx2 - d swxl - m swx. */
        double best = INFINITY;
        best_d = (max - min) / (float)nmax;
        const ts_kq_grid *g = imatrix ? &GRID_IM : &GRID_NOIM;
        for (int t = g->lo; t <= g->hi; t++) {
            float iscale = ((float)nmax + g->step * (float)t) / (max - min);
            float sl[8] = {0}, sl2[8] = {0}, sxl[8] = {0};
            for (int i = 0; i < QL; i += 8)
                for (int k = 0; k < 8; k++) {
                    float l = (float)ts_kq_clampi(ts_kq_nearest(iscale * (x[i + k] - min)), 0, nmax);
                    float wl = w[i + k] * l;
                    sl[k] += wl;
                    sl2[k] += wl * l;
                    sxl[k] += wl * x[i + k];
                }
            double swl = ts_kq_hsum8(sl), swl2 = ts_kq_hsum8(sl2), swxl = ts_kq_hsum8(sxl);
            double det = sw * swl2 - swl * swl;
            if (!(det > 0.))
                continue;
            double d = (sw * swxl - swx * swl) / det, m = (swl2 * swx - swl * swxl) / det;
            double err = swx2 - d * swxl - m * swx;
            if (d > 0. && err < best) {
                best = err;
                best_d = (float)d;
                best_m = (float)m;
            }
        }
    }
    float d, m;
    *dh = ts_kq_f16_scaled(best_d, e, &d);
    *mh = ts_kq_f16_scaled(best_m, e, &m);
    float err = err_aff(x, w, nmax, d, m, q);
    for (int it = 0; it < 2; it++) {
        float d2, m2;
        if (!fit_aff(x, w, q, sw, swx, &d2, &m2))
            break;
        uint8_t q2[QL];
        uint16_t dh2 = ts_kq_f16_scaled(d2, e, &d2), mh2 = ts_kq_f16_scaled(m2, e, &m2);
        if (dh2 == *dh && mh2 == *mh)
            break;
        float err2 = err_aff(x, w, nmax, d2, m2, q2);
        if (!(err2 < err))
            break;
        *dh = dh2, *mh = mh2, err = err2;
        memcpy(q, q2, QL);
    }
}

/* ------------------------------------------------------------ the types */

static void put_f16(uint8_t *p, uint16_t h)
{
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

static float get_f16(const uint8_t *p)
{
    return ts_k_bits_f32(ts_k_f16_bits_to_f32_bits((uint16_t)(p[0] | (p[1] << 8))));
}

/* Low nibbles hold elements 0..15, high nibbles 16..31 (ggml's order). */
static void put_nibbles(uint8_t *qs, const uint8_t *q)
{
    for (int j = 0; j < QL / 2; j++)
        qs[j] = (uint8_t)((q[j] & 0xf) | ((q[j + QL / 2] & 0xf) << 4));
}

/* Bit 4 of element j's code is bit j of the little-endian uint32 qh. */
static void put_qh(uint8_t *qh, const uint8_t *q)
{
    uint32_t h = 0;
    for (int j = 0; j < QL; j++)
        h |= (uint32_t)((q[j] >> 4) & 1) << j;
    for (int b = 0; b < 4; b++)
        qh[b] = (uint8_t)(h >> (8 * b));
}

static uint32_t get_qh(const uint8_t *qh)
{
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

void ts_kq_scalar_quantize_row_q4_0(const float *x, void *dst, int64_t n, const float *imatrix)
{
    double s2 = imatrix ? row_sigma2(x, n) : -1.;
    uint8_t *out = dst, q[QL];
    for (int64_t b = 0; b < n / QL; b++, out += TS_Q4_0_BLOCK_BYTES) {
        put_f16(out, quant_sym_block(x + b * QL, imatrix ? imatrix + b * QL : NULL, s2, 8, q));
        put_nibbles(out + 2, q);
    }
}

void ts_kq_scalar_quantize_row_q5_0(const float *x, void *dst, int64_t n, const float *imatrix)
{
    double s2 = imatrix ? row_sigma2(x, n) : -1.;
    uint8_t *out = dst, q[QL];
    for (int64_t b = 0; b < n / QL; b++, out += TS_Q5_0_BLOCK_BYTES) {
        put_f16(out, quant_sym_block(x + b * QL, imatrix ? imatrix + b * QL : NULL, s2, 16, q));
        put_qh(out + 2, q);
        put_nibbles(out + 6, q);
    }
}

void ts_kq_scalar_quantize_row_q4_1(const float *x, void *dst, int64_t n, const float *imatrix)
{
    double s2 = imatrix ? row_sigma2(x, n) : -1.;
    uint8_t *out = dst, q[QL];
    for (int64_t b = 0; b < n / QL; b++, out += TS_Q4_1_BLOCK_BYTES) {
        uint16_t dh, mh;
        quant_aff_block(x + b * QL, imatrix ? imatrix + b * QL : NULL, s2, 15, &dh, &mh, q);
        put_f16(out, dh);
        put_f16(out + 2, mh);
        put_nibbles(out + 4, q);
    }
}

void ts_kq_scalar_quantize_row_q5_1(const float *x, void *dst, int64_t n, const float *imatrix)
{
    double s2 = imatrix ? row_sigma2(x, n) : -1.;
    uint8_t *out = dst, q[QL];
    for (int64_t b = 0; b < n / QL; b++, out += TS_Q5_1_BLOCK_BYTES) {
        uint16_t dh, mh;
        quant_aff_block(x + b * QL, imatrix ? imatrix + b * QL : NULL, s2, 31, &dh, &mh, q);
        put_f16(out, dh);
        put_f16(out + 2, mh);
        put_qh(out + 4, q);
        put_nibbles(out + 8, q);
    }
}

/* The dequantizers compute exactly ggml's expressions: (float)(q - off) * d,
 * and q * d + m as a rounded product then a rounded sum. Blocks with a
 * non-finite scale or min take the x86-faithful path (ts_kq_x86_mul). */
static inline float mul_(int bad, float a, float b) { return bad ? ts_kq_x86_mul(a, b) : a * b; }
static inline float add_(int bad, float a, float b) { return bad ? ts_kq_x86_add(a, b) : a + b; }

void ts_kq_scalar_dequantize_row_q4_0(const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QL; i++, b += TS_Q4_0_BLOCK_BYTES, y += QL) {
        float d = get_f16(b);
        int bad = ts_kq_f16_nonfinite(b);
        for (int j = 0; j < QL / 2; j++) {
            y[j] = mul_(bad, (float)((b[2 + j] & 0xf) - 8), d);
            y[j + QL / 2] = mul_(bad, (float)((b[2 + j] >> 4) - 8), d);
        }
    }
}

void ts_kq_scalar_dequantize_row_q4_1(const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QL; i++, b += TS_Q4_1_BLOCK_BYTES, y += QL) {
        float d = get_f16(b), m = get_f16(b + 2);
        int bad = ts_kq_f16_nonfinite(b) || ts_kq_f16_nonfinite(b + 2);
        for (int j = 0; j < QL / 2; j++) {
            y[j] = add_(bad, mul_(bad, (float)(b[4 + j] & 0xf), d), m);
            y[j + QL / 2] = add_(bad, mul_(bad, (float)(b[4 + j] >> 4), d), m);
        }
    }
}

void ts_kq_scalar_dequantize_row_q5_0(const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QL; i++, b += TS_Q5_0_BLOCK_BYTES, y += QL) {
        float d = get_f16(b);
        int bad = ts_kq_f16_nonfinite(b);
        uint32_t qh = get_qh(b + 2);
        for (int j = 0; j < QL / 2; j++) {
            int lo = (b[6 + j] & 0xf) | (int)((qh >> j) & 1) << 4;
            int hi = (b[6 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = mul_(bad, (float)(lo - 16), d);
            y[j + QL / 2] = mul_(bad, (float)(hi - 16), d);
        }
    }
}

void ts_kq_scalar_dequantize_row_q5_1(const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QL; i++, b += TS_Q5_1_BLOCK_BYTES, y += QL) {
        float d = get_f16(b), m = get_f16(b + 2);
        int bad = ts_kq_f16_nonfinite(b) || ts_kq_f16_nonfinite(b + 2);
        uint32_t qh = get_qh(b + 4);
        for (int j = 0; j < QL / 2; j++) {
            int lo = (b[8 + j] & 0xf) | (int)((qh >> j) & 1) << 4;
            int hi = (b[8 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = add_(bad, mul_(bad, (float)lo, d), m);
            y[j + QL / 2] = add_(bad, mul_(bad, (float)hi, d), m);
        }
    }
}
