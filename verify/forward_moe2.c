/* Routed experts the DeepSeek way, as llama.cpp's build_moe_ffn runs them
 * for deepseek2 and glm4moe (src/llama-graph.cpp there):
 *
 *   probs     = softmax or sigmoid of the router's logits (expert_gating_func)
 *   selection = probs + exp_probs_b (the correction bias chooses, it never weighs)
 *   groups    = with expert_group_count > 1, only the expert_group_used_count
 *               groups with the largest sum of their two best selection
 *               scores compete; the other groups' experts are masked out
 *   experts   = the n_expert_used best selection scores
 *   weights   = their unbiased probs, divided by their sum when
 *               expert_weights_norm, times expert_weights_scale
 *
 * plus the shared experts (ffn_*_shexp, one SwiGLU over every token) added to
 * the routed output. Ties go to the lower index, as in forward.c's routing. */
#include "verify/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ts_status ts_moe2_config(ts_model *m, ts_err *err)
{
    ts_config *c = &m->c;
    const char *path = m->g->file.path;
    ts_status st;
    int64_t gating = 0;
    c->moe2 = true;
    c->n_expert_shared = c->n_expert_groups = c->n_group_used = c->n_layer_dense_lead = 0;
    if ((st = ts_ml_int(m, "expert_gating_func", false, 0, 16, &gating, err)) ||
        (st = ts_ml_int(m, "expert_shared_count", c->n_expert > 0, 0, 65536, &c->n_expert_shared, err)) ||
        (st = ts_ml_int(m, "leading_dense_block_count", false, 0, c->n_layer, &c->n_layer_dense_lead, err)) ||
        (st = ts_ml_int(m, "expert_group_count", false, 0, 65536, &c->n_expert_groups, err)) ||
        (st = ts_ml_int(m, "expert_group_used_count", false, 0, 65536, &c->n_group_used, err)))
        return st;
    /* llama.cpp's defaults when the key is absent (DeepSeek V2 GGUFs predate it). */
    if (gating == 0)
        gating = c->arch == TS_MARCH_GLM4MOE ? TS_GATING_SIGMOID : TS_GATING_SOFTMAX;
    if (gating != TS_GATING_SOFTMAX && gating != TS_GATING_SIGMOID)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: %s.expert_gating_func %lld is not supported (1 softmax, 2 sigmoid)",
                       path, c->arch_name, (long long)gating);
    c->expert_gating = (int)gating;
    char k[128];
    snprintf(k, sizeof k, "%s.expert_weights_norm", c->arch_name);
    c->expert_weights_norm = false;
    if (ts_gguf_find_kv(m->g, k) && !ts_gguf_get_bool(m->g, k, &c->expert_weights_norm))
        return ts_fail(err, TS_ERR_FORMAT, "%s: key %s: expected a bool", path, k);
    if (c->n_expert_groups > 1) {
        /* llama.cpp asserts the same at load */
        if (c->n_expert % c->n_expert_groups || c->n_group_used < 1 || c->n_group_used >= c->n_expert_groups)
            return ts_fail(err, TS_ERR_FORMAT,
                           "%s: expert_group_count %lld / expert_group_used_count %lld do not fit %lld experts", path,
                           (long long)c->n_expert_groups, (long long)c->n_group_used, (long long)c->n_expert);
        if (c->n_expert_used > c->n_group_used * (c->n_expert / c->n_expert_groups))
            return ts_fail(err, TS_ERR_FORMAT, "%s: expert_used_count %lld exceeds the experts of %lld groups", path,
                           (long long)c->n_expert_used, (long long)c->n_group_used);
    }
    return TS_OK;
}

/* The index of the largest of v[0..n) not yet in taken[0..k), lower index
 * first on ties; -1 when none is left. */
static int64_t best_of(const float *v, int64_t n, const int32_t *taken, int64_t k)
{
    int64_t best = -1;
    for (int64_t e = 0; e < n; e++) {
        bool used = false;
        for (int64_t q = 0; q < k; q++)
            used |= taken[q] == e;
        if (!used && (best < 0 || v[e] > v[best]))
            best = e;
    }
    return best;
}

/* One token: router logits p (n_expert, turned into probs in place) ->
 * sel / w (n_expert_used). sc and gs are n_expert and n_groups floats of
 * scratch, gsel n_group_used ints. */
static void route(const ts_config *c, const float *bias, float *p, float *sc, float *gs, int32_t *gsel, int32_t *sel,
                  float *w)
{
    const int64_t ne = c->n_expert, ku = c->n_expert_used;
    if (c->expert_gating == TS_GATING_SIGMOID) {
        for (int64_t e = 0; e < ne; e++)
            p[e] = 1.0f / (1.0f + expf(-p[e]));
    } else {
        float max = -INFINITY;
        for (int64_t e = 0; e < ne; e++)
            max = fmaxf(max, p[e]);
        double sum = 0.0;
        for (int64_t e = 0; e < ne; e++)
            sum += (p[e] = expf(p[e] - max));
        const float inv = (float)(1.0 / sum);
        for (int64_t e = 0; e < ne; e++)
            p[e] *= inv;
    }
    for (int64_t e = 0; e < ne; e++)
        sc[e] = bias ? p[e] + bias[e] : p[e];
    if (c->n_expert_groups > 1) {
        const int64_t ng = c->n_expert_groups, per = ne / ng;
        for (int64_t g = 0; g < ng; g++) {
            int32_t top[2];
            top[0] = (int32_t)best_of(sc + g * per, per, top, 0);
            if (per > 1) {
                top[1] = (int32_t)best_of(sc + g * per, per, top, 1);
                gs[g] = sc[g * per + top[0]] + sc[g * per + top[1]];
            } else {
                gs[g] = sc[g * per + top[0]];
            }
        }
        for (int64_t k = 0; k < c->n_group_used; k++)
            gsel[k] = (int32_t)best_of(gs, ng, gsel, k);
        for (int64_t g = 0; g < ng; g++) {
            bool kept = false;
            for (int64_t k = 0; k < c->n_group_used; k++)
                kept |= gsel[k] == g;
            if (!kept)
                for (int64_t e = g * per; e < (g + 1) * per; e++)
                    sc[e] = -INFINITY;
        }
    }
    for (int64_t k = 0; k < ku; k++) {
        sel[k] = (int32_t)best_of(sc, ne, sel, k);
        w[k] = p[sel[k]];
    }
    if (c->expert_weights_norm) {
        double sum = 0.0; /* ggml_sum_rows accumulates in double */
        for (int64_t k = 0; k < ku; k++)
            sum += w[k];
        const float s = fmaxf((float)sum, 6.103515625e-5f); /* llama.cpp's clamp against division by zero */
        for (int64_t k = 0; k < ku; k++)
            w[k] /= s;
    }
    if (c->expert_weights_scale != 0.0f && c->expert_weights_scale != 1.0f)
        for (int64_t k = 0; k < ku; k++)
            w[k] *= c->expert_weights_scale;
}

/* The shared experts' SwiGLU on s->xb into out (rows x n_embd), scratch in
 * s->ext. */
static ts_status shared_experts(ts_model *m, const ts_layer_weights *l, int64_t rows, float **out, ts_err *err)
{
    const ts_config *c = &m->c;
    const int64_t nf = l->gate_shexp.n_out;
    ts_status st = ts_run_state_ext(m, rows * (2 * nf + c->n_embd), err);
    if (st)
        return st;
    float *g = m->s.ext, *u = g + rows * nf, *o = u + rows * nf;
    ts_mm_job gu[2] = {{&l->gate_shexp, 0, m->s.xb, rows, g}, {&l->up_shexp, 0, m->s.xb, rows, u}};
    if ((st = ts_mm_run(m, gu, 2, err)))
        return st;
    ts_fw_swiglu(g, u, rows * nf);
    ts_mm_job down = {&l->down_shexp, 0, g, rows, o};
    if ((st = ts_mm_run(m, &down, 1, err)))
        return st;
    *out = o;
    return TS_OK;
}

ts_status ts_moe2_ffn(ts_model *m, const ts_layer_weights *l, int64_t rows, ts_err *err)
{
    const ts_config *c = &m->c;
    ts_run_state *s = &m->s;
    float *shared = NULL;
    ts_status st;
    /* first: the routed experts overwrite xb */
    if (l->gate_shexp.data && (st = shared_experts(m, l, rows, &shared, err)))
        return st;
    ts_mm_job router = {&l->gate_inp, 0, s->xb, rows, s->router};
    if ((st = ts_mm_run(m, &router, 1, err)))
        return st;
    const int64_t ne = c->n_expert, ng = c->n_expert_groups > 1 ? c->n_expert_groups : 1;
    float *sc = malloc((size_t)(ne + ng) * sizeof *sc);
    int32_t *gsel = malloc((size_t)(c->n_group_used > 0 ? c->n_group_used : 1) * sizeof *gsel);
    if (!sc || !gsel) {
        free(sc);
        free(gsel);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    for (int64_t t = 0; t < rows; t++)
        route(c, l->exp_probs_b, s->router + t * ne, sc, sc + ne, gsel, s->sel + t * c->n_expert_used,
              s->sel_w + t * c->n_expert_used);
    free(sc);
    free(gsel);
    if ((st = ts_fw_moe_experts(m, l, rows, err)))
        return st;
    if (shared)
        for (int64_t i = 0; i < rows * c->n_embd; i++)
            s->ffn_out[i] += shared[i];
    return TS_OK;
}

/* Router, bias, stacked experts and shared experts of MoE layer il. */
ts_status ts_moe2_load_layer(ts_model *m, int64_t il, ts_layer_weights *l, bool bias_required, ts_err *err)
{
    const ts_config *c = &m->c;
    const int64_t ne = c->n_expert, nf = c->n_ff_exp, nd = c->n_embd, nsh = nf * c->n_expert_shared;
    char n[128];
    ts_status st;
#define NAME(s) (snprintf(n, sizeof n, "blk.%lld." s, (long long)il), n)
    l->moe = true;
    if ((st = ts_ml_weight(m, NAME("ffn_gate_inp.weight"), nd, ne, 1, true, &l->gate_inp, err)) ||
        (st = ts_ml_vec(m, NAME("exp_probs_b.bias"), ne, bias_required, &l->exp_probs_b, err)) ||
        (st = ts_ml_weight(m, NAME("ffn_gate_exps.weight"), nd, nf, ne, true, &l->gate_exps, err)) ||
        (st = ts_ml_weight(m, NAME("ffn_up_exps.weight"), nd, nf, ne, true, &l->up_exps, err)) ||
        (st = ts_ml_weight(m, NAME("ffn_down_exps.weight"), nf, nd, ne, true, &l->down_exps, err)))
        return st;
    if (nsh > 0 &&
        ((st = ts_ml_weight(m, NAME("ffn_gate_shexp.weight"), nd, nsh, 1, true, &l->gate_shexp, err)) ||
         (st = ts_ml_weight(m, NAME("ffn_up_shexp.weight"), nd, nsh, 1, true, &l->up_shexp, err)) ||
         (st = ts_ml_weight(m, NAME("ffn_down_shexp.weight"), nsh, nd, 1, true, &l->down_shexp, err))))
        return st;
#undef NAME
    return TS_OK;
}

/* Dense FFN of layer il (the leading_dense_block_count first layers). */
ts_status ts_moe2_load_dense(ts_model *m, int64_t il, ts_layer_weights *l, ts_err *err)
{
    const ts_config *c = &m->c;
    char n[128];
    ts_status st;
    if (c->n_ff < 1)
        return ts_fail(err, TS_ERR_FORMAT, "%s: layer %lld is dense but feed_forward_length is missing",
                       m->g->file.path, (long long)il);
#define NAME(s) (snprintf(n, sizeof n, "blk.%lld." s, (long long)il), n)
    if ((st = ts_ml_weight(m, NAME("ffn_gate.weight"), c->n_embd, c->n_ff, 1, true, &l->ffn_gate, err)) ||
        (st = ts_ml_weight(m, NAME("ffn_up.weight"), c->n_embd, c->n_ff, 1, true, &l->ffn_up, err)) ||
        (st = ts_ml_weight(m, NAME("ffn_down.weight"), c->n_ff, c->n_embd, 1, true, &l->ffn_down, err)))
        return st;
#undef NAME
    return TS_OK;
}
