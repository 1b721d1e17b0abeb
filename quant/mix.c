/* The per-ftype mix rules. Each ftype's rule is one function below that says,
 * per tensor role, what llama.cpp's llama_tensor_get_type_impl gives it; the
 * rules every ftype shares (output/token_embd, the 70B and 8-expert bumps)
 * are in ts_mix_type. Only the ftypes Tessera writes are here, so the
 * IQ1/IQ2/IQ3/TQ/MXFP4 branches of llama.cpp's function have no counterpart. */
#include "mix.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

#define KEEP TS_DTYPE_INVALID

/* llama.cpp's use_more_bits: the first and last eighth of the layers, and
 * every third layer in between. */
static bool use_more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* attn_output in every ftype: falcon has its own rule; models with exactly 8
 * experts get Q5_K in the ftypes whose list says so and nothing else; dense
 * models take the ftype's dense choice. */
static ts_dtype attn_output(const ts_mix_ctx *m, ts_dtype t, bool moe8_q5_k, ts_dtype dense, ts_dtype falcon)
{
    if (m->falcon)
        return falcon != KEEP ? falcon : t;
    if (m->n_expert == 8)
        return moe8_q5_k ? TS_Q5_K : t;
    return dense != KEEP ? dense : t;
}

static ts_dtype mix_q2_k(const ts_mix_ctx *m, ts_dtype t)
{
    switch (m->cat) {
    case TS_CAT_ATTN_V: return m->n_gqa >= 4 ? TS_Q4_K : TS_Q3_K;
    case TS_CAT_FFN_DOWN: return TS_Q3_K;
    case TS_CAT_ATTN_OUTPUT: return attn_output(m, t, true, TS_Q3_K, KEEP);
    default: return t;
    }
}

static ts_dtype mix_q2_k_s(const ts_mix_ctx *m, ts_dtype t)
{
    switch (m->cat) {
    case TS_CAT_ATTN_V: return m->n_gqa >= 4 ? TS_Q4_K : t;
    case TS_CAT_FFN_DOWN: return m->i_layer < m->n_layer / 8 ? TS_Q4_K : t;
    default: return t;
    }
}

static ts_dtype mix_q3_k_s(const ts_mix_ctx *m, ts_dtype t)
{
    return m->cat == TS_CAT_ATTN_OUTPUT ? attn_output(m, t, true, KEEP, KEEP) : t;
}

static ts_dtype mix_q3_k_m(const ts_mix_ctx *m, ts_dtype t)
{
    switch (m->cat) {
    case TS_CAT_ATTN_V: return m->i_attn_v < 2 ? TS_Q5_K : TS_Q4_K;
    case TS_CAT_FFN_DOWN:
        if (m->i_layer < m->n_layer / 16)
            return TS_Q5_K;
        return !m->falcon || use_more_bits(m->i_layer, m->n_layer) ? TS_Q4_K : TS_Q3_K;
    case TS_CAT_ATTN_OUTPUT: return attn_output(m, t, true, TS_Q4_K, KEEP);
    default: return t;
    }
}

static ts_dtype mix_q3_k_l(const ts_mix_ctx *m, ts_dtype t)
{
    switch (m->cat) {
    case TS_CAT_ATTN_V: return TS_Q5_K;
    case TS_CAT_FFN_DOWN: return m->falcon ? TS_Q4_K : TS_Q5_K;
    case TS_CAT_ATTN_OUTPUT: return attn_output(m, t, false, TS_Q5_K, TS_Q4_K);
    default: return t;
    }
}

static ts_dtype mix_q4_k_s(const ts_mix_ctx *m, ts_dtype t)
{
    switch (m->cat) {
    case TS_CAT_ATTN_V: return m->i_attn_v < 4 ? TS_Q5_K : t;
    case TS_CAT_FFN_DOWN: return !m->falcon && m->i_layer < m->n_layer / 8 ? TS_Q5_K : t;
    case TS_CAT_ATTN_OUTPUT: return attn_output(m, t, true, KEEP, KEEP);
    default: return t;
    }
}

static ts_dtype mix_q4_k_m(const ts_mix_ctx *m, ts_dtype t)
{
    switch (m->cat) {
    case TS_CAT_ATTN_V: return use_more_bits(m->i_attn_v, m->n_attn_v) ? TS_Q6_K : t;
    case TS_CAT_FFN_DOWN:
        if (m->falcon)
            return m->i_layer < m->n_layer / 16 ? TS_Q6_K : use_more_bits(m->i_layer, m->n_layer) ? TS_Q5_K : TS_Q4_K;
        return use_more_bits(m->i_layer, m->n_layer) ? TS_Q6_K : t;
    case TS_CAT_ATTN_OUTPUT: return attn_output(m, t, true, KEEP, KEEP);
    default: return t;
    }
}

static ts_dtype mix_q5_k_m(const ts_mix_ctx *m, ts_dtype t)
{
    switch (m->cat) {
    case TS_CAT_ATTN_V: return use_more_bits(m->i_attn_v, m->n_attn_v) ? TS_Q6_K : t;
    case TS_CAT_FFN_DOWN: return use_more_bits(m->i_layer, m->n_layer) ? TS_Q6_K : t;
    default: return t;
    }
}

/* Q4_0 / Q5_0 with an imatrix: the first eighth of ffn_down gets the _1
 * variant (without one, the plain mix stays as it always was). */
static ts_dtype mix_q4_0(const ts_mix_ctx *m, ts_dtype t)
{
    return m->cat == TS_CAT_FFN_DOWN && m->has_imatrix && m->i_layer < m->n_layer / 8 ? TS_Q4_1 : t;
}

static ts_dtype mix_q5_0(const ts_mix_ctx *m, ts_dtype t)
{
    return m->cat == TS_CAT_FFN_DOWN && m->has_imatrix && m->i_layer < m->n_layer / 8 ? TS_Q5_1 : t;
}

/* IQ4_NL and IQ4_XS share their rules. */
static ts_dtype mix_iq4(const ts_mix_ctx *m, ts_dtype t)
{
    switch (m->cat) {
    case TS_CAT_ATTN_V: return m->n_gqa >= 4 ? TS_Q5_K : t;
    case TS_CAT_FFN_DOWN: return m->i_layer < m->n_layer / 8 && !m->has_imatrix ? TS_Q5_K : t;
    case TS_CAT_ATTN_OUTPUT: return attn_output(m, t, true, KEEP, KEEP);
    default: return t;
    }
}

/* Q5_K_S, Q6_K, Q8_0, Q4_1, Q5_1: only the shared rules. */
static ts_dtype mix_plain(const ts_mix_ctx *m, ts_dtype t)
{
    (void)m;
    return t;
}

typedef struct {
    ts_ftype_info info;
    ts_dtype (*rule)(const ts_mix_ctx *m, ts_dtype t); /* NULL: not a quantized mix */
} mix_entry;

static const mix_entry mixes[] = {
    {{"Q2_K", TS_FTYPE_Q2_K, TS_Q2_K, "Q2_K; attn_v Q3_K/Q4_K, ffn_down Q3_K, attn_output Q3_K"}, mix_q2_k},
    {{"Q2_K_S", TS_FTYPE_Q2_K_S, TS_Q2_K, "Q2_K, fewer bumps than Q2_K; needs an imatrix"}, mix_q2_k_s},
    {{"Q3_K_S", TS_FTYPE_Q3_K_S, TS_Q3_K, "Q3_K everywhere"}, mix_q3_k_s},
    {{"Q3_K_M", TS_FTYPE_Q3_K_M, TS_Q3_K, "Q3_K; attn_v, ffn_down, attn_output Q4_K/Q5_K"}, mix_q3_k_m},
    {{"Q3_K_L", TS_FTYPE_Q3_K_L, TS_Q3_K, "Q3_K; attn_v, ffn_down, attn_output Q5_K"}, mix_q3_k_l},
    {{"Q4_0", TS_FTYPE_Q4_0, TS_Q4_0, "Q4_0 (legacy, 32-blocks)"}, mix_q4_0},
    {{"Q4_1", TS_FTYPE_Q4_1, TS_Q4_1, "Q4_1 (legacy, 32-blocks)"}, mix_plain},
    {{"Q5_0", TS_FTYPE_Q5_0, TS_Q5_0, "Q5_0 (legacy, 32-blocks)"}, mix_q5_0},
    {{"Q5_1", TS_FTYPE_Q5_1, TS_Q5_1, "Q5_1 (legacy, 32-blocks)"}, mix_plain},
    {{"Q4_K_S", TS_FTYPE_Q4_K_S, TS_Q4_K, "Q4_K; first attn_v and ffn_down Q5_K"}, mix_q4_k_s},
    {{"Q4_K_M", TS_FTYPE_Q4_K_M, TS_Q4_K, "Q4_K; half of attn_v and ffn_down Q6_K"}, mix_q4_k_m},
    {{"Q5_K_S", TS_FTYPE_Q5_K_S, TS_Q5_K, "Q5_K everywhere"}, mix_plain},
    {{"Q5_K_M", TS_FTYPE_Q5_K_M, TS_Q5_K, "Q5_K; half of attn_v and ffn_down Q6_K"}, mix_q5_k_m},
    {{"Q6_K", TS_FTYPE_Q6_K, TS_Q6_K, "Q6_K everywhere"}, mix_plain},
    {{"Q8_0", TS_FTYPE_Q8_0, TS_Q8_0, "Q8_0 everywhere"}, mix_plain},
    {{"IQ4_NL", TS_FTYPE_IQ4_NL, TS_IQ4_NL, "IQ4_NL (non-linear 4-bit, 32-blocks)"}, mix_iq4},
    {{"IQ4_XS", TS_FTYPE_IQ4_XS, TS_IQ4_XS, "IQ4_XS (non-linear 4.25 bpw, 256-blocks)"}, mix_iq4},
    {{"F16", TS_FTYPE_F16, TS_F16, "F16, 1-D tensors F32"}, NULL},
    {{"BF16", TS_FTYPE_BF16, TS_BF16, "BF16, 1-D tensors F32"}, NULL},
    {{"F32", TS_FTYPE_F32, TS_F32, "F32"}, NULL},
    {{NULL, 0, TS_DTYPE_INVALID, NULL}, NULL},
};

const ts_ftype_info *ts_ftype_at(size_t i)
{
    return i < sizeof mixes / sizeof mixes[0] - 1 ? &mixes[i].info : NULL;
}

static const mix_entry *entry_of(ts_ftype ftype)
{
    for (const mix_entry *e = mixes; e->info.name; e++)
        if (e->info.ftype == ftype)
            return e;
    return NULL;
}

const ts_ftype_info *ts_ftype_get(ts_ftype ftype)
{
    const mix_entry *e = entry_of(ftype);
    return e ? &e->info : NULL;
}

const ts_ftype_info *ts_ftype_find(const char *name)
{
    static const struct { const char *alias, *name; } aliases[] = {
        {"Q3_K", "Q3_K_M"}, {"Q4_K", "Q4_K_M"}, {"Q5_K", "Q5_K_M"},
    };
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (!strcasecmp(name, aliases[i].alias))
            name = aliases[i].name;
    for (const mix_entry *e = mixes; e->info.name; e++)
        if (!strcasecmp(name, e->info.name))
            return &e->info;
    return NULL;
}

static bool has(const char *name, const char *part) { return strstr(name, part) != NULL; }

/* The order of the tests is llama.cpp's: the first match decides. */
ts_tensor_cat ts_tensor_category(const char *name)
{
    if (!strcmp(name, "output.weight"))
        return TS_CAT_OUTPUT;
    if (!strcmp(name, "token_embd.weight") || !strcmp(name, "per_layer_token_embd.weight"))
        return TS_CAT_TOKEN_EMBD;
    if (has(name, "attn_qkv.weight")) return TS_CAT_ATTN_QKV;
    if (has(name, "attn_kv_b.weight")) return TS_CAT_ATTN_KV_B;
    if (has(name, "attn_v.weight")) return TS_CAT_ATTN_V;
    if (has(name, "attn_k.weight")) return TS_CAT_ATTN_K;
    if (has(name, "attn_q.weight")) return TS_CAT_ATTN_Q;
    if (has(name, "attn_output.weight")) return TS_CAT_ATTN_OUTPUT;
    if (has(name, "ffn_up")) return TS_CAT_FFN_UP;
    if (has(name, "ffn_gate")) return TS_CAT_FFN_GATE;
    if (has(name, "ffn_down")) return TS_CAT_FFN_DOWN;
    return TS_CAT_OTHER;
}

bool ts_cat_is_attn_v(ts_tensor_cat cat)
{
    return cat == TS_CAT_ATTN_V || cat == TS_CAT_ATTN_QKV || cat == TS_CAT_ATTN_KV_B;
}

/* output.weight (and token_embd when it doubles as the output): Q6_K in every
 * quantized mix but Q8_0, or Q8_0 when the row does not fit the mix's block. */
static ts_dtype output_rule(const ts_mix_ctx *m, ts_dtype t)
{
    if (m->output_tensor_type != TS_DTYPE_INVALID)
        return m->output_tensor_type;
    const ts_dtype_info *info = ts_dtype_get(t);
    if (m->falcon || (info && m->ne0 % info->block_size != 0))
        return TS_Q8_0;
    return t != TS_Q8_0 ? TS_Q6_K : t;
}

ts_dtype ts_mix_type(const ts_mix_ctx *m)
{
    const mix_entry *e = entry_of(m->ftype);
    if (!e || !e->rule)
        return e ? e->info.default_type : TS_DTYPE_INVALID;
    ts_dtype t = e->info.default_type;
    if (m->cat == TS_CAT_OUTPUT || (m->tied_embeddings && m->cat == TS_CAT_TOKEN_EMBD))
        return output_rule(m, t);
    if (m->cat == TS_CAT_TOKEN_EMBD)
        return t;
    ts_tensor_cat cat = ts_cat_is_attn_v(m->cat) ? TS_CAT_ATTN_V : m->cat;
    ts_mix_ctx role = *m;
    role.cat = cat;
    t = e->rule(&role, t);
    if (cat == TS_CAT_ATTN_V) {
        /* 70B: attn_v is 8x smaller than attn_q (8 heads share it), so more bits cost little. */
        if (m->is_70b && (t == TS_Q3_K || t == TS_Q4_K))
            t = TS_Q5_K;
        if (m->n_expert == 8)
            t = TS_Q8_0;
    } else if (cat == TS_CAT_ATTN_K && m->n_expert == 8) {
        t = TS_Q8_0;
    }
    return t;
}
