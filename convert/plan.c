/* Builds the output tensor plan from an architecture's name rules. */
#include "plan.h"
#include "fp8.h"
#include "xform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool parse_index(const char **s, int64_t *out)
{
    const char *p = *s;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
        return false;
    int64_t v = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p - '0');
        if (v > 1000000)
            return false;
        p++;
    }
    *s = p;
    *out = v;
    return true;
}

bool ts_name_match(const char *pattern, const char *name, int64_t *layer, int64_t *expert)
{
    *layer = *expert = -1;
    const char *p = pattern, *n = name;
    while (*p) {
        if (!strncmp(p, "{L}", 3)) {
            if (!parse_index(&n, layer))
                return false;
            p += 3;
        } else if (!strncmp(p, "{E}", 3)) {
            if (!parse_index(&n, expert))
                return false;
            p += 3;
        } else if (*p++ != *n++) {
            return false;
        }
    }
    return *n == 0;
}

/* model.layers.N.* with N >= n_layer. */
static bool extra_layer(const char *name, int64_t n_layer)
{
    int64_t layer;
    if (strncmp(name, "model.layers.", 13) != 0)
        return false;
    const char *p = name + 13;
    return parse_index(&p, &layer) && *p == '.' && layer >= n_layer;
}

static void format_name(const char *pattern, int64_t layer, char *out, size_t n)
{
    size_t o = 0;
    for (const char *p = pattern; *p && o + 1 < n;) {
        if (!strncmp(p, "{L}", 3)) {
            o += (size_t)snprintf(out + o, n - o, "%lld", (long long)layer);
            p += 3;
        } else {
            out[o++] = *p++;
        }
    }
    out[o < n ? o : n - 1] = 0;
}

/* Which type a tensor gets: 1-D tensors, norms and routers stay F32 (as
 * llama.cpp's converter and loader expect); q8_0 falls back to F16 for rows
 * that are not a multiple of its block. */
static ts_dtype out_type(const char *name, int n_dims, int64_t ne0, ts_dtype src, ts_dtype target)
{
    size_t len = strlen(name);
    bool is_norm = len > 12 && !strcmp(name + len - 12, "_norm.weight");
    bool is_bias = len > 5 && !strcmp(name + len - 5, ".bias"); /* 2-D too (gpt-oss expert biases), as llama.cpp */
    if (n_dims <= 1 || is_norm || is_bias || strstr(name, "ffn_gate_inp") || strstr(name, "rope_freqs"))
        return TS_F32;
    ts_dtype t = target;
    if (t == TS_DTYPE_INVALID) /* auto */
        t = (src == TS_F32 || src == TS_F16 || src == TS_BF16) ? src : (src == TS_F64 ? TS_F32 : TS_BF16);
    if (t == TS_Q8_0 && ne0 % 32 != 0)
        t = TS_F16;
    return t;
}

static int cmp_out(const void *a, const void *b)
{
    const ts_out_tensor *x = a, *y = b;
    if (x->sort_group != y->sort_group)
        return x->sort_group - y->sort_group;
    if (x->sort_layer != y->sort_layer)
        return x->sort_layer - y->sort_layer;
    if (x->sort_rule != y->sort_rule)
        return x->sort_rule - y->sort_rule;
    return strcmp(x->name, y->name);
}

static ts_out_tensor *find_out(ts_plan *plan, const char *name)
{
    for (size_t i = 0; i < plan->n; i++)
        if (!strcmp(plan->t[i].name, name))
            return &plan->t[i];
    return NULL;
}

static ts_status check_source(const ts_conv *c, const ts_tensor *t, ts_err *err)
{
    const ts_dtype_info *info = ts_dtype_get(t->dtype);
    if (!info || !info->is_float)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "tensor %s: dtype %s is not a floating-point type convert can read",
                       t->name, ts_dtype_name(t->dtype));
    if (t->n_dims < 1 || t->n_dims > 2)
        return ts_fail(err, TS_ERR_FORMAT, "tensor %s: expected 1 or 2 dimensions, got %d", t->name, t->n_dims);
    (void)c;
    return TS_OK;
}

static ts_status add_source(const ts_conv *c, ts_plan *plan, const ts_tensor *t, const ts_name_rule *rule,
                            int rule_index, int64_t layer, int64_t expert, ts_dtype target, ts_err *err)
{
    const ts_hparams *hp = &c->hp;
    char name[TS_MAX_NAME];
    format_name(rule->gguf, layer, name, sizeof name);
    if (layer >= hp->n_layer)
        return ts_fail(err, TS_ERR_FORMAT, "tensor %s: layer %lld, but config.json has %lld layers", t->name,
                       (long long)layer, (long long)hp->n_layer);
    if (expert >= 0 && expert >= hp->n_expert)
        return ts_fail(err, TS_ERR_FORMAT, "tensor %s: expert %lld, but config.json has %lld experts", t->name,
                       (long long)expert, (long long)hp->n_expert);
    ts_status st = check_source(c, t, err);
    if (st != TS_OK)
        return st;
    ts_out_tensor *o = find_out(plan, name);
    if (!o) {
        ts_out_tensor *grown = realloc(plan->t, (plan->n + 1) * sizeof *plan->t);
        if (!grown)
            return ts_fail(err, TS_ERR_NOMEM, "out of memory");
        plan->t = grown;
        o = &plan->t[plan->n++];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "%s", name);
        o->n_src = expert >= 0 ? (size_t)hp->n_expert : 1;
        o->src = calloc(o->n_src, sizeof *o->src);
        o->src_data = calloc(o->n_src, sizeof *o->src_data);
        if (!o->src || !o->src_data)
            return ts_fail(err, TS_ERR_NOMEM, "out of memory");
        o->n_dims = t->n_dims;
        for (int i = 0; i < TS_MAX_DIMS; i++)
            o->ne[i] = t->ne[i];
        if (expert >= 0) {
            o->n_dims = 3;
            o->ne[2] = hp->n_expert;
        }
        o->xform = rule->xform;
        if (rule->xform == TS_XF_MLA_K_B || rule->xform == TS_XF_MLA_V_B) {
            ts_status ms = ts_xform_mla_shape(hp, t, rule->xform, o, err);
            if (ms != TS_OK)
                return ms;
        }
        o->xform_groups = rule->xform == TS_XF_PERMUTE_Q ? hp->n_head : rule->xform == TS_XF_PERMUTE_K ? hp->n_head_kv : 0;
        o->type = out_type(name, o->n_dims, o->ne[0], t->dtype, target);
        bool top = layer < 0;
        o->sort_group = top ? (strstr(name, "token_embd") || strstr(name, "rope_freqs") ? 0 : 2) : 1;
        o->sort_layer = (int)layer;
        o->sort_rule = rule_index;
    } else if (expert < 0 || o->n_src == 1) {
        return ts_fail(err, TS_ERR_FORMAT, "tensor %s: a second source for %s", t->name, name);
    }
    size_t slot = expert >= 0 ? (size_t)expert : 0;
    if (o->src[slot])
        return ts_fail(err, TS_ERR_FORMAT, "tensor %s: duplicates %s", t->name, o->src[slot]->name);
    if (expert >= 0) {
        const ts_tensor *first = NULL;
        for (size_t i = 0; i < o->n_src && !first; i++)
            first = o->src[i];
        if (first && (first->ne[0] != t->ne[0] || first->ne[1] != t->ne[1] || first->n_dims != t->n_dims))
            return ts_fail(err, TS_ERR_FORMAT, "tensor %s: shape differs from %s (experts must match to be stacked)",
                           t->name, first->name);
    }
    o->src[slot] = t;
    return TS_OK;
}

static ts_status check_plan(const ts_conv *c, ts_plan *plan, ts_err *err)
{
    for (size_t i = 0; i < plan->n; i++) {
        ts_out_tensor *o = &plan->t[i];
        for (size_t e = 0; e < o->n_src; e++)
            if (!o->gen && !o->src[e])
                return ts_fail(err, TS_ERR_FORMAT, "%s: expert %zu of %zu is missing from the checkpoint", o->name, e,
                               o->n_src);
        if (o->xform == TS_XF_PERMUTE_Q || o->xform == TS_XF_PERMUTE_K) {
            int64_t rows = o->n_dims == 1 ? o->ne[0] : o->ne[1];
            if (o->xform_groups <= 0 || rows % (o->xform_groups * 2) != 0)
                return ts_fail(err, TS_ERR_FORMAT, "%s: %lld rows cannot be split into %lld heads of even size",
                               o->name, (long long)rows, (long long)o->xform_groups);
        }
    }
    if (!find_out(plan, "token_embd.weight"))
        return ts_fail(err, TS_ERR_FORMAT, "checkpoint has no token embedding (model.embed_tokens.weight)");
    for (int64_t l = 0; l < c->hp.n_layer; l++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%lld.attn_norm.weight", (long long)l);
        if (!find_out(plan, name))
            return ts_fail(err, TS_ERR_FORMAT, "checkpoint has no tensors for layer %lld of %lld (no %s)", (long long)l,
                           (long long)c->hp.n_layer, name);
    }
    return TS_OK;
}

/* The architecture's custom tensors (arch.h ts_custom_tensor) become outputs
 * whose rows its row function makes; they sort after the rule-made tensors of
 * their layer. */
static ts_status add_custom(const ts_conv *c, const ts_checkpoint *ckpt, ts_dtype target, ts_plan *plan, ts_err *err)
{
    if (!c->custom_tensors)
        return TS_OK;
    ts_status st = c->custom_tensors(c, ckpt, target, &plan->custom, &plan->n_custom, err);
    for (size_t k = 0; k < plan->n_custom && st == TS_OK; k++) {
        const ts_custom_tensor *ct = &plan->custom[k];
        if (find_out(plan, ct->name))
            return ts_fail(err, TS_ERR_FORMAT, "%s: made twice (a rule and the %s converter)", ct->name,
                           c->arch->hf_name);
        ts_out_tensor *grown = realloc(plan->t, (plan->n + 1) * sizeof *plan->t);
        if (!grown)
            return ts_fail(err, TS_ERR_NOMEM, "out of memory");
        plan->t = grown;
        ts_out_tensor *o = &plan->t[plan->n++];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "%s", ct->name);
        o->type = ct->type;
        o->n_dims = ct->n_dims;
        memcpy(o->ne, ct->ne, sizeof o->ne);
        o->custom = ct;
        o->n_src = ct->n_src;
        o->src = calloc(ct->n_src, sizeof *o->src);
        o->src_data = calloc(ct->n_src, sizeof *o->src_data);
        if (!o->src || !o->src_data)
            return ts_fail(err, TS_ERR_NOMEM, "out of memory");
        memcpy(o->src, ct->src, ct->n_src * sizeof *o->src);
        o->sort_group = ct->layer < 0 ? 2 : 1;
        o->sort_layer = (int)ct->layer;
        o->sort_rule = 1000 + (int)k;
    }
    return st;
}

ts_status ts_plan_build(const ts_conv *c, const ts_checkpoint *ckpt, ts_dtype target, ts_plan *plan, ts_err *err)
{
    memset(plan, 0, sizeof *plan);
    ts_fp8_config fp8;
    ts_status st = ts_fp8_read_config(&c->hf->config, &fp8, err);
    size_t n = ts_checkpoint_n_tensors(ckpt);
    for (size_t i = 0; i < n && st == TS_OK; i++) {
        const ts_tensor *t = ts_checkpoint_tensor(ckpt, i);
        /* FP8 scales are paired with their weights below; MTP layers are dropped as llama.cpp does */
        if (ts_fp8_side_tensor(&fp8, t->name) || (c->drop_extra_layers && extra_layer(t->name, c->hp.n_layer)))
            continue;
        const ts_name_rule *rule = NULL;
        int rule_index = 0;
        int64_t layer = -1, expert = -1;
        for (const ts_name_rule *r = c->arch->rules; r->hf; r++, rule_index++)
            if (ts_name_match(r->hf, t->name, &layer, &expert)) {
                rule = r;
                break;
            }
        if (!rule) {
            st = ts_fail(err, TS_ERR_UNSUPPORTED, "tensor %s: no mapping to GGUF for %s (%s)", t->name,
                         c->arch->hf_name, c->arch->gguf_arch);
            break;
        }
        if (!rule->gguf)
            continue;
        /* Tied embeddings: the runtime reuses token_embd, so a stored lm_head copy is dropped. */
        if (c->hp.tied_embeddings && !strcmp(rule->gguf, "output.weight"))
            continue;
        st = add_source(c, plan, t, rule, rule_index, layer, expert, target, err);
        /* One source, several outputs (MLA kv_b -> attn_k_b, attn_v_b): later rules with the same pattern. */
        int k = rule_index + 1;
        for (const ts_name_rule *r = rule + 1; r->hf && st == TS_OK; r++, k++)
            if (r->gguf && !strcmp(r->hf, rule->hf))
                st = add_source(c, plan, t, r, k, layer, expert, target, err);
    }
    for (size_t g = 0; g < c->n_gen && st == TS_OK; g++) {
        ts_out_tensor *grown = realloc(plan->t, (plan->n + 1) * sizeof *plan->t);
        if (!grown) {
            st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
            break;
        }
        plan->t = grown;
        ts_out_tensor *o = &plan->t[plan->n++];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "%s", c->gen[g].name);
        o->type = TS_F32;
        o->n_dims = c->gen[g].n_dims;
        memcpy(o->ne, c->gen[g].ne, sizeof o->ne);
        o->gen = &c->gen[g];
        o->n_src = 1;
        o->sort_group = 0;
        o->sort_layer = -1;
    }
    if (st == TS_OK)
        st = add_custom(c, ckpt, target, plan, err);
    if (st == TS_OK)
        st = ts_fp8_pair(&fp8, c, ckpt, plan, err);
    if (st == TS_OK)
        st = check_plan(c, plan, err);
    if (st != TS_OK) {
        ts_plan_free(plan);
        return st;
    }
    qsort(plan->t, plan->n, sizeof *plan->t, cmp_out);
    return TS_OK;
}

void ts_plan_free(ts_plan *plan)
{
    for (size_t i = 0; i < plan->n; i++) {
        free(plan->t[i].src);
        free(plan->t[i].src_data);
        free(plan->t[i].scale);
        free(plan->t[i].scale_data);
    }
    free(plan->t);
    free(plan->custom);
    memset(plan, 0, sizeof *plan);
}
