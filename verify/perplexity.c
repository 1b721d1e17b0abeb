/* llama-perplexity's perplexity() and kl_divergence() loops over the
 * reference forward pass. Scores are computed per position in parallel and
 * summed in position order, so results do not depend on the thread count. */
#include "verify/perplexity.h"

#include "core/threads.h"
#include "verify/bigbuf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* -log p(tok) as llama-perplexity's log_softmax: float max, double sum of
 * float exponentials. */
static double token_nll(const float *logits, int64_t n_vocab, int32_t tok)
{
    const float max_logit = ts_logits_max(logits, n_vocab);
    return -(logits[tok] - max_logit - log(ts_logits_sum_exp(logits, n_vocab, max_logit)));
}

typedef struct {
    const float *logits;  /* scored rows */
    const int32_t *next;  /* the token each row predicts */
    int64_t n_vocab;
    double *nll;          /* per row */
    uint16_t *save_rows;  /* per row, when saving */
    uint16_t *base_rows;  /* per row, when comparing */
    ts_kld_point *points; /* per row, when comparing */
} score_ctx;

static ts_status score_row(void *ctx, int64_t i, int thread)
{
    (void)thread;
    const score_ctx *s = ctx;
    const float *row = s->logits + i * s->n_vocab;
    const int64_t ru = ts_kld_row_u16(s->n_vocab);
    if (s->points) {
        ts_kld_compare(row, s->n_vocab, s->base_rows + i * ru, s->next[i], &s->points[i]);
        s->nll[i] = s->points[i].nll;
    } else if (s->save_rows) {
        s->nll[i] = ts_kld_encode_row(row, s->n_vocab, s->next[i], s->save_rows + i * ru);
    } else {
        s->nll[i] = token_nll(row, s->n_vocab, s->next[i]);
    }
    return TS_OK;
}

typedef struct {
    float *logits, *kld_values, *p_diff_values;
    int32_t *ids, *all_tokens;
    double *nll;
    uint16_t *save_rows, *base_rows;
    ts_kld_point *points;
} ppl_bufs;

static void bufs_free(ppl_bufs *b)
{
    free(b->logits);
    free(b->kld_values);
    free(b->p_diff_values);
    free(b->ids);
    free(b->all_tokens);
    free(b->nll);
    free(b->save_rows);
    free(b->base_rows);
    free(b->points);
}

static ts_status bufs_alloc(ppl_bufs *b, const ts_ppl_params *p, int64_t n_ctx, int64_t n_chunks, int64_t n_seq,
                            int64_t n_vocab, ts_err *err)
{
    const int64_t first = n_ctx / 2, rows = ts_kld_rows_per_chunk(n_ctx), ru = ts_kld_row_u16(n_vocab);
    memset(b, 0, sizeof *b);
    b->logits = ts_big_alloc((size_t)(n_seq * (n_ctx - first) * n_vocab) * sizeof *b->logits);
    b->ids = malloc((size_t)(n_seq * n_ctx) * sizeof *b->ids);
    b->nll = malloc((size_t)rows * sizeof *b->nll);
    bool ok = b->logits && b->ids && b->nll;
    if (p->kld_save) {
        b->save_rows = malloc((size_t)(rows * ru) * sizeof *b->save_rows);
        ok = ok && b->save_rows;
    }
    if (p->kld_base) {
        b->base_rows = malloc((size_t)(rows * ru) * sizeof *b->base_rows);
        b->points = malloc((size_t)rows * sizeof *b->points);
        b->kld_values = malloc((size_t)(rows * n_chunks) * sizeof *b->kld_values);
        b->p_diff_values = malloc((size_t)(rows * n_chunks) * sizeof *b->p_diff_values);
        b->all_tokens = malloc((size_t)(n_ctx * n_chunks) * sizeof *b->all_tokens);
        ok = ok && b->base_rows && b->points && b->kld_values && b->p_diff_values && b->all_tokens;
    }
    if (!ok) {
        bufs_free(b);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory for %lld x %lld logits", (long long)(n_seq * (n_ctx - first)),
                       (long long)n_vocab);
    }
    return TS_OK;
}

static void finish_ppl(double nll, double nll2, int64_t count, double *ppl, double *ppl_err)
{
    const double mean = nll / (double)count, var = nll2 / (double)count - mean * mean;
    *ppl = exp(mean);
    *ppl_err = var > 0 && count > 1 ? sqrt(var / (double)(count - 1)) * *ppl : 0.0;
}

ts_status ts_perplexity(ts_model *m, const int32_t *tokens, int64_t n_tokens, const ts_ppl_params *p,
                        ts_ppl_progress_fn cb, void *cb_ctx, ts_ppl_result *r, ts_err *err)
{
    memset(r, 0, sizeof *r);
    const ts_kld_file *base = p->kld_base;
    const int64_t n_vocab = ts_model_n_vocab(m);
    int64_t n_ctx = base ? base->n_ctx : p->n_ctx, n_chunks;
    if (n_ctx < 4)
        return ts_fail(err, TS_ERR_ARG, "a context of %lld tokens is too small (at least 4)", (long long)n_ctx);
    if (base) {
        if (base->n_vocab != n_vocab)
            return ts_fail(err, TS_ERR_ARG, "%s: base vocabulary has %lld tokens, the model %lld", base->file.path,
                           (long long)base->n_vocab, (long long)n_vocab);
        n_chunks = base->n_chunk;
    } else {
        if (n_tokens < 2 * n_ctx)
            return ts_fail(err, TS_ERR_ARG,
                           "the text tokenizes to only %lld tokens; a context of %lld needs at least %lld",
                           (long long)n_tokens, (long long)n_ctx, (long long)(2 * n_ctx));
        n_chunks = n_tokens / n_ctx;
    }
    if (p->max_chunks > 0 && p->max_chunks < n_chunks)
        n_chunks = p->max_chunks;
    if (p->add_bos && (p->bos < 0 || p->bos >= n_vocab))
        return ts_fail(err, TS_ERR_ARG, "BOS id %d is outside the vocabulary", p->bos);

    int64_t n_seq = p->n_seq < 1 ? 1 : p->n_seq < n_chunks ? p->n_seq : n_chunks;
    /* Batching chunks saves re-reading weights, which matters little once
     * the logits alone are this large (a big vocabulary): keep memory sane. */
    const int64_t logits_per_seq = (n_ctx - n_ctx / 2) * n_vocab * (int64_t)sizeof(float);
    while (n_seq > 1 && n_seq * logits_per_seq > ((int64_t)256 << 20))
        n_seq--;
    ppl_bufs b;
    ts_status st = bufs_alloc(&b, p, n_ctx, n_chunks, n_seq, n_vocab, err);
    if (st)
        return st;
    if (base) {
        for (int64_t i = 0; i < n_ctx * n_chunks; i++)
            b.all_tokens[i] = ts_kld_token(base, i);
        tokens = b.all_tokens;
    }
    ts_kld_writer w;
    bool writing = false;
    if (p->kld_save) {
        if ((st = ts_kld_writer_open(&w, p->kld_save, p->kld_save_keep, n_ctx, n_vocab, n_chunks, tokens, err))) {
            bufs_free(&b);
            return st;
        }
        writing = true;
    }
    const int64_t first = n_ctx / 2, rows = ts_kld_rows_per_chunk(n_ctx), ru = ts_kld_row_u16(n_vocab);
    double nll = 0.0, nll2 = 0.0, t0 = now_s();
    int64_t count = 0;
    ts_kld_acc acc = {0};
    ts_kld_stats running;
    for (int64_t c0 = 0; c0 < n_chunks && !st; c0 += n_seq) {
        const int64_t ns = n_chunks - c0 < n_seq ? n_chunks - c0 : n_seq;
        memcpy(b.ids, tokens + c0 * n_ctx, (size_t)(ns * n_ctx) * sizeof *b.ids);
        for (int64_t q = 0; q < ns && p->add_bos; q++)
            b.ids[q * n_ctx] = p->bos;
        if ((st = ts_model_eval_seqs(m, b.ids, ns, n_ctx, first, b.logits, err)))
            break;
        for (int64_t q = 0; q < ns && !st; q++) {
            const int64_t c = c0 + q;
            const int32_t *chunk = tokens + c * n_ctx;
            if (base)
                for (int64_t i = 0; i < rows; i++)
                    ts_kld_read_row(base, c, i, b.base_rows + i * ru);
            /* Logits at position k predict token k + 1; the chunk's last position predicts nothing in it. */
            score_ctx sc = {b.logits + q * (n_ctx - first) * n_vocab, chunk + first + 1, n_vocab, b.nll,
                            b.save_rows, b.base_rows, base ? b.points : NULL};
            if ((st = ts_parallel_for(ts_model_n_threads(m), rows, score_row, &sc)))
                break;
            for (int64_t i = 0; i < rows; i++) {
                nll += b.nll[i];
                nll2 += b.nll[i] * b.nll[i];
                if (base) {
                    ts_kld_acc_add(&acc, &b.points[i]);
                    b.kld_values[count + i] = (float)b.points[i].kld;
                    b.p_diff_values[count + i] = b.points[i].p_diff;
                }
            }
            count += rows;
            if (writing && (st = ts_kld_write_rows(&w, b.save_rows, rows, err)))
                break;
            if (cb) {
                ts_ppl_progress pr = {.chunk = c + 1, .n_chunks = n_chunks, .count = count, .seconds = now_s() - t0};
                finish_ppl(nll, nll2, count, &pr.ppl, &pr.ppl_err);
                if (base) {
                    ts_kld_stats_running(&acc, &running);
                    pr.kld = &running;
                }
                cb(cb_ctx, &pr);
            }
        }
    }
    if (!st && writing)
        st = ts_kld_writer_commit(&w, err);
    else if (writing)
        ts_kld_writer_abort(&w);
    if (!st) {
        r->n_ctx = n_ctx;
        r->n_chunks = n_chunks;
        r->count = count;
        r->seconds = now_s() - t0;
        finish_ppl(nll, nll2, count, &r->ppl, &r->ppl_err);
        if (base) {
            r->has_kld = true;
            ts_kld_stats_compute(&acc, b.kld_values, b.p_diff_values, count, &r->kld);
        }
    }
    bufs_free(&b);
    return st;
}
