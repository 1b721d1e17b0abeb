/* q2_K and q3_K: 16 sub-blocks of 16. Block layouts in
 * docs/formats/quant-types.md.
 *
 * q2_K is affine, value = (d*sc)*l - (dmin*m), 4-bit codes, 2-bit levels;
 * its search is quant_k.c's, followed without an imatrix by q2_unshrink.
 *
 * q3_K is symmetric, value = (d*c)*l with signed 6-bit codes c in -32..31
 * and levels l in -4..3. Its search follows the same plan as quant_k.c:
 * 1. per sub-block, the least-squares scale for a grid of candidate scales in
 *    both orientations (the largest |x| at levels -3.4 .. -8.4, or at
 *    +2.4 .. +7.4: wide, because with an imatrix clipping a low-weight
 *    outlier often pays), then re-rounding and re-solving from the best;
 * 2. candidate d: the largest |s| on code -32, and a weighted least-squares
 *    fit of codes to the s (weights sum w l^2);
 * 3. per candidate, the best code per sub-block among the neighbours of s/d,
 *    of the other orientation's fit, and of the least-squares scale for the
 *    levels found; levels are then the nearest;
 * 4. d re-fitted by least squares over the super-block while that helps.
 * Without an imatrix q3_K's error is weighted by x^2 + mean(x^2) over the
 * super-block, not by qk_prepare's default 0.75 * rms + |x| (which q2_K
 * keeps): on both shared models that cut the perplexity of our q3_K tensors
 * in Q3_K_M by 0.2-0.9% at an equal or lower KL divergence from the F16
 * model (docs/formats/quant-types.md, "Measuring against llama.cpp"). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#else
/* See quant_k.c: results must not depend on FMA contraction. */
#pragma GCC optimize("fp-contract=off")
#endif

#include "kernels/quant_k_impl.h"

#include <float.h>
#include <string.h>

/* ---- q2_K: scales[16] (code | min << 4), qs[64], d, dmin ---- */
enum { Q2_SCALES = 0, Q2_QS = 16, Q2_D = 80, Q2_DMIN = 82 };

static const qk_affine_shape shape_q2 = {
    .n_sub = 16, .sub_len = 16, .nmax = 3, .code_max = 15, .n_grid = 16, .grid_lo = -1.0f, .grid_step = 0.2f};

/* 2-bit levels: byte 32*h + l holds values 128*h + l + 32*k at bits 2k. */
static void pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *v = L + 128 * h + l;
            qs[32 * h + l] = (uint8_t)((v[0] & 3) | ((v[32] & 3) << 2) | ((v[64] & 3) << 4) | ((v[96] & 3) << 6));
        }
}

static void unpack_2bit(const uint8_t *qs, uint8_t *L)
{
    for (int i = 0; i < TS_QK_K; i++)
        L[i] = (uint8_t)((qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3);
}

/* Whether qk_prepare weighted the block by its imatrix slice: some entry is
 * positive and finite (otherwise it kept the default weights). */
static int k23_imatrix_used(const float *imatrix)
{
    if (!imatrix)
        return 0;
    int used = 0;
    for (int i = 0; i < TS_QK_K; i++)
        used |= imatrix[i] > 0.0f && imatrix[i] <= FLT_MAX;
    return used;
}

/* q2_K without an imatrix: d and dmin scaled by c = <x, x> / <x, y> (inner
 * products weighted by the search's weights w, y the stored block's values)
 * after the search, so that the error y - x is uncorrelated with x instead
 * of with y. The least-squares fit shrinks every block towards zero (at
 * 2 bits by ~4%: <x, y> = <y, y> ~ 0.96 <x, x>); in a network the shrinkage
 * of all matrices compounds (on llama-spm-8m, where q and k are both q2_K,
 * it flattens every attention softmax), while unbiased noise averages out.
 * Measured on the shared models' Q2_K mixes (docs/formats/quant-types.md,
 * "Measuring against llama.cpp"): KL divergence from F16 0.0853 -> 0.0757
 * and perplexity +1.5% -> -0.1% against llama.cpp's on llama-spm-8m;
 * 0.0621 -> 0.0639 (still 9% below llama.cpp's) on qwen3moe-spm-9m, whose
 * q2_K attn_q is followed by a norm. The error grows by ~1% (RMSE), still
 * well below ggml's. Codes and levels are kept. */
static void q2_unshrink(const qk_block_in *in, qk_affine_result *r)
{
    double xx[8] = {0}, xy[8] = {0};
    for (int j = 0; j < 16; j++) {
        const float dl = r->d * (float)r->sc[j], ml = r->dmin * (float)r->mn[j];
        for (int i = 0; i < 16; i++) {
            const int k = 16 * j + i;
            const double wx = (double)in->w[k] * (double)in->x[k];
            xx[k % 8] += wx * (double)in->x[k];
            xy[k % 8] += wx * (double)(dl * (float)r->L[k] - ml);
        }
    }
    const double sxx = ((xx[0] + xx[4]) + (xx[2] + xx[6])) + ((xx[1] + xx[5]) + (xx[3] + xx[7]));
    const double sxy = ((xy[0] + xy[4]) + (xy[2] + xy[6])) + ((xy[1] + xy[5]) + (xy[3] + xy[7]));
    if (!(sxx > 0.0 && sxy > 0.0))
        return; /* a zero block, or no fit to correct */
    /* the guard keeps a degenerate fit (a block of a few tiny values) from
     * being stretched; real blocks need 1.0-1.1 */
    const double c = qk_clampf((float)(sxx / sxy), 1.0f, 1.5f);
    r->d_bits = qk_to_f16((float)(r->d * c), &r->d);
    r->dmin_bits = qk_to_f16((float)(r->dmin * c), &r->dmin);
}

void ts_kq_scalar_quantize_row_q2_k(const float *src, void *dst, int64_t n, const float *imatrix)
{
    uint8_t *blk = dst;
    qk_block_in in;
    qk_affine_result r;
    for (int64_t b = 0; b < n / TS_QK_K; b++, blk += TS_Q2_K_BLOCK_BYTES) {
        const float *im = imatrix ? imatrix + b * TS_QK_K : NULL;
        qk_prepare(src + b * TS_QK_K, im, &in);
        qk_affine_quantize(&shape_q2, &in, &r);
        if (!k23_imatrix_used(im))
            q2_unshrink(&in, &r);
        for (int j = 0; j < 16; j++)
            blk[Q2_SCALES + j] = (uint8_t)(r.sc[j] | (r.mn[j] << 4));
        pack_2bit(r.L, blk + Q2_QS);
        qk_store_f16(blk + Q2_D, r.d_bits);
        qk_store_f16(blk + Q2_DMIN, r.dmin_bits);
    }
}

void ts_kq_scalar_dequantize_row_q2_k(const void *src, float *dst, int64_t n)
{
    const uint8_t *blk = src;
    uint8_t L[TS_QK_K];
    for (int64_t b = 0; b < n / TS_QK_K; b++, blk += TS_Q2_K_BLOCK_BYTES) {
        float *y = dst + b * TS_QK_K;
        const float d = qk_load_f16(blk + Q2_D), dmin = qk_load_f16(blk + Q2_DMIN);
        const int finite = !qk_f16_nonfinite(blk + Q2_D) && !qk_f16_nonfinite(blk + Q2_DMIN);
        unpack_2bit(blk + Q2_QS, L);
        for (int j = 0; j < 16; j++) {
            const uint8_t sc = blk[Q2_SCALES + j];
            if (finite) {
                const float dl = d * (float)(sc & 0xf), ml = dmin * (float)(sc >> 4);
                for (int l = 0; l < 16; l++)
                    y[16 * j + l] = dl * (float)L[16 * j + l] - ml;
            } else {
                const float dl = qk_x86_mul(d, (float)(sc & 0xf)), ml = qk_x86_mul(dmin, (float)(sc >> 4));
                for (int l = 0; l < 16; l++)
                    y[16 * j + l] = qk_x86_sub(qk_x86_mul(dl, (float)L[16 * j + l]), ml);
            }
        }
    }
}

/* ---- q3_K: hmask[32], qs[64], scales[12], d ---- */
enum { Q3_HMASK = 0, Q3_QS = 32, Q3_SCALES = 96, Q3_D = 108 };

/* Biased codes u = c + 32: low nibbles in bytes 0..7 (codes 0..7 low half,
 * 8..15 high half), top two bits in bytes 8..11, code j at byte 8 + j%4,
 * bits 2*(j/4). */
void ts_k_pack_scales_q3_k(const int8_t scales[16], uint8_t out[12])
{
    memset(out, 0, 12);
    for (int j = 0; j < 16; j++) {
        const int u = (scales[j] + 32) & 63;
        out[j % 8] |= (uint8_t)((u & 0xf) << (4 * (j / 8)));
        out[8 + j % 4] |= (uint8_t)((u >> 4) << (2 * (j / 4)));
    }
}

void ts_k_unpack_scales_q3_k(const uint8_t in[12], int8_t scales[16])
{
    for (int j = 0; j < 16; j++) {
        const int lo = (in[j % 8] >> (4 * (j / 8))) & 0xf;
        const int hi = (in[8 + j % 4] >> (2 * (j / 4))) & 3;
        scales[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

/* The nearest level in -4..3 to a finite v. */
static inline float q3_level(float v)
{
    return qk_clamp_level(qk_rint(v) + 4.0f, 7.0f) - 4.0f;
}

static inline float q3_inv(float S)
{
    return S != 0.0f ? 1.0f / S : 0.0f;
}

/* sum w * (x - value)^2 with the nearest levels in -4..3 for value = S*l. */
static float q3_err(const float *x, const float *w, float S)
{
    const float inv = q3_inv(S);
    float acc[8] = {0};
    for (int i = 0; i < 16; i += 8)
        for (int k = 0; k < 8; k++) {
            const float l = q3_level(x[i + k] * inv);
            const float diff = S * l - x[i + k];
            acc[k] += w[i + k] * diff * diff;
        }
    return qk_hsum8(acc);
}

static void q3_levels(const float *x, float S, int8_t *L)
{
    const float inv = q3_inv(S);
    for (int i = 0; i < 16; i++)
        L[i] = (int8_t)q3_level(x[i] * inv);
}

/* sum w x l and sum w l^2 for levels l = rint(clamp(x * isc, -4, 3)). */
static void q3_sums(const float *x, const float *w, float isc, double *sxl, double *sl2)
{
    float a[8] = {0}, b[8] = {0};
    for (int i = 0; i < 16; i += 8)
        for (int k = 0; k < 8; k++) {
            const float l = q3_level(x[i + k] * isc);
            const float wl = w[i + k] * l;
            a[k] += wl * x[i + k];
            b[k] += wl * l;
        }
    *sxl = qk_hsum8(a);
    *sl2 = qk_hsum8(b);
}

typedef struct {
    float s[2];  /* best scale: [0] overall, [1] the other orientation */
    float h;     /* sum w l^2 at the best levels */
} q3_fit;

/* Stage 1: maximize (sum w x l)^2 / sum w l^2 (the error drop) over levels. */
static void q3_fit_sub(const float *x, const float *w, q3_fit *f)
{
    float vmax = 0.0f, amax = 0.0f;
    for (int i = 0; i < 16; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            vmax = x[i];
        }
    f->s[0] = f->s[1] = f->h = 0.0f;
    if (!(amax > 1e-30f)) /* zero, or too small for any fp16 scale */
        return;
    double best[2] = {-1.0, -1.0};
    float bs[2] = {0.0f, 0.0f}, bh[2] = {0.0f, 0.0f};
    for (int o = 0; o < 2; o++) /* o = 0: vmax on level -4; o = 1: on +3 */
        for (int g = 0; g <= 10; g++) {
            const float r = -0.6f + 0.5f * (float)g;
            const float iscale = o ? (3.0f + r) / vmax : -(4.0f + r) / vmax;
            double sxl, sl2;
            q3_sums(x, w, iscale, &sxl, &sl2);
            if (sl2 > 0.0 && sxl * sxl / sl2 > best[o]) {
                best[o] = sxl * sxl / sl2;
                bs[o] = (float)(sxl / sl2);
                bh[o] = (float)sl2;
            }
        }
    for (int o = 0; o < 2; o++)
        for (int it = 0; it < 3 && bs[o] != 0.0f; it++) {
            double sxl, sl2;
            q3_sums(x, w, q3_inv(bs[o]), &sxl, &sl2);
            if (!(sl2 > 0.0 && sxl * sxl / sl2 > best[o]))
                break;
            best[o] = sxl * sxl / sl2;
            bs[o] = (float)(sxl / sl2);
            bh[o] = (float)sl2;
        }
    const int win = best[1] > best[0];
    f->s[0] = bs[win];
    f->s[1] = bs[!win];
    f->h = bh[win];
}

/* Stage 2: d for codes c_j = round(s_j / d) in -32..31 minimizing
 * sum h_j (s_j - d c_j)^2; the largest |s| starts on -32 or on +31. */
static float q3_fit_d(const q3_fit *f)
{
    float smax = 0.0f, amax = 0.0f;
    for (int j = 0; j < 16; j++)
        if (fabsf(f[j].s[0]) > amax) {
            amax = fabsf(f[j].s[0]);
            smax = f[j].s[0];
        }
    if (!(amax > 0.0f))
        return 0.0f;
    double best = DBL_MAX;
    float best_d = -smax / 32.0f;
    for (int o = 0; o < 2; o++)
        for (int g = -5; g <= 5; g++) {
            float iscale = o ? (31.0f + 0.1f * (float)g) / smax : -(32.0f + 0.1f * (float)g) / smax;
            for (int it = 0; it < 3; it++) {
                double shc = 0.0, shc2 = 0.0;
                int c[16];
                for (int j = 0; j < 16; j++) {
                    c[j] = (int)qk_rint(qk_clampf(f[j].s[0] * iscale, -32.0f, 31.0f));
                    shc += (double)f[j].h * f[j].s[0] * c[j];
                    shc2 += (double)f[j].h * c[j] * c[j];
                }
                if (!(shc2 > 0.0))
                    break;
                const double d = shc / shc2;
                double e = 0.0;
                for (int j = 0; j < 16; j++) {
                    const double r = f[j].s[0] - d * c[j];
                    e += f[j].h * r * r;
                }
                if (!(e < best) || d == 0.0)
                    break;
                best = e;
                best_d = (float)d;
                iscale = (float)(1.0 / d);
            }
        }
    return best_d;
}

/* Stage 3 for one sub-block: the best code near the targets. */
static float q3_code_sub(const float *x, const float *w, float d, const q3_fit *f, int8_t *c_out, int8_t *L)
{
    int tried[8], n_tried = 0;
    float best = FLT_MAX;
    float targets[3] = {f->s[0], f->s[1], 0.0f};
    *c_out = 0;
    for (int t = 0; t < 3; t++) {
        if (t == 2) { /* the least-squares scale for the best levels so far */
            double sxl, sl2;
            q3_sums(x, w, q3_inv(d * (float)*c_out), &sxl, &sl2);
            targets[2] = sl2 > 0.0 ? (float)(sxl / sl2) : 0.0f;
        }
        const float a = d != 0.0f ? qk_clampf(targets[t] / d, -32.0f, 31.0f) : 0.0f;
        const int a0 = (int)(a + 32.0f) - 32; /* floor */
        for (int da = 0; da < 2; da++) {
            const int c = a0 + da > 31 ? 31 : a0 + da;
            int seen = 0;
            for (int k = 0; k < n_tried; k++)
                seen |= tried[k] == c;
            if (seen || n_tried == 8)
                continue;
            tried[n_tried++] = c;
            const float e = q3_err(x, w, d * (float)c);
            if (e < best || n_tried == 1) {
                best = e;
                *c_out = (int8_t)c;
            }
        }
    }
    q3_levels(x, d * (float)*c_out, L);
    return best;
}

typedef struct {
    float d;
    uint16_t d_bits;
    int8_t c[16];
    int8_t L[TS_QK_K];
} q3_result;

static float q3_codes_all(const qk_block_in *in, const q3_fit *f, q3_result *r)
{
    float total = 0.0f;
    for (int j = 0; j < 16; j++)
        total += q3_code_sub(in->x + 16 * j, in->w + 16 * j, r->d, &f[j], &r->c[j], r->L + 16 * j);
    return total;
}

/* Stage 4: d = sum w x a / sum w a^2 with a = c * l fixed. */
static float q3_refit_d(const qk_block_in *in, const q3_result *r)
{
    double num = 0.0, den = 0.0;
    for (int j = 0; j < 16; j++) {
        float an[8] = {0}, ad[8] = {0};
        for (int i = 0; i < 16; i += 8)
            for (int k = 0; k < 8; k++) {
                const int e = 16 * j + i + k;
                const float a = (float)r->c[j] * (float)r->L[e];
                an[k] += in->w[e] * a * in->x[e];
                ad[k] += in->w[e] * a * a;
            }
        num += qk_hsum8(an);
        den += qk_hsum8(ad);
    }
    return den > 0.0 ? (float)(num / den) : r->d;
}

static void q3_quantize_block(const qk_block_in *in, q3_result *out)
{
    q3_fit f[16];
    float amax = 0.0f, smax = 0.0f;
    for (int j = 0; j < 16; j++) {
        q3_fit_sub(in->x + 16 * j, in->w + 16 * j, &f[j]);
        if (fabsf(f[j].s[0]) > amax) {
            amax = fabsf(f[j].s[0]);
            smax = f[j].s[0];
        }
    }
    const float dc[2] = {q3_fit_d(f), -smax / 32.0f};
    q3_result cur;
    float best = FLT_MAX;
    for (int a = 0; a < 2; a++) {
        if (a && dc[1] == dc[0])
            continue;
        cur.d_bits = qk_to_f16(dc[a], &cur.d);
        const float e = q3_codes_all(in, f, &cur);
        if (e < best || a == 0) { /* the first always sets *out */
            best = e;
            *out = cur;
        }
    }
    for (int it = 0; it < 3; it++) {
        cur.d_bits = qk_to_f16(q3_refit_d(in, out), &cur.d);
        if (cur.d_bits == out->d_bits)
            break;
        const float e = q3_codes_all(in, f, &cur);
        if (!(e < best))
            break;
        best = e;
        *out = cur;
    }
}

/* q3_K's weights without an imatrix: x^2 + mean(x^2), scaled by
 * 1 / (max x^2 + mean(x^2)) so that every weight is at most 1 and no error
 * sum overflows (|x| <= QK_XMAX); the search is scale-free. An all-zero
 * block (or one whose squares underflow) gets weights 1. */
static void q3_default_weights(qk_block_in *in)
{
    float s2[8] = {0}, top[8] = {0};
    for (int i = 0; i < TS_QK_K; i += 8)
        for (int k = 0; k < 8; k++) {
            const float q = in->x[i + k] * in->x[i + k];
            s2[k] += q;
            top[k] = q > top[k] ? q : top[k];
        }
    const float mean = qk_hsum8(s2) / (float)TS_QK_K;
    float mx = top[0];
    for (int k = 1; k < 8; k++)
        mx = top[k] > mx ? top[k] : mx;
    if (!(mean > 0.0f)) {
        for (int i = 0; i < TS_QK_K; i++)
            in->w[i] = 1.0f;
        return;
    }
    const float inv = 1.0f / (mx + mean);
    for (int i = 0; i < TS_QK_K; i++)
        in->w[i] = (in->x[i] * in->x[i] + mean) * inv;
}

void ts_kq_scalar_quantize_row_q3_k(const float *src, void *dst, int64_t n, const float *imatrix)
{
    uint8_t *blk = dst;
    qk_block_in in;
    q3_result r;
    uint8_t L[TS_QK_K];
    for (int64_t b = 0; b < n / TS_QK_K; b++, blk += TS_Q3_K_BLOCK_BYTES) {
        const float *im = imatrix ? imatrix + b * TS_QK_K : NULL;
        qk_prepare(src + b * TS_QK_K, im, &in);
        if (!k23_imatrix_used(im))
            q3_default_weights(&in);
        q3_quantize_block(&in, &r);
        /* stored level l + 4: bit 2 goes to hmask[i % 32] bit i / 32 */
        memset(blk + Q3_HMASK, 0, 32);
        for (int i = 0; i < TS_QK_K; i++) {
            L[i] = (uint8_t)(r.L[i] + 4);
            blk[Q3_HMASK + i % 32] |= (uint8_t)((L[i] >> 2) << (i / 32));
        }
        pack_2bit(L, blk + Q3_QS);
        ts_k_pack_scales_q3_k(r.c, blk + Q3_SCALES);
        qk_store_f16(blk + Q3_D, r.d_bits);
    }
}

void ts_kq_scalar_dequantize_row_q3_k(const void *src, float *dst, int64_t n)
{
    const uint8_t *blk = src;
    uint8_t L[TS_QK_K];
    int8_t c[16];
    for (int64_t b = 0; b < n / TS_QK_K; b++, blk += TS_Q3_K_BLOCK_BYTES) {
        float *y = dst + b * TS_QK_K;
        const float d = qk_load_f16(blk + Q3_D);
        const int finite = !qk_f16_nonfinite(blk + Q3_D);
        unpack_2bit(blk + Q3_QS, L);
        ts_k_unpack_scales_q3_k(blk + Q3_SCALES, c);
        for (int j = 0; j < 16; j++) {
            const float dl = finite ? d * (float)c[j] : qk_x86_mul(d, (float)c[j]);
            for (int l = 0; l < 16; l++) {
                const int i = 16 * j + l;
                const int high = (blk[Q3_HMASK + i % 32] >> (i / 32)) & 1;
                const float q = (float)((int)L[i] - (high ? 0 : 4));
                y[i] = finite ? dl * q : qk_x86_mul(dl, q);
            }
        }
    }
}
