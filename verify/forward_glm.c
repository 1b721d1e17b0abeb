/* glm4moe (GLM-4.5, GLM-4.5-Air), as llama.cpp's src/models/glm4-moe.cpp:
 * forward.c's attention block (Q/K/V biases, optional Q/K norms, NeoX RoPE on
 * the first rope.dimension_count dims of each head only: partial rotary),
 * post_attention_norm before the FFN, a dense FFN in the
 * leading_dense_block_count first layers and forward_moe2.c's sigmoid-routed
 * + shared experts in the others. The nextn_predict_layers NextN / MTP
 * blocks at the end of the file serve speculative decoding; llama.cpp's
 * forward pass skips them, so they are neither loaded nor run here. */
#include "verify/model_internal.h"

#include <stdio.h>

ts_status ts_glm_config(ts_model *m, ts_err *err)
{
    ts_config *c = &m->c;
    int64_t nextn = 0;
    ts_status st = ts_ml_int(m, "nextn_predict_layers", false, 0, c->n_layer - 1, &nextn, err);
    if (st)
        return st;
    c->n_layer -= nextn;
    if (c->n_expert < 1)
        return ts_fail(err, TS_ERR_FORMAT, "%s: glm4moe needs expert_count > 0", m->g->file.path);
    return ts_moe2_config(m, err);
}

ts_status ts_glm_load_layer(ts_model *m, int64_t il, ts_err *err)
{
    const ts_config *c = &m->c;
    ts_layer_weights *l = &m->w.layers[il];
    const int64_t nq = c->n_head * c->head_dim, nk = c->n_head_kv * c->head_dim, nv = c->n_head_kv * c->head_dim_v;
    char n[128];
    ts_status st;
#define NAME(s) (snprintf(n, sizeof n, "blk.%lld." s, (long long)il), n)
    if ((st = ts_ml_vec(m, NAME("attn_norm.weight"), c->n_embd, true, &l->attn_norm, err)) ||
        (st = ts_ml_vec(m, NAME("post_attention_norm.weight"), c->n_embd, true, &l->ffn_norm, err)) ||
        (st = ts_ml_vec(m, NAME("attn_q_norm.weight"), c->head_dim, false, &l->q_norm, err)) ||
        (st = ts_ml_vec(m, NAME("attn_k_norm.weight"), c->head_dim, false, &l->k_norm, err)) ||
        (st = ts_ml_vec(m, NAME("attn_q.bias"), nq, false, &l->bq, err)) ||
        (st = ts_ml_vec(m, NAME("attn_k.bias"), nk, false, &l->bk, err)) ||
        (st = ts_ml_vec(m, NAME("attn_v.bias"), nv, false, &l->bv, err)) ||
        (st = ts_ml_weight(m, NAME("attn_q.weight"), c->n_embd, nq, 1, true, &l->wq, err)) ||
        (st = ts_ml_weight(m, NAME("attn_k.weight"), c->n_embd, nk, 1, true, &l->wk, err)) ||
        (st = ts_ml_weight(m, NAME("attn_v.weight"), c->n_embd, nv, 1, true, &l->wv, err)) ||
        (st = ts_ml_weight(m, NAME("attn_output.weight"), c->n_head * c->head_dim_v, c->n_embd, 1, true, &l->wo, err)))
        return st;
#undef NAME
    if (!l->q_norm != !l->k_norm)
        return ts_fail(err, TS_ERR_FORMAT, "%s: layer %lld has only one of attn_q_norm / attn_k_norm", m->g->file.path,
                       (long long)il);
    if (il < c->n_layer_dense_lead)
        return ts_moe2_load_dense(m, il, l, err);
    /* llama.cpp requires the correction bias for glm4moe */
    return ts_moe2_load_layer(m, il, l, true, err);
}
