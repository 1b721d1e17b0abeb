/* Config and Weights from a GGUF: the {arch}.* keys convert writes and the
 * tensors llama.cpp's loader expects for llama, qwen2, qwen3 and qwen3moe
 * (src/models/<arch>.cpp there); deepseek2, glm4moe and gpt-oss add theirs
 * in forward_deepseek.c / forward_glm.c / forward_gptoss.c. Every shape is
 * checked here, so forward.c can trust them. */
#include "verify/model_internal.h"

#include "core/threads.h"
#include "kernels/gemm.h"
#include "verify/bigbuf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *key(const ts_model *m, const char *suffix)
{
    static _Thread_local char buf[256];
    snprintf(buf, sizeof buf, "%s.%s", m->c.arch_name, suffix);
    return buf;
}

/* An integer key: required ones fail when absent, optional ones keep *out. */
static ts_status get_int(const ts_model *m, const char *suffix, bool required, int64_t min, int64_t max,
                         int64_t *out, ts_err *err)
{
    const char *k = key(m, suffix);
    const ts_gguf_kv *kv = ts_gguf_find_kv(m->g, k);
    if (!kv) {
        if (required)
            return ts_fail(err, TS_ERR_FORMAT, "%s: missing key %s", m->g->file.path, k);
        return TS_OK;
    }
    int64_t v;
    if (!ts_gguf_get_i64(m->g, k, &v))
        return ts_fail(err, TS_ERR_FORMAT, "%s: key %s is a %s, expected an integer (per-layer arrays are not supported)",
                       m->g->file.path, k, ts_gguf_type_name(kv->value.type));
    if (v < min || v > max)
        return ts_fail(err, TS_ERR_FORMAT, "%s: key %s = %lld, expected %lld..%lld", m->g->file.path, k, (long long)v,
                       (long long)min, (long long)max);
    *out = v;
    return TS_OK;
}

static ts_status get_float(const ts_model *m, const char *suffix, bool required, float *out, ts_err *err)
{
    const char *k = key(m, suffix);
    double v;
    if (!ts_gguf_find_kv(m->g, k)) {
        if (required)
            return ts_fail(err, TS_ERR_FORMAT, "%s: missing key %s", m->g->file.path, k);
        return TS_OK;
    }
    if (!ts_gguf_get_f64(m->g, k, &v) || !isfinite(v))
        return ts_fail(err, TS_ERR_FORMAT, "%s: key %s: expected a finite float", m->g->file.path, k);
    *out = (float)v;
    return TS_OK;
}

static const ts_gguf_tensor *find(const ts_model *m, const char *name)
{
    int64_t i = ts_gguf_find_tensor(m->g, name);
    return i < 0 ? NULL : &m->g->tensors[i];
}

static ts_status keep(ts_model *m, float *p, ts_err *err)
{
    if (m->n_owned == m->cap_owned) {
        size_t cap = m->cap_owned ? 2 * m->cap_owned : 64;
        float **o = realloc(m->owned, cap * sizeof *o);
        if (!o) {
            free(p);
            return ts_fail(err, TS_ERR_NOMEM, "out of memory");
        }
        m->owned = o;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return TS_OK;
}

/* A 1-D tensor of n floats (norm weights, biases, rope factors), converted
 * to f32. *out stays NULL when the tensor is absent and optional. */
static ts_status load_vec(ts_model *m, const char *name, int64_t n, bool required, float **out, ts_err *err)
{
    *out = NULL;
    const ts_gguf_tensor *gt = find(m, name);
    if (!gt) {
        if (required)
            return ts_fail(err, TS_ERR_FORMAT, "%s: missing tensor %s", m->g->file.path, name);
        return TS_OK;
    }
    const ts_tensor *t = &gt->t;
    uint64_t ne;
    if (!ts_shape_nelements(t->n_dims, t->ne, &ne) || (int64_t)ne != n || t->ne[0] != n)
        return ts_fail(err, TS_ERR_FORMAT, "%s: tensor %s has %d dims [%lld, ...], expected [%lld]", m->g->file.path, name,
                       t->n_dims, (long long)t->ne[0], (long long)n);
    const ts_quant_type *qt = ts_quant_type_get(t->dtype);
    if (!qt || !qt->dequantize_row || n % (int64_t)ts_dtype_get(t->dtype)->block_size)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: tensor %s has type %s, which cannot be read here", m->g->file.path,
                       name, ts_dtype_name(t->dtype));
    float *v = malloc((size_t)n * sizeof *v);
    if (!v)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory for %s", name);
    qt->dequantize_row(t->data, v, n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            free(v);
            return ts_fail(err, TS_ERR_FORMAT, "%s: tensor %s element %lld is not finite", m->g->file.path, name,
                           (long long)i);
        }
    *out = v;
    return keep(m, v, err);
}

/* A matrix [n_in, n_out] or a stack [n_in, n_out, n_mat] (ggml order). */
static ts_status load_weight(ts_model *m, const char *name, int64_t n_in, int64_t n_out, int64_t n_mat,
                             bool required, ts_weight *w, ts_err *err)
{
    memset(w, 0, sizeof *w);
    const ts_gguf_tensor *gt = find(m, name);
    if (!gt) {
        if (required)
            return ts_fail(err, TS_ERR_FORMAT, "%s: missing tensor %s", m->g->file.path, name);
        return TS_OK;
    }
    const ts_tensor *t = &gt->t;
    int want_dims = n_mat > 1 ? 3 : 2;
    if (t->n_dims > want_dims || t->ne[0] != n_in || t->ne[1] != n_out || t->ne[2] != n_mat || t->ne[3] != 1) {
        char got[96];
        ts_shape_str(t->n_dims, t->ne, got, sizeof got);
        if (n_mat > 1)
            return ts_fail(err, TS_ERR_FORMAT, "%s: tensor %s has shape %s, expected [%lld, %lld, %lld]",
                           m->g->file.path, name, got, (long long)n_in, (long long)n_out, (long long)n_mat);
        return ts_fail(err, TS_ERR_FORMAT, "%s: tensor %s has shape %s, expected [%lld, %lld]", m->g->file.path, name,
                       got, (long long)n_in, (long long)n_out);
    }
    const ts_quant_type *qt = ts_quant_type_get(t->dtype);
    if (!qt || !qt->dequantize_row)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: tensor %s has type %s, which the forward pass cannot read",
                       m->g->file.path, name, ts_dtype_name(t->dtype));
    uint64_t rb;
    if (!ts_dtype_row_bytes(t->dtype, (uint64_t)n_in, &rb))
        return ts_fail(err, TS_ERR_FORMAT, "%s: tensor %s: rows of %lld are not whole %s blocks", m->g->file.path, name,
                       (long long)n_in, ts_dtype_name(t->dtype));
    *w = (ts_weight){.name = t->name, .type = t->dtype, .n_in = n_in, .n_out = n_out, .n_mat = n_mat,
                     .data = t->data, .row_bytes = rb, .qt = qt};
    return TS_OK;
}

/* llama.cpp's llama-context.cpp turns the rope.scaling.* keys into
 * ggml_rope_ext's arguments this way (the yarn_* keys convert may write are
 * read by no llama.cpp loader for these architectures, so not here either). */
static ts_status rope_params(ts_model *m, ts_err *err)
{
    ts_config *c = &m->c;
    ts_status st;
    c->rope_base = 10000.0f;
    float factor = 0.0f, attn_factor = 1.0f, log_mul = 0.0f;
    int64_t n_ctx_orig = c->n_ctx_train;
    if ((st = get_float(m, "rope.freq_base", false, &c->rope_base, err)) ||
        (st = get_float(m, "rope.scaling.factor", false, &factor, err)) ||
        (st = get_float(m, "rope.scaling.attn_factor", false, &attn_factor, err)) ||
        (st = get_float(m, "rope.scaling.yarn_log_multiplier", false, &log_mul, err)) ||
        (st = get_int(m, "rope.scaling.original_context_length", false, 1, INT32_MAX, &n_ctx_orig, err)))
        return st;
    if (factor == 0.0f && ts_gguf_find_kv(m->g, key(m, "rope.scale_linear")) &&
        (st = get_float(m, "rope.scale_linear", false, &factor, err)))
        return st;
    const char *type = ts_gguf_get_str(m->g, key(m, "rope.scaling.type"));
    if (!type)
        type = "linear";
    bool yarn = !strcmp(type, "yarn");
    if (strcmp(type, "none") && strcmp(type, "linear") && !yarn)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: rope.scaling.type '%s' is not supported (none, linear, yarn)",
                       m->g->file.path, type);
    if (factor < 0.0f)
        return ts_fail(err, TS_ERR_FORMAT, "%s: rope.scaling.factor %g is negative", m->g->file.path, factor);
    c->rope_freq_scale = factor == 0.0f || !strcmp(type, "none") ? 1.0f : 1.0f / factor;
    c->rope_ext_factor = yarn ? 1.0f : 0.0f;
    c->rope_attn_factor = 1.0f;
    if (c->rope_ext_factor != 0.0f) {
        float f = 1.0f / c->rope_freq_scale;
        float ms = f <= 1.0f ? 1.0f : 0.1f * logf(f) + 1.0f;
        if (log_mul != 0.0f) {
            float ms_all = f <= 1.0f ? 1.0f : 0.1f * log_mul * logf(f) + 1.0f;
            c->rope_attn_factor = ms / ms_all;
        } else {
            c->rope_attn_factor = ms;
        }
        c->rope_attn_factor *= 1.0f / (1.0f + 0.1f * logf(f));
    }
    c->rope_attn_factor *= attn_factor;
    c->rope_beta_fast = 32.0f;
    c->rope_beta_slow = 1.0f;
    c->rope_n_ctx_orig = n_ctx_orig;
    c->rope_neox = c->arch != TS_MARCH_LLAMA;
    return TS_OK;
}

/* The experts' ff size when no expert_feed_forward_length key gives it:
 * Mixtral's llama GGUFs size them by feed_forward_length itself, qwen3moe
 * by n_ff / n_expert_used; the first stacked up_exps tensor says which (the
 * layer loaders then check every stack against it). 0 when there is none. */
static int64_t expert_ff_from_tensors(const ts_model *m)
{
    char n[64];
    for (int64_t il = 0; il < m->c.n_layer; il++) {
        snprintf(n, sizeof n, "blk.%lld.ffn_up_exps.weight", (long long)il);
        const ts_gguf_tensor *t = find(m, n);
        if (t)
            return t->t.n_dims == 3 && t->t.ne[1] > 0 ? t->t.ne[1] : 0;
    }
    return 0;
}

static ts_status load_config(ts_model *m, ts_err *err)
{
    ts_config *c = &m->c;
    const char *arch = ts_gguf_get_str(m->g, "general.architecture");
    static const struct { const char *name; ts_model_arch_id id; } archs[] = {
        {"llama", TS_MARCH_LLAMA}, {"qwen2", TS_MARCH_QWEN2}, {"qwen3", TS_MARCH_QWEN3}, {"qwen3moe", TS_MARCH_QWEN3MOE},
        {"deepseek2", TS_MARCH_DEEPSEEK2}, {"glm4moe", TS_MARCH_GLM4MOE},
        {"gpt-oss", TS_MARCH_GPTOSS}};
    if (!arch)
        return ts_fail(err, TS_ERR_FORMAT, "%s: no general.architecture key", m->g->file.path);
    size_t i = 0;
    while (i < sizeof archs / sizeof archs[0] && strcmp(archs[i].name, arch))
        i++;
    if (i == sizeof archs / sizeof archs[0])
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: architecture '%s' is not supported (llama, qwen2, qwen3, qwen3moe, "
                       "deepseek2, glm4moe, gpt-oss)",
                       m->g->file.path, arch);
    c->arch = archs[i].id;
    c->arch_name = archs[i].name;
    ts_status st;
    const int64_t big = 1 << 24;
    if ((st = get_int(m, "embedding_length", true, 1, big, &c->n_embd, err)) ||
        (st = get_int(m, "block_count", true, 1, 100000, &c->n_layer, err)) ||
        (st = get_int(m, "attention.head_count", true, 1, 65536, &c->n_head, err)))
        return st;
    c->n_head_kv = c->n_head;
    c->head_dim = c->n_embd / c->n_head;
    c->n_ctx_train = 0;
    if ((st = get_int(m, "attention.head_count_kv", false, 1, c->n_head, &c->n_head_kv, err)) ||
        (st = get_int(m, "attention.key_length", false, 1, 65536, &c->head_dim, err)) ||
        (st = get_int(m, "context_length", false, 0, INT32_MAX, &c->n_ctx_train, err)) ||
        (st = get_int(m, "feed_forward_length", false, 0, big, &c->n_ff, err)) ||
        (st = get_int(m, "expert_count", false, 0, 65536, &c->n_expert, err)) ||
        (st = get_int(m, "expert_used_count", false, 0, 65536, &c->n_expert_used, err)) ||
        (st = get_int(m, "expert_feed_forward_length", false, 0, big, &c->n_ff_exp, err)) ||
        (st = get_float(m, "attention.layer_norm_rms_epsilon", true, &c->norm_eps, err)) ||
        (st = get_float(m, "expert_weights_scale", false, &c->expert_weights_scale, err)))
        return st;
    c->head_dim_v = c->head_dim;
    c->n_rot = c->head_dim;
    if ((st = get_int(m, "attention.value_length", false, 1, 65536, &c->head_dim_v, err)) ||
        (st = get_int(m, "rope.dimension_count", false, 2, c->head_dim, &c->n_rot, err)))
        return st;
    if (c->n_head % c->n_head_kv)
        return ts_fail(err, TS_ERR_FORMAT, "%s: head_count_kv %lld does not divide head_count %lld", m->g->file.path,
                       (long long)c->n_head_kv, (long long)c->n_head);
    if (c->n_rot % 2 || (c->arch == TS_MARCH_LLAMA && c->n_rot != c->head_dim))
        return ts_fail(err, TS_ERR_FORMAT, "%s: rope.dimension_count %lld must be even%s", m->g->file.path,
                       (long long)c->n_rot, c->arch == TS_MARCH_LLAMA ? " and equal the head size" : "");
    if (c->n_expert && (c->n_expert_used < 1 || c->n_expert_used > c->n_expert))
        return ts_fail(err, TS_ERR_FORMAT, "%s: expert_used_count %lld must be in 1..%lld", m->g->file.path,
                       (long long)c->n_expert_used, (long long)c->n_expert);
    if (c->arch == TS_MARCH_QWEN3MOE && !c->n_expert)
        return ts_fail(err, TS_ERR_FORMAT, "%s: qwen3moe needs expert_count > 0", m->g->file.path);
    if (c->n_expert && !c->n_ff_exp)
        c->n_ff_exp = expert_ff_from_tensors(m);
    if (c->n_expert && !c->n_ff_exp)
        c->n_ff_exp = c->n_ff / c->n_expert_used; /* llama.cpp's qwen3moe fallback */
    c->kq_scale = 1.0f / sqrtf((float)c->head_dim);
    if (c->arch == TS_MARCH_LLAMA && (st = get_float(m, "attention.scale", false, &c->kq_scale, err)))
        return st;
    if (c->kq_scale == 0.0f)
        c->kq_scale = 1.0f / sqrtf((float)c->head_dim);
    if ((st = rope_params(m, err)))
        return st;
    if (c->arch == TS_MARCH_DEEPSEEK2)
        return ts_deepseek_config(m, err);
    if (c->arch == TS_MARCH_GLM4MOE)
        return ts_glm_config(m, err);
    if (c->arch == TS_MARCH_GPTOSS)
        return ts_gptoss_config(m, err);
    return TS_OK;
}

static ts_status load_layer(ts_model *m, int64_t il, ts_err *err)
{
    const ts_config *c = &m->c;
    if (c->arch == TS_MARCH_DEEPSEEK2)
        return ts_deepseek_load_layer(m, il, err);
    if (c->arch == TS_MARCH_GLM4MOE)
        return ts_glm_load_layer(m, il, err);
    if (c->arch == TS_MARCH_GPTOSS)
        return ts_gptoss_load_layer(m, il, err);
    ts_layer_weights *l = &m->w.layers[il];
    const int64_t nq = c->n_head * c->head_dim, nk = c->n_head_kv * c->head_dim, nv = c->n_head_kv * c->head_dim_v;
    const int64_t no = c->n_head * c->head_dim_v;
    char n[128];
    ts_status st;
#define NAME(s) (snprintf(n, sizeof n, "blk.%lld." s, (long long)il), n)
    bool qk_norm = c->arch == TS_MARCH_QWEN3 || c->arch == TS_MARCH_QWEN3MOE;
    if ((st = load_vec(m, NAME("attn_norm.weight"), c->n_embd, true, &l->attn_norm, err)) ||
        (st = load_vec(m, NAME("ffn_norm.weight"), c->n_embd, true, &l->ffn_norm, err)) ||
        (st = load_vec(m, NAME("attn_q_norm.weight"), c->head_dim, qk_norm, &l->q_norm, err)) ||
        (st = load_vec(m, NAME("attn_k_norm.weight"), c->head_dim, qk_norm, &l->k_norm, err)) ||
        (st = load_vec(m, NAME("attn_q.bias"), nq, c->arch == TS_MARCH_QWEN2, &l->bq, err)) ||
        (st = load_vec(m, NAME("attn_k.bias"), nk, c->arch == TS_MARCH_QWEN2, &l->bk, err)) ||
        (st = load_vec(m, NAME("attn_v.bias"), nv, c->arch == TS_MARCH_QWEN2, &l->bv, err)) ||
        (st = load_vec(m, NAME("attn_output.bias"), c->n_embd, false, &l->bo, err)) ||
        (st = load_weight(m, NAME("attn_q.weight"), c->n_embd, nq, 1, true, &l->wq, err)) ||
        (st = load_weight(m, NAME("attn_k.weight"), c->n_embd, nk, 1, true, &l->wk, err)) ||
        (st = load_weight(m, NAME("attn_v.weight"), c->n_embd, nv, 1, true, &l->wv, err)) ||
        (st = load_weight(m, NAME("attn_output.weight"), no, c->n_embd, 1, true, &l->wo, err)))
        return st;
    /* qwen3moe's mlp_only_layers keep a dense MLP: a layer is MoE when it has a router. */
    l->moe = c->n_expert > 0 && find(m, NAME("ffn_gate_inp.weight"));
    if (l->moe) {
        if ((st = load_weight(m, NAME("ffn_gate_inp.weight"), c->n_embd, c->n_expert, 1, true, &l->gate_inp, err)) ||
            (st = load_weight(m, NAME("ffn_gate_exps.weight"), c->n_embd, c->n_ff_exp, c->n_expert, true, &l->gate_exps, err)) ||
            (st = load_weight(m, NAME("ffn_up_exps.weight"), c->n_embd, c->n_ff_exp, c->n_expert, true, &l->up_exps, err)) ||
            (st = load_weight(m, NAME("ffn_down_exps.weight"), c->n_ff_exp, c->n_embd, c->n_expert, true, &l->down_exps, err)))
            return st;
        return TS_OK;
    }
    if (c->n_ff < 1)
        return ts_fail(err, TS_ERR_FORMAT, "%s: layer %lld is dense but feed_forward_length is missing",
                       m->g->file.path, (long long)il);
    if ((st = load_weight(m, NAME("ffn_gate.weight"), c->n_embd, c->n_ff, 1, true, &l->ffn_gate, err)) ||
        (st = load_weight(m, NAME("ffn_up.weight"), c->n_embd, c->n_ff, 1, true, &l->ffn_up, err)) ||
        (st = load_weight(m, NAME("ffn_down.weight"), c->n_ff, c->n_embd, 1, true, &l->ffn_down, err)) ||
        (st = load_vec(m, NAME("ffn_gate.bias"), c->n_ff, false, &l->ffn_gate_b, err)) ||
        (st = load_vec(m, NAME("ffn_up.bias"), c->n_ff, false, &l->ffn_up_b, err)) ||
        (st = load_vec(m, NAME("ffn_down.bias"), c->n_embd, false, &l->ffn_down_b, err)))
        return st;
#undef NAME
    return TS_OK;
}

static ts_status load_weights(ts_model *m, ts_err *err)
{
    ts_config *c = &m->c;
    ts_weights *w = &m->w;
    const ts_gguf_tensor *te = find(m, "token_embd.weight");
    if (!te)
        return ts_fail(err, TS_ERR_FORMAT, "%s: missing tensor token_embd.weight", m->g->file.path);
    c->n_vocab = te->t.ne[1];
    if (c->n_vocab < 1 || c->n_vocab > INT32_MAX)
        return ts_fail(err, TS_ERR_FORMAT, "%s: token_embd.weight has %lld rows", m->g->file.path,
                       (long long)c->n_vocab);
    ts_status st;
    if ((st = load_weight(m, "token_embd.weight", c->n_embd, c->n_vocab, 1, true, &w->tok_embd, err)) ||
        (st = load_weight(m, "output.weight", c->n_embd, c->n_vocab, 1, false, &w->output, err)) ||
        (st = load_vec(m, "output_norm.weight", c->n_embd, true, &w->output_norm, err)))
        return st;
    if (!w->output.data)
        w->output = w->tok_embd; /* tied embeddings */
    if (c->arch == TS_MARCH_LLAMA && (st = load_vec(m, "rope_freqs.weight", c->n_rot / 2, false, &w->rope_freqs, err)))
        return st;
    w->layers = calloc((size_t)c->n_layer, sizeof *w->layers);
    if (!w->layers)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (int64_t il = 0; il < c->n_layer; il++)
        if ((st = load_layer(m, il, err)))
            return st;
    return TS_OK;
}

ts_status ts_model_load(const char *path, int n_threads, ts_model **out, ts_err *err)
{
    *out = NULL;
    ts_model *m = calloc(1, sizeof *m);
    if (!m)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    m->n_threads = n_threads > 0 ? n_threads : ts_cpu_count();
    m->ggml_act = true;
    ts_status st = ts_gguf_open(path, &m->g, err);
    if (!st)
        st = load_config(m, err);
    if (!st)
        st = load_weights(m, err);
    if (st) {
        ts_model_free(m);
        return st;
    }
    *out = m;
    return TS_OK;
}

static void run_state_free(ts_run_state *s)
{
    float **bufs[] = {&s->x, &s->xb, &s->q, &s->k, &s->v, &s->att, &s->hb, &s->hb2, &s->ffn_out, &s->moe_x,
                      &s->router, &s->sel_w, &s->rope_cs, &s->xn, &s->tile, &s->panel, &s->attn, &s->ext};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        free(*bufs[i]);
        *bufs[i] = NULL;
    }
    free(s->sel);
    free(s->sel_row);
    free(s->act);
    s->sel = NULL;
    s->sel_row = NULL;
    s->act = NULL;
    s->act_cap = 0;
    s->ext_cap = 0;
    s->cap = 0;
}

/* Grows the scratch to n tokens (kept between evaluations). */
ts_status ts_run_state_reserve(ts_model *m, int64_t n, ts_err *err)
{
    ts_run_state *s = &m->s;
    if (n <= s->cap)
        return TS_OK;
    run_state_free(s);
    const ts_config *c = &m->c;
    const int64_t nt = m->n_threads, ku = c->n_expert_used > 0 ? c->n_expert_used : 1;
    int64_t ff = c->n_ff > c->n_ff_exp * ku ? c->n_ff : c->n_ff_exp * ku;
    s->attn_per_thread = ts_attention_scratch_floats(c, n);
    struct { float **p; int64_t n; } want[] = {
        {&s->x, n * c->n_embd}, {&s->xb, n * c->n_embd}, {&s->xn, n * c->n_embd},
        {&s->q, n * c->n_head * c->head_dim}, {&s->k, n * c->n_head_kv * c->head_dim},
        {&s->v, n * c->n_head_kv * c->head_dim_v}, {&s->att, n * c->n_head * c->head_dim_v},
        {&s->hb, n * ff}, {&s->hb2, n * ff}, {&s->ffn_out, n * c->n_embd * ku}, {&s->moe_x, c->n_expert ? n * ku * c->n_embd : 1},
        {&s->router, n * (c->n_expert ? c->n_expert : 1)}, {&s->sel_w, n * ku}, {&s->rope_cs, n * c->n_rot},
        {&s->tile, nt * TS_MM_ROWS * TS_MM_KC},
        {&s->panel, nt * TS_MM_KC * TS_GEMM_NR}, {&s->attn, nt * s->attn_per_thread},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        *want[i].p = ts_big_alloc((size_t)want[i].n * sizeof(float));
        if (!*want[i].p) {
            run_state_free(s);
            return ts_fail(err, TS_ERR_NOMEM, "out of memory for %lld tokens of scratch", (long long)n);
        }
    }
    s->sel = malloc((size_t)(n * ku) * sizeof *s->sel);
    s->sel_row = malloc((size_t)(n * ku) * sizeof *s->sel_row);
    if (!s->sel || !s->sel_row) {
        run_state_free(s);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory for %lld tokens of scratch", (long long)n);
    }
    s->cap = n;
    return TS_OK;
}

ts_status ts_run_state_ext(ts_model *m, int64_t n, ts_err *err)
{
    ts_run_state *s = &m->s;
    if (n <= s->ext_cap)
        return TS_OK;
    free(s->ext);
    s->ext = ts_big_alloc((size_t)n * sizeof(float));
    s->ext_cap = s->ext ? n : 0;
    if (!s->ext)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory for %lld floats of scratch", (long long)n);
    return TS_OK;
}

ts_status ts_ml_vec(ts_model *m, const char *name, int64_t n, bool required, float **out, ts_err *err)
{
    return load_vec(m, name, n, required, out, err);
}

ts_status ts_ml_weight(ts_model *m, const char *name, int64_t n_in, int64_t n_out, int64_t n_mat, bool required,
                       ts_weight *w, ts_err *err)
{
    return load_weight(m, name, n_in, n_out, n_mat, required, w, err);
}

ts_status ts_ml_int(const ts_model *m, const char *suffix, bool required, int64_t min, int64_t max, int64_t *out,
                    ts_err *err)
{
    return get_int(m, suffix, required, min, max, out, err);
}

ts_status ts_ml_float(const ts_model *m, const char *suffix, bool required, float *out, ts_err *err)
{
    return get_float(m, suffix, required, out, err);
}

bool ts_ml_has(const ts_model *m, const char *name)
{
    return find(m, name) != NULL;
}

ts_status ts_ml_keep(ts_model *m, float *p, ts_err *err)
{
    return keep(m, p, err);
}

void ts_model_free(ts_model *m)
{
    if (!m)
        return;
    run_state_free(&m->s);
    for (size_t i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->w.layers);
    ts_gguf_close(m->g);
    free(m);
}

int64_t ts_model_n_vocab(const ts_model *m) { return m->c.n_vocab; }
int64_t ts_model_n_ctx_train(const ts_model *m) { return m->c.n_ctx_train; }
const char *ts_model_arch(const ts_model *m) { return m->c.arch_name; }
const ts_gguf *ts_model_gguf(const ts_model *m) { return m->g; }
int ts_model_n_threads(const ts_model *m) { return m->n_threads; }
void ts_model_set_kv_f16(ts_model *m, bool on) { m->kv_f16 = on; }
void ts_model_set_ggml_activations(ts_model *m, bool on) { m->ggml_act = on; }

void ts_model_set_matmul_hook(ts_model *m, ts_matmul_hook hook, void *ctx)
{
    m->hook = hook;
    m->hook_ctx = ctx;
}
