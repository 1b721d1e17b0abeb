/* Split GGUF output (gguf-split's layout) and merging parts back; see
 * gguf_split.h. Part sizes are computed exactly from the serialized sizes
 * of the header pieces, so the split is decided before any byte is written
 * and a scale-out job can write one part alone. */
#include "gguf_split.h"
#include "gguf_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- sizes ---- */

static bool is_checksum_key(const char *k)
{
    return !strcmp(k, TS_GGUF_KEY_CHECKSUM_ALGO) || !strcmp(k, TS_GGUF_KEY_CHECKSUM_TENSOR_INFO) ||
           !strcmp(k, TS_GGUF_KEY_CHECKSUM_TENSORS);
}

static bool is_split_key(const char *k) { return !strncmp(k, "split.", 6); }

static uint64_t value_bytes(const ts_gguf_value *v)
{
    if (v->type == TS_GGUF_STRING)
        return 8 + v->str.len;
    if (v->type != TS_GGUF_ARRAY)
        return ts_gguf_scalar_size(v->type);
    uint64_t n = 4 + 8;
    if (v->arr.elem_type != TS_GGUF_STRING)
        return n + v->arr.n * ts_gguf_scalar_size(v->arr.elem_type);
    const ts_gguf_string *s = v->arr.data;
    for (uint64_t i = 0; i < v->arr.n; i++)
        n += 8 + s[i].len;
    return n;
}

static uint64_t kv_bytes(const char *key, uint64_t value) { return 8 + strlen(key) + 4 + value; }

/* The three checksum keys a writer adds at begin for n tensors. */
static uint64_t checksum_kv_bytes(uint64_t n)
{
    return kv_bytes(TS_GGUF_KEY_CHECKSUM_ALGO, 8 + strlen(TS_GGUF_CHECKSUM_ALGO)) +
           kv_bytes(TS_GGUF_KEY_CHECKSUM_TENSOR_INFO, 8) + kv_bytes(TS_GGUF_KEY_CHECKSUM_TENSORS, 4 + 8 + 8 * n);
}

static uint64_t split_kv_bytes(void)
{
    return kv_bytes(TS_GGUF_KEY_SPLIT_NO, 2) + kv_bytes(TS_GGUF_KEY_SPLIT_COUNT, 2) +
           kv_bytes(TS_GGUF_KEY_SPLIT_TENSORS, 4);
}

static uint64_t writer_alignment(const ts_gguf_writer *w)
{
    for (uint64_t i = 0; i < ts_gguf_writer_n_kv(w); i++) {
        const ts_gguf_kv *kv = ts_gguf_writer_kv(w, i);
        if (!strcmp(kv->key, "general.alignment") && kv->value.type == TS_GGUF_UINT32 && kv->value.u32 &&
            !(kv->value.u32 & (kv->value.u32 - 1)))
            return kv->value.u32;
    }
    return TS_GGUF_DEFAULT_ALIGNMENT;
}

static uint64_t pad(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

static uint64_t tensor_info_bytes(const ts_gguf_writer *w, uint64_t i)
{
    const char *name;
    ts_dtype type;
    int n_dims;
    const int64_t *ne;
    ts_gguf_writer_tensor_info(w, i, &name, &type, &n_dims, &ne);
    return 8 + strlen(name) + 4 + 8 * (uint64_t)n_dims + 4 + 8;
}

/* Key/value bytes of the model's own keys (what part 1 copies) and of
 * general.alignment alone (what the other parts copy). */
static void model_kv_bytes(const ts_gguf_writer *w, uint64_t *all, uint64_t *align_only)
{
    *all = *align_only = 0;
    for (uint64_t i = 0; i < ts_gguf_writer_n_kv(w); i++) {
        const ts_gguf_kv *kv = ts_gguf_writer_kv(w, i);
        if (is_checksum_key(kv->key) || is_split_key(kv->key))
            continue;
        uint64_t b = kv_bytes(kv->key, value_bytes(&kv->value));
        *all += b;
        if (!strcmp(kv->key, "general.alignment"))
            *align_only += b;
    }
}

/* One file: kv_total bytes of keys (checksum keys excluded), tensors [a, b). */
static uint64_t file_bytes(const ts_gguf_writer *w, uint64_t kv_total, uint64_t a, uint64_t b)
{
    uint64_t align = writer_alignment(w), header = 4 + 4 + 8 + 8 + kv_total, data = 0;
    if (ts_gguf_writer_checksums(w) && b > a)
        header += checksum_kv_bytes(b - a);
    for (uint64_t i = a; i < b; i++) {
        header += tensor_info_bytes(w, i);
        data += pad(ts_gguf_writer_tensor_bytes(w, i), align);
    }
    return pad(header, align) + data;
}

uint64_t ts_gguf_writer_file_bytes(const ts_gguf_writer *w)
{
    uint64_t all, align_only;
    model_kv_bytes(w, &all, &align_only);
    return file_bytes(w, all, 0, ts_gguf_writer_n_tensors(w));
}

void ts_gguf_split_plan_free(ts_gguf_split_plan *p)
{
    free(p->first_tensor);
    free(p->bytes);
    memset(p, 0, sizeof *p);
}

static ts_status plan_push(ts_gguf_split_plan *p, size_t *cap, uint64_t first, ts_err *err)
{
    if (p->n_parts + 1 >= *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        uint64_t *f = realloc(p->first_tensor, nc * sizeof *f);
        if (f)
            p->first_tensor = f;
        uint64_t *b = f ? realloc(p->bytes, nc * sizeof *b) : NULL;
        if (!b)
            return ts_fail(err, TS_ERR_NOMEM, "out of memory planning split parts");
        p->bytes = b;
        *cap = nc;
    }
    p->first_tensor[p->n_parts++] = first;
    return TS_OK;
}

/* Size of a file with kv bytes of keys and cnt tensors whose infos take
 * infos bytes and whose padded data takes data bytes. */
static uint64_t part_bytes(const ts_gguf_writer *w, uint64_t kv, uint64_t infos, uint64_t data, uint64_t cnt)
{
    uint64_t header = 4 + 4 + 8 + 8 + kv + infos;
    if (ts_gguf_writer_checksums(w) && cnt)
        header += checksum_kv_bytes(cnt);
    return pad(header, writer_alignment(w)) + data;
}

ts_status ts_gguf_split_plan_build(const ts_gguf_writer *w, uint64_t max_bytes, ts_gguf_split_plan *p, ts_err *err)
{
    memset(p, 0, sizeof *p);
    size_t cap = 0;
    const uint64_t n = ts_gguf_writer_n_tensors(w), align = writer_alignment(w);
    uint64_t all, align_only;
    model_kv_bytes(w, &all, &align_only);
    ts_status st = plan_push(p, &cap, 0, err);
    if (st != TS_OK)
        return st;
    const uint64_t whole = file_bytes(w, all, 0, n);
    if (max_bytes == 0 || whole <= max_bytes || n == 0) {
        p->first_tensor[1] = n;
        p->bytes[0] = whole;
        return TS_OK;
    }
    uint64_t kv = all + split_kv_bytes(), infos = 0, data = 0, cnt = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t ti = tensor_info_bytes(w, i), td = pad(ts_gguf_writer_tensor_bytes(w, i), align);
        uint64_t size = part_bytes(w, kv, infos + ti, data + td, cnt + 1);
        if (size <= max_bytes) {
            infos += ti;
            data += td;
            cnt++;
            continue;
        }
        if (cnt == 0) { /* alone in its part and still too large */
            const char *name;
            ts_dtype type;
            int n_dims;
            const int64_t *ne;
            ts_gguf_writer_tensor_info(w, i, &name, &type, &n_dims, &ne);
            return ts_fail(err, TS_ERR_ARG,
                           "split size %llu bytes is smaller than tensor %s needs in a part of its own (%llu bytes "
                           "with the part's header)", (unsigned long long)max_bytes, name, (unsigned long long)size);
        }
        p->bytes[p->n_parts - 1] = part_bytes(w, kv, infos, data, cnt);
        if ((st = plan_push(p, &cap, i, err)) != TS_OK)
            return st;
        kv = align_only + split_kv_bytes();
        infos = data = cnt = 0;
        i--; /* the tensor starts the new part: check it there */
    }
    if (p->n_parts > TS_GGUF_SPLIT_MAX_PARTS)
        return ts_fail(err, TS_ERR_ARG, "split size %llu bytes gives %zu parts; at most %d are possible",
                       (unsigned long long)max_bytes, p->n_parts, TS_GGUF_SPLIT_MAX_PARTS);
    p->bytes[p->n_parts - 1] = part_bytes(w, kv, infos, data, cnt);
    p->first_tensor[p->n_parts] = n;
    return TS_OK;
}

/* ---- names and keys ---- */

char *ts_gguf_split_path(const char *path, size_t i, size_t n)
{
    size_t len = strlen(path);
    if (len > 5 && !strcmp(path + len - 5, ".gguf"))
        len -= 5;
    size_t cap = len + 32;
    char *s = malloc(cap);
    if (s)
        snprintf(s, cap, "%.*s-%05zu-of-%05zu.gguf", (int)len, path, i + 1, n);
    return s;
}

ts_status ts_gguf_split_info(const ts_gguf *g, const char *path, bool *is_split, uint32_t *no, uint32_t *count,
                             int64_t *tensors, ts_err *err)
{
    const ts_gguf_kv *kn = ts_gguf_find_kv(g, TS_GGUF_KEY_SPLIT_NO), *kc = ts_gguf_find_kv(g, TS_GGUF_KEY_SPLIT_COUNT),
                     *kt = ts_gguf_find_kv(g, TS_GGUF_KEY_SPLIT_TENSORS);
    *is_split = kn || kc || kt;
    *no = 0;
    *count = 1;
    *tensors = (int64_t)g->n_tensors;
    if (!*is_split)
        return TS_OK;
    if (!kn || !kc || !kt || kn->value.type != TS_GGUF_UINT16 || kc->value.type != TS_GGUF_UINT16 ||
        kt->value.type != TS_GGUF_INT32)
        return ts_fail(err, TS_ERR_FORMAT, "%s: split keys must be split.no (u16), split.count (u16) and "
                       "split.tensors.count (i32), all three", path);
    *no = kn->value.u16;
    *count = kc->value.u16;
    *tensors = kt->value.i32;
    if (*count == 0 || *no >= *count || *tensors < 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: split.no %u, split.count %u, split.tensors.count %lld: out of range",
                       path, *no, *count, (long long)*tensors);
    return TS_OK;
}

ts_status ts_gguf_writer_copy_kvs(ts_gguf_writer *dst, const ts_gguf_writer *src)
{
    ts_status st = TS_OK;
    for (uint64_t i = 0; i < ts_gguf_writer_n_kv(src) && st == TS_OK; i++) {
        const ts_gguf_kv *kv = ts_gguf_writer_kv(src, i);
        st = ts_gguf_set_value(dst, kv->key, &kv->value);
    }
    return st;
}

/* ---- writing ---- */

struct ts_gguf_out {
    ts_gguf_writer *w;       /* the model's writer; begun itself when not split */
    ts_gguf_split_plan plan;
    ts_gguf_writer **parts;  /* split: one per part, NULL until built */
    char **paths;            /* final names, plan.n_parts of them */
    bool *begun;             /* split: part writers begun (finished ones too) */
    bool split;
    size_t only;             /* 0: every part; k: part k (1-based) */
    const char *const *inputs;
    size_t cur_part;         /* part of the tensor being written */
    uint64_t cur, cur_written, n_tensors;
};

static bool part_wanted(const ts_gguf_out *o, size_t p) { return o->only == 0 || o->only == p + 1; }

static size_t part_of(const ts_gguf_out *o, uint64_t i)
{
    size_t lo = 0, hi = o->plan.n_parts; /* first_tensor[lo] <= i < first_tensor[hi] */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (o->plan.first_tensor[mid] <= i)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Part p's writer: the model's keys (part 1) or general.alignment alone,
 * then the split keys, then its tensors. */
static ts_status begin_part(ts_gguf_out *o, size_t p, ts_err *err)
{
    if (o->begun[p])
        return TS_OK;
    o->begun[p] = true;
    return ts_gguf_writer_begin(o->parts[p], o->paths[p], o->inputs, err);
}

static ts_status settle(ts_gguf_out *o, ts_err *err);

static ts_status build_part(ts_gguf_out *o, size_t p, ts_err *err)
{
    ts_gguf_writer *pw;
    ts_status st = ts_gguf_writer_new(&pw, err);
    if (st != TS_OK)
        return st;
    o->parts[p] = pw;
    ts_gguf_writer_enable_checksums(pw, ts_gguf_writer_checksums(o->w));
    for (uint64_t i = 0; i < ts_gguf_writer_n_kv(o->w) && st == TS_OK; i++) {
        const ts_gguf_kv *kv = ts_gguf_writer_kv(o->w, i);
        if (is_checksum_key(kv->key) || is_split_key(kv->key) || (p > 0 && strcmp(kv->key, "general.alignment")))
            continue;
        st = ts_gguf_set_value(pw, kv->key, &kv->value);
    }
    st = st ? st : ts_gguf_set_u16(pw, TS_GGUF_KEY_SPLIT_NO, (uint16_t)p);
    st = st ? st : ts_gguf_set_u16(pw, TS_GGUF_KEY_SPLIT_COUNT, (uint16_t)o->plan.n_parts);
    st = st ? st : ts_gguf_set_i32(pw, TS_GGUF_KEY_SPLIT_TENSORS, (int32_t)o->n_tensors);
    if (st != TS_OK)
        return ts_fail(err, st, "%s: cannot copy the metadata into the part", o->paths[p]);
    for (uint64_t i = o->plan.first_tensor[p]; i < o->plan.first_tensor[p + 1] && st == TS_OK; i++) {
        const char *name;
        ts_dtype type;
        int n_dims;
        const int64_t *ne;
        ts_gguf_writer_tensor_info(o->w, i, &name, &type, &n_dims, &ne);
        st = ts_gguf_add_tensor(pw, name, type, n_dims, ne, err);
    }
    return st;
}

ts_status ts_gguf_out_open(ts_gguf_writer *w, const char *path, const ts_gguf_split_opts *so,
                           const char *const *inputs, ts_gguf_out **out, ts_err *err)
{
    *out = NULL;
    ts_gguf_out *o = calloc(1, sizeof *o);
    if (!o)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    o->w = w;
    o->inputs = inputs;
    o->only = so ? so->only_part : 0;
    o->n_tensors = ts_gguf_writer_n_tensors(w);
    ts_status st = ts_gguf_split_plan_build(w, so ? so->max_bytes : 0, &o->plan, err);
    if (st != TS_OK) {
        ts_err_prefix(err, "%s", path);
        ts_gguf_out_free(o);
        return st;
    }
    size_t n = o->plan.n_parts;
    o->split = n > 1;
    if (o->only > n) {
        ts_gguf_out_free(o);
        return ts_fail(err, TS_ERR_ARG, "%s: part %zu asked for, but the file has %zu part(s) at this split size",
                       path, so->only_part, n);
    }
    if (n > TS_GGUF_SPLIT_MAX_PARTS || !(o->paths = calloc(n, sizeof *o->paths)) ||
        (o->split && (!(o->parts = calloc(n, sizeof *o->parts)) || !(o->begun = calloc(n, sizeof *o->begun))))) {
        ts_gguf_out_free(o);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    for (size_t p = 0; p < n; p++)
        if (!(o->paths[p] = o->split ? ts_gguf_split_path(path, p, n) : strdup(path))) {
            ts_gguf_out_free(o);
            return ts_fail(err, TS_ERR_NOMEM, "out of memory");
        }
    if (!o->split)
        st = ts_gguf_writer_begin(w, path, inputs, err);
    for (size_t p = 0; o->split && p < n && st == TS_OK; p++)
        if (part_wanted(o, p))
            st = build_part(o, p, err);
    /* the first wanted part now: a path that cannot be written shows before any work */
    for (size_t p = 0; o->split && p < n && st == TS_OK; p++)
        if (part_wanted(o, p)) {
            st = begin_part(o, p, err);
            break;
        }
    if (st == TS_OK)
        st = settle(o, err);
    if (st != TS_OK) {
        ts_gguf_out_free(o);
        return st;
    }
    *out = o;
    return TS_OK;
}

bool ts_gguf_out_wants(const ts_gguf_out *o, uint64_t i)
{
    return !o->split || part_wanted(o, part_of(o, i));
}

/* Moves o->cur past tensors without bytes, finishing every wanted part
 * whose tensors are all written and beginning the part o->cur is in. */
static ts_status settle(ts_gguf_out *o, ts_err *err)
{
    while (o->cur < o->n_tensors && ts_gguf_writer_tensor_bytes(o->w, o->cur) == 0)
        o->cur++;
    if (!o->split)
        return TS_OK;
    ts_status st = TS_OK;
    while (o->cur_part < o->plan.n_parts && o->cur >= o->plan.first_tensor[o->cur_part + 1] && st == TS_OK) {
        size_t p = o->cur_part++;
        if (part_wanted(o, p)) {
            st = begin_part(o, p, err); /* a part of zero-byte tensors gets here unbegun */
            st = st ? st : ts_gguf_writer_finish(o->parts[p], err);
        }
    }
    if (st == TS_OK && o->cur_part < o->plan.n_parts && part_wanted(o, o->cur_part))
        st = begin_part(o, o->cur_part, err);
    return st;
}

/* After tensor o->cur is complete. */
static ts_status advance(ts_gguf_out *o, ts_err *err)
{
    o->cur++;
    o->cur_written = 0;
    return settle(o, err);
}

ts_status ts_gguf_out_write(ts_gguf_out *o, const void *data, uint64_t nbytes, ts_err *err)
{
    if (nbytes == 0)
        return TS_OK;
    if (o->cur >= o->n_tensors || nbytes > ts_gguf_writer_tensor_bytes(o->w, o->cur) - o->cur_written)
        return ts_fail(err, TS_ERR_INTERNAL, "%s: %llu bytes given past the end of tensor %llu", o->paths[0],
                       (unsigned long long)nbytes, (unsigned long long)o->cur);
    ts_status st = TS_OK;
    if (!o->split)
        st = ts_gguf_write_tensor_data(o->w, data, nbytes, err);
    else if (part_wanted(o, o->cur_part))
        st = ts_gguf_write_tensor_data(o->parts[o->cur_part], data, nbytes, err);
    if (st != TS_OK)
        return st;
    o->cur_written += nbytes;
    return o->cur_written == ts_gguf_writer_tensor_bytes(o->w, o->cur) ? advance(o, err) : TS_OK;
}

ts_status ts_gguf_out_skip(ts_gguf_out *o, ts_err *err)
{
    if (o->cur >= o->n_tensors || o->cur_written || ts_gguf_out_wants(o, o->cur))
        return ts_fail(err, TS_ERR_INTERNAL, "%s: tensor %llu cannot be skipped", o->paths[0],
                       (unsigned long long)o->cur);
    return advance(o, err);
}

ts_status ts_gguf_out_finish(ts_gguf_out *o, ts_err *err)
{
    if (!o->split)
        return ts_gguf_writer_finish(o->w, err);
    if (o->cur < o->n_tensors)
        return ts_fail(err, TS_ERR_INTERNAL, "%s: finished with tensor %llu of %llu unwritten", o->paths[0],
                       (unsigned long long)o->cur, (unsigned long long)o->n_tensors);
    return TS_OK; /* settle finished every part as its last tensor was written */
}

void ts_gguf_out_free(ts_gguf_out *o)
{
    if (!o)
        return;
    for (size_t p = 0; o->parts && p < o->plan.n_parts; p++)
        ts_gguf_writer_free(o->parts[p]); /* removes an unfinished part's temp file */
    for (size_t p = 0; o->paths && p < o->plan.n_parts; p++)
        free(o->paths[p]);
    free(o->parts);
    free(o->begun);
    free(o->paths);
    ts_gguf_split_plan_free(&o->plan);
    free(o);
}

size_t ts_gguf_out_n_files(const ts_gguf_out *o) { return o->plan.n_parts; }

const char *ts_gguf_out_path(const ts_gguf_out *o, size_t i) { return i < o->plan.n_parts ? o->paths[i] : NULL; }

/* ---- merging ---- */

/* Opens every part of the set whose first part is first. */
static ts_status open_parts(const char *first, ts_gguf ***out, size_t *n_out, ts_err *err)
{
    ts_gguf *g0;
    ts_status st = ts_gguf_open(first, &g0, err);
    if (st != TS_OK)
        return st;
    bool is_split;
    uint32_t no, count;
    int64_t total;
    if ((st = ts_gguf_split_info(g0, first, &is_split, &no, &count, &total, err)) == TS_OK && (!is_split || no != 0))
        st = ts_fail(err, TS_ERR_ARG, "%s: not the first part of a split GGUF (split.no %u)", first, no);
    /* the name says which set: "x-00001-of-00003.gguf" */
    char suffix[40];
    snprintf(suffix, sizeof suffix, "-%05u-of-%05u.gguf", 1u, count);
    size_t len = strlen(first), sl = strlen(suffix);
    if (st == TS_OK && (len <= sl || strcmp(first + len - sl, suffix)))
        st = ts_fail(err, TS_ERR_ARG, "%s: a first part's name ends in %s", first, suffix);
    ts_gguf **parts = st == TS_OK ? calloc(count, sizeof *parts) : NULL;
    if (st == TS_OK && !parts)
        st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    if (st != TS_OK) {
        ts_gguf_close(g0);
        return st;
    }
    parts[0] = g0;
    char *prefix = strndup(first, len - sl);
    uint64_t n_tensors = g0->n_tensors;
    for (uint32_t i = 1; i < count && st == TS_OK; i++) {
        char *path = prefix ? ts_gguf_split_path(prefix, i, count) : NULL;
        uint32_t no_i, count_i;
        int64_t total_i;
        if (!path)
            st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
        else if ((st = ts_gguf_open(path, &parts[i], err)) == TS_OK &&
                 (st = ts_gguf_split_info(parts[i], path, &is_split, &no_i, &count_i, &total_i, err)) == TS_OK &&
                 (!is_split || no_i != i || count_i != count || total_i != total))
            st = ts_fail(err, TS_ERR_FORMAT, "%s: expected part %u of %u of %lld tensors, found split.no %u of %u, %lld "
                         "tensors", path, i, count, (long long)total, no_i, count_i, (long long)total_i);
        if (st == TS_OK)
            n_tensors += parts[i]->n_tensors;
        free(path);
    }
    free(prefix);
    if (st == TS_OK && (int64_t)n_tensors != total)
        st = ts_fail(err, TS_ERR_FORMAT, "%s: the parts hold %llu tensors; split.tensors.count says %lld", first,
                     (unsigned long long)n_tensors, (long long)total);
    if (st != TS_OK) {
        for (uint32_t i = 0; i < count; i++)
            ts_gguf_close(parts[i]);
        free(parts);
        return st;
    }
    *out = parts;
    *n_out = count;
    return TS_OK;
}

ts_status ts_gguf_split_merge(const char *first, const char *out, const char *const *inputs, ts_err *err)
{
    ts_gguf **parts;
    size_t n;
    ts_status st = open_parts(first, &parts, &n, err);
    if (st != TS_OK)
        return st;
    ts_gguf_writer *w = NULL;
    st = ts_gguf_writer_new(&w, err);
    const ts_gguf *g0 = parts[0];
    if (st == TS_OK)
        ts_gguf_writer_enable_checksums(w, ts_gguf_find_kv(g0, TS_GGUF_KEY_CHECKSUM_ALGO) != NULL);
    for (uint64_t i = 0; i < g0->n_kv && st == TS_OK; i++)
        if (!is_split_key(g0->kv[i].key) && !is_checksum_key(g0->kv[i].key) &&
            ts_gguf_set_value(w, g0->kv[i].key, &g0->kv[i].value) != TS_OK)
            st = ts_fail(err, TS_ERR_NOMEM, "%s: cannot copy key %s", first, g0->kv[i].key);
    for (size_t p = 0; p < n && st == TS_OK; p++)
        for (uint64_t i = 0; i < parts[p]->n_tensors && st == TS_OK; i++) {
            const ts_tensor *t = &parts[p]->tensors[i].t;
            st = ts_gguf_add_tensor(w, t->name, t->dtype, t->n_dims, t->ne, err);
        }
    if (st == TS_OK)
        st = ts_gguf_writer_begin(w, out, inputs, err);
    for (size_t p = 0; p < n && st == TS_OK; p++) {
        const ts_gguf *g = parts[p];
        for (uint64_t i = 0; i < g->n_tensors && st == TS_OK; i++) {
            const ts_gguf_tensor *gt = &g->tensors[i];
            const uint64_t slab = 16u << 20;
            for (uint64_t off = 0; off < gt->t.nbytes && st == TS_OK; off += slab) {
                uint64_t k = gt->t.nbytes - off < slab ? gt->t.nbytes - off : slab;
                st = ts_gguf_write_tensor_data(w, (const uint8_t *)gt->t.data + off, k, err);
                ts_mapped_release(&g->file, g->data_offset + gt->offset + off, k);
            }
        }
    }
    if (st == TS_OK)
        st = ts_gguf_writer_finish(w, err);
    ts_gguf_writer_free(w);
    for (size_t p = 0; p < n; p++)
        ts_gguf_close(parts[p]);
    free(parts);
    return st;
}
