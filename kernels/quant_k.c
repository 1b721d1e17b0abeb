/* The search shared by the affine k-quants (q2_K, q4_K, q5_K): for each
 * super-block, find the fp16 d and dmin, the per-sub-block scale and min
 * codes and the levels that minimize sum w * (x - deq)^2, where deq is
 * computed exactly as ggml's dequantizer computes it.
 *
 * 1. Per sub-block, a continuous fit x ~ s*l - m (s, m >= 0): a grid of
 *    candidate scales anchored at the sub-block's minimum, each followed by
 *    a weighted least-squares solve, then a few rounds of re-rounding and
 *    re-solving from the best one.
 * 2. Candidate d / dmin from the fitted s and m: the largest over code_max,
 *    and a weighted least-squares fit of codes to the s (or m), weighted by
 *    how much each sub-block's error grows with a wrong scale (sum w l^2) or
 *    min (sum w).
 * 3. For each candidate pair, the best codes per sub-block among the
 *    neighbours of s/d and m/dmin, and of the least-squares scale and min
 *    for the levels those give; the levels are then the nearest ones, which
 *    is optimal once the codes are fixed. The pair with the least total error
 *    wins.
 * 4. With codes and levels fixed, d and dmin are re-fitted jointly by least
 *    squares over the whole super-block and step 3 repeats while the error
 *    drops.
 * ggml's search does steps 1-3 with fewer candidates and chooses codes by
 * rounding alone, and never re-fits d / dmin; see docs/formats/quant-types.md. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#else
/* No a*b+c may fuse into an FMA: the search must give the same bytes on
 * every machine, and its error must be that of ggml's unfused dequantizer. */
#pragma GCC optimize("fp-contract=off")
#endif

#include "kernels/quant_k_impl.h"

#include <float.h>

void qk_prepare(const float *x, const float *imatrix, qk_block_in *in)
{
    float s2[8] = {0};
    for (int i = 0; i < TS_QK_K; i += 8)
        for (int k = 0; k < 8; k++) {
            const float v = x[i + k];
            /* NaN and +-inf count as 0; |x| <= QK_XMAX keeps squares finite */
            const float c = fabsf(v) <= FLT_MAX ? qk_clampf(v, -QK_XMAX, QK_XMAX) : 0.0f;
            in->x[i + k] = c;
            s2[k] += c * c;
        }
    const float rms = sqrtf(qk_hsum8(s2) / (float)TS_QK_K);
    for (int i = 0; i < TS_QK_K; i++)
        in->w[i] = rms > 0.0f ? QK_W_RMS * rms + fabsf(in->x[i]) : 1.0f;
    /* With an imatrix the error is weighted by it alone: it measures what
     * each column's error costs the layer's output (and the imatrix-weighted
     * error is what the interop tests compare with ggml's). */
    if (!imatrix)
        return;
    float qmax = 0.0f;
    for (int i = 0; i < TS_QK_K; i++) {
        const float v = imatrix[i];
        qmax = v > qmax && v <= FLT_MAX ? v : qmax; /* NaN, inf and v <= 0 are skipped */
    }
    if (!(qmax > 0.0f))
        return; /* no column was ever active: the default weights */
    const float inv = 1.0f / qmax;
    for (int i = 0; i < TS_QK_K; i++) {
        const float v = imatrix[i];
        in->w[i] = (v > 0.0f && v <= FLT_MAX ? v * inv : 0.0f) + 1e-6f;
    }
}

/* Weighted sums of one sub-block for the least-squares solves. */
typedef struct {
    double sw, sx, sx2;   /* fixed per sub-block */
    double sl, sl2, sxl;  /* per level assignment */
} qk_sums;

static void sums_fixed(const float *x, const float *w, int n, qk_sums *s)
{
    float aw[8] = {0}, ax[8] = {0}, ax2[8] = {0};
    for (int i = 0; i < n; i += 8)
        for (int k = 0; k < 8; k++) {
            const float wx = w[i + k] * x[i + k];
            aw[k] += w[i + k];
            ax[k] += wx;
            ax2[k] += wx * x[i + k];
        }
    s->sw = qk_hsum8(aw);
    s->sx = qk_hsum8(ax);
    s->sx2 = qk_hsum8(ax2);
}

/* The level sums for levels l = rint(clamp((x + off) * isc, 0, nmax)). */
static void sums_levels(const float *x, const float *w, int n, int nmax, float off, float isc, qk_sums *s)
{
    const float top = (float)nmax;
    float al[8] = {0}, al2[8] = {0}, axl[8] = {0};
    for (int i = 0; i < n; i += 8)
        for (int k = 0; k < 8; k++) {
            const float l = qk_level((x[i + k] + off) * isc, top);
            const float wl = w[i + k] * l;
            al[k] += wl;
            al2[k] += wl * l;
            axl[k] += wl * x[i + k];
        }
    s->sl = qk_hsum8(al);
    s->sl2 = qk_hsum8(al2);
    s->sxl = qk_hsum8(axl);
}

static inline float inv_or_zero(float S)
{
    return S > 0.0f ? 1.0f / S : 0.0f;
}

/* Least squares x ~ s*l - m with s >= 0, m >= 0 for the levels in *q;
 * returns the weighted squared error (from the sums, for ranking). */
static double solve_affine(const qk_sums *q, float *s_out, float *m_out)
{
    double s = 0.0, m = 0.0;
    const double D = q->sw * q->sl2 - q->sl * q->sl;
    if (D > 0.0) {
        s = (q->sw * q->sxl - q->sx * q->sl) / D;
        m = -(q->sl2 * q->sx - q->sl * q->sxl) / D;
    }
    if (!(D > 0.0) || m < 0.0 || s < 0.0) {
        /* the boundary m = 0, or s = 0 (a constant -m) */
        m = 0.0;
        s = q->sl2 > 0.0 ? q->sxl / q->sl2 : 0.0;
        if (s < 0.0) {
            s = 0.0;
            m = q->sw > 0.0 ? -q->sx / q->sw : 0.0;
            m = m > 0.0 ? m : 0.0;
        }
    }
    *s_out = (float)s;
    *m_out = (float)m;
    return s * s * q->sl2 + m * m * q->sw + q->sx2 - 2.0 * s * m * q->sl - 2.0 * s * q->sxl + 2.0 * m * q->sx;
}

/* sum w * (x - value)^2 with the nearest levels for value = S*l - M, the
 * value computed as the dequantizer computes it. */
static float err_affine(const float *x, const float *w, int n, int nmax, float S, float M)
{
    const float inv = inv_or_zero(S), top = (float)nmax;
    float acc[8] = {0};
    for (int i = 0; i < n; i += 8)
        for (int k = 0; k < 8; k++) {
            const float l = qk_level((x[i + k] + M) * inv, top);
            const float diff = (S * l - M) - x[i + k];
            acc[k] += w[i + k] * diff * diff;
        }
    return qk_hsum8(acc);
}

/* The levels err_affine chose. */
static void levels_affine(const float *x, int n, int nmax, float S, float M, uint8_t *L)
{
    const float inv = inv_or_zero(S), top = (float)nmax;
    for (int i = 0; i < n; i++)
        L[i] = (uint8_t)qk_level((x[i] + M) * inv, top);
}

/* Stage 1 for one sub-block: continuous s, m and the sensitivities. */
static void fit_sub(const qk_affine_shape *sh, const float *x, const float *w, float *s_out, float *m_out,
                    float *hs_out, float *hm_out)
{
    const int n = sh->sub_len;
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    qk_sums q;
    sums_fixed(x, w, n, &q);
    *hm_out = (float)q.sw;
    if (lo > 0.0f)
        lo = 0.0f; /* the offset m is >= 0: the lowest level sits at or below zero */
    if (!(hi - lo > 1e-30f)) { /* constant, or too flat for any fp16 scale */
        *s_out = 0.0f;
        *m_out = -lo;
        *hs_out = 0.0f;
        return;
    }
    double best = DBL_MAX;
    float bs = 0.0f, bm = -lo, bl2 = 0.0f;
    const float range = hi - lo;
    for (int g = 0; g < sh->n_grid; g++) {
        const float iscale = ((float)sh->nmax + sh->grid_lo + sh->grid_step * (float)g) / range;
        sums_levels(x, w, n, sh->nmax, -lo, iscale, &q);
        float s, m;
        const double e = solve_affine(&q, &s, &m);
        if (e < best) {
            best = e;
            bs = s;
            bm = m;
            bl2 = (float)q.sl2;
        }
    }
    /* Re-round with the fitted scale and min and re-solve while that helps. */
    for (int it = 0; it < 3 && bs > 0.0f; it++) {
        sums_levels(x, w, n, sh->nmax, bm, inv_or_zero(bs), &q);
        float s, m;
        const double e = solve_affine(&q, &s, &m);
        if (!(e < best))
            break;
        best = e;
        bs = s;
        bm = m;
        bl2 = (float)q.sl2;
    }
    *s_out = bs;
    *m_out = bm;
    *hs_out = bl2;
}

/* Stage 2: a scale d for codes c_j = round(v_j / d) in 0..cmax minimizing
 * sum h_j (v_j - d c_j)^2. */
static float fit_codes(const float *v, const float *h, int n, int cmax)
{
    float vmax = 0.0f;
    for (int j = 0; j < n; j++)
        vmax = v[j] > vmax ? v[j] : vmax;
    if (!(vmax > 0.0f))
        return 0.0f;
    double best = DBL_MAX;
    float best_d = vmax / (float)cmax;
    for (int g = -6; g <= 6; g++) {
        const float iscale = ((float)cmax + 0.1f * (float)g) / vmax;
        for (int it = 0; it < 3; it++) {
            double shc = 0.0, shc2 = 0.0;
            int c[16];
            for (int j = 0; j < n; j++) {
                c[j] = (int)qk_rint(qk_clampf(v[j] * (it == 0 ? iscale : 1.0f / best_d), 0.0f, (float)cmax));
                shc += (double)h[j] * v[j] * c[j];
                shc2 += (double)h[j] * c[j] * c[j];
            }
            if (!(shc2 > 0.0))
                break;
            const double d = shc / shc2;
            double e = 0.0;
            for (int j = 0; j < n; j++) {
                const double r = v[j] - d * c[j];
                e += h[j] * r * r;
            }
            if (!(e < best))
                break;
            best = e;
            best_d = (float)d;
        }
    }
    return best_d;
}

/* Stage 3 for one sub-block: the best (scale code, min code) near the
 * targets; returns its error and leaves its levels in L. */
static float codes_sub(const qk_affine_shape *sh, const float *x, const float *w, float d, float dmin, float s,
                       float m, uint8_t *sc_out, uint8_t *mn_out, uint8_t *L)
{
    const int n = sh->sub_len, cmax = sh->code_max;
    float best = FLT_MAX;
    int bsc = 0, bmn = 0;
    int tried[8], n_tried = 0; /* sc * 64 + mn of the pairs evaluated */
    for (int round = 0; round < 2; round++) {
        const float a = d > 0.0f ? qk_clampf(s / d, 0.0f, (float)cmax) : 0.0f;
        const float b = dmin > 0.0f ? qk_clampf(m / dmin, 0.0f, (float)cmax) : 0.0f;
        /* floor and ceiling of each; with a zero d or dmin the code is moot */
        const int a0 = (int)a, b0 = (int)b, na = d > 0.0f ? 2 : 1, nb = dmin > 0.0f ? 2 : 1;
        for (int da = 0; da < na; da++)
            for (int db = 0; db < nb; db++) {
                const int sc = a0 + da > cmax ? cmax : a0 + da;
                const int mn = b0 + db > cmax ? cmax : b0 + db;
                const int key = sc * 64 + mn;
                int seen = 0;
                for (int t = 0; t < n_tried; t++)
                    seen |= tried[t] == key;
                if (seen)
                    continue;
                tried[n_tried++] = key;
                const float e = err_affine(x, w, n, sh->nmax, d * (float)sc, dmin * (float)mn);
                if (e < best) {
                    best = e;
                    bsc = sc;
                    bmn = mn;
                }
            }
        if (round == 1)
            break;
        /* The least-squares scale and min for the best levels so far. */
        qk_sums q;
        const float S = d * (float)bsc, M = dmin * (float)bmn;
        sums_fixed(x, w, n, &q);
        sums_levels(x, w, n, sh->nmax, M, inv_or_zero(S), &q);
        solve_affine(&q, &s, &m);
    }
    levels_affine(x, n, sh->nmax, d * (float)bsc, dmin * (float)bmn, L);
    *sc_out = (uint8_t)bsc;
    *mn_out = (uint8_t)bmn;
    return best;
}

static float codes_all(const qk_affine_shape *sh, const qk_block_in *in, const float *s, const float *m, float d,
                       float dmin, qk_affine_result *r)
{
    float total = 0.0f;
    for (int j = 0; j < sh->n_sub; j++) {
        const int o = j * sh->sub_len;
        total += codes_sub(sh, in->x + o, in->w + o, d, dmin, s[j], m[j], &r->sc[j], &r->mn[j], r->L + o);
    }
    return total;
}

/* Stage 4: d and dmin by least squares with codes and levels fixed. */
static void refit_d(const qk_affine_shape *sh, const qk_block_in *in, const qk_affine_result *r, float *d,
                    float *dmin)
{
    double A = 0, B = 0, C = 0, P = 0, Q = 0;
    for (int j = 0; j < sh->n_sub; j++) {
        float aa[8] = {0}, ax[8] = {0}, ab[8] = {0}, bx[8] = {0}, bb[8] = {0};
        const float sc = (float)r->sc[j], mn = (float)r->mn[j];
        for (int i = 0; i < sh->sub_len; i += 8)
            for (int k = 0; k < 8; k++) {
                const int e = j * sh->sub_len + i + k;
                const float a = sc * (float)r->L[e];
                const float wa = in->w[e] * a;
                aa[k] += wa * a;
                ax[k] += wa * in->x[e];
                ab[k] += wa * mn;
                bx[k] += in->w[e] * mn * in->x[e];
                bb[k] += in->w[e] * mn * mn;
            }
        A += qk_hsum8(aa);
        P += qk_hsum8(ax);
        C += qk_hsum8(ab);
        Q += qk_hsum8(bx);
        B += qk_hsum8(bb);
    }
    /* minimize sum w (d a - e b - x)^2 */
    const double D = A * B - C * C;
    if (D > 0.0) {
        const double dd = (P * B - Q * C) / D, ee = (P * C - Q * A) / D;
        if (dd > 0.0 && ee >= 0.0) {
            *d = (float)dd;
            *dmin = (float)ee;
            return;
        }
    }
    if (A > 0.0 && P > 0.0)
        *d = (float)(P / A);
}

void qk_affine_quantize(const qk_affine_shape *sh, const qk_block_in *in, qk_affine_result *out)
{
    float s[16], m[16], hs[16], hm[16];
    float smax = 0.0f, mmax = 0.0f;
    for (int j = 0; j < sh->n_sub; j++) {
        const int o = j * sh->sub_len;
        fit_sub(sh, in->x + o, in->w + o, &s[j], &m[j], &hs[j], &hm[j]);
        smax = s[j] > smax ? s[j] : smax;
        mmax = m[j] > mmax ? m[j] : mmax;
    }
    const float dc[2] = {fit_codes(s, hs, sh->n_sub, sh->code_max), smax / (float)sh->code_max};
    const float mc[2] = {fit_codes(m, hm, sh->n_sub, sh->code_max), mmax / (float)sh->code_max};

    qk_affine_result cur;
    float best = FLT_MAX;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            if ((a && dc[1] == dc[0]) || (b && mc[1] == mc[0]))
                continue;
            cur.d_bits = qk_to_f16(dc[a], &cur.d);
            cur.dmin_bits = qk_to_f16(mc[b], &cur.dmin);
            const float e = codes_all(sh, in, s, m, cur.d, cur.dmin, &cur);
            if (e < best || (a == 0 && b == 0)) { /* the first always sets *out */
                best = e;
                *out = cur;
            }
        }
    for (int it = 0; it < 3; it++) {
        float d = out->d, dmin = out->dmin;
        refit_d(sh, in, out, &d, &dmin);
        cur.d_bits = qk_to_f16(d, &cur.d);
        cur.dmin_bits = qk_to_f16(dmin, &cur.dmin);
        if (cur.d_bits == out->d_bits && cur.dmin_bits == out->dmin_bits)
            break;
        const float e = codes_all(sh, in, s, m, cur.d, cur.dmin, &cur);
        if (!(e < best))
            break;
        best = e;
        *out = cur;
    }
}
