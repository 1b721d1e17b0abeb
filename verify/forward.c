/* The forward pass, top to bottom: embed, then per layer RMSNorm ->
 * Q/K/V (+biases, q/k norms) -> RoPE -> causal attention -> output
 * projection -> residual -> RMSNorm -> SwiGLU FFN or routed experts ->
 * residual, then the final norm and the output matrix. Every step works on
 * all tokens of the sequence at once (one row per token).
 *
 * deepseek2's MLA, the moe2 routing, glm4moe's layers and gpt-oss's sinks,
 * windows and router come from forward_<arch>.c.
 *
 * Elementwise steps copy the arithmetic of llama.cpp's graph and ggml's CPU
 * ops (sums of squares in double, RoPE angles advanced by repeated float
 * multiplication, ...) so results agree with it to rounding. */
#include "verify/model_internal.h"

#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ggml_rms_norm followed by ggml_mul with the weight. */
static void rmsnorm(float *o, const float *x, const float *w, int64_t n, float eps)
{
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)(x[i] * x[i]);
    const float mean = (float)(ss / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++)
        o[i] = (x[i] * scale) * w[i];
}

static void rmsnorm_rows(float *o, const float *x, const float *w, int64_t rows, int64_t n, float eps)
{
    for (int64_t r = 0; r < rows; r++)
        rmsnorm(o + r * n, x + r * n, w, n, eps);
}

/* ---- RoPE, as ggml_rope_ext on the CPU (ggml-cpu/ops.cpp) ---- */

static float yarn_corr_dim(int64_t n_dims, int64_t n_ctx_orig, float n_rot, float base)
{
    return (float)n_dims * logf((float)n_ctx_orig / (n_rot * 2 * (float)M_PI)) / (2 * logf(base));
}

/* cos/sin pairs for every position and rotated pair: cs[p * n_rot + 2i]. */
static void rope_cache(const ts_config *c, const float *freq_factors, int64_t n, float *cs)
{
    const float theta_scale = powf(c->rope_base, -2.0f / (float)c->n_rot);
    float lo = yarn_corr_dim(c->n_rot, c->rope_n_ctx_orig, c->rope_beta_fast, c->rope_base);
    float hi = yarn_corr_dim(c->n_rot, c->rope_n_ctx_orig, c->rope_beta_slow, c->rope_base);
    if (!c->rope_yarn_exact) { /* ggml_rope_yarn_corr_dims rounds outwards */
        lo = floorf(lo);
        hi = ceilf(hi);
    }
    lo = fmaxf(0.0f, lo);
    hi = fminf((float)(c->n_rot - 1), hi);
    for (int64_t p = 0; p < n; p++) {
        float theta_extrap_base = (float)p;
        for (int64_t i0 = 0; i0 < c->n_rot; i0 += 2) {
            const float ff = freq_factors ? freq_factors[i0 / 2] : 1.0f;
            const float theta_extrap = theta_extrap_base / ff;
            const float theta_interp = c->rope_freq_scale * theta_extrap;
            float theta = theta_interp, mscale = c->rope_attn_factor;
            if (c->rope_ext_factor != 0.0f) {
                float y = ((float)(i0 / 2) - lo) / fmaxf(0.001f, hi - lo);
                float ramp = (1 - fminf(1.0f, fmaxf(0.0f, y))) * c->rope_ext_factor;
                theta = theta_interp * (1 - ramp) + theta_extrap * ramp;
                mscale *= 1.0f + 0.1f * logf(1.0f / c->rope_freq_scale);
            }
            cs[p * c->n_rot + i0] = cosf(theta) * mscale;
            cs[p * c->n_rot + i0 + 1] = sinf(theta) * mscale;
            theta_extrap_base *= theta_scale;
        }
    }
}

/* Rotates n_heads heads of head_dim in each of rows rows (ld floats apart),
 * row t at position t % n (sequences of n tokens one after the other).
 * Llama rotates adjacent pairs (ggml's "normal" mode; convert permuted Q/K
 * for it), Qwen pairs i and i + n_rot/2 (NeoX). */
void ts_fw_rope(const ts_config *c, const float *cs, float *x, int64_t rows, int64_t ld, int64_t n_heads,
                int64_t head_stride, int64_t n)
{
    const int64_t half = c->n_rot / 2;
    for (int64_t t = 0; t < rows; t++) {
        const float *pcs = cs + (t % n) * c->n_rot;
        for (int64_t h = 0; h < n_heads; h++) {
            float *v = x + t * ld + h * head_stride;
            for (int64_t i = 0; i < half; i++) {
                const float cos_t = pcs[2 * i], sin_t = pcs[2 * i + 1];
                float *a = c->rope_neox ? v + i : v + 2 * i;
                float *b = c->rope_neox ? v + i + half : v + 2 * i + 1;
                const float x0 = *a, x1 = *b;
                *a = x0 * cos_t - x1 * sin_t;
                *b = x0 * sin_t + x1 * cos_t;
            }
        }
    }
}

static void rope(const ts_config *c, const float *cs, float *x, int64_t rows, int64_t ld, int64_t n_heads, int64_t n)
{
    ts_fw_rope(c, cs, x, rows, ld, n_heads, c->head_dim, n);
}

static void add_bias(float *y, const float *b, int64_t rows, int64_t n)
{
    if (!b)
        return;
    for (int64_t t = 0; t < rows; t++)
        for (int64_t i = 0; i < n; i++)
            y[t * n + i] += b[i];
}

/* llama.cpp's default KV cache stores K and V as f16. */
static void round_f16(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += 1024) {
        uint16_t h[1024];
        size_t k = (size_t)(n - i < 1024 ? n - i : 1024);
        ts_k_f32_to_f16(x + i, h, k);
        ts_k_f16_to_f32(h, x + i, k);
    }
}

/* ggml_swiglu: silu(gate) * up, in place in gate. */
static void swiglu(float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

/* ---- one layer ---- */

/* Attention block for n_seq sequences of n tokens. With r0 > 0 (the last
 * layer when only the tail's logits are wanted) only rows r0..n-1 of each
 * sequence go on: they are packed to the front of att and x, and the block
 * returns their count in *rows. */
static ts_status attention_block(ts_model *m, const ts_layer_weights *l, int64_t n_seq, int64_t n, int64_t r0,
                                 int64_t *rows_out, ts_err *err)
{
    const ts_config *c = &m->c;
    ts_run_state *s = &m->s;
    const int64_t T = n_seq * n;
    const int64_t nq = c->n_head * c->head_dim, nk = c->n_head_kv * c->head_dim, nv = c->n_head_kv * c->head_dim_v;
    rmsnorm_rows(s->xb, s->x, l->attn_norm, T, c->n_embd, c->norm_eps);
    ts_mm_job qkv[3] = {{&l->wq, 0, s->xb, T, s->q}, {&l->wk, 0, s->xb, T, s->k}, {&l->wv, 0, s->xb, T, s->v}};
    ts_status st = ts_mm_run(m, qkv, 3, err);
    if (st)
        return st;
    add_bias(s->q, l->bq, T, nq);
    add_bias(s->k, l->bk, T, nk);
    add_bias(s->v, l->bv, T, nv);
    if (l->q_norm) {
        rmsnorm_rows(s->q, s->q, l->q_norm, T * c->n_head, c->head_dim, c->norm_eps);
        rmsnorm_rows(s->k, s->k, l->k_norm, T * c->n_head_kv, c->head_dim, c->norm_eps);
    }
    rope(c, s->rope_cs, s->q, T, nq, c->n_head, n);
    rope(c, s->rope_cs, s->k, T, nk, c->n_head_kv, n);
    if (m->kv_f16) {
        round_f16(s->k, T * nk);
        round_f16(s->v, T * nv);
    }
    st = c->arch == TS_MARCH_GPTOSS ? ts_gptoss_attention(m, l, n_seq, n, r0, err) : ts_attention(m, n_seq, n, r0, err);
    if (st)
        return st;
    const int64_t no = c->n_head * c->head_dim_v, per_seq = n - r0, rows = n_seq * per_seq;
    if (r0 > 0) /* pack; every destination row lies at or before its source */
        for (int64_t q = 0; q < n_seq; q++)
            for (int64_t i = 0; i < per_seq; i++) {
                const int64_t dst = q * per_seq + i, src = q * n + r0 + i;
                memmove(s->att + dst * no, s->att + src * no, (size_t)no * sizeof(float));
                memmove(s->x + dst * c->n_embd, s->x + src * c->n_embd, (size_t)c->n_embd * sizeof(float));
            }
    ts_mm_job out = {&l->wo, 0, s->att, rows, s->xb};
    if ((st = ts_mm_run(m, &out, 1, err)))
        return st;
    add_bias(s->xb, l->bo, rows, c->n_embd);
    for (int64_t i = 0; i < rows * c->n_embd; i++)
        s->x[i] += s->xb[i];
    *rows_out = rows;
    return TS_OK;
}

static ts_status dense_ffn(ts_model *m, const ts_layer_weights *l, int64_t rows, ts_err *err)
{
    const ts_config *c = &m->c;
    ts_run_state *s = &m->s;
    ts_mm_job gu[2] = {{&l->ffn_gate, 0, s->xb, rows, s->hb}, {&l->ffn_up, 0, s->xb, rows, s->hb2}};
    ts_status st = ts_mm_run(m, gu, 2, err);
    if (st)
        return st;
    add_bias(s->hb, l->ffn_gate_b, rows, c->n_ff);
    add_bias(s->hb2, l->ffn_up_b, rows, c->n_ff);
    swiglu(s->hb, s->hb2, rows * c->n_ff);
    ts_mm_job down = {&l->ffn_down, 0, s->hb, rows, s->ffn_out};
    if ((st = ts_mm_run(m, &down, 1, err)))
        return st;
    add_bias(s->ffn_out, l->ffn_down_b, rows, c->n_embd);
    return TS_OK;
}

/* Routed experts (llama.cpp's build_moe_ffn with softmax gating): softmax
 * over the router's logits, the top n_expert_used experts, their weights
 * renormalized to sum 1, each expert's SwiGLU run once over the batch of
 * tokens routed to it, outputs summed in slot order. */
static ts_status moe_ffn(ts_model *m, const ts_layer_weights *l, int64_t rows, ts_err *err)
{
    const ts_config *c = &m->c;
    ts_run_state *s = &m->s;
    const int64_t ne = c->n_expert, ku = c->n_expert_used;
    ts_mm_job router = {&l->gate_inp, 0, s->xb, rows, s->router};
    ts_status st = ts_mm_run(m, &router, 1, err);
    if (st)
        return st;
    for (int64_t t = 0; t < rows; t++) {
        float *p = s->router + t * ne;
        float max = -INFINITY;
        for (int64_t e = 0; e < ne; e++)
            max = fmaxf(max, p[e]);
        double sum = 0.0;
        for (int64_t e = 0; e < ne; e++)
            sum += (p[e] = expf(p[e] - max));
        const float inv = (float)(1.0 / sum);
        for (int64_t e = 0; e < ne; e++)
            p[e] *= inv;
        int32_t *sel = s->sel + t * ku;
        float *w = s->sel_w + t * ku;
        float wsum = 0.0f;
        for (int64_t k = 0; k < ku; k++) { /* top-k, lower index first on ties */
            int32_t best = -1;
            for (int64_t e = 0; e < ne; e++) {
                bool used = false;
                for (int64_t q = 0; q < k; q++)
                    used |= sel[q] == e;
                if (!used && (best < 0 || p[e] > p[best]))
                    best = (int32_t)e;
            }
            sel[k] = best;
            w[k] = p[best];
            wsum += w[k];
        }
        wsum = fmaxf(wsum, 6.103515625e-5f); /* llama.cpp's clamp against division by zero */
        for (int64_t k = 0; k < ku; k++) {
            w[k] /= wsum;
            if (c->expert_weights_scale != 0.0f && c->expert_weights_scale != 1.0f)
                w[k] *= c->expert_weights_scale;
        }
    }
    return ts_fw_moe_experts(m, l, rows, err);
}

ts_status ts_fw_moe_experts(ts_model *m, const ts_layer_weights *l, int64_t rows, ts_err *err)
{
    const ts_config *c = &m->c;
    ts_run_state *s = &m->s;
    const int64_t ne = c->n_expert, ku = c->n_expert_used, nf = c->n_ff_exp, nd = c->n_embd;
    ts_status st;
    int64_t *count = calloc((size_t)ne + 1, sizeof *count);
    ts_mm_job *jobs = malloc((size_t)(2 * ne) * sizeof *jobs);
    if (!count || !jobs) {
        free(count);
        free(jobs);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    for (int64_t i = 0; i < rows * ku; i++)
        count[s->sel[i] + 1]++;
    /* Counting sort of (token, slot) by expert: count[e] becomes expert e's first row. */
    for (int64_t e = 0; e < ne; e++)
        count[e + 1] += count[e];
    int64_t *fill = malloc((size_t)ne * sizeof *fill);
    if (!fill) {
        free(count);
        free(jobs);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    memcpy(fill, count, (size_t)ne * sizeof *fill);
    for (int64_t t = 0; t < rows; t++)
        for (int64_t k = 0; k < ku; k++) {
            int64_t row = fill[s->sel[t * ku + k]]++;
            s->sel_row[t * ku + k] = row;
            memcpy(s->moe_x + row * nd, s->xb + t * nd, (size_t)nd * sizeof(float));
        }
    int n_jobs = 0;
    for (int64_t e = 0; e < ne; e++) {
        int64_t r = count[e], cnt = count[e + 1] - count[e];
        if (!cnt)
            continue;
        jobs[n_jobs++] = (ts_mm_job){&l->gate_exps, (int)e, s->moe_x + r * nd, cnt, s->hb + r * nf};
        jobs[n_jobs++] = (ts_mm_job){&l->up_exps, (int)e, s->moe_x + r * nd, cnt, s->hb2 + r * nf};
    }
    if (!(st = ts_mm_run(m, jobs, n_jobs, err))) {
        for (int64_t e = 0; e < ne && l->gate_exps_b; e++) { /* gpt-oss: per-expert biases */
            add_bias(s->hb + count[e] * nf, l->gate_exps_b + e * nf, count[e + 1] - count[e], nf);
            add_bias(s->hb2 + count[e] * nf, l->up_exps_b + e * nf, count[e + 1] - count[e], nf);
        }
        if (c->arch == TS_MARCH_GPTOSS)
            ts_gptoss_swiglu(s->hb, s->hb2, rows * ku * nf);
        else
            swiglu(s->hb, s->hb2, rows * ku * nf);
        n_jobs = 0;
        for (int64_t e = 0; e < ne; e++) {
            int64_t r = count[e], cnt = count[e + 1] - count[e];
            if (cnt)
                jobs[n_jobs++] = (ts_mm_job){&l->down_exps, (int)e, s->hb + r * nf, cnt, s->ffn_out + r * nd};
        }
        st = ts_mm_run(m, jobs, n_jobs, err);
        for (int64_t e = 0; !st && e < ne && l->down_exps_b; e++)
            add_bias(s->ffn_out + count[e] * nd, l->down_exps_b + e * nd, count[e + 1] - count[e], nd);
    }
    free(count);
    free(fill);
    free(jobs);
    if (st)
        return st;
    /* Weighted sum in slot order into xb (free now), then copied to ffn_out's first rows. */
    for (int64_t t = 0; t < rows; t++) {
        float *o = s->xb + t * nd;
        for (int64_t k = 0; k < ku; k++) {
            const float w = s->sel_w[t * ku + k];
            const float *e = s->ffn_out + s->sel_row[t * ku + k] * nd;
            for (int64_t i = 0; i < nd; i++) {
                const float v = e[i] * w;
                o[i] = k == 0 ? v : o[i] + v;
            }
        }
    }
    memcpy(s->ffn_out, s->xb, (size_t)(rows * nd) * sizeof(float));
    return TS_OK;
}

/* Feed-forward block on the first rows rows of the residual stream. */
static ts_status ffn_block(ts_model *m, const ts_layer_weights *l, int64_t rows, ts_err *err)
{
    const ts_config *c = &m->c;
    ts_run_state *s = &m->s;
    rmsnorm_rows(s->xb, s->x, l->ffn_norm, rows, c->n_embd, c->norm_eps);
    ts_status st = !l->moe                      ? dense_ffn(m, l, rows, err)
                   : c->moe2                    ? ts_moe2_ffn(m, l, rows, err)
                   : c->arch == TS_MARCH_GPTOSS ? ts_gptoss_ffn(m, l, rows, err)
                                                : moe_ffn(m, l, rows, err);
    if (st)
        return st;
    for (int64_t i = 0; i < rows * c->n_embd; i++)
        s->x[i] += s->ffn_out[i];
    return TS_OK;
}

/* ---- the whole pass ---- */

ts_status ts_model_eval_seqs(ts_model *m, const int32_t *ids, int64_t n_seq, int64_t n, int64_t first,
                             float *logits, ts_err *err)
{
    const ts_config *c = &m->c;
    if (n_seq < 1 || n < 1 || first < 0 || first >= n || n_seq > INT64_MAX / n)
        return ts_fail(err, TS_ERR_ARG, "evaluate: %lld sequences of %lld tokens with logits from position %lld",
                       (long long)n_seq, (long long)n, (long long)first);
    const int64_t T = n_seq * n;
    for (int64_t t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->n_vocab)
            return ts_fail(err, TS_ERR_ARG, "token id %d at position %lld is outside the vocabulary (%lld tokens)",
                           ids[t], (long long)t, (long long)c->n_vocab);
    ts_status st = ts_run_state_reserve(m, T, err);
    if (st)
        return st;
    ts_run_state *s = &m->s;
    const ts_weight *te = &m->w.tok_embd;
    for (int64_t t = 0; t < T; t++)
        te->qt->dequantize_row(te->data + (uint64_t)ids[t] * te->row_bytes, s->x + t * c->n_embd, c->n_embd);
    rope_cache(c, m->w.rope_freqs, n, s->rope_cs);
    int64_t rows = T;
    for (int64_t il = 0; il < c->n_layer; il++) {
        /* The last layer only needs the rows whose logits are wanted
         * (llama.cpp's inp_out_ids). */
        const int64_t r0 = il == c->n_layer - 1 ? first : 0;
        const ts_layer_weights *l = &m->w.layers[il];
        st = c->arch == TS_MARCH_DEEPSEEK2 ? ts_deepseek_attention(m, l, n_seq, n, r0, &rows, err)
                                           : attention_block(m, l, n_seq, n, r0, &rows, err);
        if (st || (st = ffn_block(m, l, rows, err)))
            return ts_err_prefix(err, "layer %lld", (long long)il);
    }
    rmsnorm_rows(s->xn, s->x, m->w.output_norm, rows, c->n_embd, c->norm_eps);
    if (!logits) {
        if (m->hook)
            m->hook(m->hook_ctx, m->w.output.name, -1, s->xn, rows, c->n_embd);
        return TS_OK;
    }
    ts_mm_job out = {&m->w.output, 0, s->xn, rows, logits};
    return ts_mm_run(m, &out, 1, err);
}

ts_status ts_model_eval_tail(ts_model *m, const int32_t *ids, int64_t n, int64_t first, float *logits,
                             ts_err *err)
{
    return ts_model_eval_seqs(m, ids, 1, n, first, logits, err);
}

ts_status ts_model_eval(ts_model *m, const int32_t *ids, int64_t n, float *logits, ts_err *err)
{
    return ts_model_eval_seqs(m, ids, 1, n, 0, logits, err);
}

/* ---- shared with forward_<arch>.c (model_internal.h) ---- */

void ts_fw_rmsnorm_rows(float *o, const float *x, const float *w, int64_t rows, int64_t n, float eps)
{
    rmsnorm_rows(o, x, w, rows, n, eps);
}

void ts_fw_swiglu(float *gate, const float *up, int64_t n)
{
    swiglu(gate, up, n);
}

void ts_fw_round_f16(float *x, int64_t n)
{
    round_f16(x, n);
}
