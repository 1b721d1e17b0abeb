/* Meta's original Llama layout (and Mistral's, which follows it). Meta's q/k
 * weights are already in the interleaved RoPE row order that ggml uses (HF
 * permutes them to rotate-half when converting), so unlike arch_llama.c
 * nothing is permuted here. */
#include "arch_meta.h"
#include "core/mapped_file.h"

#include <math.h>
#include <stdlib.h>

static const ts_name_rule meta_rules[] = {
    {"tok_embeddings.weight", "token_embd.weight", TS_XF_NONE},
    {"norm.weight", "output_norm.weight", TS_XF_NONE},
    {"output.weight", "output.weight", TS_XF_NONE},
    {"layers.{L}.attention_norm.weight", "blk.{L}.attn_norm.weight", TS_XF_NONE},
    {"layers.{L}.attention.wq.weight", "blk.{L}.attn_q.weight", TS_XF_NONE},
    {"layers.{L}.attention.wk.weight", "blk.{L}.attn_k.weight", TS_XF_NONE},
    {"layers.{L}.attention.wv.weight", "blk.{L}.attn_v.weight", TS_XF_NONE},
    {"layers.{L}.attention.wo.weight", "blk.{L}.attn_output.weight", TS_XF_NONE},
    {"layers.{L}.ffn_norm.weight", "blk.{L}.ffn_norm.weight", TS_XF_NONE},
    {"layers.{L}.feed_forward.w1.weight", "blk.{L}.ffn_gate.weight", TS_XF_NONE},
    {"layers.{L}.feed_forward.w2.weight", "blk.{L}.ffn_down.weight", TS_XF_NONE},
    {"layers.{L}.feed_forward.w3.weight", "blk.{L}.ffn_up.weight", TS_XF_NONE},
    {"rope.freqs", NULL, TS_XF_NONE}, /* Llama 1 stores its RoPE frequencies; llama.cpp computes them */
    {NULL, NULL, TS_XF_NONE},
};

static ts_status meta_params(ts_conv *c, ts_err *err)
{
    (void)err;
    ts_gguf_set_u32(c->w, ts_conv_key(c, "vocab_size"), (uint32_t)c->hp.n_vocab);
    ts_gguf_set_u32(c->w, ts_conv_key(c, "rope.dimension_count"), (uint32_t)c->hp.head_dim);
    return TS_OK;
}

const ts_arch ts_arch_llama_meta = {"Llama (Meta params.json)", "llama", meta_rules, meta_params};

bool ts_meta_layout(const char *dir)
{
    char *params = ts_path_join(dir, "params.json"), *config = ts_path_join(dir, "config.json");
    bool yes = params && config && ts_file_exists(params) && !ts_file_exists(config);
    free(params);
    free(config);
    return yes;
}

ts_status ts_meta_load_params(ts_hf_files *hf, ts_err *err)
{
    char *path = ts_path_join(hf->dir, "params.json");
    if (!path)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    ts_json_free(&hf->config);
    ts_status st = ts_json_load(path, false, &hf->config, err);
    free(path);
    return st;
}

/* Rows of a 2-D tensor (torch dim 0), 0 when absent. */
static int64_t rows_of(const ts_checkpoint *ckpt, const char *name)
{
    const ts_tensor *t = ts_checkpoint_find(ckpt, name);
    return t && t->n_dims == 2 ? t->ne[1] : 0;
}

/* Meta's FeedForward: 2/3 of 4*dim, times ffn_dim_multiplier, rounded up to multiple_of. */
static int64_t ffn_from_multiple(const ts_json_file *p, int64_t dim, ts_err *err, ts_status *st)
{
    int64_t multiple;
    double mult;
    if ((*st = ts_json_int_opt(p, "multiple_of", 256, 1, &multiple, err)) ||
        (*st = ts_json_num_opt(p, "ffn_dim_multiplier", 1.0, &mult, err)))
        return 0;
    int64_t hidden = 2 * (4 * dim) / 3;
    if (ts_json_has(p, "ffn_dim_multiplier"))
        hidden = (int64_t)(mult * (double)hidden);
    return multiple * ((hidden + multiple - 1) / multiple);
}

ts_status ts_meta_read_hparams(ts_conv *c, const ts_checkpoint *ckpt, ts_err *err)
{
    const ts_json_file *p = &c->hf->config;
    ts_hparams *hp = &c->hp;
    ts_status st;
    int64_t vocab;
    bool scaled = false;
    if ((st = ts_json_int_req(p, "dim", 1, &hp->n_embd, err)) ||
        (st = ts_json_int_req(p, "n_layers", 1, &hp->n_layer, err)) ||
        (st = ts_json_int_req(p, "n_heads", 1, &hp->n_head, err)) ||
        (st = ts_json_int_opt(p, "n_kv_heads", hp->n_head, 1, &hp->n_head_kv, err)) ||
        (st = ts_json_int_opt(p, "vocab_size", -1, -1, &vocab, err)) ||
        (st = ts_json_num_opt(p, "norm_eps", 1e-5, &hp->norm_eps, err)) ||
        (st = ts_json_num_opt(p, "rope_theta", 10000.0, &hp->rope_theta, err)) ||
        (st = ts_json_bool_opt(p, "use_scaled_rope", false, &scaled, err)))
        return st;
    if (scaled)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: use_scaled_rope (Llama 3.1 RoPE scaling) is not supported for "
                       "Meta checkpoints yet; convert the Hugging Face release", p->path);
    if (ts_json_has(p, "moe") || ts_json_has(p, "vision_encoder"))
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: mixture-of-experts and vision checkpoints in Meta/Mistral layout "
                       "are not supported; convert the Hugging Face release", p->path);
    if (hp->n_head_kv > hp->n_head || hp->n_head % hp->n_head_kv)
        return ts_fail(err, TS_ERR_FORMAT, "%s: n_kv_heads %lld must divide n_heads %lld", p->path,
                       (long long)hp->n_head_kv, (long long)hp->n_head);
    hp->head_dim_in_config = ts_json_has(p, "head_dim");
    if ((st = ts_json_int_opt(p, "head_dim", hp->n_embd / hp->n_head, 1, &hp->head_dim, err)))
        return st;
    /* the embedding's rows are the vocabulary (params.json may say -1) */
    int64_t emb_rows = rows_of(ckpt, "tok_embeddings.weight");
    hp->n_vocab = vocab > 0 ? vocab : emb_rows;
    if (hp->n_vocab <= 0 || (emb_rows && emb_rows != hp->n_vocab))
        return ts_fail(err, TS_ERR_FORMAT, "%s: vocab_size %lld does not match tok_embeddings.weight (%lld rows)",
                       p->path, (long long)vocab, (long long)emb_rows);
    int64_t w1_rows = rows_of(ckpt, "layers.0.feed_forward.w1.weight");
    if ((st = ts_json_int_opt(p, "hidden_dim", 0, 0, &hp->n_ff, err)))
        return st;
    if (!hp->n_ff)
        hp->n_ff = w1_rows ? w1_rows : ffn_from_multiple(p, hp->n_embd, err, &st);
    if (st)
        return st;
    if (w1_rows && w1_rows != hp->n_ff)
        return ts_fail(err, TS_ERR_FORMAT, "%s: feed-forward size %lld does not match layers.0.feed_forward.w1.weight "
                       "(%lld rows)", p->path, (long long)hp->n_ff, (long long)w1_rows);
    /* Meta's params.json has no context length; llama.cpp's legacy converter guesses it the same way */
    int64_t guess = hp->rope_theta == 1000000.0 ? 16384 : fabs(hp->norm_eps - 1e-5) < 1e-12 ? 4096 : 2048;
    if ((st = ts_json_int_opt(p, "max_seq_len", guess, 1, &hp->n_ctx, err)))
        return st;
    hp->tied_embeddings = false;
    return TS_OK;
}
