/* Causal self-attention for a whole sequence at once. A work item is one
 * query head and a block of ATT_QB query positions: scores for the block
 * against every earlier key (one GEMM through kernels/gemm.h), a masked
 * softmax per row, then the probabilities times V (a second GEMM). Query
 * heads share K/V heads in groups of n_head / n_head_kv (GQA).
 *
 * As llama.cpp's flash attention on the CPU, the probabilities are left
 * unnormalized through the V product and each row is divided by its sum at
 * the end. */
#include "verify/model_internal.h"

#include "core/threads.h"
#include "kernels/gemm.h"

#include <math.h>

#define ATT_QB 64 /* query rows per work item */

int64_t ts_attention_scratch_floats(const ts_config *c, int64_t n)
{
    int64_t panel_k = (c->head_dim > n ? c->head_dim : n) * TS_GEMM_NR;
    return ATT_QB * n + panel_k;
}

typedef struct {
    ts_model *m;
    int64_t n_seq, n, r0, n_qblocks;
} att_ctx;
/* Item order: last query blocks first (they are the longest, which balances
 * the threads), then sequence, then head. */

static ts_status att_item(void *ctx, int64_t item, int thread)
{
    const att_ctx *a = ctx;
    const ts_config *c = &a->m->c;
    const ts_run_state *s = &a->m->s;
    const int64_t hd = c->head_dim, hdv = c->head_dim_v, n = a->n;
    const int64_t ldq = c->n_head * hd, ldk = c->n_head_kv * hd, ldv = c->n_head_kv * hdv, ldo = c->n_head * hdv;
    const int64_t seq = item / c->n_head % a->n_seq;
    const int64_t h = item % c->n_head, qb = a->n_qblocks - 1 - item / (c->n_head * a->n_seq);
    const int64_t kvh = h / (c->n_head / c->n_head_kv);
    const int64_t i0 = a->r0 + qb * ATT_QB, i1 = i0 + ATT_QB < n ? i0 + ATT_QB : n, rows = i1 - i0;
    const int64_t n_kv = i1; /* causal: keys 0 .. i1-1 */
    float *S = s->attn + (int64_t)thread * s->attn_per_thread; /* rows x n_kv scores, ld n_kv */
    float *panel = S + ATT_QB * n;
    /* this sequence's rows */
    const float *q = s->q + seq * n * ldq, *k = s->k + seq * n * ldk, *v = s->v + seq * n * ldv;
    float *att = s->att + seq * n * ldo;

    /* S = Q K^T, one panel of TS_GEMM_NR keys at a time. */
    for (int64_t j0 = 0; j0 < n_kv; j0 += TS_GEMM_NR) {
        int nr = (int)(n_kv - j0 < TS_GEMM_NR ? n_kv - j0 : TS_GEMM_NR);
        ts_k_gemm_pack(k + j0 * ldk + kvh * hd, ldk, nr, hd, panel);
        ts_k_gemm_panel(q + i0 * ldq + h * hd, ldq, rows, panel, hd, nr, S + j0, n_kv, false);
    }
    /* Masked softmax, unnormalized: p = exp(s * scale - max) for keys <= i. */
    float inv_sum[ATT_QB];
    for (int64_t r = 0; r < rows; r++) {
        float *row = S + r * n_kv;
        const int64_t last = i0 + r; /* the query's own position */
        float max = -INFINITY;
        for (int64_t j = 0; j <= last; j++) {
            row[j] *= c->kq_scale;
            max = row[j] > max ? row[j] : max;
        }
        double sum = 0.0;
        for (int64_t j = 0; j <= last; j++) {
            row[j] = expf(row[j] - max);
            sum += row[j];
        }
        for (int64_t j = last + 1; j < n_kv; j++)
            row[j] = 0.0f;
        inv_sum[r] = sum > 0.0 ? (float)(1.0 / sum) : 0.0f;
    }
    /* out = P V, TS_GEMM_NR head dimensions at a time. */
    float *out = att + i0 * ldo + h * hdv;
    for (int64_t d0 = 0; d0 < hdv; d0 += TS_GEMM_NR) {
        int nr = (int)(hdv - d0 < TS_GEMM_NR ? hdv - d0 : TS_GEMM_NR);
        ts_k_gemm_pack_kmajor(v + kvh * hdv + d0, ldv, nr, n_kv, panel);
        ts_k_gemm_panel(S, n_kv, rows, panel, n_kv, nr, out + d0, ldo, false);
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t d = 0; d < hdv; d++)
            out[r * ldo + d] *= inv_sum[r];
    return TS_OK;
}

ts_status ts_attention(ts_model *m, int64_t n_seq, int64_t n, int64_t r0, ts_err *err)
{
    att_ctx a = {.m = m, .n_seq = n_seq, .n = n, .r0 = r0, .n_qblocks = (n - r0 + ATT_QB - 1) / ATT_QB};
    ts_status st = ts_parallel_for(m->n_threads, a.n_qblocks * n_seq * m->c.n_head, att_item, &a);
    if (st)
        return ts_fail(err, st, "attention failed (%s)", ts_status_name(st));
    return TS_OK;
}
