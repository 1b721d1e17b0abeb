/* Perplexity the way llama-perplexity computes it (tools/perplexity in
 * llama.cpp): the text's tokens cut into chunks of n_ctx, each chunk
 * evaluated from an empty cache with its first token replaced by BOS when
 * the model adds one, and only the second half of each chunk scored
 * (positions n_ctx/2 .. n_ctx-2 predicting the next token). Optionally
 * saves the base log-probabilities for KL divergence, or compares with a
 * saved base (verify/kld.h). */
#ifndef TS_PERPLEXITY_H
#define TS_PERPLEXITY_H

#include "verify/kld.h"
#include "verify/model.h"

typedef struct {
    int64_t n_ctx;      /* tokens per chunk; ignored with kld_base (the file's is used) */
    int64_t max_chunks; /* <= 0: every whole chunk the text holds */
    int64_t n_seq;      /* chunks evaluated together in one batch (llama-perplexity:
                           n_batch / n_ctx); < 1 means 1. Results do not depend on it. */
    bool add_bos;       /* replace each chunk's first token by bos */
    int32_t bos;
    const char *kld_save;             /* write the base log-probabilities here, or NULL */
    const char *const *kld_save_keep; /* NULL-terminated paths kld_save must not overwrite */
    const ts_kld_file *kld_base;      /* compare with this base (its tokens are evaluated), or NULL */
} ts_ppl_params;

/* After each chunk: the running estimates. */
typedef struct {
    int64_t chunk, n_chunks, count;
    double ppl, ppl_err, seconds;
    const ts_kld_stats *kld; /* running KLD estimates (no percentiles), NULL without a base */
} ts_ppl_progress;
typedef void (*ts_ppl_progress_fn)(void *ctx, const ts_ppl_progress *p);

typedef struct {
    int64_t n_ctx, n_chunks, count; /* count: positions scored */
    double ppl, ppl_err;            /* ppl_err: llama-perplexity's +/- */
    double seconds;                 /* evaluation and scoring, tokenization excluded */
    bool has_kld;
    ts_kld_stats kld;
} ts_ppl_result;

/* tokens / n_tokens: the whole text's ids (ignored with kld_base). Fails
 * with TS_ERR_ARG when the text holds fewer than 2 * n_ctx tokens, as
 * llama-perplexity does. */
ts_status ts_perplexity(ts_model *m, const int32_t *tokens, int64_t n_tokens, const ts_ppl_params *p,
                        ts_ppl_progress_fn cb, void *cb_ctx, ts_ppl_result *r, ts_err *err);

#endif
