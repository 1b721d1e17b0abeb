/* KL divergence against a base model, the way llama-perplexity computes it
 * (tools/perplexity/perplexity.cpp in llama.cpp), and the file of base
 * log-probabilities it reads, byte for byte llama.cpp's
 * --kl-divergence-base format (docs/perplexity.md, "The .kld file"), so
 * files written by either tool work with both.
 *
 * Layout (little-endian): "_logits_", u32 n_ctx, i32 n_vocab, i32 n_chunk,
 * i32 tokens[n_ctx * n_chunk], then per chunk n_ctx - 1 - n_ctx/2 rows (the
 * scored positions) of ts_kld_row_u16(n_vocab) uint16: a float scale and a
 * float min_log_prob (4 uint16), then log p(i) ~ min_log_prob + scale * q[i]
 * for every token i (padded to an even count). */
#ifndef TS_KLD_H
#define TS_KLD_H

#include "core/mapped_file.h"
#include "core/ts.h"

/* uint16 per stored row: 2 * ((n_vocab + 1) / 2) + 4. */
int64_t ts_kld_row_u16(int64_t n_vocab);
/* Rows stored per chunk: the scored positions n_ctx/2 .. n_ctx-2. */
int64_t ts_kld_rows_per_chunk(int64_t n_ctx);

/* The largest of n logits, and sum_i exp(x[i] - max) in double over float
 * exponentials (llama-perplexity's log_softmax; summed in four interleaved
 * partial sums, which changes nothing measurable and keeps the adds from
 * waiting on each other). */
float ts_logits_max(const float *x, int64_t n);
double ts_logits_sum_exp(const float *x, int64_t n, float max);

/* Encodes one position's logits as a stored row (llama.cpp's log_softmax
 * with uint16 output: log-probs below max - 16 are clamped). Returns the
 * negative log-likelihood of tok. */
double ts_kld_encode_row(const float *logits, int64_t n_vocab, int32_t tok, uint16_t *row);

/* ---- reading ---- */
typedef struct {
    ts_mapped_file file;
    int64_t n_ctx, n_vocab, n_chunk;
    const int32_t *tokens; /* n_ctx * n_chunk (unaligned-safe: the header is 20 bytes) */
    const uint8_t *rows;   /* first row of chunk 0 */
} ts_kld_file;

/* Maps and validates the header, the token ids (0 <= id < n_vocab) and the
 * size (header + tokens + every chunk's rows, exactly). */
ts_status ts_kld_open(const char *path, ts_kld_file *f, ts_err *err);
void ts_kld_close(ts_kld_file *f);
/* Token i (copied out: the array may be unaligned). */
int32_t ts_kld_token(const ts_kld_file *f, int64_t i);
/* Row r of chunk c, copied into out (ts_kld_row_u16 uint16). */
void ts_kld_read_row(const ts_kld_file *f, int64_t chunk, int64_t r, uint16_t *out);

/* ---- writing ---- */
typedef struct {
    ts_atomic_file file;
    int64_t n_vocab;
} ts_kld_writer;

ts_status ts_kld_writer_open(ts_kld_writer *w, const char *path, const char *const *inputs, int64_t n_ctx,
                             int64_t n_vocab, int64_t n_chunk, const int32_t *tokens, ts_err *err);
ts_status ts_kld_write_rows(ts_kld_writer *w, const uint16_t *rows, int64_t n_rows, ts_err *err);
ts_status ts_kld_writer_commit(ts_kld_writer *w, ts_err *err);
void ts_kld_writer_abort(ts_kld_writer *w);

/* ---- statistics ---- */

/* One scored position compared with the base. */
typedef struct {
    double nll, nll_base, kld;
    float p_diff; /* p(tok) - p_base(tok) */
    bool same_top;
} ts_kld_point;

/* llama.cpp's log_softmax against a stored base row. */
void ts_kld_compare(const float *logits, int64_t n_vocab, const uint16_t *base_row, int32_t tok, ts_kld_point *pt);

/* Running sums, added to in position order so results do not depend on the
 * thread count. */
typedef struct {
    double sum_nll, sum_nll2, sum_nll_base, sum_nll_base2, sum_nll_nll_base;
    double sum_kld, sum_kld2, sum_p_diff, sum_p_diff2, sum_p_diff4;
    float max_p_diff;
    int64_t n_same_top, count;
} ts_kld_acc;

void ts_kld_acc_add(ts_kld_acc *a, const ts_kld_point *pt);

typedef struct {
    double value, err;
} ts_kld_est;

/* What llama-perplexity prints in KL divergence mode. */
typedef struct {
    int64_t count;
    ts_kld_est ppl, ppl_base, ln_ppl_ratio, ppl_ratio, ppl_diff, kld, p_diff, p_diff_rms, same_top;
    double ppl_cor;
    /* percentiles of the per-position KLD and delta-p (sorted copies) */
    double kld_max, kld_p999, kld_p99, kld_p95, kld_p90, kld_median, kld_p10, kld_p5, kld_p1, kld_p01, kld_min;
    double dp_max, dp_p999, dp_p99, dp_p95, dp_p90, dp_p75, dp_median, dp_p25, dp_p10, dp_p5, dp_p1, dp_p01, dp_min;
} ts_kld_stats;

/* Estimates from the sums; percentiles from kld_values / p_diff_values (n
 * entries each, sorted in place). */
void ts_kld_stats_compute(const ts_kld_acc *a, float *kld_values, float *p_diff_values, int64_t n, ts_kld_stats *s);
/* The running estimates alone (no percentiles), for progress lines. */
void ts_kld_stats_running(const ts_kld_acc *a, ts_kld_stats *s);

#endif
