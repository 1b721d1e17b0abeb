/* The .kld file (llama.cpp's --kl-divergence-base layout, see kld.h) and
 * llama-perplexity's KL divergence statistics. The arithmetic (float maxima,
 * double sums of float exponentials, the -16 cut-off) is llama.cpp's, so
 * the numbers compare with its output. */
#include "verify/kld.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_BYTES 20 /* "_logits_", n_ctx, n_vocab, n_chunk */

int64_t ts_kld_row_u16(int64_t n_vocab) { return 2 * ((n_vocab + 1) / 2) + 4; }
int64_t ts_kld_rows_per_chunk(int64_t n_ctx) { return n_ctx - 1 - n_ctx / 2; }

/* ggml's nearest_int: round to nearest, ties to even, for |v| < 2^22. */
static int nearest_int(float v)
{
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

float ts_logits_max(const float *x, int64_t n)
{
    float m[8];
    for (int j = 0; j < 8; j++)
        m[j] = x[0];
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    for (; i < n; i++)
        m[0] = x[i] > m[0] ? x[i] : m[0];
    for (int j = 1; j < 8; j++)
        m[0] = m[j] > m[0] ? m[j] : m[0];
    return m[0];
}

double ts_logits_sum_exp(const float *x, int64_t n, float max)
{
    double s[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++)
            s[j] += expf(x[i + j] - max);
    for (; i < n; i++)
        s[0] += expf(x[i] - max);
    return (s[0] + s[1]) + (s[2] + s[3]);
}

double ts_kld_encode_row(const float *logits, int64_t n_vocab, int32_t tok, uint16_t *row)
{
    const float max_logit = ts_logits_max(logits, n_vocab);
    float min_logit = logits[0];
    for (int64_t i = 1; i < n_vocab; i++)
        min_logit = logits[i] < min_logit ? logits[i] : min_logit;
    min_logit = fmaxf(min_logit, max_logit - 16);
    const double sum_exp = ts_logits_sum_exp(logits, n_vocab, max_logit);
    const float log_sum_exp = (float)log(sum_exp);
    const float min_log_prob = min_logit - max_logit - log_sum_exp;
    const float scale = (max_logit - min_logit) / 65535.f;
    memcpy(row, &scale, sizeof scale);
    memcpy(row + 2, &min_log_prob, sizeof min_log_prob);
    uint16_t *q = row + 4;
    memset(q, 0, (size_t)(ts_kld_row_u16(n_vocab) - 4) * sizeof *q);
    if (scale != 0.0f) {
        const float inv_scale = 1 / scale;
        for (int64_t i = 0; i < n_vocab; i++)
            q[i] = logits[i] > min_logit ? (uint16_t)nearest_int(inv_scale * (logits[i] - min_logit)) : 0;
    }
    return max_logit + log_sum_exp - logits[tok];
}

void ts_kld_compare(const float *logits, int64_t n_vocab, const uint16_t *base_row, int32_t tok, ts_kld_point *pt)
{
    float max_logit = logits[0];
    int64_t imax = 0;
    for (int64_t i = 1; i < n_vocab; i++)
        if (logits[i] > max_logit) {
            max_logit = logits[i];
            imax = i;
        }
    const float log_sum_exp = (float)log(ts_logits_sum_exp(logits, n_vocab, max_logit));
    float scale, min_log_prob;
    memcpy(&scale, base_row, sizeof scale);
    memcpy(&min_log_prob, base_row + 2, sizeof min_log_prob);
    const uint16_t *q = base_row + 4;
    const float nll = max_logit + log_sum_exp - logits[tok];
    const float nll_base = -(scale * q[tok] + min_log_prob);
    max_logit += log_sum_exp;
    double sum = 0.0;
    int64_t imax_base = -1;
    float p_log_base_max = 0.0f;
    for (int64_t i = 0; i < n_vocab; i++) {
        const float p_log_base = scale * q[i] + min_log_prob;
        if (i == 0 || p_log_base > p_log_base_max) {
            p_log_base_max = p_log_base;
            imax_base = i;
        }
        if (p_log_base > -16.f) {
            const float p_base = expf(p_log_base);
            sum += p_base * (p_log_base - logits[i] + max_logit);
        }
    }
    pt->nll = nll;
    pt->nll_base = nll_base;
    pt->kld = sum;
    pt->same_top = imax == imax_base;
    pt->p_diff = expf(-nll) - expf(-nll_base);
}

void ts_kld_acc_add(ts_kld_acc *a, const ts_kld_point *pt)
{
    /* llama.cpp adds the float nll values; ours are those floats widened. */
    a->sum_nll += pt->nll;
    a->sum_nll2 += pt->nll * pt->nll;
    a->sum_nll_base += pt->nll_base;
    a->sum_nll_base2 += pt->nll_base * pt->nll_base;
    a->sum_nll_nll_base += pt->nll * pt->nll_base;
    a->sum_kld += pt->kld;
    a->sum_kld2 += pt->kld * pt->kld;
    const double d = pt->p_diff, d2 = d * d;
    a->sum_p_diff += d;
    a->sum_p_diff2 += d2;
    a->sum_p_diff4 += d2 * d2;
    a->max_p_diff = fmaxf(a->max_p_diff, fabsf(pt->p_diff));
    a->n_same_top += pt->same_top;
    a->count++;
}

static ts_kld_est mean_unc(double sum, double sum2, int64_t count)
{
    if (count < 1)
        return (ts_kld_est){0, 0};
    double f = sum / (double)count, df = sum2 / (double)count - f * f;
    df = df > 0 && count > 10 ? sqrt(df / (double)(count - 1)) : 0.0;
    return (ts_kld_est){f, df};
}

static double covariance(double suma, double sumb, double sumab, int64_t count)
{
    if (count < 10)
        return 0.0;
    double n = (double)count;
    return (sumab / n - (suma / n) * (sumb / n)) / (n - 1);
}

void ts_kld_stats_running(const ts_kld_acc *a, ts_kld_stats *s)
{
    memset(s, 0, sizeof *s);
    s->count = a->count;
    ts_kld_est lp = mean_unc(a->sum_nll, a->sum_nll2, a->count);
    ts_kld_est lb = mean_unc(a->sum_nll_base, a->sum_nll_base2, a->count);
    s->ppl = (ts_kld_est){exp(lp.value), exp(lp.value) * lp.err};
    s->ppl_base = (ts_kld_est){exp(lb.value), exp(lb.value) * lb.err};
    const double cov = covariance(a->sum_nll, a->sum_nll_base, a->sum_nll_nll_base, a->count);
    s->ppl_cor = lp.err > 0 && lb.err > 0 ? cov / (lp.err * lb.err) : 0.0;
    const double r = lp.value - lb.value, rv = lp.err * lp.err + lb.err * lb.err - 2.0 * cov;
    s->ln_ppl_ratio = (ts_kld_est){r, rv > 0 ? sqrt(rv) : 0.0};
    s->ppl_ratio = (ts_kld_est){exp(r), exp(r) * s->ln_ppl_ratio.err};
    const double pcov = s->ppl.value * s->ppl_base.value * cov;
    const double dv = s->ppl.err * s->ppl.err + s->ppl_base.err * s->ppl_base.err - 2.0 * pcov;
    s->ppl_diff = (ts_kld_est){s->ppl.value - s->ppl_base.value, dv > 0 ? sqrt(dv) : 0.0};
    s->kld = mean_unc(a->sum_kld, a->sum_kld2, a->count);
    s->p_diff = mean_unc(a->sum_p_diff, a->sum_p_diff2, a->count);
    ts_kld_est mse = mean_unc(a->sum_p_diff2, a->sum_p_diff4, a->count);
    double rms = sqrt(mse.value);
    s->p_diff_rms = (ts_kld_est){rms, rms > 0 ? 0.5 / rms * mse.err : 0.0};
    double top = a->count ? (double)a->n_same_top / (double)a->count : 0.0;
    s->same_top = (ts_kld_est){top, a->count > 1 ? sqrt(top * (1.0 - top) / (double)(a->count - 1)) : 0.0};
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* llama-perplexity's percentile: linear interpolation between ranks. */
static double percentile(const float *v, int64_t n, float fraction)
{
    if (fraction <= 0)
        return v[0];
    if (fraction >= 1)
        return v[n - 1];
    float p = fraction * (float)(n - 1);
    int64_t ip = (int64_t)p;
    p -= (float)ip;
    return (1 - p) * v[ip] + p * v[ip + 1 < n ? ip + 1 : n - 1];
}

static double median(const float *v, int64_t n)
{
    return n % 2 == 0 ? 0.5f * (v[n / 2] + v[n / 2 - 1]) : v[n / 2];
}

void ts_kld_stats_compute(const ts_kld_acc *a, float *kv, float *dp, int64_t n, ts_kld_stats *s)
{
    ts_kld_stats_running(a, s);
    if (n < 1)
        return;
    qsort(kv, (size_t)n, sizeof *kv, cmp_float);
    qsort(dp, (size_t)n, sizeof *dp, cmp_float);
    s->kld_max = kv[n - 1];
    s->kld_p999 = percentile(kv, n, 0.999f);
    s->kld_p99 = percentile(kv, n, 0.990f);
    s->kld_p95 = percentile(kv, n, 0.950f);
    s->kld_p90 = percentile(kv, n, 0.900f);
    s->kld_median = median(kv, n);
    s->kld_p10 = percentile(kv, n, 0.100f);
    s->kld_p5 = percentile(kv, n, 0.050f);
    s->kld_p1 = percentile(kv, n, 0.010f);
    s->kld_p01 = percentile(kv, n, 0.001f);
    s->kld_min = kv[0];
    s->dp_max = dp[n - 1];
    s->dp_p999 = percentile(dp, n, 0.999f);
    s->dp_p99 = percentile(dp, n, 0.990f);
    s->dp_p95 = percentile(dp, n, 0.950f);
    s->dp_p90 = percentile(dp, n, 0.900f);
    s->dp_p75 = percentile(dp, n, 0.750f);
    s->dp_median = median(dp, n);
    s->dp_p25 = percentile(dp, n, 0.250f);
    s->dp_p10 = percentile(dp, n, 0.100f);
    s->dp_p5 = percentile(dp, n, 0.050f);
    s->dp_p1 = percentile(dp, n, 0.010f);
    s->dp_p01 = percentile(dp, n, 0.001f);
    s->dp_min = dp[0];
}

/* ---- file ---- */

ts_status ts_kld_open(const char *path, ts_kld_file *f, ts_err *err)
{
    memset(f, 0, sizeof *f);
    ts_status st = ts_map_file(path, &f->file, err);
    if (st)
        return st;
    const uint8_t *d = f->file.data;
    uint32_t n_ctx;
    int32_t n_vocab, n_chunk;
    if (f->file.size < HEADER_BYTES || memcmp(d, "_logits_", 8)) {
        ts_kld_close(f);
        return ts_fail(err, TS_ERR_FORMAT, "%s: not a log-probability file (expected \"_logits_\" at offset 0)", path);
    }
    memcpy(&n_ctx, d + 8, 4);
    memcpy(&n_vocab, d + 12, 4);
    memcpy(&n_chunk, d + 16, 4);
    if (n_ctx < 4 || n_ctx > (1u << 24) || n_vocab < 1 || n_chunk < 1) {
        ts_kld_close(f);
        return ts_fail(err, TS_ERR_FORMAT, "%s: header has n_ctx %u, n_vocab %d, n_chunk %d (expected positive, n_ctx >= 4)",
                       path, n_ctx, n_vocab, n_chunk);
    }
    f->n_ctx = n_ctx;
    f->n_vocab = n_vocab;
    f->n_chunk = n_chunk;
    uint64_t tok_bytes, rows, row_bytes, total;
    bool ok = ts_mul_u64((uint64_t)n_ctx * 4, (uint64_t)n_chunk, &tok_bytes) &&
              ts_mul_u64((uint64_t)ts_kld_rows_per_chunk(n_ctx), (uint64_t)n_chunk, &rows) &&
              ts_mul_u64(rows, (uint64_t)ts_kld_row_u16(n_vocab) * 2, &row_bytes) &&
              ts_add_u64(HEADER_BYTES + tok_bytes, row_bytes, &total);
    if (!ok || total != f->file.size) {
        ts_kld_close(f);
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: %llu bytes, expected %llu for %d chunks of %u tokens over a vocabulary of %d (truncated?)",
                       path, (unsigned long long)f->file.size, ok ? (unsigned long long)total : 0ull, n_chunk, n_ctx,
                       n_vocab);
    }
    f->tokens = (const int32_t *)(const void *)(d + HEADER_BYTES);
    f->rows = d + HEADER_BYTES + tok_bytes;
    for (int64_t i = 0; i < f->n_ctx * f->n_chunk; i++) {
        int32_t t = ts_kld_token(f, i);
        if (t < 0 || t >= n_vocab) {
            ts_kld_close(f);
            return ts_fail(err, TS_ERR_FORMAT, "%s: token %lld at offset %llu is %d, outside the vocabulary of %d", path,
                           (long long)i, (unsigned long long)(HEADER_BYTES + 4 * i), t, n_vocab);
        }
    }
    return TS_OK;
}

void ts_kld_close(ts_kld_file *f)
{
    ts_unmap_file(&f->file);
    memset(f, 0, sizeof *f);
}

int32_t ts_kld_token(const ts_kld_file *f, int64_t i)
{
    int32_t t;
    memcpy(&t, (const uint8_t *)f->tokens + 4 * i, 4);
    return t;
}

void ts_kld_read_row(const ts_kld_file *f, int64_t chunk, int64_t r, uint16_t *out)
{
    const int64_t ru = ts_kld_row_u16(f->n_vocab);
    const uint64_t idx = (uint64_t)(chunk * ts_kld_rows_per_chunk(f->n_ctx) + r);
    memcpy(out, f->rows + idx * (uint64_t)ru * 2, (size_t)ru * 2);
}

ts_status ts_kld_writer_open(ts_kld_writer *w, const char *path, const char *const *inputs, int64_t n_ctx,
                             int64_t n_vocab, int64_t n_chunk, const int32_t *tokens, ts_err *err)
{
    w->n_vocab = n_vocab;
    ts_status st = ts_atomic_open(path, inputs, &w->file, err);
    if (st)
        return st;
    uint32_t c = (uint32_t)n_ctx;
    int32_t v = (int32_t)n_vocab, k = (int32_t)n_chunk;
    if ((st = ts_atomic_write(&w->file, "_logits_", 8, err)) || (st = ts_atomic_write(&w->file, &c, 4, err)) ||
        (st = ts_atomic_write(&w->file, &v, 4, err)) || (st = ts_atomic_write(&w->file, &k, 4, err)) ||
        (st = ts_atomic_write(&w->file, tokens, (size_t)(n_ctx * n_chunk) * 4, err))) {
        ts_atomic_abort(&w->file);
        return st;
    }
    return TS_OK;
}

ts_status ts_kld_write_rows(ts_kld_writer *w, const uint16_t *rows, int64_t n_rows, ts_err *err)
{
    return ts_atomic_write(&w->file, rows, (size_t)(n_rows * ts_kld_row_u16(w->n_vocab)) * 2, err);
}

ts_status ts_kld_writer_commit(ts_kld_writer *w, ts_err *err) { return ts_atomic_commit(&w->file, err); }
void ts_kld_writer_abort(ts_kld_writer *w) { ts_atomic_abort(&w->file); }
