/* gpt-oss (gpt-oss-20b / -120b), as the official modeling code computes it
 * (transformers' modeling_gpt_oss.py; llama.cpp's src/models/openai-moe.cpp
 * runs the same graph):
 *
 *   attention  forward.c's block (Q/K/V/O biases, NeoX RoPE with YaRN) with
 *              one learned sink logit per head that joins each softmax's
 *              denominator and carries no value, and on the sliding-window
 *              layers (even layers unless attention.sliding_window_pattern
 *              lists them) keys limited to the last sliding_window positions
 *   router     logits = W x + b; the n_expert_used largest logits; their
 *              softmax are the weights
 *   experts    g = W_g x + b_g, u = W_u x + b_u (the checkpoint's gate/up
 *              rows, de-interleaved by convert), then
 *              min(g, 7) * sigmoid(1.702 * min(g, 7)) * (clamp(u, -7, 7) + 1)
 *              through W_d + b_d; forward.c's ts_fw_moe_experts runs them
 *
 * YaRN: the official config says truncate: false, so the correction range
 * [low, high] keeps its fractional ends; ggml always floors / ceils it, the
 * one place where llama.cpp's logits differ from the official code's
 * (docs/perplexity.md, "gpt-oss"). A GGUF may say otherwise with the bool
 * {arch}.rope.scaling.yarn_truncate; llama.cpp's converter writes none. */
#include "verify/model_internal.h"

#include "core/threads.h"
#include "kernels/gemm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATT_QB 64 /* query rows per work item, as attention.c */

ts_status ts_gptoss_config(ts_model *m, ts_err *err)
{
    ts_config *c = &m->c;
    const char *path = m->g->file.path;
    ts_status st;
    if (c->n_expert < 1 || c->n_ff_exp < 1)
        return ts_fail(err, TS_ERR_FORMAT, "%s: gpt-oss needs expert_count and expert_feed_forward_length > 0", path);
    if (c->head_dim_v != c->head_dim)
        return ts_fail(err, TS_ERR_FORMAT, "%s: gpt-oss: value_length %lld differs from key_length %lld", path,
                       (long long)c->head_dim_v, (long long)c->head_dim);
    if ((st = ts_ml_int(m, "attention.sliding_window", true, 1, INT32_MAX, &c->n_swa, err)) ||
        (st = ts_ml_float(m, "rope.scaling.yarn_beta_fast", false, &c->rope_beta_fast, err)) ||
        (st = ts_ml_float(m, "rope.scaling.yarn_beta_slow", false, &c->rope_beta_slow, err)))
        return st;
    char k[128];
    snprintf(k, sizeof k, "%s.rope.scaling.yarn_truncate", c->arch_name);
    bool truncate = false; /* the release's config.json: truncate false */
    if (ts_gguf_find_kv(m->g, k) && !ts_gguf_get_bool(m->g, k, &truncate))
        return ts_fail(err, TS_ERR_FORMAT, "%s: key %s: expected a bool", path, k);
    c->rope_yarn_exact = !truncate;
    return TS_OK;
}

/* Whether layer il uses the sliding window: attention.sliding_window_pattern
 * as an array of one flag per layer, or an integer period p (layer il slides
 * when il % p < p - 1; 0: every layer), else llama.cpp's default period 2. */
static ts_status is_swa(const ts_model *m, int64_t il, bool *out, ts_err *err)
{
    char k[128];
    snprintf(k, sizeof k, "%s.attention.sliding_window_pattern", m->c.arch_name);
    const ts_gguf_kv *kv = ts_gguf_find_kv(m->g, k);
    int64_t period = 2;
    if (kv && kv->value.type == TS_GGUF_ARRAY) {
        const ts_gguf_value *v = &kv->value;
        if ((int64_t)v->arr.n != m->c.n_layer ||
            (v->arr.elem_type != TS_GGUF_BOOL && v->arr.elem_type != TS_GGUF_UINT8 && v->arr.elem_type != TS_GGUF_INT8))
            return ts_fail(err, TS_ERR_FORMAT, "%s: key %s: expected %lld bools", m->g->file.path, k,
                           (long long)m->c.n_layer);
        *out = ((const uint8_t *)v->arr.data)[il] != 0;
        return TS_OK;
    }
    if (kv && (!ts_gguf_get_i64(m->g, k, &period) || period < 0 || period > INT32_MAX))
        return ts_fail(err, TS_ERR_FORMAT, "%s: key %s: expected a layer list or a period", m->g->file.path, k);
    *out = period == 0 || il % period < period - 1;
    return TS_OK;
}

/* An [n_in, n_out] tensor of per-expert biases as n_out rows of floats. */
static ts_status load_rows(ts_model *m, const char *name, int64_t n_in, int64_t n_out, float **out, ts_err *err)
{
    ts_weight w;
    ts_status st = ts_ml_weight(m, name, n_in, n_out, 1, true, &w, err);
    if (st)
        return st;
    float *v = malloc((size_t)(n_in * n_out) * sizeof *v);
    if (!v)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory for %s", name);
    for (int64_t r = 0; r < n_out; r++)
        w.qt->dequantize_row(w.data + (uint64_t)r * w.row_bytes, v + r * n_in, n_in);
    for (int64_t i = 0; i < n_in * n_out; i++)
        if (!isfinite(v[i])) {
            free(v);
            return ts_fail(err, TS_ERR_FORMAT, "%s: tensor %s element %lld is not finite", m->g->file.path, name,
                           (long long)i);
        }
    *out = v;
    return ts_ml_keep(m, v, err);
}

ts_status ts_gptoss_load_layer(ts_model *m, int64_t il, ts_err *err)
{
    const ts_config *c = &m->c;
    ts_layer_weights *l = &m->w.layers[il];
    const int64_t nd = c->n_embd, ne = c->n_expert, nf = c->n_ff_exp;
    const int64_t nq = c->n_head * c->head_dim, nk = c->n_head_kv * c->head_dim;
    char n[128];
    ts_status st;
#define NAME(s) (snprintf(n, sizeof n, "blk.%lld." s, (long long)il), n)
    if ((st = ts_ml_vec(m, NAME("attn_norm.weight"), nd, true, &l->attn_norm, err)) ||
        (st = ts_ml_vec(m, NAME("post_attention_norm.weight"), nd, true, &l->ffn_norm, err)) ||
        (st = ts_ml_weight(m, NAME("attn_q.weight"), nd, nq, 1, true, &l->wq, err)) ||
        (st = ts_ml_weight(m, NAME("attn_k.weight"), nd, nk, 1, true, &l->wk, err)) ||
        (st = ts_ml_weight(m, NAME("attn_v.weight"), nd, nk, 1, true, &l->wv, err)) ||
        (st = ts_ml_weight(m, NAME("attn_output.weight"), nq, nd, 1, true, &l->wo, err)) ||
        (st = ts_ml_vec(m, NAME("attn_q.bias"), nq, false, &l->bq, err)) ||
        (st = ts_ml_vec(m, NAME("attn_k.bias"), nk, false, &l->bk, err)) ||
        (st = ts_ml_vec(m, NAME("attn_v.bias"), nk, false, &l->bv, err)) ||
        (st = ts_ml_vec(m, NAME("attn_output.bias"), nd, true, &l->bo, err)) ||
        (st = ts_ml_vec(m, NAME("attn_sinks.weight"), c->n_head, true, &l->attn_sinks, err)) ||
        (st = ts_ml_weight(m, NAME("ffn_gate_inp.weight"), nd, ne, 1, true, &l->gate_inp, err)) ||
        (st = ts_ml_vec(m, NAME("ffn_gate_inp.bias"), ne, true, &l->gate_inp_b, err)) ||
        (st = ts_ml_weight(m, NAME("ffn_gate_exps.weight"), nd, nf, ne, true, &l->gate_exps, err)) ||
        (st = ts_ml_weight(m, NAME("ffn_up_exps.weight"), nd, nf, ne, true, &l->up_exps, err)) ||
        (st = ts_ml_weight(m, NAME("ffn_down_exps.weight"), nf, nd, ne, true, &l->down_exps, err)) ||
        (st = load_rows(m, NAME("ffn_gate_exps.bias"), nf, ne, &l->gate_exps_b, err)) ||
        (st = load_rows(m, NAME("ffn_up_exps.bias"), nf, ne, &l->up_exps_b, err)) ||
        (st = load_rows(m, NAME("ffn_down_exps.bias"), nd, ne, &l->down_exps_b, err)))
        return st;
#undef NAME
    l->moe = true;
    return is_swa(m, il, &l->swa, err);
}

void ts_gptoss_swiglu(float *gate, const float *up, int64_t n)
{
    const float alpha = 1.702f, limit = 7.0f; /* fixed by the architecture (convert refuses others) */
    for (int64_t i = 0; i < n; i++) {
        const float x = fminf(gate[i], limit), y = fminf(fmaxf(up[i], -limit), limit);
        gate[i] = x / (1.0f + expf(alpha * -x)) * (y + 1.0f);
    }
}

ts_status ts_gptoss_ffn(ts_model *m, const ts_layer_weights *l, int64_t rows, ts_err *err)
{
    const ts_config *c = &m->c;
    ts_run_state *s = &m->s;
    const int64_t ne = c->n_expert, ku = c->n_expert_used;
    ts_mm_job router = {&l->gate_inp, 0, s->xb, rows, s->router};
    ts_status st = ts_mm_run(m, &router, 1, err);
    if (st)
        return st;
    for (int64_t t = 0; t < rows; t++) {
        float *p = s->router + t * ne, *w = s->sel_w + t * ku;
        int32_t *sel = s->sel + t * ku;
        for (int64_t e = 0; e < ne; e++)
            p[e] += l->gate_inp_b[e];
        for (int64_t k = 0; k < ku; k++) { /* largest first, lower index on ties */
            int32_t best = -1;
            for (int64_t e = 0; e < ne; e++) {
                bool used = false;
                for (int64_t q = 0; q < k; q++)
                    used |= sel[q] == e;
                if (!used && (best < 0 || p[e] > p[best]))
                    best = (int32_t)e;
            }
            sel[k] = best;
        }
        /* ggml_soft_max over the chosen logits: sel[0] holds the largest */
        double sum = 0.0;
        for (int64_t k = 0; k < ku; k++)
            sum += (w[k] = expf(p[sel[k]] - p[sel[0]]));
        const float inv = (float)(1.0 / sum);
        for (int64_t k = 0; k < ku; k++) {
            w[k] *= inv;
            if (c->expert_weights_scale != 0.0f && c->expert_weights_scale != 1.0f) /* as build_moe_ffn */
                w[k] *= c->expert_weights_scale;
        }
    }
    return ts_fw_moe_experts(m, l, rows, err);
}

/* ---- attention with sinks and a sliding window ---- */

typedef struct {
    ts_model *m;
    const ts_layer_weights *l;
    int64_t n_seq, n, r0, n_qblocks, window; /* window 0: full causal */
} att_ctx;

/* One query head, one block of ATT_QB query rows, as attention.c's item:
 * S = Q K^T over the keys the block can see, a masked softmax whose
 * denominator includes exp(sink), then S V. Keys earlier than the window of
 * the block's first row are never read. */
static ts_status att_item(void *ctx, int64_t item, int thread)
{
    const att_ctx *a = ctx;
    const ts_config *c = &a->m->c;
    const ts_run_state *s = &a->m->s;
    const int64_t hd = c->head_dim, n = a->n;
    const int64_t ldq = c->n_head * hd, ldk = c->n_head_kv * hd, ldo = c->n_head * hd;
    const int64_t seq = item / c->n_head % a->n_seq;
    const int64_t h = item % c->n_head, qb = a->n_qblocks - 1 - item / (c->n_head * a->n_seq);
    const int64_t kvh = h / (c->n_head / c->n_head_kv);
    const int64_t i0 = a->r0 + qb * ATT_QB, i1 = i0 + ATT_QB < n ? i0 + ATT_QB : n, rows = i1 - i0;
    const int64_t j0 = a->window && i0 - a->window + 1 > 0 ? i0 - a->window + 1 : 0, n_kv = i1 - j0;
    float *S = s->attn + (int64_t)thread * s->attn_per_thread; /* rows x n_kv, ld n_kv */
    float *panel = S + ATT_QB * n;
    const float *q = s->q + seq * n * ldq, *k = s->k + (seq * n + j0) * ldk, *v = s->v + (seq * n + j0) * ldk;
    float *att = s->att + seq * n * ldo;
    const float sink = a->l->attn_sinks[h];

    for (int64_t jb = 0; jb < n_kv; jb += TS_GEMM_NR) {
        int nr = (int)(n_kv - jb < TS_GEMM_NR ? n_kv - jb : TS_GEMM_NR);
        ts_k_gemm_pack(k + jb * ldk + kvh * hd, ldk, nr, hd, panel);
        ts_k_gemm_panel(q + i0 * ldq + h * hd, ldq, rows, panel, hd, nr, S + jb, n_kv, false);
    }
    float inv_sum[ATT_QB];
    for (int64_t r = 0; r < rows; r++) {
        float *row = S + r * n_kv;
        const int64_t last = i0 + r - j0; /* the query's own position, as a column */
        const int64_t first = a->window && last - a->window + 1 > 0 ? last - a->window + 1 : 0;
        float max = sink;
        for (int64_t j = first; j <= last; j++) {
            row[j] *= c->kq_scale;
            max = row[j] > max ? row[j] : max;
        }
        double sum = expf(sink - max);
        for (int64_t j = 0; j < first; j++)
            row[j] = 0.0f;
        for (int64_t j = first; j <= last; j++) {
            row[j] = expf(row[j] - max);
            sum += row[j];
        }
        for (int64_t j = last + 1; j < n_kv; j++)
            row[j] = 0.0f;
        inv_sum[r] = (float)(1.0 / sum); /* sum >= 1: the largest term is exp(0) */
    }
    float *out = att + i0 * ldo + h * hd;
    for (int64_t d0 = 0; d0 < hd; d0 += TS_GEMM_NR) {
        int nr = (int)(hd - d0 < TS_GEMM_NR ? hd - d0 : TS_GEMM_NR);
        ts_k_gemm_pack_kmajor(v + kvh * hd + d0, ldk, nr, n_kv, panel);
        ts_k_gemm_panel(S, n_kv, rows, panel, n_kv, nr, out + d0, ldo, false);
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t d = 0; d < hd; d++)
            out[r * ldo + d] *= inv_sum[r];
    return TS_OK;
}

ts_status ts_gptoss_attention(ts_model *m, const ts_layer_weights *l, int64_t n_seq, int64_t n, int64_t r0,
                              ts_err *err)
{
    const ts_config *c = &m->c;
    /* ts_run_state_reserve sized the scratch for attention.c's items, which these match */
    if (m->s.attn_per_thread < ATT_QB * n + (c->head_dim > n ? c->head_dim : n) * TS_GEMM_NR)
        return ts_fail(err, TS_ERR_INTERNAL, "attention scratch too small for %lld tokens", (long long)n);
    att_ctx a = {.m = m, .l = l, .n_seq = n_seq, .n = n, .r0 = r0, .n_qblocks = (n - r0 + ATT_QB - 1) / ATT_QB,
                 .window = l->swa ? c->n_swa : 0};
    ts_status st = ts_parallel_for(m->n_threads, a.n_qblocks * n_seq * c->n_head, att_item, &a);
    if (st)
        return ts_fail(err, st, "attention failed (%s)", ts_status_name(st));
    return TS_OK;
}
