/* llama-imatrix's IMatrixCollector over the reference forward pass: the
 * model's matmul hook sees every product's input before it is rounded for
 * the dot products (llama.cpp's eval callback sees src1 in f32 the same
 * way), and the sums are kept in float, accumulated token after token, as
 * llama.cpp keeps them, so the two files agree to rounding. */
#include "verify/imatrix_collect.h"

#include "formats/gguf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the statistics table: entries in order of first use, found by name
 * through an open-addressing hash (a forward pass makes a few matmuls per
 * layer, so the lookup runs often enough to matter on big models). ---- */

typedef struct {
    ts_imatrix_stat *v;
    size_t n, cap;
    int64_t *slot; /* index into v, -1 when empty */
    size_t n_slots;
    const ts_gguf *g;
    bool process_output;
    ts_status st; /* first failure inside the hook, reported after the evaluation */
    ts_err err;
} collector;

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static bool rehash(collector *c, size_t n_slots)
{
    int64_t *slot = malloc(n_slots * sizeof *slot);
    if (!slot)
        return false;
    for (size_t i = 0; i < n_slots; i++)
        slot[i] = -1;
    for (size_t i = 0; i < c->n; i++) {
        size_t h = (size_t)name_hash(c->v[i].name) & (n_slots - 1);
        while (slot[h] >= 0)
            h = (h + 1) & (n_slots - 1);
        slot[h] = (int64_t)i;
    }
    free(c->slot);
    c->slot = slot;
    c->n_slots = n_slots;
    return true;
}

static ts_imatrix_stat *find(const collector *c, const char *name)
{
    if (!c->n_slots)
        return NULL;
    for (size_t h = (size_t)name_hash(name) & (c->n_slots - 1); c->slot[h] >= 0; h = (h + 1) & (c->n_slots - 1))
        if (!strcmp(c->v[c->slot[h]].name, name))
            return &c->v[c->slot[h]];
    return NULL;
}

static void stat_free(ts_imatrix_stat *s)
{
    free(s->name);
    free(s->sums);
    free(s->counts);
}

/* A new entry for a weight seen for the first time: one matrix for a dense
 * weight, one per expert (the stacked tensor's third dimension) otherwise. */
static ts_imatrix_stat *add(collector *c, const char *name, bool stacked, int64_t n_in)
{
    int64_t n_mat = 1;
    if (stacked) {
        int64_t ti = ts_gguf_find_tensor(c->g, name);
        const ts_tensor *t = ti >= 0 ? &c->g->tensors[ti].t : NULL;
        if (!t || t->n_dims != 3 || t->ne[0] != n_in) {
            c->st = ts_fail(&c->err, TS_ERR_INTERNAL, "imatrix: %s is not a stacked expert tensor with rows of %lld",
                            name, (long long)n_in);
            return NULL;
        }
        n_mat = t->ne[2];
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        ts_imatrix_stat *v = realloc(c->v, cap * sizeof *v);
        if (!v)
            goto nomem;
        c->v = v;
        c->cap = cap;
    }
    if (2 * (c->n + 1) > c->n_slots && !rehash(c, c->n_slots ? 2 * c->n_slots : 128))
        goto nomem;
    ts_imatrix_stat s = {.name = strdup(name), .n_per_row = n_in, .n_mat = n_mat,
                         .sums = calloc((size_t)(n_in * n_mat), sizeof(float)),
                         .counts = calloc((size_t)n_mat, sizeof(int64_t))};
    if (!s.name || !s.sums || !s.counts) {
        stat_free(&s);
        goto nomem;
    }
    c->v[c->n] = s;
    size_t h = (size_t)name_hash(name) & (c->n_slots - 1);
    while (c->slot[h] >= 0)
        h = (h + 1) & (c->n_slots - 1);
    c->slot[h] = (int64_t)c->n;
    return &c->v[c->n++];
nomem:
    c->st = ts_fail(&c->err, TS_ERR_NOMEM, "imatrix: out of memory for the statistics of %s", name);
    return NULL;
}

/* llama-imatrix collects the products whose weight is a block tensor
 * ("blk.*": attention, FFN, router, experts) and output.weight only when
 * asked; never token_embd (a lookup, or the tied output). */
static void hook(void *ctx, const char *name, int expert, const float *x, int64_t n_tokens, int64_t n_in)
{
    collector *c = ctx;
    if (c->st || n_tokens <= 0 || !(strncmp(name, "blk.", 4) == 0 || (c->process_output && !strcmp(name, "output.weight"))))
        return;
    ts_imatrix_stat *s = find(c, name);
    if (!s && !(s = add(c, name, expert >= 0, n_in)))
        return;
    if (s->n_per_row != n_in || expert >= s->n_mat || (expert < 0 && s->n_mat != 1)) {
        c->st = ts_fail(&c->err, TS_ERR_INTERNAL, "imatrix: %s used with rows of %lld (expert %d), first seen with %lld x %lld",
                        name, (long long)n_in, expert, (long long)s->n_per_row, (long long)s->n_mat);
        return;
    }
    const int64_t e = expert < 0 ? 0 : expert;
    float *acc = s->sums + e * n_in;
    for (int64_t t = 0; t < n_tokens; t++) {
        const float *row = x + t * n_in;
        for (int64_t j = 0; j < n_in; j++)
            acc[j] += row[j] * row[j];
    }
    s->counts[e] += n_tokens;
    for (int64_t j = 0; j < n_in; j++)
        if (!isfinite(acc[j])) {
            c->st = ts_fail(&c->err, TS_ERR_FORMAT,
                            "imatrix: non-finite sum of squared activations in %s (expert %d, column %lld)", name,
                            expert, (long long)j);
            return;
        }
}

/* ---- collection ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ts_imatrix_data_free(ts_imatrix_data *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n_stats; i++)
        stat_free(&d->stats[i]);
    for (size_t i = 0; i < d->n_datasets; i++)
        free(d->datasets[i]);
    free(d->stats);
    free(d->datasets);
    memset(d, 0, sizeof *d);
}

static int cmp_stat(const void *a, const void *b)
{
    return strcmp(((const ts_imatrix_stat *)a)->name, ((const ts_imatrix_stat *)b)->name);
}

/* Hands the table over to out, sorted by name. */
static ts_status finish(collector *c, const ts_imatrix_params *p, ts_imatrix_data *out, ts_err *err)
{
    if (c->n == 0)
        return ts_fail(err, TS_ERR_INTERNAL, "imatrix: the forward pass multiplied no block weight");
    if (p->dataset) {
        out->datasets = malloc(sizeof *out->datasets);
        if (!out->datasets || !(out->datasets[0] = strdup(p->dataset))) {
            free(out->datasets);
            out->datasets = NULL;
            return ts_fail(err, TS_ERR_NOMEM, "out of memory");
        }
        out->n_datasets = 1;
    }
    qsort(c->v, c->n, sizeof *c->v, cmp_stat);
    int64_t max_count = 0;
    for (size_t i = 0; i < c->n; i++)
        for (int64_t e = 0; e < c->v[i].n_mat; e++)
            max_count = c->v[i].counts[e] > max_count ? c->v[i].counts[e] : max_count;
    out->stats = c->v;
    out->n_stats = c->n;
    out->chunk_size = p->n_ctx;
    out->chunk_count = max_count / p->n_ctx;
    c->v = NULL;
    c->n = 0;
    return TS_OK;
}

ts_status ts_imatrix_collect(ts_model *m, const int32_t *tokens, int64_t n_tokens, const ts_imatrix_params *p,
                             ts_imatrix_progress_fn cb, void *cb_ctx, ts_imatrix_data *out, ts_err *err)
{
    memset(out, 0, sizeof *out);
    const int64_t n_ctx = p->n_ctx;
    /* Below 16 tokens llama-imatrix skips dense products (it ignores
     * batches that small) but not expert ones: refuse rather than differ. */
    if (n_ctx < 16 || n_ctx > INT32_MAX)
        return ts_fail(err, TS_ERR_ARG, "imatrix: a context of %lld tokens (expected 16 or more)", (long long)n_ctx);
    if (n_tokens < 2 * n_ctx)
        return ts_fail(err, TS_ERR_ARG,
                       "the calibration text tokenizes to only %lld tokens; a context of %lld needs at least %lld "
                       "(two chunks, as llama-imatrix requires)",
                       (long long)n_tokens, (long long)n_ctx, (long long)(2 * n_ctx));
    if (p->add_bos && (p->bos < 0 || p->bos >= ts_model_n_vocab(m)))
        return ts_fail(err, TS_ERR_ARG, "BOS id %d is outside the vocabulary", p->bos);
    int64_t n_chunks = n_tokens / n_ctx;
    if (p->max_chunks > 0 && p->max_chunks < n_chunks)
        n_chunks = p->max_chunks;
    const int64_t n_seq = p->n_seq < 1 ? 1 : p->n_seq < n_chunks ? p->n_seq : n_chunks;
    int32_t *ids = malloc((size_t)(n_seq * n_ctx) * sizeof *ids);
    if (!ids)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory for %lld tokens", (long long)(n_seq * n_ctx));
    collector c = {.g = ts_model_gguf(m), .process_output = p->process_output};
    ts_model_set_matmul_hook(m, hook, &c);
    ts_status st = TS_OK;
    const double t0 = now_s();
    for (int64_t c0 = 0; c0 < n_chunks; c0 += n_seq) {
        const int64_t ns = n_chunks - c0 < n_seq ? n_chunks - c0 : n_seq;
        memcpy(ids, tokens + c0 * n_ctx, (size_t)(ns * n_ctx) * sizeof *ids);
        for (int64_t q = 0; q < ns && p->add_bos; q++)
            ids[q * n_ctx] = p->bos;
        /* Every position evaluated in the last layer too (first = 0), as
         * llama-imatrix asks logits for every token. */
        if ((st = ts_model_eval_seqs(m, ids, ns, n_ctx, 0, NULL, err)))
            break;
        if (c.st) {
            *err = c.err;
            st = c.st;
            break;
        }
        if (cb) {
            ts_imatrix_progress pr = {.chunk = c0 + ns, .n_chunks = n_chunks, .seconds = now_s() - t0};
            cb(cb_ctx, &pr);
        }
    }
    ts_model_set_matmul_hook(m, NULL, NULL);
    free(ids);
    if (!st)
        st = finish(&c, p, out, err);
    for (size_t i = 0; i < c.n; i++)
        stat_free(&c.v[i]);
    free(c.v);
    free(c.slot);
    if (st)
        ts_imatrix_data_free(out);
    return st;
}

/* ---- the GGUF file (tools/imatrix/imatrix.cpp, save_imatrix) ---- */

ts_status ts_imatrix_write(const ts_imatrix_data *d, const char *path, const char *const *keep, ts_err *err)
{
    if (d->n_stats == 0)
        return ts_fail(err, TS_ERR_ARG, "%s: an imatrix needs at least one entry", path);
    if (d->chunk_count < 0 || d->chunk_count > UINT32_MAX || d->chunk_size < 0 || d->chunk_size > UINT32_MAX)
        return ts_fail(err, TS_ERR_ARG, "%s: chunk count %lld or size %lld does not fit the file's u32", path,
                       (long long)d->chunk_count, (long long)d->chunk_size);
    ts_gguf_writer *w;
    ts_status st = ts_gguf_writer_new(&w, err);
    if (st)
        return st;
    if ((st = ts_gguf_set_str(w, "general.type", "imatrix")) ||
        (st = ts_gguf_set_arr_str(w, "imatrix.datasets", (const char *const *)d->datasets, d->n_datasets)) ||
        (st = ts_gguf_set_u32(w, "imatrix.chunk_count", (uint32_t)d->chunk_count)) ||
        (st = ts_gguf_set_u32(w, "imatrix.chunk_size", (uint32_t)d->chunk_size))) {
        ts_gguf_writer_free(w);
        return ts_fail(err, st, "%s: cannot set the imatrix keys (%s)", path, ts_status_name(st));
    }
    char name[TS_MAX_NAME + 16];
    for (size_t i = 0; i < d->n_stats && !st; i++) {
        const ts_imatrix_stat *s = &d->stats[i];
        /* ggml writes a tensor's dimensions up to its last one above 1. */
        const int n_dims = s->n_mat > 1 ? 2 : 1;
        const int64_t ne_sums[2] = {s->n_per_row, s->n_mat}, ne_counts[2] = {1, s->n_mat};
        snprintf(name, sizeof name, "%s.in_sum2", s->name);
        if (!(st = ts_gguf_add_tensor(w, name, TS_F32, n_dims, ne_sums, err))) {
            snprintf(name, sizeof name, "%s.counts", s->name);
            st = ts_gguf_add_tensor(w, name, TS_F32, n_dims, ne_counts, err);
        }
    }
    if (!st)
        st = ts_gguf_writer_begin(w, path, keep, err);
    for (size_t i = 0; i < d->n_stats && !st; i++) {
        const ts_imatrix_stat *s = &d->stats[i];
        if ((st = ts_gguf_write_tensor_data(w, s->sums, (uint64_t)(s->n_per_row * s->n_mat) * sizeof(float), err)))
            break;
        for (int64_t e = 0; e < s->n_mat && !st; e++) {
            const float count = (float)s->counts[e];
            st = ts_gguf_write_tensor_data(w, &count, sizeof count, err);
        }
    }
    if (!st)
        st = ts_gguf_writer_finish(w, err);
    ts_gguf_writer_free(w);
    return st;
}
