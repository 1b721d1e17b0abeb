/* The planner: llama.cpp's llama_model_quantize type decisions, tensor by
 * tensor, in llama.cpp's order (its counters depend on it). */
#include "planner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- which tensors are quantized at all (llama.cpp's tensor_allows_quantization) ---- */

/* Name fragments llama.cpp never quantizes: norms, routers, tiny or
 * position-like tables of various architectures. */
static const char *const never_quantized[] = {
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
    "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
    "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
    "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
    "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
    "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
    "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
    ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
};

bool ts_quant_tensor_allowed(const char *name, int n_dims)
{
    if (n_dims < 2)
        return false;
    size_t len = strlen(name);
    if (len < 6 || strcmp(name + len - 6, "weight") != 0)
        return false;
    if (!strcmp(name, "position_embd.weight") || !strcmp(name, "token_types.weight"))
        return false;
    for (size_t i = 0; i < sizeof never_quantized / sizeof never_quantized[0]; i++)
        if (strstr(name, never_quantized[i]))
            return false;
    return true;
}

/* ggml_n_dims: the stored dimension count without trailing 1s. */
static int effective_dims(const int64_t *ne)
{
    for (int i = TS_MAX_DIMS - 1; i >= 1; i--)
        if (ne[i] > 1)
            return i + 1;
    return 1;
}

static bool is_quantized(ts_dtype t) { return t != TS_F32 && t != TS_F16 && t != TS_BF16; }

static uint32_t block_of(ts_dtype t)
{
    const ts_dtype_info *i = ts_dtype_get(t);
    return i ? i->block_size : 1;
}

/* ---- the state llama.cpp keeps while it walks the tensors ---- */

typedef struct {
    const ts_qmodel *m;
    const ts_qplan_opts *o;
    const ts_ftype_info *ftype;
    ts_qplan *plan;
    bool tied_embeddings, falcon, is_70b;
    int n_attn_v, i_attn_v, i_ffn_down, i_ffn_gate, i_ffn_up;
} plan_state;

/* llama.cpp's LLM_TYPE_70B, the only model size its rules look at. */
static bool model_is_70b(const ts_qmodel *m)
{
    int64_t n = m->n_layer - m->n_layer_nextn;
    if (!strcmp(m->arch, "llama"))
        return m->n_expert != 8 && n == 80 && m->n_head != m->n_head_kv;
    if (!strcmp(m->arch, "deci") || !strcmp(m->arch, "olmo") || !strcmp(m->arch, "qwen2"))
        return n == 80;
    if (!strcmp(m->arch, "jais2"))
        return n == 68;
    return false;
}

/* The layer an ffn tensor belongs to: the counter for dense models; parsed
 * from the name when there are experts, since llama.cpp cannot count there. */
static ts_status layer_of(const plan_state *s, const char *name, int counter, int *layer, ts_err *err)
{
    *layer = counter;
    if (s->m->n_expert <= 1)
        return TS_OK;
    int l;
    if (sscanf(name, "blk.%d.", &l) != 1)
        return ts_fail(err, TS_ERR_FORMAT, "tensor %s: cannot tell its layer (expected blk.N.)", name);
    if (l < 0 || l >= s->m->n_layer)
        return ts_fail(err, TS_ERR_FORMAT, "tensor %s: layer %d, but the model has %lld", name, l,
                       (long long)s->m->n_layer);
    *layer = l;
    return TS_OK;
}

/* The mix rule for one tensor, advancing llama.cpp's counters as it does. */
static ts_status mix_type(plan_state *s, const ts_qplan_tensor *t, ts_tensor_cat cat, ts_dtype *out, ts_err *err)
{
    ts_mix_ctx c = {
        .ftype = s->ftype->ftype, .cat = cat, .ne0 = t->ne[0], .tied_embeddings = s->tied_embeddings,
        .output_tensor_type = s->o->output_tensor_type, .falcon = s->falcon, .is_70b = s->is_70b,
        .has_imatrix = s->o->imatrix != NULL, .n_gqa = s->m->n_head_kv ? s->m->n_head / s->m->n_head_kv : 0,
        .n_expert = s->m->n_expert, .i_attn_v = s->i_attn_v, .n_attn_v = s->n_attn_v,
        .n_layer = (int)s->m->n_layer,
    };
    ts_status st = TS_OK;
    bool output_rule = cat == TS_CAT_OUTPUT || (s->tied_embeddings && cat == TS_CAT_TOKEN_EMBD);
    if (!output_rule) {
        if (cat == TS_CAT_FFN_DOWN)
            st = layer_of(s, t->name, s->i_ffn_down++, &c.i_layer, err);
        else if (cat == TS_CAT_FFN_GATE)
            st = layer_of(s, t->name, s->i_ffn_gate++, &c.i_layer, err);
        else if (cat == TS_CAT_FFN_UP)
            st = layer_of(s, t->name, s->i_ffn_up++, &c.i_layer, err);
        else if (ts_cat_is_attn_v(cat))
            s->i_attn_v++;
    }
    *out = ts_mix_type(&c);
    return st;
}

/* A row that does not fit the type's block: the nearest 32-block type, or F16
 * when not even 32 divides it (llama.cpp's tensor_type_fallback). */
static ts_status fallback(plan_state *s, ts_qplan_tensor *t, ts_dtype type, ts_dtype *out, ts_err *err)
{
    *out = type;
    if (t->ne[0] % block_of(type) == 0)
        return TS_OK;
    s->plan->n_fallback++;
    t->fallback = true;
    ts_dtype r;
    switch (type) {
    case TS_IQ1_S: case TS_IQ1_M: case TS_IQ2_XXS: case TS_IQ2_XS: case TS_IQ2_S: case TS_IQ3_XXS:
    case TS_IQ3_S: case TS_IQ4_XS: r = TS_IQ4_NL; break;
    case TS_Q2_K: case TS_Q3_K: case TS_TQ1_0: case TS_TQ2_0: r = TS_Q4_0; break;
    case TS_Q4_K: r = TS_Q5_0; break;
    case TS_Q5_K: r = TS_Q5_1; break;
    case TS_Q6_K: r = TS_Q8_0; break;
    default:
        if (block_of(type) > 32)
            return ts_fail(err, TS_ERR_UNSUPPORTED, "tensor %s: no fallback type for %s (row of %lld)", t->name,
                           ts_dtype_name(type), (long long)t->ne[0]);
        r = type;
    }
    *out = t->ne[0] % block_of(r) == 0 ? r : TS_F16;
    return TS_OK;
}

/* MXFP4 input is what the release shipped (gpt-oss experts, repacked bit for
 * bit): requantizing it to the mix's type would only lose precision, so it is
 * kept unless --allow-requantize or a --tensor-type rule asks otherwise.
 * llama.cpp's --dry-run lists the mix's type here, and its real run refuses
 * the file without --allow-requantize; with it, Tessera follows llama.cpp. */
static bool keep_mxfp4(const plan_state *s, const ts_qplan_tensor *t)
{
    return t->src_type == TS_MXFP4 && !t->overridden && !s->o->allow_requantize;
}

/* llama.cpp's llama_tensor_get_type for a tensor it may quantize. */
static ts_status tensor_type(plan_state *s, ts_qplan_tensor *t, ts_dtype *out, ts_err *err)
{
    const ts_qplan_opts *o = s->o;
    ts_tensor_cat cat = ts_tensor_category(t->name);
    ts_dtype type;
    if (o->token_embedding_type != TS_DTYPE_INVALID && cat == TS_CAT_TOKEN_EMBD) {
        /* per_layer_token_embd follows --token-embedding-type unless a --tensor-type names it */
        bool named = !strcmp(t->name, "per_layer_token_embd.weight") && ts_qoverrides_match(o->overrides, t->name, &type);
        if (!named) {
            t->overridden = true;
            *out = o->token_embedding_type;
            return TS_OK;
        }
    }
    if (o->output_tensor_type != TS_DTYPE_INVALID && cat == TS_CAT_OUTPUT) {
        t->overridden = true;
        *out = o->output_tensor_type;
        return TS_OK;
    }
    *out = s->ftype->default_type;
    if (!is_quantized(*out)) {
        if (keep_mxfp4(s, t))
            *out = TS_MXFP4;
        return TS_OK;
    }
    ts_status st = TS_OK;
    if (ts_qoverrides_match(o->overrides, t->name, &type))
        t->overridden = true;
    else if (o->pure)
        type = s->ftype->default_type;
    else
        st = mix_type(s, t, cat, &type, err); /* also for a kept tensor: it advances the counters */
    if (st == TS_OK && keep_mxfp4(s, t)) {
        *out = TS_MXFP4;
        return TS_OK;
    }
    return st != TS_OK ? st : fallback(s, t, type, out, err);
}

/* llama.cpp's tensor_requires_imatrix, for the types we write: Q2_K inside a Q2_K_S file. */
static bool requires_imatrix(const char *name, ts_dtype type, ts_ftype ftype)
{
    if (!strcmp(name, "token_embd.weight") || !strcmp(name, "per_layer_token_embd.weight") ||
        !strcmp(name, "output.weight"))
        return false;
    switch (type) {
    case TS_IQ3_XXS: case TS_IQ2_XXS: case TS_IQ2_XS: case TS_IQ2_S: case TS_IQ1_M: case TS_IQ1_S: return true;
    case TS_Q2_K: return ftype == TS_FTYPE_Q2_K_S;
    default: return false;
    }
}

/* ---- order: llama.cpp's weights_map sorts by layer (non-layer tensors first), then name ---- */

typedef struct {
    int layer; /* -1 for tensors outside the blocks */
    const char *name;
    size_t index;
} order_key;

static int cmp_llama_order(const void *a, const void *b)
{
    const order_key *x = a, *y = b;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* ---- checks ---- */

static ts_status check_imatrix(const ts_qplan *plan, const ts_imatrix *im, ts_err *err)
{
    for (size_t i = 0; i < im->n_entries; i++) {
        const ts_imatrix_entry *e = &im->entries[i];
        const ts_qplan_tensor *t = NULL;
        for (size_t k = 0; k < plan->n && !t; k++)
            if (!strcmp(plan->t[k].name, e->name))
                t = &plan->t[k];
        if (!t)
            return ts_fail(err, TS_ERR_ARG, "imatrix %s: entry %s names no tensor of the model (an imatrix for another model?)",
                           im->path, e->name);
        int64_t want = t->ne[0] * t->ne[2];
        if (e->n_values != want && strcmp(t->name, "token_embd.weight") != 0)
            return ts_fail(err, TS_ERR_ARG,
                           "imatrix %s: entry %s has %lld values, the model's tensor needs %lld (ne[0] %lld x %lld "
                           "matrices; an imatrix for another model?)",
                           im->path, e->name, (long long)e->n_values, (long long)want, (long long)t->ne[0],
                           (long long)t->ne[2]);
    }
    return TS_OK;
}

static ts_status check_tensor(const ts_qplan_opts *o, ts_qplan *plan, ts_qplan_tensor *t, ts_err *err)
{
    if (t->type == t->src_type)
        return TS_OK;
    /* a --tensor-type rule that names an MXFP4 tensor is the one way to requantize it without --allow-requantize */
    if (is_quantized(t->src_type) && !o->allow_requantize && !(t->src_type == TS_MXFP4 && t->overridden))
        return ts_fail(err, TS_ERR_ARG, "tensor %s is already quantized (%s); requantizing loses quality, "
                       "pass --allow-requantize to do it anyway", t->name, ts_dtype_name(t->src_type));
    if (t->src_type != TS_F32 && t->src_type != TS_F16 && t->src_type != TS_BF16 && !ts_quant_type_writable(t->src_type))
        return ts_fail(err, TS_ERR_UNSUPPORTED, "tensor %s: cannot convert from %s", t->name, ts_dtype_name(t->src_type));
    if (t->ne[0] % block_of(t->type) != 0)
        return ts_fail(err, TS_ERR_ARG, "tensor %s: rows of %lld do not fit %s (blocks of %u)", t->name,
                       (long long)t->ne[0], ts_dtype_name(t->type), block_of(t->type));
    const ts_imatrix_entry *e = ts_imatrix_find(o->imatrix, t->name);
    if (e && e->n_values == t->ne[0] * t->ne[2] && t->ne[3] == 1) { /* one slice per matrix of ne[2] */
        t->imatrix = e->weights;
        plan->n_imatrix_used++;
    }
    if (t->requires_imatrix && !t->imatrix) {
        if (o->dry_run) {
            plan->needs_imatrix = true;
            return TS_OK;
        }
        return ts_fail(err, TS_ERR_ARG, "tensor %s: %s in a %s file needs an importance matrix (%s); "
                       "pass --imatrix FILE", t->name, ts_dtype_name(t->type),
                       ts_ftype_get(o->ftype)->name, o->imatrix ? "the imatrix has no entry for it" : "none given");
    }
    return TS_OK;
}

static ts_status plan_tensors(plan_state *s, ts_err *err)
{
    ts_qplan *plan = s->plan;
    order_key *order = malloc((plan->n ? plan->n : 1) * sizeof *order);
    if (!order)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < plan->n; i++) {
        int layer;
        order[i] = (order_key){sscanf(plan->t[i].name, "blk.%d.", &layer) == 1 ? layer : -1, plan->t[i].name, i};
        ts_tensor_cat cat = ts_tensor_category(plan->t[i].name);
        if (ts_cat_is_attn_v(cat))
            s->n_attn_v++;
        if (cat == TS_CAT_OUTPUT)
            s->tied_embeddings = false;
    }
    qsort(order, plan->n, sizeof *order, cmp_llama_order);
    ts_status st = TS_OK;
    for (size_t k = 0; k < plan->n && st == TS_OK; k++) {
        ts_qplan_tensor *t = &plan->t[order[k].index];
        t->quantizable = ts_quant_tensor_allowed(t->name, effective_dims(t->ne));
        t->type = t->src_type;
        if (t->quantizable && (st = tensor_type(s, t, &t->type, err)) != TS_OK)
            break;
        t->requires_imatrix = t->quantizable && requires_imatrix(t->name, t->type, s->ftype->ftype);
    }
    free(order);
    return st;
}

ts_status ts_qplan_build(const ts_qmodel *m, const ts_tensor *const *tensors, size_t n, const ts_qplan_opts *o,
                         ts_qplan *plan, ts_err *err)
{
    memset(plan, 0, sizeof *plan);
    plan_state s = {.m = m, .o = o, .ftype = ts_ftype_get(o->ftype), .plan = plan, .tied_embeddings = true,
                    .falcon = !strcmp(m->arch, "falcon"), .is_70b = model_is_70b(m)};
    if (!s.ftype)
        return ts_fail(err, TS_ERR_ARG, "file type %d is not one tessera quantize writes", (int)o->ftype);
    if (!(plan->t = calloc(n ? n : 1, sizeof *plan->t)))
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    plan->n = n;
    for (size_t i = 0; i < n; i++) {
        ts_qplan_tensor *t = &plan->t[i];
        snprintf(t->name, sizeof t->name, "%s", tensors[i]->name);
        t->n_dims = tensors[i]->n_dims;
        memcpy(t->ne, tensors[i]->ne, sizeof t->ne);
        t->src_type = tensors[i]->dtype;
        t->src_bytes = tensors[i]->nbytes;
    }
    ts_status st = plan_tensors(&s, err);
    if (st == TS_OK && o->imatrix)
        st = check_imatrix(plan, o->imatrix, err);
    for (size_t i = 0; i < n && st == TS_OK; i++) {
        ts_qplan_tensor *t = &plan->t[i];
        if ((st = check_tensor(o, plan, t, err)) != TS_OK)
            break;
        uint64_t nel, row;
        if (!ts_shape_nelements(TS_MAX_DIMS, t->ne, &nel) || !ts_dtype_row_bytes(t->type, (uint64_t)t->ne[0], &row) ||
            !ts_mul_u64(row, t->ne[0] ? nel / (uint64_t)t->ne[0] : 0, &t->bytes)) {
            st = ts_fail(err, TS_ERR_FORMAT, "tensor %s: size overflows", t->name);
            break;
        }
        plan->n_elements += nel;
        plan->bytes_in += t->src_bytes;
        plan->bytes_out += t->bytes;
    }
    if (st != TS_OK)
        ts_qplan_free(plan);
    return st;
}

void ts_qplan_free(ts_qplan *plan)
{
    free(plan->t);
    memset(plan, 0, sizeof *plan);
}
