/* Hyperparameters shared by the decoder-only families and their GGUF keys
 * (names and types exactly as llama.cpp's loader reads them). */
#include "arch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ts_conv_key(const ts_conv *c, const char *suffix)
{
    static _Thread_local char buf[256];
    snprintf(buf, sizeof buf, "%s.%s", c->arch->gguf_arch, suffix);
    return buf;
}

static ts_status first_int(const ts_json_file *f, const char *const *keys, int64_t def, int64_t min,
                           bool required, int64_t *out, ts_err *err)
{
    const char *k = ts_json_first_key(f, keys);
    if (!k) {
        if (required)
            return ts_fail(err, TS_ERR_FORMAT, "%s: %s: missing (expected an integer)", f->path, keys[0]);
        *out = def;
        return TS_OK;
    }
    return ts_json_int_opt(f, k, def, min, out, err);
}

ts_status ts_conv_read_hparams(ts_conv *c, ts_err *err)
{
    const ts_json_file *cfg = &c->hf->config;
    ts_hparams *hp = &c->hp;
    static const char *const k_layer[] = {"num_hidden_layers", "n_layer", "n_layers", NULL};
    static const char *const k_embd[] = {"hidden_size", "n_embd", "dim", NULL};
    static const char *const k_head[] = {"num_attention_heads", "n_head", "n_heads", NULL};
    static const char *const k_ff[] = {"intermediate_size", "n_inner", "hidden_dim", NULL};
    static const char *const k_ctx[] = {"max_position_embeddings", "n_ctx", "n_positions", "max_sequence_length", NULL};
    static const char *const k_expert[] = {"num_local_experts", "num_experts", "n_routed_experts", NULL};
    static const char *const k_used[] = {"num_experts_per_tok", "num_experts_per_token", NULL};
    static const char *const k_eps[] = {"rms_norm_eps", "norm_eps", NULL};
    ts_status st;
    if ((st = first_int(cfg, k_layer, 0, 1, true, &hp->n_layer, err)) ||
        (st = first_int(cfg, k_embd, 0, 1, true, &hp->n_embd, err)) ||
        (st = first_int(cfg, k_head, 0, 1, true, &hp->n_head, err)) ||
        (st = ts_json_int_opt(cfg, "num_key_value_heads", hp->n_head, 1, &hp->n_head_kv, err)) ||
        (st = first_int(cfg, k_ff, 0, 0, false, &hp->n_ff, err)) ||
        (st = first_int(cfg, k_ctx, 0, 0, false, &hp->n_ctx, err)) ||
        (st = ts_json_int_req(cfg, "vocab_size", 1, &hp->n_vocab, err)) ||
        (st = first_int(cfg, k_expert, 0, 0, false, &hp->n_expert, err)) ||
        (st = first_int(cfg, k_used, 0, 0, false, &hp->n_expert_used, err)) ||
        (st = ts_json_int_opt(cfg, "moe_intermediate_size", 0, 0, &hp->n_ff_exp, err)) ||
        (st = ts_json_bool_opt(cfg, "tie_word_embeddings", false, &hp->tied_embeddings, err)))
        return st;
    if (hp->n_layer > 100000 || hp->n_embd > (1 << 24) || hp->n_head > 65536 || hp->n_vocab > (1 << 26))
        return ts_fail(err, TS_ERR_FORMAT, "%s: implausible sizes (layers %lld, hidden %lld, heads %lld, vocab %lld)",
                       cfg->path, (long long)hp->n_layer, (long long)hp->n_embd, (long long)hp->n_head,
                       (long long)hp->n_vocab);
    if (hp->n_head_kv > hp->n_head || hp->n_head % hp->n_head_kv != 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: num_key_value_heads %lld must divide num_attention_heads %lld",
                       cfg->path, (long long)hp->n_head_kv, (long long)hp->n_head);
    hp->head_dim_in_config = ts_json_has(cfg, "head_dim");
    if ((st = ts_json_int_opt(cfg, "head_dim", hp->n_embd / hp->n_head, 1, &hp->head_dim, err)))
        return st;
    if (!hp->head_dim_in_config && hp->n_embd % hp->n_head != 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: hidden_size %lld is not a multiple of num_attention_heads %lld and no head_dim is given",
                       cfg->path, (long long)hp->n_embd, (long long)hp->n_head);
    const char *eps_key = ts_json_first_key(cfg, k_eps);
    if ((st = ts_json_num_opt(cfg, eps_key ? eps_key : "rms_norm_eps", 1e-6, &hp->norm_eps, err)))
        return st;
    json_t *rope = json_object_get(cfg->root, "rope_parameters");
    double theta_default = 10000.0;
    if (rope && json_is_object(rope))
        ts_json_obj_num(rope, "rope_parameters", "rope_theta", theta_default, &theta_default, err);
    if ((st = ts_json_num_opt(cfg, "rope_theta", theta_default, &hp->rope_theta, err)))
        return st;
    if (hp->n_expert && (hp->n_expert_used < 1 || hp->n_expert_used > hp->n_expert))
        return ts_fail(err, TS_ERR_FORMAT, "%s: num_experts_per_tok %lld must be in 1..%lld", cfg->path,
                       (long long)hp->n_expert_used, (long long)hp->n_expert);
    return TS_OK;
}

/* rope_scaling (older configs) or rope_parameters (transformers >= 4.56). */
static json_t *rope_scaling_obj(const ts_json_file *cfg)
{
    json_t *r = json_object_get(cfg->root, "rope_scaling");
    if (r && json_is_object(r))
        return r;
    r = json_object_get(cfg->root, "rope_parameters");
    if (r && json_is_object(r))
        return r;
    return NULL;
}

static ts_status llama3_rope_freqs(ts_conv *c, json_t *rs, ts_err *err)
{
    const char *w = "config.json rope_scaling";
    double factor, lo, hi;
    int64_t old_ctx;
    ts_status st;
    if ((st = ts_json_obj_num(rs, w, "factor", 8.0, &factor, err)) ||
        (st = ts_json_obj_num(rs, w, "low_freq_factor", 1.0, &lo, err)) ||
        (st = ts_json_obj_num(rs, w, "high_freq_factor", 4.0, &hi, err)) ||
        (st = ts_json_obj_int(rs, w, "original_max_position_embeddings", 8192, &old_ctx, err)))
        return st;
    if (hi == lo)
        return ts_fail(err, TS_ERR_FORMAT, "%s: high_freq_factor equals low_freq_factor", w);
    int64_t dim = c->hp.head_dim, n = dim / 2;
    float *f = malloc((size_t)n * sizeof *f);
    if (!f)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    double lo_wavelen = (double)old_ctx / lo, hi_wavelen = (double)old_ctx / hi;
    for (int64_t i = 0; i < n; i++) {
        /* float32 like the reference converter, which builds freqs with torch float32 */
        float freq = (float)(1.0 / pow(c->hp.rope_theta, (double)(float)(2 * i) / (double)dim));
        double wavelen = 2 * M_PI / freq;
        if (wavelen < hi_wavelen)
            f[i] = 1.0f;
        else if (wavelen > lo_wavelen)
            f[i] = (float)factor;
        else {
            double smooth = ((double)old_ctx / wavelen - lo) / (hi - lo);
            f[i] = (float)(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
    int64_t ne[1] = {n};
    return ts_conv_add_generated(c, "rope_freqs.weight", 1, ne, f, err);
}

static ts_status write_rope_scaling(ts_conv *c, ts_err *err)
{
    json_t *rs = rope_scaling_obj(&c->hf->config);
    if (!rs)
        return TS_OK;
    json_t *t = json_object_get(rs, "rope_type");
    if (!t)
        t = json_object_get(rs, "type");
    if (!t || json_is_null(t))
        return TS_OK;
    if (!json_is_string(t))
        return ts_fail(err, TS_ERR_FORMAT, "%s: rope_scaling.rope_type: expected a string", c->hf->config.path);
    const char *type = json_string_value(t);
    const char *w = "config.json rope_scaling";
    double factor = 0;
    ts_status st;
    if ((st = ts_json_obj_num(rs, w, "factor", 0, &factor, err)))
        return st;
    ts_gguf_writer *gw = c->w;
    if (!strcmp(type, "default"))
        return TS_OK;
    if (!strcmp(type, "linear")) {
        ts_gguf_set_str(gw, ts_conv_key(c, "rope.scaling.type"), "linear");
        ts_gguf_set_f32(gw, ts_conv_key(c, "rope.scaling.factor"), (float)factor);
        return TS_OK;
    }
    if (!strcmp(type, "yarn")) {
        int64_t orig;
        if ((st = ts_json_obj_int(rs, w, "original_max_position_embeddings", -1, &orig, err)))
            return st;
        if (orig <= 0)
            return ts_fail(err, TS_ERR_FORMAT, "%s: yarn needs original_max_position_embeddings", w);
        ts_gguf_set_str(gw, ts_conv_key(c, "rope.scaling.type"), "yarn");
        ts_gguf_set_f32(gw, ts_conv_key(c, "rope.scaling.factor"), (float)factor);
        ts_gguf_set_u32(gw, ts_conv_key(c, "rope.scaling.original_context_length"), (uint32_t)orig);
        static const struct { const char *hf, *gguf; } opt[] = {
            {"extrapolation_factor", "rope.scaling.yarn_ext_factor"},
            {"attention_factor", "rope.scaling.yarn_attn_factor"},
            {"attn_factor", "rope.scaling.yarn_attn_factor"},
            {"beta_fast", "rope.scaling.yarn_beta_fast"},
            {"beta_slow", "rope.scaling.yarn_beta_slow"},
        };
        for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++) {
            json_t *v = json_object_get(rs, opt[i].hf);
            if (v && json_is_number(v) && !ts_gguf_writer_has_key(gw, ts_conv_key(c, opt[i].gguf)))
                ts_gguf_set_f32(gw, ts_conv_key(c, opt[i].gguf), (float)json_number_value(v));
        }
        return TS_OK;
    }
    if (!strcmp(type, "llama3"))
        return llama3_rope_freqs(c, rs, err);
    return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: rope_scaling type '%s' is not supported (known: linear, yarn, llama3)",
                   c->hf->config.path, type);
}

ts_status ts_conv_write_common_params(ts_conv *c, ts_err *err)
{
    const ts_hparams *hp = &c->hp;
    ts_gguf_writer *w = c->w;
    if (hp->n_ctx > 0)
        ts_gguf_set_u32(w, ts_conv_key(c, "context_length"), (uint32_t)hp->n_ctx);
    ts_gguf_set_u32(w, ts_conv_key(c, "embedding_length"), (uint32_t)hp->n_embd);
    ts_gguf_set_u32(w, ts_conv_key(c, "block_count"), (uint32_t)hp->n_layer);
    if (hp->n_ff > 0)
        ts_gguf_set_u32(w, ts_conv_key(c, "feed_forward_length"), (uint32_t)hp->n_ff);
    ts_gguf_set_u32(w, ts_conv_key(c, "attention.head_count"), (uint32_t)hp->n_head);
    ts_gguf_set_u32(w, ts_conv_key(c, "attention.head_count_kv"), (uint32_t)hp->n_head_kv);
    ts_gguf_set_f32(w, ts_conv_key(c, "rope.freq_base"), (float)hp->rope_theta);
    ts_gguf_set_f32(w, ts_conv_key(c, "attention.layer_norm_rms_epsilon"), (float)hp->norm_eps);
    if (hp->n_expert > 0) {
        ts_gguf_set_u32(w, ts_conv_key(c, "expert_count"), (uint32_t)hp->n_expert);
        ts_gguf_set_u32(w, ts_conv_key(c, "expert_used_count"), (uint32_t)hp->n_expert_used);
    }
    if (hp->head_dim_in_config) {
        ts_gguf_set_u32(w, ts_conv_key(c, "attention.key_length"), (uint32_t)hp->head_dim);
        ts_gguf_set_u32(w, ts_conv_key(c, "attention.value_length"), (uint32_t)hp->head_dim);
    }
    return write_rope_scaling(c, err);
}

ts_status ts_conv_add_generated(ts_conv *c, const char *name, int n_dims, const int64_t *ne, float *data, ts_err *err)
{
    if (c->n_gen >= sizeof c->gen / sizeof c->gen[0]) {
        free(data);
        return ts_fail(err, TS_ERR_INTERNAL, "too many generated tensors");
    }
    ts_gen_tensor *g = &c->gen[c->n_gen++];
    snprintf(g->name, sizeof g->name, "%s", name);
    g->n_dims = n_dims;
    for (int i = 0; i < TS_MAX_DIMS; i++)
        g->ne[i] = i < n_dims ? ne[i] : 1;
    g->data = data;
    return TS_OK;
}
