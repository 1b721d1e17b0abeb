/* Template: the search shared by the affine k-quants (q2_K, q4_K, q5_K),
 * compiled once per ISA (quant_simd.h); the algorithm is described in
 * quant_k.c. Before including: the qv / qp API and QK_FN. Defines the
 * static QK_FN(qk_affine_quantize).
 *
 * Work that is independent runs in batches of four problems (two qp): the
 * stage-1 grid of a sub-block, and across sub-blocks the re-rounding of
 * stage 1 and the candidate codes of stage 3. Every problem is computed
 * exactly as it would be alone, and winners are still chosen by scanning the
 * candidates of each sub-block in the original order, so the result is the
 * one a one-at-a-time search finds. */
#include <float.h>

/* qk_prepare (quant_k_impl.h): the super-block made safe for the search
 * and its error weights. */
static void QK_FN(prepare)(const float *x, const float *imatrix, qk_block_in *in)
{
    const qv xmax = qv_set1(QK_XMAX), xmin = qv_set1(-QK_XMAX);
    qv s2 = qv_zero();
    for (int i = 0; i < TS_QK_K; i += 8) {
        /* NaN and +-inf count as 0; |x| <= QK_XMAX keeps squares finite */
        const qv c = qv_min(qv_max(qv_finite0(qv_load(x + i)), xmin), xmax);
        qv_store(in->x + i, c);
        s2 = qv_add(s2, qv_mul(c, c));
    }
    const float rms = sqrtf(qv_hsum(s2) / (float)TS_QK_K);
    const qv base = qv_set1(QK_W_RMS * rms), one = qv_set1(1.0f);
    for (int i = 0; i < TS_QK_K; i += 8)
        qv_store(in->w + i, rms > 0.0f ? qv_add(base, qv_abs(qv_load(in->x + i))) : one);
    /* With an imatrix the error is weighted by it alone: it measures what
     * each column's error costs the layer's output (and the imatrix-weighted
     * error is what the interop tests compare with ggml's). */
    if (!imatrix)
        return;
    qv qm = qv_zero(); /* NaN, inf and v <= 0 are skipped */
    for (int i = 0; i < TS_QK_K; i += 8)
        qm = qv_max(qv_posfinite0(qv_load(imatrix + i)), qm);
    const float qmax = qv_hmax(qm);
    if (!(qmax > 0.0f))
        return; /* no column was ever active: the default weights */
    const qv inv = qv_set1(1.0f / qmax), floor = qv_set1(1e-6f);
    for (int i = 0; i < TS_QK_K; i += 8)
        qv_store(in->w + i, qv_add(qv_mul(qv_posfinite0(qv_load(imatrix + i)), inv), floor));
}

/* The weighted sums of a sub-block that do not depend on the levels. */
typedef struct {
    double sw, sx, sx2;
} qk_fixed;

/* One problem of a batch: a sub-block and two parameters, (offset, inverse
 * scale) for the level sums or (S, M) for the error. */
typedef struct {
    const float *x, *w;
    float a, b;
} qk_job;

#define QK_JOBS_MAX 64 /* 16 sub-blocks times 4 candidates */

/* qk_clampf and qk_rint (quant_k_impl.h) again, so that they inline here
 * (GCC does not inline across different target or optimize options). */
static inline float QK_FN(clampf)(float v, float lo, float hi)
{
    v = v > lo ? v : lo;
    return v < hi ? v : hi;
}

static inline float QK_FN(rint)(float v)
{
    return (v + 12582912.0f) - 12582912.0f;
}

static inline float QK_FN(inv_or_zero)(float S)
{
    return S > 0.0f ? 1.0f / S : 0.0f;
}

/* Levels round(clamp(v, 0, top)) of v = (x + off) * isc: clamping first is
 * the same as rounding first for every finite v, and sends inf and NaN to
 * an end instead of through the add-1.5*2^23 rounding. */
static inline qv QK_FN(level)(qv x, qv off, qv isc, qv top)
{
    return qv_round(qv_min(qv_max(qv_mul(qv_add(x, off), isc), qv_zero()), top));
}

static inline qp QK_FN(level2)(qp x, qp off, qp isc, qp top)
{
    return qp_round(qp_min(qp_max(qp_mul(qp_add(x, off), isc), qp_zero()), top));
}

static void QK_FN(sums_fixed)(const float *x, const float *w, int n, qk_fixed *s)
{
    qv aw = qv_zero(), ax = qv_zero(), ax2 = qv_zero();
    for (int i = 0; i < n; i += 8) {
        const qv xv = qv_load(x + i), wv = qv_load(w + i);
        const qv wx = qv_mul(wv, xv);
        aw = qv_add(aw, wv);
        ax = qv_add(ax, wx);
        ax2 = qv_add(ax2, qv_mul(wx, xv));
    }
    s->sw = qv_hsum(aw);
    s->sx = qv_hsum(ax);
    s->sx2 = qv_hsum(ax2);
}

/* The level sums sl = sum w l, sl2 = sum w l^2, sxl = sum w x l for levels
 * l = level((x + off) * isc), for four problems a, b (one qp) and c, d. */
static inline void QK_FN(sums_levels_qp)(qp xa, qp xb, qp wa, qp wb, qp offa, qp offb, qp isca, qp iscb, qp top,
                                         qp *acc)
{
    const qp la = QK_FN(level2)(xa, offa, isca, top), lb = QK_FN(level2)(xb, offb, iscb, top);
    const qp wla = qp_mul(wa, la), wlb = qp_mul(wb, lb);
    acc[0] = qp_add(acc[0], wla);
    acc[1] = qp_add(acc[1], wlb);
    acc[2] = qp_add(acc[2], qp_mul(wla, la));
    acc[3] = qp_add(acc[3], qp_mul(wlb, lb));
    acc[4] = qp_add(acc[4], qp_mul(wla, xa));
    acc[5] = qp_add(acc[5], qp_mul(wlb, xb));
}

static inline void QK_FN(sums_levels_out)(const qp *acc, float *sl, float *sl2, float *sxl)
{
    float v[8];
    qp_hsum8(acc[0], acc[1], acc[2], acc[3], v);
    for (int k = 0; k < 4; k++)
        sl[k] = v[k], sl2[k] = v[4 + k];
    qp_hsum4(acc[4], acc[5], sxl);
}

/* Level sums of one sub-block for four inverse scales (same offset). */
static void QK_FN(sums_levels4)(const float *x, const float *w, int n, int nmax, float off, const float *isc,
                                float *sl, float *sl2, float *sxl)
{
    const qp top = qp_set2((float)nmax, (float)nmax), vo = qp_set2(off, off);
    const qp i0 = qp_set2(isc[0], isc[1]), i1 = qp_set2(isc[2], isc[3]);
    qp acc[6] = {qp_zero(), qp_zero(), qp_zero(), qp_zero(), qp_zero(), qp_zero()};
    for (int i = 0; i < n; i += 8) {
        const qp xv = qp_dup(x + i), wv = qp_dup(w + i);
        QK_FN(sums_levels_qp)(xv, xv, wv, wv, vo, vo, i0, i1, top, acc);
    }
    QK_FN(sums_levels_out)(acc, sl, sl2, sxl);
}

/* Level sums for jobs {x, w, off, isc}, four at a time. */
static void QK_FN(sums_levels_jobs)(qk_job *job, int nj, int n, int nmax, float *sl, float *sl2, float *sxl)
{
    const qp top = qp_set2((float)nmax, (float)nmax);
    for (int b = 0; b < nj; b += 4) {
        const qk_job *j0 = &job[b], *j1 = &job[b + 1 < nj ? b + 1 : b];
        const qk_job *j2 = &job[b + 2 < nj ? b + 2 : b], *j3 = &job[b + 3 < nj ? b + 3 : b];
        const qp o0 = qp_set2(j0->a, j1->a), o1 = qp_set2(j2->a, j3->a);
        const qp i0 = qp_set2(j0->b, j1->b), i1 = qp_set2(j2->b, j3->b);
        qp acc[6] = {qp_zero(), qp_zero(), qp_zero(), qp_zero(), qp_zero(), qp_zero()};
        for (int i = 0; i < n; i += 8)
            QK_FN(sums_levels_qp)(qp_load2(j0->x + i, j1->x + i), qp_load2(j2->x + i, j3->x + i),
                                  qp_load2(j0->w + i, j1->w + i), qp_load2(j2->w + i, j3->w + i), o0, o1, i0, i1,
                                  top, acc);
        float a[4], c[4], e[4];
        QK_FN(sums_levels_out)(acc, a, c, e);
        for (int k = 0; k < 4 && b + k < nj; k++)
            sl[b + k] = a[k], sl2[b + k] = c[k], sxl[b + k] = e[k];
    }
}

/* Weighted squared errors sum w (x - ((S*l) - M))^2 with the nearest levels,
 * the value computed as the dequantizer computes it, for jobs {x, w, S, M},
 * four at a time. */
static void QK_FN(err_jobs)(qk_job *job, int nj, int n, int nmax, float *err)
{
    const qp top = qp_set2((float)nmax, (float)nmax);
    for (int b = 0; b < nj; b += 4) {
        const qk_job *j0 = &job[b], *j1 = &job[b + 1 < nj ? b + 1 : b];
        const qk_job *j2 = &job[b + 2 < nj ? b + 2 : b], *j3 = &job[b + 3 < nj ? b + 3 : b];
        const qp S0 = qp_set2(j0->a, j1->a), S1 = qp_set2(j2->a, j3->a);
        const qp M0 = qp_set2(j0->b, j1->b), M1 = qp_set2(j2->b, j3->b);
        const qp inv0 = qp_set2(QK_FN(inv_or_zero)(j0->a), QK_FN(inv_or_zero)(j1->a));
        const qp inv1 = qp_set2(QK_FN(inv_or_zero)(j2->a), QK_FN(inv_or_zero)(j3->a));
        qp acc0 = qp_zero(), acc1 = qp_zero();
        for (int i = 0; i < n; i += 8) {
            const qp x0 = qp_load2(j0->x + i, j1->x + i), x1 = qp_load2(j2->x + i, j3->x + i);
            const qp l0 = QK_FN(level2)(x0, M0, inv0, top), l1 = QK_FN(level2)(x1, M1, inv1, top);
            const qp d0 = qp_sub(qp_sub(qp_mul(S0, l0), M0), x0), d1 = qp_sub(qp_sub(qp_mul(S1, l1), M1), x1);
            acc0 = qp_add(acc0, qp_mul(qp_mul(qp_load2(j0->w + i, j1->w + i), d0), d0));
            acc1 = qp_add(acc1, qp_mul(qp_mul(qp_load2(j2->w + i, j3->w + i), d1), d1));
        }
        float e[4];
        qp_hsum4(acc0, acc1, e);
        for (int k = 0; k < 4 && b + k < nj; k++)
            err[b + k] = e[k];
    }
}

/* The levels err_jobs chose for (S, M). */
static void QK_FN(levels_affine)(const float *x, int n, int nmax, float S, float M, uint8_t *L)
{
    const qv inv = qv_set1(QK_FN(inv_or_zero)(S)), top = qv_set1((float)nmax), vm = qv_set1(M);
    for (int i = 0; i < n; i += 8)
        qv_store_u8(L + i, QK_FN(level)(qv_load(x + i), vm, inv, top));
}

/* Least squares x ~ s*l - m with s >= 0, m >= 0 for the level sums sl, sl2,
 * sxl; returns the weighted squared error (from the sums, for ranking).
 * Without branches (both sides computed, one kept), so that the divisions
 * of a batch overlap. */
static inline double QK_FN(solve)(qk_fixed f, double sl, double sl2, double sxl, float *s_out, float *m_out)
{
    const double sw = f.sw, sx = f.sx, sx2 = f.sx2;
    const double D = sw * sl2 - sl * sl;
    const int pos = D > 0.0;
    double s = (sw * sxl - sx * sl) / D;
    double m = -(sl2 * sx - sl * sxl) / D;
    s = pos ? s : 0.0;
    m = pos ? m : 0.0;
    const int bnd = !pos | (m < 0.0) | (s < 0.0);
    /* the boundary m = 0, or s = 0 (a constant -m); every division is
     * done and the unwanted ones dropped, so the loop has no branches */
    const double q1 = sxl / sl2, q2 = -sx / sw;
    double sb = sl2 > 0.0 ? q1 : 0.0;
    double mb = sw > 0.0 ? q2 : 0.0;
    mb = mb > 0.0 ? mb : 0.0;
    const int neg = sb < 0.0;
    mb = neg ? mb : 0.0;
    sb = neg ? 0.0 : sb;
    s = bnd ? sb : s;
    m = bnd ? mb : m;
    *s_out = (float)s;
    *m_out = (float)m;
    return s * s * sl2 + m * m * sw + sx2 - 2.0 * s * m * sl - 2.0 * s * sxl + 2.0 * m * sx;
}

/* solve for cnt level sums of one sub-block, in a loop of its own so that
 * compilers vectorize it. */
static void QK_FN(solve_many)(qk_fixed f, const float *restrict sl, const float *restrict sl2,
                              const float *restrict sxl, int cnt, float *restrict s, float *restrict m,
                              double *restrict e)
{
    for (int g = 0; g < cnt; g++)
        e[g] = QK_FN(solve)(f, sl[g], sl2[g], sxl[g], &s[g], &m[g]);
}

/* Stage 1 for every sub-block: continuous s, m and the sensitivities hs
 * (sum w l^2), hm (sum w); fixed gets each sub-block's fixed sums. */
static void QK_FN(fit_all)(const qk_affine_shape *sh, const qk_block_in *in, qk_fixed *fixed, float *s, float *m,
                           float *hs, float *hm)
{
    const int n = sh->sub_len, ng = sh->n_grid;
    double best[16];
    int active[16];
    for (int j = 0; j < sh->n_sub; j++) {
        const float *x = in->x + j * n, *w = in->w + j * n;
        float lo = x[0], hi = x[0];
        for (int i = 1; i < n; i++) {
            lo = x[i] < lo ? x[i] : lo;
            hi = x[i] > hi ? x[i] : hi;
        }
        QK_FN(sums_fixed)(x, w, n, &fixed[j]);
        hm[j] = (float)fixed[j].sw;
        if (lo > 0.0f)
            lo = 0.0f; /* the offset m is >= 0: the lowest level sits at or below zero */
        s[j] = 0.0f;
        m[j] = -lo;
        hs[j] = 0.0f;
        best[j] = DBL_MAX;
        active[j] = 0;
        if (!(hi - lo > 1e-30f)) /* constant, or too flat for any fp16 scale */
            continue;
        /* the grid: all sums first, four scales at a time, then the choice in grid order */
        const float range = hi - lo;
        float isc[QK_MAX_GRID + 3], sl[QK_MAX_GRID + 3], sl2[QK_MAX_GRID + 3], sxl[QK_MAX_GRID + 3];
        for (int g = 0; g < ng; g++)
            isc[g] = ((float)sh->nmax + sh->grid_lo + sh->grid_step * (float)g) / range;
        for (int g = ng; g % 4; g++)
            isc[g] = isc[g - 1];
        for (int g = 0; g < ng; g += 4)
            QK_FN(sums_levels4)(x, w, n, sh->nmax, -lo, isc + g, sl + g, sl2 + g, sxl + g);
        float gs[QK_MAX_GRID + 3], gm[QK_MAX_GRID + 3];
        double ge[QK_MAX_GRID + 3];
        QK_FN(solve_many)(fixed[j], sl, sl2, sxl, ng, gs, gm, ge);
        for (int g = 0; g < ng; g++)
            if (ge[g] < best[j]) {
                best[j] = ge[g];
                s[j] = gs[g];
                m[j] = gm[g];
                hs[j] = sl2[g];
            }
        active[j] = s[j] > 0.0f;
    }
    /* Re-round with the fitted scale and min and re-solve while that helps
     * (three rounds at most), the sub-blocks still improving in one batch. */
    for (int it = 0; it < 3; it++) {
        qk_job job[16];
        int owner[16], nj = 0;
        for (int j = 0; j < sh->n_sub; j++)
            if (active[j]) {
                job[nj] = (qk_job){in->x + j * n, in->w + j * n, m[j], QK_FN(inv_or_zero)(s[j])};
                owner[nj++] = j;
            }
        if (nj == 0)
            break;
        float sl[16], sl2[16], sxl[16];
        QK_FN(sums_levels_jobs)(job, nj, n, sh->nmax, sl, sl2, sxl);
        for (int q = 0; q < nj; q++) {
            const int j = owner[q];
            float sg, mg;
            const double e = QK_FN(solve)(fixed[j], sl[q], sl2[q], sxl[q], &sg, &mg);
            if (!(e < best[j])) {
                active[j] = 0;
                continue;
            }
            best[j] = e;
            s[j] = sg;
            m[j] = mg;
            hs[j] = sl2[q];
            active[j] = sg > 0.0f;
        }
    }
}

/* Stage 2: a scale d for codes c_j = round(v_j / d) in 0..cmax minimizing
 * sum h_j (v_j - d c_j)^2 (n <= 16): from each of 13 trial scales, a
 * least-squares d and its error, and while that improves on the best so
 * far, re-rounding at the best d. The first step of every trial is
 * independent of the others and done for all of them at once (the trials
 * in the inner loop, each summing over j in order). */
#define QK_FIT_TRIALS 13
static float QK_FN(fit_codes)(const float *v, const float *h, int n, int cmax)
{
    float vmax = 0.0f;
    for (int j = 0; j < n; j++)
        vmax = v[j] > vmax ? v[j] : vmax;
    if (!(vmax > 0.0f))
        return 0.0f;
    float isc[QK_FIT_TRIALS];
    double shc[QK_FIT_TRIALS] = {0}, shc2[QK_FIT_TRIALS] = {0}, dg[QK_FIT_TRIALS], eg[QK_FIT_TRIALS] = {0};
    int cg[16][QK_FIT_TRIALS];
    for (int g = 0; g < QK_FIT_TRIALS; g++)
        isc[g] = ((float)cmax + 0.1f * (float)(g - 6)) / vmax;
    for (int j = 0; j < n; j++)
        for (int g = 0; g < QK_FIT_TRIALS; g++) {
            const int c = (int)QK_FN(rint)(QK_FN(clampf)(v[j] * isc[g], 0.0f, (float)cmax));
            cg[j][g] = c;
            shc[g] += (double)h[j] * v[j] * c;
            shc2[g] += (double)h[j] * c * c;
        }
    for (int g = 0; g < QK_FIT_TRIALS; g++)
        dg[g] = shc[g] / shc2[g]; /* used only where shc2 > 0 */
    for (int j = 0; j < n; j++)
        for (int g = 0; g < QK_FIT_TRIALS; g++) {
            const double r = v[j] - dg[g] * cg[j][g];
            eg[g] += h[j] * r * r;
        }
    double best = DBL_MAX;
    float best_d = vmax / (float)cmax;
    for (int g = 0; g < QK_FIT_TRIALS; g++) {
        if (!(shc2[g] > 0.0) || !(eg[g] < best))
            continue;
        best = eg[g];
        best_d = (float)dg[g];
        for (int it = 1; it < 3; it++) {
            double s1 = 0.0, s2 = 0.0;
            int c[16];
            for (int j = 0; j < n; j++) {
                c[j] = (int)QK_FN(rint)(QK_FN(clampf)(v[j] * (1.0f / best_d), 0.0f, (float)cmax));
                s1 += (double)h[j] * v[j] * c[j];
                s2 += (double)h[j] * c[j] * c[j];
            }
            if (!(s2 > 0.0))
                break;
            const double d = s1 / s2;
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
#undef QK_FIT_TRIALS

/* Stage 3 for every sub-block: the best (scale code, min code) near the
 * targets s, m; the levels for them go to r->L. Per sub-block: the floor
 * and ceiling of s/d and m/dmin, then those of the least-squares scale and
 * min for the best levels so far; returns the total error. */
static float QK_FN(codes_all)(const qk_affine_shape *sh, const qk_block_in *in, const qk_fixed *fixed,
                              const float *s_in, const float *m_in, float d, float dmin, qk_affine_result *r)
{
    const int n = sh->sub_len, cmax = sh->code_max;
    float best[16], s[16], m[16];
    int bsc[16], bmn[16], tried[16][8], n_tried[16];
    for (int j = 0; j < sh->n_sub; j++) {
        best[j] = FLT_MAX;
        bsc[j] = bmn[j] = n_tried[j] = 0;
        s[j] = s_in[j];
        m[j] = m_in[j];
    }
    for (int round = 0; round < 2; round++) {
        qk_job job[QK_JOBS_MAX];
        int owner[QK_JOBS_MAX], key[QK_JOBS_MAX], nj = 0;
        for (int j = 0; j < sh->n_sub; j++) {
            const float a = d > 0.0f ? QK_FN(clampf)(s[j] / d, 0.0f, (float)cmax) : 0.0f;
            const float b = dmin > 0.0f ? QK_FN(clampf)(m[j] / dmin, 0.0f, (float)cmax) : 0.0f;
            /* floor and ceiling of each; with a zero d or dmin the code is moot */
            const int a0 = (int)a, b0 = (int)b, na = d > 0.0f ? 2 : 1, nb = dmin > 0.0f ? 2 : 1;
            for (int da = 0; da < na; da++)
                for (int db = 0; db < nb; db++) {
                    const int sc = a0 + da > cmax ? cmax : a0 + da;
                    const int mn = b0 + db > cmax ? cmax : b0 + db;
                    const int k = sc * 64 + mn;
                    int seen = 0;
                    for (int t = 0; t < n_tried[j]; t++)
                        seen |= tried[j][t] == k;
                    if (seen)
                        continue;
                    tried[j][n_tried[j]++] = k;
                    job[nj] = (qk_job){in->x + j * n, in->w + j * n, d * (float)sc, dmin * (float)mn};
                    owner[nj] = j;
                    key[nj++] = k;
                }
        }
        float err[QK_JOBS_MAX];
        QK_FN(err_jobs)(job, nj, n, sh->nmax, err);
        for (int q = 0; q < nj; q++) { /* each sub-block's candidates in their order */
            const int j = owner[q];
            if (err[q] < best[j]) {
                best[j] = err[q];
                bsc[j] = key[q] / 64;
                bmn[j] = key[q] % 64;
            }
        }
        if (round == 1)
            break;
        /* The least-squares scale and min for the best levels so far. */
        qk_job rj[16];
        for (int j = 0; j < sh->n_sub; j++)
            rj[j] = (qk_job){in->x + j * n, in->w + j * n, dmin * (float)bmn[j], QK_FN(inv_or_zero)(d * (float)bsc[j])};
        float sl[16], sl2[16], sxl[16];
        QK_FN(sums_levels_jobs)(rj, sh->n_sub, n, sh->nmax, sl, sl2, sxl);
        for (int j = 0; j < sh->n_sub; j++)
            QK_FN(solve)(fixed[j], sl[j], sl2[j], sxl[j], &s[j], &m[j]);
    }
    float total = 0.0f;
    for (int j = 0; j < sh->n_sub; j++) {
        QK_FN(levels_affine)(in->x + j * n, n, sh->nmax, d * (float)bsc[j], dmin * (float)bmn[j], r->L + j * n);
        r->sc[j] = (uint8_t)bsc[j];
        r->mn[j] = (uint8_t)bmn[j];
        total += best[j];
    }
    return total;
}

/* Stage 4: d and dmin by least squares with codes and levels fixed; the
 * sub-blocks' sums two at a time, added to the totals in order. */
static void QK_FN(refit_d)(const qk_affine_shape *sh, const qk_block_in *in, const qk_affine_result *r, float *d,
                           float *dmin)
{
    double A = 0, B = 0, C = 0, P = 0, Q = 0;
    for (int j = 0; j < sh->n_sub; j += 2) {
        const int jb = j + 1 < sh->n_sub ? j + 1 : j, oa = j * sh->sub_len, ob = jb * sh->sub_len;
        const qp sc = qp_set2((float)r->sc[j], (float)r->sc[jb]), mn = qp_set2((float)r->mn[j], (float)r->mn[jb]);
        qp aa = qp_zero(), ax = qp_zero(), ab = qp_zero(), bx = qp_zero(), bb = qp_zero();
        for (int i = 0; i < sh->sub_len; i += 8) {
            const qp w = qp_load2(in->w + oa + i, in->w + ob + i), x = qp_load2(in->x + oa + i, in->x + ob + i);
            const qp a = qp_mul(sc, qp_load2_u8(r->L + oa + i, r->L + ob + i));
            const qp wa = qp_mul(w, a), wm = qp_mul(w, mn);
            aa = qp_add(aa, qp_mul(wa, a));
            ax = qp_add(ax, qp_mul(wa, x));
            ab = qp_add(ab, qp_mul(wa, mn));
            bx = qp_add(bx, qp_mul(wm, x));
            bb = qp_add(bb, qp_mul(wm, mn));
        }
        float sa[5], sb[5];
        qp_hsum2(aa, &sa[0], &sb[0]);
        qp_hsum2(ax, &sa[1], &sb[1]);
        qp_hsum2(ab, &sa[2], &sb[2]);
        qp_hsum2(bx, &sa[3], &sb[3]);
        qp_hsum2(bb, &sa[4], &sb[4]);
        for (int t = 0; t < 1 + (jb > j); t++) {
            const float *v = t ? sb : sa;
            A += v[0];
            P += v[1];
            C += v[2];
            Q += v[3];
            B += v[4];
        }
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

static void QK_FN(qk_affine_quantize)(const qk_affine_shape *sh, const qk_block_in *in, qk_affine_result *out)
{
    float s[16], m[16], hs[16], hm[16];
    qk_fixed fixed[16];
    float smax = 0.0f, mmax = 0.0f;
    QK_FN(fit_all)(sh, in, fixed, s, m, hs, hm);
    for (int j = 0; j < sh->n_sub; j++) {
        smax = s[j] > smax ? s[j] : smax;
        mmax = m[j] > mmax ? m[j] : mmax;
    }
    const float dc[2] = {QK_FN(fit_codes)(s, hs, sh->n_sub, sh->code_max), smax / (float)sh->code_max};
    const float mc[2] = {QK_FN(fit_codes)(m, hm, sh->n_sub, sh->code_max), mmax / (float)sh->code_max};

    qk_affine_result cur;
    float best = FLT_MAX;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            if ((a && dc[1] == dc[0]) || (b && mc[1] == mc[0]))
                continue;
            cur.d_bits = qk_to_f16(dc[a], &cur.d);
            cur.dmin_bits = qk_to_f16(mc[b], &cur.dmin);
            const float e = QK_FN(codes_all)(sh, in, fixed, s, m, cur.d, cur.dmin, &cur);
            if (e < best || (a == 0 && b == 0)) { /* the first always sets *out */
                best = e;
                *out = cur;
            }
        }
    for (int it = 0; it < 3; it++) {
        float d = out->d, dmin = out->dmin;
        QK_FN(refit_d)(sh, in, out, &d, &dmin);
        cur.d_bits = qk_to_f16(d, &cur.d);
        cur.dmin_bits = qk_to_f16(dmin, &cur.dmin);
        if (cur.d_bits == out->d_bits && cur.dmin_bits == out->dmin_bits)
            break;
        const float e = QK_FN(codes_all)(sh, in, fixed, s, m, cur.d, cur.dmin, &cur);
        if (!(e < best))
            break;
        best = e;
        *out = cur;
    }
}
