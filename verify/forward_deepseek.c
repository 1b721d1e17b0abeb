/* deepseek2 (DeepSeek-V2/V3/R1, Kimi K2): multi-head latent attention the
 * way llama.cpp runs it for GGUFs with attn_k_b / attn_v_b (src/models/
 * deepseek2.cpp there, the "absorbed" form), then forward.c's dense FFN for
 * the leading_dense_block_count first layers and forward_moe2.c's routed +
 * shared experts for the others.
 *
 * Per token, with nope + rope = key_length_mla and kv_lora the compressed
 * size:
 *   q        = wq_b(rmsnorm(wq_a x))  (or wq x when q_lora_rank is 0),
 *              per head [q_nope | q_pe]
 *   [c | kp] = wkv_a_mqa x;  c = rmsnorm(c) (kv_a_norm); kp = rope(kp)
 *   Q_h      = [wk_b_h q_nope_h | rope(q_pe_h)]      (kv_lora + rope)
 *   K        = [c | kp], V = c                       (one head: MQA)
 *   o_h      = wv_b_h softmax(Q_h K^T * kq_scale) V  (v_head_dim)
 *   out      = wo [o_0 .. o_{n_head-1}]
 * which equals the decompressed attention (K_h = [W_uk_h c | kp], V_h =
 * W_uv_h c) up to rounding. RoPE is ggml's "normal" mode (adjacent pairs,
 * as the HF code's interleaved rotary after its permutation), and YaRN's
 * mscale goes into kq_scale (mscale^2 / sqrt(nope + rope)), not into the
 * rotation, exactly as llama.cpp computes it. */
#include "verify/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float get_mscale(float scale, float mscale)
{
    return scale <= 1.0f ? 1.0f : 0.1f * mscale * logf(scale) + 1.0f;
}

/* YaRN for deepseek2 (llama-context.cpp and deepseek2.cpp): the converter
 * stores 0.1 * mscale_all_dim as yarn_log_multiplier and llama.cpp divides
 * it out again; the rotation's attn_factor cancels ggml's own YaRN mscale,
 * and mscale^2 scales the scores instead. */
static ts_status yarn_scales(ts_model *m, ts_err *err)
{
    ts_config *c = &m->c;
    float log_mul = 0.0f, attn_key = 1.0f;
    ts_status st;
    if ((st = ts_ml_float(m, "rope.scaling.yarn_log_multiplier", false, &log_mul, err)) ||
        (st = ts_ml_float(m, "rope.scaling.attn_factor", false, &attn_key, err)))
        return st;
    log_mul /= 0.1f;
    float af = 1.0f;
    if (c->rope_ext_factor != 0.0f) {
        const float factor = 1.0f / c->rope_freq_scale;
        if (log_mul != 0.0f)
            af = get_mscale(factor, log_mul != 1.0f ? log_mul : 1.0f) / get_mscale(factor, log_mul);
        else
            af = get_mscale(factor, 1.0f);
        af *= 1.0f / (1.0f + 0.1f * logf(factor));
    }
    c->rope_attn_factor = af * attn_key;
    const float af_org = c->rope_attn_factor * (1.0f + 0.1f * logf(1.0f / c->rope_freq_scale));
    const float mscale = af_org * (1.0f + 0.1f * log_mul * logf(1.0f / c->rope_freq_scale));
    c->kq_scale = 1.0f * mscale * mscale / sqrtf((float)c->head_dim_k_mla);
    return TS_OK;
}

ts_status ts_deepseek_config(ts_model *m, ts_err *err)
{
    ts_config *c = &m->c;
    const char *path = m->g->file.path;
    ts_status st;
    c->n_lora_q = c->n_lora_kv = c->head_dim_k_mla = c->head_dim_v_mla = 0;
    if ((st = ts_ml_int(m, "attention.q_lora_rank", false, 0, 1 << 20, &c->n_lora_q, err)) ||
        (st = ts_ml_int(m, "attention.kv_lora_rank", true, 1, 1 << 20, &c->n_lora_kv, err)) ||
        (st = ts_ml_int(m, "attention.key_length_mla", false, 1, 65536, &c->head_dim_k_mla, err)) ||
        (st = ts_ml_int(m, "attention.value_length_mla", false, 1, 65536, &c->head_dim_v_mla, err)))
        return st;
    if (!c->head_dim_k_mla || !c->head_dim_v_mla)
        return ts_fail(err, TS_ERR_UNSUPPORTED,
                       "%s: deepseek2 without attention.key_length_mla / value_length_mla (an old file with an unsplit "
                       "attn_kv_b) is not supported; convert it again", path);
    /* The MQA form: one KV head of kv_lora + rope, values of kv_lora. */
    if (c->n_head_kv != 1 || c->head_dim != c->n_lora_kv + c->n_rot || c->head_dim_v != c->n_lora_kv ||
        c->head_dim_k_mla <= c->n_rot)
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: deepseek2 MLA expects head_count_kv 1, key_length = kv_lora_rank + rope (%lld), "
                       "value_length = kv_lora_rank (%lld), key_length_mla > rope; got %lld, %lld, %lld, %lld",
                       path, (long long)(c->n_lora_kv + c->n_rot), (long long)c->n_lora_kv, (long long)c->n_head_kv,
                       (long long)c->head_dim, (long long)c->head_dim_v, (long long)c->head_dim_k_mla);
    c->rope_neox = false;
    if ((st = yarn_scales(m, err)))
        return st;
    return ts_moe2_config(m, err);
}

ts_status ts_deepseek_load_layer(ts_model *m, int64_t il, ts_err *err)
{
    const ts_config *c = &m->c;
    ts_layer_weights *l = &m->w.layers[il];
    const int64_t nh = c->n_head, kq = c->head_dim_k_mla, nope = kq - c->n_rot, kvl = c->n_lora_kv;
    char n[128];
    ts_status st;
#define NAME(s) (snprintf(n, sizeof n, "blk.%lld." s, (long long)il), n)
    if ((st = ts_ml_vec(m, NAME("attn_norm.weight"), c->n_embd, true, &l->attn_norm, err)) ||
        (st = ts_ml_vec(m, NAME("ffn_norm.weight"), c->n_embd, true, &l->ffn_norm, err)) ||
        (st = ts_ml_weight(m, NAME("attn_kv_a_mqa.weight"), c->n_embd, kvl + c->n_rot, 1, true, &l->wkv_a_mqa, err)) ||
        (st = ts_ml_vec(m, NAME("attn_kv_a_norm.weight"), kvl, true, &l->kv_a_norm, err)) ||
        (st = ts_ml_weight(m, NAME("attn_k_b.weight"), nope, kvl, nh, true, &l->wk_b, err)) ||
        (st = ts_ml_weight(m, NAME("attn_v_b.weight"), kvl, c->head_dim_v_mla, nh, true, &l->wv_b, err)) ||
        (st = ts_ml_weight(m, NAME("attn_output.weight"), nh * c->head_dim_v_mla, c->n_embd, 1, true, &l->wo, err)))
        return st;
    if (c->n_lora_q > 0) {
        if ((st = ts_ml_weight(m, NAME("attn_q_a.weight"), c->n_embd, c->n_lora_q, 1, true, &l->wq_a, err)) ||
            (st = ts_ml_vec(m, NAME("attn_q_a_norm.weight"), c->n_lora_q, true, &l->q_a_norm, err)) ||
            (st = ts_ml_weight(m, NAME("attn_q_b.weight"), c->n_lora_q, nh * kq, 1, true, &l->wq_b, err)))
            return st;
    } else if ((st = ts_ml_weight(m, NAME("attn_q.weight"), c->n_embd, nh * kq, 1, true, &l->wq, err))) {
        return st;
    }
#undef NAME
    if (il < c->n_layer_dense_lead || c->n_expert == 0)
        return ts_moe2_load_dense(m, il, l, err);
    return ts_moe2_load_layer(m, il, l, false, err);
}

/* Scratch (s->ext) of one attention block over T tokens. */
typedef struct {
    float *q;   /* T x n_head x (nope + rope): q as projected */
    float *qa;  /* T x q_lora */
    float *kv;  /* T x (kv_lora + rope): wkv_a_mqa's output */
    float *hn;  /* n_head x T x max(nope, v): q_nope per head, later wv_b's outputs */
    float *hc;  /* n_head x T x kv_lora: absorbed q_nope per head, later attention outputs */
    float *o;   /* T x n_head x v: wo's input */
} mla_scratch;

static ts_status scratch(ts_model *m, int64_t T, mla_scratch *x, ts_err *err)
{
    const ts_config *c = &m->c;
    const int64_t nh = c->n_head, kq = c->head_dim_k_mla, v = c->head_dim_v_mla, nope = kq - c->n_rot;
    const int64_t sizes[6] = {T * nh * kq, T * c->n_lora_q, T * (c->n_lora_kv + c->n_rot),
                              nh * T * (nope > v ? nope : v), nh * T * c->n_lora_kv, T * nh * v};
    int64_t total = 0;
    for (int i = 0; i < 6; i++)
        total += sizes[i];
    ts_status st = ts_run_state_ext(m, total, err);
    if (st)
        return st;
    float *p = m->s.ext;
    float **dst[6] = {&x->q, &x->qa, &x->kv, &x->hn, &x->hc, &x->o};
    for (int i = 0; i < 6; i++) {
        *dst[i] = p;
        p += sizes[i];
    }
    return TS_OK;
}

/* Q_h = [wk_b_h q_nope_h | rope(q_pe_h)] into s->q, K = [c | rope(kp)] into
 * s->k, V = c into s->v, for all T rows. */
static ts_status mla_qkv(ts_model *m, const ts_layer_weights *l, int64_t T, int64_t n, const mla_scratch *x,
                         ts_err *err)
{
    const ts_config *c = &m->c;
    ts_run_state *s = &m->s;
    const int64_t nh = c->n_head, kq = c->head_dim_k_mla, rope = c->n_rot, nope = kq - rope;
    const int64_t kvl = c->n_lora_kv, hd = c->head_dim; /* kvl + rope */
    ts_status st;
    ts_mm_job in[2] = {{c->n_lora_q > 0 ? &l->wq_a : &l->wq, 0, s->xb, T, c->n_lora_q > 0 ? x->qa : x->q},
                       {&l->wkv_a_mqa, 0, s->xb, T, x->kv}};
    if ((st = ts_mm_run(m, in, 2, err)))
        return st;
    if (c->n_lora_q > 0) {
        ts_fw_rmsnorm_rows(x->qa, x->qa, l->q_a_norm, T, c->n_lora_q, c->norm_eps);
        ts_mm_job qb = {&l->wq_b, 0, x->qa, T, x->q};
        if ((st = ts_mm_run(m, &qb, 1, err)))
            return st;
    }
    for (int64_t t = 0; t < T; t++) {
        const float *kv = x->kv + t * hd;
        ts_fw_rmsnorm_rows(s->k + t * hd, kv, l->kv_a_norm, 1, kvl, c->norm_eps);
        memcpy(s->k + t * hd + kvl, kv + kvl, (size_t)rope * sizeof(float));
        memcpy(s->v + t * kvl, s->k + t * hd, (size_t)kvl * sizeof(float));
    }
    ts_fw_rope(c, s->rope_cs, s->k + kvl, T, hd, 1, hd, n);
    ts_fw_rope(c, s->rope_cs, x->q + nope, T, nh * kq, nh, kq, n);
    /* q_nope per head, contiguous, through wk_b_h */
    ts_mm_job *jobs = malloc((size_t)nh * sizeof *jobs);
    if (!jobs)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (int64_t h = 0; h < nh; h++) {
        float *dst = x->hn + h * T * nope;
        for (int64_t t = 0; t < T; t++)
            memcpy(dst + t * nope, x->q + (t * nh + h) * kq, (size_t)nope * sizeof(float));
        jobs[h] = (ts_mm_job){&l->wk_b, (int)h, dst, T, x->hc + h * T * kvl};
    }
    st = ts_mm_run(m, jobs, (int)nh, err);
    free(jobs);
    if (st)
        return st;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < nh; h++) {
            float *q = s->q + (t * nh + h) * hd;
            memcpy(q, x->hc + (h * T + t) * kvl, (size_t)kvl * sizeof(float));
            memcpy(q + kvl, x->q + (t * nh + h) * kq + nope, (size_t)rope * sizeof(float));
        }
    if (m->kv_f16) { /* llama.cpp's default F16 cache holds K = [c | kp], and V = c */
        ts_fw_round_f16(s->k, T * hd);
        ts_fw_round_f16(s->v, T * kvl);
    }
    return TS_OK;
}

ts_status ts_deepseek_attention(ts_model *m, const ts_layer_weights *l, int64_t n_seq, int64_t n, int64_t r0,
                                int64_t *rows_out, ts_err *err)
{
    const ts_config *c = &m->c;
    ts_run_state *s = &m->s;
    const int64_t T = n_seq * n, nh = c->n_head, kvl = c->n_lora_kv, v = c->head_dim_v_mla;
    mla_scratch x;
    ts_status st;
    if ((st = scratch(m, T, &x, err)))
        return st;
    ts_fw_rmsnorm_rows(s->xb, s->x, l->attn_norm, T, c->n_embd, c->norm_eps);
    if ((st = mla_qkv(m, l, T, n, &x, err)) || (st = ts_attention(m, n_seq, n, r0, err)))
        return st;
    /* Rows r0..n-1 of each sequence go on: attention outputs per head, the
     * residual packed to the front (every destination at or before its source). */
    const int64_t per_seq = n - r0, rows = n_seq * per_seq;
    for (int64_t q = 0; q < n_seq; q++)
        for (int64_t i = 0; i < per_seq; i++) {
            const int64_t dst = q * per_seq + i, src = q * n + r0 + i;
            for (int64_t h = 0; h < nh; h++)
                memcpy(x.hc + (h * rows + dst) * kvl, s->att + (src * nh + h) * kvl, (size_t)kvl * sizeof(float));
            if (dst != src)
                memmove(s->x + dst * c->n_embd, s->x + src * c->n_embd, (size_t)c->n_embd * sizeof(float));
        }
    ts_mm_job *jobs = malloc((size_t)nh * sizeof *jobs);
    if (!jobs)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (int64_t h = 0; h < nh; h++)
        jobs[h] = (ts_mm_job){&l->wv_b, (int)h, x.hc + h * rows * kvl, rows, x.hn + h * rows * v};
    st = ts_mm_run(m, jobs, (int)nh, err);
    free(jobs);
    if (st)
        return st;
    for (int64_t t = 0; t < rows; t++)
        for (int64_t h = 0; h < nh; h++)
            memcpy(x.o + (t * nh + h) * v, x.hn + (h * rows + t) * v, (size_t)v * sizeof(float));
    ts_mm_job out = {&l->wo, 0, x.o, rows, s->xb};
    if ((st = ts_mm_run(m, &out, 1, err)))
        return st;
    for (int64_t i = 0; i < rows * c->n_embd; i++)
        s->x[i] += s->xb[i];
    *rows_out = rows;
    return TS_OK;
}
