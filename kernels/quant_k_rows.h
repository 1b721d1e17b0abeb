/* Template: the q6_K super-block search (quant_q6k.c describes it) and the
 * q4_K / q5_K / q6_K row dequantizers, compiled once per ISA
 * (quant_simd.h). Before including: the qv / qp API and QK_FN. Defines
 * QK_FN(q6k_block) and QK_FN(dequantize_row_q{4,5,6}_k). */
#include <math.h>

#define Q6_SUB 16
#define Q6_NSUB (TS_QK_K / Q6_SUB)

/* ggml's grid: the largest |x| of a sub-block at level -(32 + 0.1 t), t in
 * [-9, 9]. (A coarser, wider grid, levels -20..-35, gave a lower weighted
 * error but cost 0.9% perplexity on qwen3moe-spm-9m's output.weight.) */
static const ts_kq_grid QK_FN(q6_grid) = {-9, 9, 0.1f};

/* ggml's weights for q6_K: the imatrix as is (ts_kq_weights: scaled, with a
 * floor); without one, or with a slice that has no positive finite entry,
 * x^2. */
static void QK_FN(q6_weights)(const float *x, const float *imatrix, float *w)
{
    int any = 0;
    for (int i = 0; imatrix && i < TS_QK_K; i++)
        any |= imatrix[i] > 0.f && imatrix[i] <= FLT_MAX;
    if (any) {
        ts_kq_weights(x, imatrix, TS_QK_K, 1, -1.f, w);
        return;
    }
    for (int i = 0; i < TS_QK_K; i += 8) {
        const qv v = qv_load(x + i);
        qv_store(w + i, qv_mul(v, v));
    }
}

/* ts_kq_search_sym (quant_legacy.c) with the grid points two at a time.
 * The integer rounding there and round(clamp(v)) here agree for |v| < 2^22,
 * which holds whenever the inverse scales are finite (|max| >= 1e-30 is far
 * more than enough); the rest goes to ts_kq_search_sym itself. */
static float QK_FN(search_sym)(const float *x, const float *w, int n, int nmax, const ts_kq_grid *grid)
{
    float amax = 0.f, max = 0.f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax == 0.f)
        return 0.f;
    if (amax < 1e-30f)
        return ts_kq_search_sym(x, w, n, nmax, grid);
    float wx[TS_QK_K];
    for (int i = 0; i < n; i += 8)
        qv_store(wx + i, qv_mul(qv_load(w + i), qv_load(x + i)));
    const qp lo = qp_set2((float)-nmax, (float)-nmax), hi = qp_set2((float)(nmax - 1), (float)(nmax - 1));
    double best = 0.;
    float best_d = 0.f;
    /* four grid points per pass (the last ones repeated to fill it), then
     * the choice in grid order */
    for (int t = grid->lo; t <= grid->hi; t += 4) {
        float isc[4];
        for (int k = 0; k < 4; k++)
            isc[k] = -((float)nmax + grid->step * (float)(t + k <= grid->hi ? t + k : grid->hi)) / max;
        const qp i0 = qp_set2(isc[0], isc[1]), i1 = qp_set2(isc[2], isc[3]);
        qp slx0 = qp_zero(), sl20 = qp_zero(), slx1 = qp_zero(), sl21 = qp_zero();
        for (int i = 0; i < n; i += 8) {
            const qp xv = qp_dup(x + i), wxv = qp_dup(wx + i), wv = qp_dup(w + i);
            const qp q0 = qp_round(qp_min(qp_max(qp_mul(i0, xv), lo), hi));
            const qp q1 = qp_round(qp_min(qp_max(qp_mul(i1, xv), lo), hi));
            slx0 = qp_add(slx0, qp_mul(wxv, q0));
            slx1 = qp_add(slx1, qp_mul(wxv, q1));
            sl20 = qp_add(sl20, qp_mul(qp_mul(wv, q0), q0));
            sl21 = qp_add(sl21, qp_mul(qp_mul(wv, q1), q1));
        }
        float v[8]; /* sum l x for the four points, then sum l^2 */
        qp_hsum8(slx0, slx1, sl20, sl21, v);
        for (int k = 0; k < 4 && t + k <= grid->hi; k++) {
            const double sumlx = v[k], suml2 = v[4 + k];
            /* The least-squares scale sumlx/suml2 lowers the error by
             * sumlx^2/suml2: keep the largest. */
            if (suml2 > 0. && sumlx * sumlx > best * suml2) {
                best = sumlx * sumlx / suml2;
                best_d = (float)(sumlx / suml2);
            }
        }
    }
    return best_d;
}

/* ts_kq_err_sym for four scales at once (no codes). Its round_clamp and
 * round(min(max(v, lo), hi)) agree for every v, NaN and inf included. */
static void QK_FN(err_sym4)(const float *x, const float *w, int n, int nmax, const float *d, float *e)
{
    float id[4];
    for (int k = 0; k < 4; k++)
        id[k] = d[k] != 0.f ? 1.f / d[k] : 0.f;
    const qp i0 = qp_set2(id[0], id[1]), i1 = qp_set2(id[2], id[3]), d0 = qp_set2(d[0], d[1]), d1 = qp_set2(d[2], d[3]);
    const qp lo = qp_set2((float)-nmax, (float)-nmax), hi = qp_set2((float)(nmax - 1), (float)(nmax - 1));
    qp acc0 = qp_zero(), acc1 = qp_zero();
    for (int i = 0; i < n; i += 8) {
        const qp xv = qp_dup(x + i), wv = qp_dup(w + i);
        const qp l0 = qp_round(qp_min(qp_max(qp_mul(i0, xv), lo), hi));
        const qp l1 = qp_round(qp_min(qp_max(qp_mul(i1, xv), lo), hi));
        const qp e0 = qp_sub(xv, qp_mul(d0, l0)), e1 = qp_sub(xv, qp_mul(d1, l1));
        acc0 = qp_add(acc0, qp_mul(qp_mul(wv, e0), e0));
        acc1 = qp_add(acc1, qp_mul(qp_mul(wv, e1), e1));
    }
    qp_hsum4(acc0, acc1, e);
}

/* The codes ts_kq_err_sym writes (offset by +nmax). */
static void QK_FN(codes_sym)(const float *x, int n, int nmax, float d, uint8_t *q)
{
    const qv id = qv_set1(d != 0.f ? 1.f / d : 0.f), lo = qv_set1((float)-nmax), hi = qv_set1((float)(nmax - 1));
    const qv off = qv_set1((float)nmax);
    for (int i = 0; i < n; i += 8)
        qv_store_u8(q + i, qv_add(qv_round(qv_min(qv_max(qv_mul(id, qv_load(x + i)), lo), hi)), off));
}

/* Codes L (0..63, value L - 32) and int8 scales for one super-block;
 * returns the fp16 bits of d, or 0 for a block that quantizes to zero. */
static uint16_t QK_FN(q6k_block)(const float *src, const float *imatrix, uint8_t *L, int8_t *sc)
{
    float x[TS_QK_K], w[TS_QK_K], scales[Q6_NSUB];
    int e;
    if (!ts_kq_load(src, TS_QK_K, x, &e))
        return 0;
    QK_FN(q6_weights)(x, imatrix, w);
    float max_scale = 0.f, amax_scale = 0.f;
    for (int ib = 0; ib < Q6_NSUB; ib++) {
        scales[ib] = QK_FN(search_sym)(x + ib * Q6_SUB, w + ib * Q6_SUB, Q6_SUB, 32, &QK_FN(q6_grid));
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
    for (int ib = 0; ib < Q6_NSUB; ib++) {
        const float *xb = x + ib * Q6_SUB, *wb = w + ib * Q6_SUB;
        const int c0 = ts_kq_round_clamp(id * scales[ib], -128, 127);
        /* the int8 codes next to the ideal one, in order c0 - 1, c0, c0 + 1 */
        int cand[3] = {c0, c0, c0}, n_cand = 0; /* c0 itself is always one */
        for (int c = c0 - 1; c <= c0 + 1; c++)
            if (c >= -128 && c <= 127)
                cand[n_cand++] = c;
        float dc[4], err[4];
        for (int k = 0; k < 4; k++)
            dc[k] = d * (float)cand[k < n_cand ? k : 0];
        QK_FN(err_sym4)(xb, wb, Q6_SUB, 32, dc, err);
        float best = INFINITY;
        int bc = c0;
        for (int k = 0; k < n_cand; k++)
            if (err[k] < best) {
                best = err[k];
                bc = cand[k];
            }
        sc[ib] = (int8_t)bc;
        QK_FN(codes_sym)(xb, Q6_SUB, 32, d * (float)bc, L + ib * Q6_SUB);
    }
    return h;
}

#ifndef QK_NO_DEQUANT /* the scalar instance keeps the plain reference dequantizers */
/* y[i] = d1 * l[i] - m1 for 32 levels, two roundings as ggml. */
static inline void QK_FN(affine32)(const uint8_t *lv, float d1, float m1, float *y)
{
    const qv vd = qv_set1(d1), vm = qv_set1(m1);
    for (int i = 0; i < 32; i += 8)
        qv_store(y + i, qv_sub(qv_mul(vd, qv_load_u8(lv + i)), vm));
}

/* Blocks with an inf or NaN d or dmin go to the scalar row function
 * (bytes 0..3 of a q4_K / q5_K block). */
static void QK_FN(dequant_q45)(const uint8_t *blk, int five, float *y)
{
    if (qk_f16_nonfinite(blk) || qk_f16_nonfinite(blk + 2)) {
        (five ? ts_kq_scalar_dequantize_row_q5_k : ts_kq_scalar_dequantize_row_q4_k)(blk, y, TS_QK_K);
        return;
    }
    const float d = qk_load_f16(blk), dmin = qk_load_f16(blk + 2);
    uint8_t sc[8], mn[8], lv[TS_QK_K];
    ts_k_unpack_scales_q4_k(blk + 4, sc, mn);
    const uint8_t *qs = blk + (five ? 48 : 16), *qh = blk + 16;
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            lv[64 * c + l] = qs[32 * c + l] & 0xf;
            lv[64 * c + 32 + l] = qs[32 * c + l] >> 4;
        }
    if (five)
        for (int j = 0; j < 8; j++)
            for (int l = 0; l < 32; l++)
                lv[32 * j + l] |= (uint8_t)(((qh[l] >> j) & 1) << 4);
    for (int j = 0; j < 8; j++)
        QK_FN(affine32)(lv + 32 * j, d * (float)sc[j], dmin * (float)mn[j], y + 32 * j);
}

static void QK_FN(dequantize_row_q4_k)(const void *src, float *dst, int64_t n)
{
    for (int64_t b = 0; b < n / TS_QK_K; b++)
        QK_FN(dequant_q45)((const uint8_t *)src + b * TS_Q4_K_BLOCK_BYTES, 0, dst + b * TS_QK_K);
}

static void QK_FN(dequantize_row_q5_k)(const void *src, float *dst, int64_t n)
{
    for (int64_t b = 0; b < n / TS_QK_K; b++)
        QK_FN(dequant_q45)((const uint8_t *)src + b * TS_Q5_K_BLOCK_BYTES, 1, dst + b * TS_QK_K);
}

/* (d * scale) * (code - 32), as ggml; the layout is in quant_q6k.c. */
static void QK_FN(dequantize_row_q6_k)(const void *src, float *y, int64_t n)
{
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / TS_QK_K; i++, b += TS_Q6_K_BLOCK_BYTES, y += TS_QK_K) {
        if (qk_f16_nonfinite(b + TS_Q6_K_BLOCK_BYTES - 2)) {
            ts_kq_scalar_dequantize_row_q6_k(b, y, TS_QK_K);
            continue;
        }
        const uint8_t *ql = b, *qh = b + TS_QK_K / 2;
        const int8_t *sc = (const int8_t *)(b + TS_QK_K / 2 + TS_QK_K / 4);
        const float d = qk_load_f16(b + TS_Q6_K_BLOCK_BYTES - 2);
        uint8_t q[TS_QK_K];
        for (int half = 0; half < 2; half++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *lo = ql + 64 * half, h = qh[32 * half + l];
                uint8_t *o = q + 128 * half;
                o[l] = (uint8_t)((lo[l] & 0xf) | ((h & 3) << 4));
                o[l + 32] = (uint8_t)((lo[l + 32] & 0xf) | (((h >> 2) & 3) << 4));
                o[l + 64] = (uint8_t)((lo[l] >> 4) | (((h >> 4) & 3) << 4));
                o[l + 96] = (uint8_t)((lo[l + 32] >> 4) | (((h >> 6) & 3) << 4));
            }
        const qv k32 = qv_set1(32.f);
        for (int j = 0; j < Q6_NSUB; j++) { /* output j*16.. uses scale j */
            const qv ds = qv_set1(d * (float)sc[j]);
            for (int l = 0; l < Q6_SUB; l += 8)
                qv_store(y + 16 * j + l, qv_mul(ds, qv_sub(qv_load_u8(q + 16 * j + l), k32)));
        }
    }
}

#endif

#undef Q6_SUB
#undef Q6_NSUB
