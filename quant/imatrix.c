/* imatrix readers: llama.cpp's GGUF imatrix and the legacy .dat format. */
#include "imatrix.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ENTRIES 1000000

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const ts_imatrix_entry *)a)->name, ((const ts_imatrix_entry *)b)->name);
}

const ts_imatrix_entry *ts_imatrix_find(const ts_imatrix *im, const char *name)
{
    if (!im || !im->n_entries)
        return NULL;
    ts_imatrix_entry key = {.name = (char *)name};
    return bsearch(&key, im->entries, im->n_entries, sizeof key, cmp_entry);
}

void ts_imatrix_free(ts_imatrix *im)
{
    if (!im)
        return;
    for (size_t i = 0; i < im->n_entries; i++) {
        free(im->entries[i].name);
        free(im->entries[i].weights);
    }
    for (size_t i = 0; i < im->n_datasets; i++)
        free(im->datasets[i]);
    free(im->entries);
    free(im->datasets);
    free(im->path);
    free(im);
}

/* Every weight must be a usable importance: finite and not negative. */
static ts_status check_values(const ts_imatrix *im, const ts_imatrix_entry *e, ts_err *err)
{
    for (int64_t i = 0; i < e->n_values; i++)
        if (!isfinite(e->weights[i]) || e->weights[i] < 0)
            return ts_fail(err, TS_ERR_FORMAT, "%s: entry %s: value %lld is %g (expected a finite, non-negative sum of squares)",
                           im->path, e->name, (long long)i, (double)e->weights[i]);
    return TS_OK;
}

static ts_status finish(ts_imatrix *im, ts_err *err)
{
    if (im->n_entries == 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: the imatrix has no entries", im->path);
    qsort(im->entries, im->n_entries, sizeof *im->entries, cmp_entry);
    for (size_t i = 1; i < im->n_entries; i++)
        if (!strcmp(im->entries[i - 1].name, im->entries[i].name))
            return ts_fail(err, TS_ERR_FORMAT, "%s: entry %s appears twice", im->path, im->entries[i].name);
    for (size_t i = 0; i < im->n_entries; i++) {
        ts_status st = check_values(im, &im->entries[i], err);
        if (st != TS_OK)
            return st;
    }
    return TS_OK;
}

/* ---- GGUF ---- */

static bool strip_suffix(const char *name, const char *suffix, char *out, size_t n)
{
    size_t len = strlen(name), sl = strlen(suffix);
    if (len <= sl || strcmp(name + len - sl, suffix) || len - sl >= n)
        return false;
    memcpy(out, name, len - sl);
    out[len - sl] = 0;
    return true;
}

static ts_status gguf_f32_tensor(const ts_imatrix *im, const ts_tensor *t, uint64_t *n, ts_err *err)
{
    if (t->dtype != TS_F32)
        return ts_fail(err, TS_ERR_FORMAT, "%s: tensor %s is %s (sums and counts must be F32)", im->path, t->name,
                       ts_dtype_name(t->dtype));
    if (!ts_shape_nelements(t->n_dims, t->ne, n) || *n == 0 || *n > (1ull << 34))
        return ts_fail(err, TS_ERR_FORMAT, "%s: tensor %s has an unusable element count", im->path, t->name);
    return TS_OK;
}

/* Sums / count per matrix; a matrix (expert) with count 0 gets weights of 1,
 * as llama-quantize does, so an expert no calibration token reached is
 * quantized as without an imatrix rather than with all-zero weights. */
static ts_status gguf_entry(ts_imatrix *im, const ts_gguf *g, const ts_tensor *sums, const char *name, ts_err *err)
{
    char counts_name[TS_MAX_NAME + 16];
    snprintf(counts_name, sizeof counts_name, "%s.counts", name);
    int64_t ci = ts_gguf_find_tensor(g, counts_name);
    if (ci < 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: %s has no matching %s", im->path, sums->name, counts_name);
    const ts_tensor *counts = &g->tensors[ci].t;
    uint64_t n_val, n_mat;
    ts_status st;
    if ((st = gguf_f32_tensor(im, sums, &n_val, err)) || (st = gguf_f32_tensor(im, counts, &n_mat, err)))
        return st;
    if (n_val % n_mat != 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: %s: %llu sums do not split into %llu matrices (counts)", im->path, name,
                       (unsigned long long)n_val, (unsigned long long)n_mat);
    ts_imatrix_entry *e = &im->entries[im->n_entries];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    e->weights = malloc(n_val * sizeof(float));
    if (!e->name || !e->weights) {
        free(e->name);
        free(e->weights);
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", im->path);
    }
    im->n_entries++;
    e->n_values = (int64_t)n_val;
    e->n_mat = (int64_t)n_mat;
    uint64_t per = n_val / n_mat;
    const uint8_t *sp = sums->data, *cp = counts->data;
    for (uint64_t m = 0; m < n_mat; m++) {
        float c;
        memcpy(&c, cp + m * 4, 4);
        if (!isfinite(c) || c < 0)
            return ts_fail(err, TS_ERR_FORMAT, "%s: %s: count %llu is %g", im->path, counts_name,
                           (unsigned long long)m, (double)c);
        double count = (double)lround(c);
        if (count <= 0)
            e->n_mat_unseen++;
        for (uint64_t i = 0; i < per; i++) {
            float s;
            memcpy(&s, sp + (m * per + i) * 4, 4);
            e->weights[m * per + i] = count > 0 ? (float)(s / (float)count) : 1.0f;
        }
    }
    return TS_OK;
}

static ts_status load_gguf(ts_imatrix *im, ts_err *err)
{
    ts_gguf *g;
    ts_status st = ts_gguf_open(im->path, &g, err);
    if (st != TS_OK)
        return st;
    im->entries = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *im->entries);
    if (!im->entries)
        st = ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", im->path);
    for (uint64_t i = 0; i < g->n_tensors && st == TS_OK; i++) {
        const ts_tensor *t = &g->tensors[i].t;
        char name[TS_MAX_NAME];
        if (strip_suffix(t->name, ".in_sum2", name, sizeof name)) {
            st = gguf_entry(im, g, t, name, err);
        } else if (strip_suffix(t->name, ".counts", name, sizeof name)) {
            char sums[TS_MAX_NAME + 16];
            snprintf(sums, sizeof sums, "%s.in_sum2", name);
            if (ts_gguf_find_tensor(g, sums) < 0)
                st = ts_fail(err, TS_ERR_FORMAT, "%s: %s has no matching %s", im->path, t->name, sums);
        }
    }
    uint64_t v;
    im->chunk_count = ts_gguf_get_u64(g, "imatrix.chunk_count", &v) ? (int64_t)v : -1;
    im->chunk_size = ts_gguf_get_u64(g, "imatrix.chunk_size", &v) ? (int64_t)v : -1;
    const ts_gguf_kv *ds = ts_gguf_find_kv(g, "imatrix.datasets");
    if (st == TS_OK && ds && ds->value.type == TS_GGUF_ARRAY && ds->value.arr.elem_type == TS_GGUF_STRING &&
        ds->value.arr.n > 0) {
        const ts_gguf_string *s = ds->value.arr.data;
        im->datasets = calloc((size_t)ds->value.arr.n, sizeof *im->datasets);
        if (!im->datasets)
            st = ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", im->path);
        for (uint64_t i = 0; st == TS_OK && i < ds->value.arr.n; i++) {
            if (!(im->datasets[i] = strdup(s[i].s)))
                st = ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", im->path);
            im->n_datasets++;
        }
    }
    ts_gguf_close(g);
    return st;
}

/* ---- legacy .dat ----
 * int32 n_entries; per entry: int32 name_len, name, int32 ncall, int32 nval,
 * float sums[nval] (already divided by the count and multiplied by ncall);
 * then optionally int32 chunk_count, int32 len, dataset file name. */

typedef struct {
    const uint8_t *p;
    uint64_t size, pos;
    const char *path;
    ts_err *err;
} reader;

static ts_status rd_i32(reader *r, int32_t *v, const char *what)
{
    if (r->size - r->pos < 4)
        return ts_fail(r->err, TS_ERR_FORMAT, "%s: offset %llu: file ends inside %s", r->path,
                       (unsigned long long)r->pos, what);
    memcpy(v, r->p + r->pos, 4);
    r->pos += 4;
    return TS_OK;
}

static ts_status legacy_entry(ts_imatrix *im, reader *r, int32_t index)
{
    int32_t len = 0, ncall = 0, nval = 0;
    uint64_t at = r->pos;
    ts_status st = rd_i32(r, &len, "an entry name length");
    if (st != TS_OK)
        return st;
    if (len < 1 || len >= TS_MAX_NAME || r->size - r->pos < (uint64_t)len)
        return ts_fail(r->err, TS_ERR_FORMAT, "%s: offset %llu: entry %d: name length %d (expected 1..%d within the file)",
                       r->path, (unsigned long long)at, index, len, TS_MAX_NAME - 1);
    char name[TS_MAX_NAME];
    memcpy(name, r->p + r->pos, (size_t)len);
    name[len] = 0;
    r->pos += (uint64_t)len;
    if (strlen(name) != (size_t)len)
        return ts_fail(r->err, TS_ERR_FORMAT, "%s: offset %llu: entry %d: name contains a NUL byte", r->path,
                       (unsigned long long)at, index);
    if ((st = rd_i32(r, &ncall, "an entry's call count")) || (st = rd_i32(r, &nval, "an entry's value count")))
        return st;
    if (nval < 1 || (r->size - r->pos) / 4 < (uint64_t)nval)
        return ts_fail(r->err, TS_ERR_FORMAT, "%s: entry %s: %d values (expected 1 or more, within the file)", r->path,
                       name, nval);
    ts_imatrix_entry *e = &im->entries[im->n_entries];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    e->weights = malloc((size_t)nval * sizeof(float));
    if (!e->name || !e->weights) {
        free(e->name);
        free(e->weights);
        return ts_fail(r->err, TS_ERR_NOMEM, "%s: out of memory", r->path);
    }
    im->n_entries++;
    e->n_values = nval;
    e->n_mat = 1;
    for (int32_t i = 0; i < nval; i++) {
        float s;
        memcpy(&s, r->p + r->pos + (uint64_t)i * 4, 4);
        e->weights[i] = ncall > 0 ? s / (float)ncall : s;
    }
    r->pos += (uint64_t)nval * 4;
    return TS_OK;
}

static ts_status load_legacy(ts_imatrix *im, ts_err *err)
{
    ts_mapped_file f;
    ts_status st = ts_map_file(im->path, &f, err);
    if (st != TS_OK)
        return st;
    reader r = {.p = f.data, .size = f.size, .path = im->path, .err = err};
    int32_t n = 0;
    im->legacy = true;
    if ((st = rd_i32(&r, &n, "the entry count")) == TS_OK && (n < 1 || n > MAX_ENTRIES || (uint64_t)n > f.size / 16))
        st = ts_fail(err, TS_ERR_FORMAT, "%s: %d entries (expected a GGUF imatrix or a .dat with 1 or more entries)",
                     im->path, n);
    if (st == TS_OK && !(im->entries = calloc((size_t)n, sizeof *im->entries)))
        st = ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", im->path);
    for (int32_t i = 0; i < n && st == TS_OK; i++)
        st = legacy_entry(im, &r, i);
    int32_t chunks = 0, len = 0;
    im->chunk_count = im->chunk_size = -1;
    if (st == TS_OK && r.pos < r.size && rd_i32(&r, &chunks, "the chunk count") == TS_OK) {
        im->chunk_count = chunks;
        if (rd_i32(&r, &len, "the dataset name") == TS_OK && len > 0 && (uint64_t)len <= r.size - r.pos &&
            (im->datasets = calloc(1, sizeof *im->datasets)) && (im->datasets[0] = strndup((const char *)r.p + r.pos, (size_t)len)))
            im->n_datasets = 1;
    }
    ts_unmap_file(&f);
    return st;
}

ts_status ts_imatrix_load(const char *path, ts_imatrix **out, ts_err *err)
{
    *out = NULL;
    ts_imatrix *im = calloc(1, sizeof *im);
    if (!im || !(im->path = strdup(path))) {
        free(im);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    char magic[4] = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        ts_imatrix_free(im);
        return ts_fail(err, TS_ERR_IO, "%s: cannot open the imatrix file", path);
    }
    size_t got = fread(magic, 1, 4, fp);
    fclose(fp);
    ts_status st = got == 4 && !memcmp(magic, "GGUF", 4) ? load_gguf(im, err) : load_legacy(im, err);
    if (st == TS_OK)
        st = finish(im, err);
    if (st != TS_OK) {
        ts_imatrix_free(im);
        return st;
    }
    *out = im;
    return TS_OK;
}
