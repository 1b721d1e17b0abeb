/* Streaming GGUF writer: header, key/values and tensor infos first, then the
 * tensor bytes in the order the tensors were added, each padded to the
 * alignment (the layout gguf-py's GGUFWriter produces; docs/formats/gguf.md).
 * Output goes to a temp file that finish() renames into place. Optional
 * tensor checksums are reserved in the header and patched in by finish. */
#include "gguf_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

typedef struct {
    char name[TS_GGUF_MAX_NAME + 1];
    ts_dtype type;
    int n_dims;
    int64_t ne[TS_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset; /* relative to the data section */
} wtensor;

enum { W_COLLECT, W_WRITING, W_DONE, W_FAILED };

struct ts_gguf_writer {
    ts_gguf_kv *kv;
    uint64_t n_kv, cap_kv;
    wtensor *t;
    uint64_t n_t, cap_t;
    ts_gguf_index t_ix;
    int state;
    ts_atomic_file f;
    uint64_t alignment;
    uint64_t cur, cur_written; /* tensor being streamed, bytes of it so far */
    /* tensor checksums (ts_gguf_writer_enable_checksums) */
    bool checksums;
    uint64_t *sums;        /* one per tensor, filled as its bytes stream past */
    uint64_t sums_offset;  /* file offset of the reserved array's first element */
    XXH3_state_t *xxh;
};

static const char *wt_name(const void *ctx, uint64_t i) { return ((const ts_gguf_writer *)ctx)->t[i].name; }

ts_status ts_gguf_writer_new(ts_gguf_writer **out, ts_err *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    (*out)->alignment = TS_GGUF_DEFAULT_ALIGNMENT;
    return TS_OK;
}

void ts_gguf_writer_free(ts_gguf_writer *w)
{
    if (!w)
        return;
    if (w->state == W_WRITING) /* never finished: leave no temp file behind */
        ts_atomic_abort(&w->f);
    for (uint64_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        ts_gguf_value_free(&w->kv[i].value);
    }
    free(w->kv);
    free(w->t);
    free(w->sums);
    if (w->xxh)
        XXH3_freeState(w->xxh);
    ts_gguf_ix_free(&w->t_ix);
    free(w);
}

void ts_gguf_writer_enable_checksums(ts_gguf_writer *w, bool on)
{
    w->checksums = on;
}

/* ---- key/values ---- */

static bool str_ok(const char *s, uint64_t len)
{
    return s && len <= TS_GGUF_MAX_STRING && !memchr(s, 0, (size_t)len);
}

/* Deep copy of a string array into one block (headers, then the bytes). */
static ts_status copy_str_array(const ts_gguf_string *src, uint64_t n, void **out)
{
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++)
        if (!str_ok(src[i].s, src[i].len) || !ts_add_u64(total, src[i].len + 1, &total))
            return TS_ERR_ARG;
    uint64_t hdr;
    if (!ts_mul_u64(n, sizeof(ts_gguf_string), &hdr) || !ts_add_u64(hdr, total, &total) || total > SIZE_MAX)
        return TS_ERR_LIMIT;
    uint8_t *block = malloc((size_t)total + 1);
    if (!block)
        return TS_ERR_NOMEM;
    ts_gguf_string *strs = (ts_gguf_string *)block;
    char *chars = (char *)(block + hdr);
    for (uint64_t i = 0; i < n; i++) {
        memcpy(chars, src[i].s, (size_t)src[i].len);
        chars[src[i].len] = 0;
        strs[i].s = chars;
        strs[i].len = src[i].len;
        chars += src[i].len + 1;
    }
    *out = block;
    return TS_OK;
}

static ts_status copy_value(const ts_gguf_value *src, ts_gguf_value *dst)
{
    *dst = *src;
    if (src->type == TS_GGUF_STRING) {
        if (!str_ok(src->str.s, src->str.len))
            return TS_ERR_ARG;
        if (!(dst->str.s = malloc((size_t)src->str.len + 1)))
            return TS_ERR_NOMEM;
        memcpy(dst->str.s, src->str.s, (size_t)src->str.len);
        dst->str.s[src->str.len] = 0;
        return TS_OK;
    }
    if (src->type != TS_GGUF_ARRAY)
        return ts_gguf_scalar_size(src->type) ? TS_OK : TS_ERR_ARG;
    ts_gguf_type et = src->arr.elem_type;
    dst->arr.data = NULL;
    if (et == TS_GGUF_ARRAY || !ts_gguf_type_known((uint32_t)et) || (src->arr.n && !src->arr.data))
        return TS_ERR_ARG; /* nested arrays are refused by readers */
    if (src->arr.n == 0)
        return TS_OK;
    if (et == TS_GGUF_STRING)
        return copy_str_array(src->arr.data, src->arr.n, &dst->arr.data);
    uint64_t bytes;
    if (!ts_mul_u64(src->arr.n, ts_gguf_scalar_size(et), &bytes) || bytes > SIZE_MAX)
        return TS_ERR_LIMIT;
    if (!(dst->arr.data = malloc((size_t)bytes)))
        return TS_ERR_NOMEM;
    memcpy(dst->arr.data, src->arr.data, (size_t)bytes);
    return TS_OK;
}

static int64_t find_key(const ts_gguf_writer *w, const char *key)
{
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0)
            return (int64_t)i;
    return -1;
}

ts_status ts_gguf_set_value(ts_gguf_writer *w, const char *key, const ts_gguf_value *v)
{
    if (w->state != W_COLLECT || !key || !*key || !ts_gguf_utf8_valid((const uint8_t *)key, strlen(key)))
        return TS_ERR_ARG;
    ts_gguf_value copy;
    ts_status st = copy_value(v, &copy); /* allocates nothing when it fails */
    if (st != TS_OK)
        return st;
    int64_t i = find_key(w, key);
    if (i >= 0) { /* replaced in place: the key keeps its position, as in gguf-py */
        ts_gguf_value_free(&w->kv[i].value);
        w->kv[i].value = copy;
        return TS_OK;
    }
    if (w->n_kv == w->cap_kv) {
        uint64_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        ts_gguf_kv *kv = realloc(w->kv, (size_t)cap * sizeof *kv);
        if (!kv) {
            ts_gguf_value_free(&copy);
            return TS_ERR_NOMEM;
        }
        w->kv = kv;
        w->cap_kv = cap;
    }
    if (!(w->kv[w->n_kv].key = strdup(key))) {
        ts_gguf_value_free(&copy);
        return TS_ERR_NOMEM;
    }
    w->kv[w->n_kv++].value = copy;
    return TS_OK;
}

#define SETTER(fn, ctype, tag, member) \
    ts_status fn(ts_gguf_writer *w, const char *key, ctype v) \
    { \
        ts_gguf_value val = {.type = tag}; \
        val.member = v; \
        return ts_gguf_set_value(w, key, &val); \
    }
SETTER(ts_gguf_set_u8, uint8_t, TS_GGUF_UINT8, u8)
SETTER(ts_gguf_set_i8, int8_t, TS_GGUF_INT8, i8)
SETTER(ts_gguf_set_u16, uint16_t, TS_GGUF_UINT16, u16)
SETTER(ts_gguf_set_i16, int16_t, TS_GGUF_INT16, i16)
SETTER(ts_gguf_set_u32, uint32_t, TS_GGUF_UINT32, u32)
SETTER(ts_gguf_set_i32, int32_t, TS_GGUF_INT32, i32)
SETTER(ts_gguf_set_u64, uint64_t, TS_GGUF_UINT64, u64)
SETTER(ts_gguf_set_i64, int64_t, TS_GGUF_INT64, i64)
SETTER(ts_gguf_set_f32, float, TS_GGUF_FLOAT32, f32)
SETTER(ts_gguf_set_f64, double, TS_GGUF_FLOAT64, f64)
SETTER(ts_gguf_set_bool, bool, TS_GGUF_BOOL, b)
#undef SETTER

ts_status ts_gguf_set_str(ts_gguf_writer *w, const char *key, const char *v)
{
    if (!v)
        return TS_ERR_ARG;
    ts_gguf_value val = {.type = TS_GGUF_STRING, .str = {(char *)v, strlen(v)}};
    return ts_gguf_set_value(w, key, &val);
}

ts_status ts_gguf_set_arr(ts_gguf_writer *w, const char *key, ts_gguf_type elem_type, const void *data, uint64_t n)
{
    if (elem_type == TS_GGUF_STRING)
        return TS_ERR_ARG; /* strings go through ts_gguf_set_arr_str */
    ts_gguf_value val = {.type = TS_GGUF_ARRAY};
    val.arr.elem_type = elem_type;
    val.arr.n = n;
    val.arr.data = (void *)data;
    return ts_gguf_set_value(w, key, &val);
}

ts_status ts_gguf_set_arr_str(ts_gguf_writer *w, const char *key, const char *const *strs, uint64_t n)
{
    if (n && !strs)
        return TS_ERR_ARG;
    if (n > SIZE_MAX / sizeof(ts_gguf_string))
        return TS_ERR_LIMIT;
    ts_gguf_string *tmp = malloc((size_t)n * sizeof *tmp + 1);
    if (!tmp)
        return TS_ERR_NOMEM;
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i]) {
            free(tmp);
            return TS_ERR_ARG;
        }
        tmp[i].s = (char *)strs[i];
        tmp[i].len = strlen(strs[i]);
    }
    ts_gguf_value val = {.type = TS_GGUF_ARRAY};
    val.arr.elem_type = TS_GGUF_STRING;
    val.arr.n = n;
    val.arr.data = tmp;
    ts_status st = ts_gguf_set_value(w, key, &val);
    free(tmp);
    return st;
}

bool ts_gguf_writer_has_key(const ts_gguf_writer *w, const char *key)
{
    return find_key(w, key) >= 0;
}

void ts_gguf_writer_remove(ts_gguf_writer *w, const char *key)
{
    int64_t i = find_key(w, key);
    if (i < 0 || w->state != W_COLLECT)
        return;
    free(w->kv[i].key);
    ts_gguf_value_free(&w->kv[i].value);
    memmove(&w->kv[i], &w->kv[i + 1], (size_t)(w->n_kv - (uint64_t)i - 1) * sizeof *w->kv);
    w->n_kv--;
}

ts_status ts_gguf_set_alignment(ts_gguf_writer *w, uint32_t alignment)
{
    if (w->state != W_COLLECT || alignment == 0 || (alignment & (alignment - 1)) != 0)
        return TS_ERR_ARG;
    if (alignment == TS_GGUF_DEFAULT_ALIGNMENT) { /* readers assume 32 when the key is absent */
        ts_gguf_writer_remove(w, "general.alignment");
        return TS_OK;
    }
    return ts_gguf_set_u32(w, "general.alignment", alignment);
}

/* ---- tensors ---- */

ts_status ts_gguf_add_tensor(ts_gguf_writer *w, const char *name, ts_dtype type, int n_dims,
                             const int64_t *ne, ts_err *err)
{
    if (w->state != W_COLLECT)
        return ts_fail(err, TS_ERR_ARG, "tensor '%s': tensors must be added before begin", name ? name : "");
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > TS_GGUF_MAX_NAME)
        return ts_fail(err, TS_ERR_ARG, "tensor name '%s' is %zu bytes; GGUF names must be 1..%d bytes (GGML_MAX_NAME 64)",
                       name ? name : "", len, TS_GGUF_MAX_NAME);
    if (!ts_gguf_utf8_valid((const uint8_t *)name, len))
        return ts_fail(err, TS_ERR_ARG, "tensor name '%s' is not valid UTF-8", name);
    if (ts_gguf_ix_find(&w->t_ix, name, wt_name, w) >= 0)
        return ts_fail(err, TS_ERR_ARG, "duplicate tensor name '%s'", name);
    uint64_t nbytes;
    const char *why = ts_gguf_tensor_size(type, n_dims, ne, &nbytes);
    if (why) {
        const ts_dtype_info *info = ts_dtype_get(type);
        return ts_fail(err, TS_ERR_ARG, "tensor '%s' (type %s, block size %u, n_dims %d): %s", name,
                       ts_dtype_name(type), info ? info->block_size : 0, n_dims, why);
    }
    if (w->n_t == w->cap_t) {
        uint64_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t)
            return ts_fail(err, TS_ERR_NOMEM, "out of memory adding tensor '%s'", name);
        w->t = t;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    memcpy(t->name, name, len + 1);
    t->type = type;
    t->n_dims = n_dims;
    for (int i = 0; i < TS_MAX_DIMS; i++)
        t->ne[i] = i < n_dims ? ne[i] : 1;
    t->nbytes = nbytes;
    if (!ts_gguf_ix_add(&w->t_ix, w->n_t, wt_name, w))
        return ts_fail(err, TS_ERR_NOMEM, "out of memory adding tensor '%s'", name);
    w->n_t++;
    return TS_OK;
}

uint64_t ts_gguf_writer_n_tensors(const ts_gguf_writer *w) { return w->n_t; }

uint64_t ts_gguf_writer_tensor_bytes(const ts_gguf_writer *w, uint64_t i)
{
    return i < w->n_t ? w->t[i].nbytes : 0;
}

/* ---- serialization ---- */

static ts_status put(ts_gguf_writer *w, const void *p, size_t n, ts_err *err)
{
    return ts_atomic_write(&w->f, p, n, err);
}

static ts_status put_u32(ts_gguf_writer *w, uint32_t v, ts_err *err)
{
    uint8_t b[4];
    ts_gguf_encode_scalar(TS_GGUF_UINT32, &v, b);
    return put(w, b, 4, err);
}

static ts_status put_u64(ts_gguf_writer *w, uint64_t v, ts_err *err)
{
    uint8_t b[8];
    ts_gguf_encode_scalar(TS_GGUF_UINT64, &v, b);
    return put(w, b, 8, err);
}

static ts_status put_str(ts_gguf_writer *w, const char *s, uint64_t len, ts_err *err)
{
    ts_status st = put_u64(w, len, err);
    return st == TS_OK ? put(w, s, (size_t)len, err) : st;
}

static ts_status put_pad(ts_gguf_writer *w, ts_err *err)
{
    static const uint8_t zeros[4096];
    uint64_t pad = (w->alignment - w->f.written % w->alignment) % w->alignment;
    ts_status st = TS_OK;
    while (pad && st == TS_OK) {
        size_t n = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
        st = put(w, zeros, n, err);
        pad -= n;
    }
    return st;
}

static ts_status put_value(ts_gguf_writer *w, const ts_gguf_value *v, ts_err *err)
{
    ts_status st = put_u32(w, (uint32_t)v->type, err);
    if (st != TS_OK)
        return st;
    uint8_t buf[4096];
    if (v->type == TS_GGUF_STRING)
        return put_str(w, v->str.s, v->str.len, err);
    if (v->type != TS_GGUF_ARRAY) {
        ts_gguf_encode_scalar(v->type, &v->u8, buf);
        return put(w, buf, ts_gguf_scalar_size(v->type), err);
    }
    ts_gguf_type et = v->arr.elem_type;
    if ((st = put_u32(w, (uint32_t)et, err)) != TS_OK || (st = put_u64(w, v->arr.n, err)) != TS_OK)
        return st;
    if (et == TS_GGUF_STRING) {
        const ts_gguf_string *s = v->arr.data;
        for (uint64_t i = 0; i < v->arr.n && st == TS_OK; i++)
            st = put_str(w, s[i].s, s[i].len, err);
        return st;
    }
    /* Scalars are staged through buf so the bytes are little-endian on any host. */
    size_t es = ts_gguf_scalar_size(et), fill = 0;
    for (uint64_t i = 0; i < v->arr.n && st == TS_OK; i++) {
        ts_gguf_encode_scalar(et, (const uint8_t *)v->arr.data + i * es, buf + fill);
        fill += es;
        if (fill == sizeof buf || i + 1 == v->arr.n) {
            st = put(w, buf, fill, err);
            fill = 0;
        }
    }
    return st;
}

static ts_status put_header(ts_gguf_writer *w, ts_err *err)
{
    ts_status st = put(w, "GGUF", 4, err);
    if (st == TS_OK)
        st = put_u32(w, 3, err);
    if (st == TS_OK)
        st = put_u64(w, w->n_t, err);
    if (st == TS_OK)
        st = put_u64(w, w->n_kv, err);
    for (uint64_t i = 0; i < w->n_kv && st == TS_OK; i++) {
        st = put_str(w, w->kv[i].key, strlen(w->kv[i].key), err);
        /* the checksum array's elements follow its type, element type and count */
        if (w->sums && !strcmp(w->kv[i].key, TS_GGUF_KEY_CHECKSUM_TENSORS))
            w->sums_offset = w->f.written + 4 + 4 + 8;
        if (st == TS_OK)
            st = put_value(w, &w->kv[i].value, err);
    }
    for (uint64_t i = 0; i < w->n_t && st == TS_OK; i++) {
        const wtensor *t = &w->t[i];
        st = put_str(w, t->name, strlen(t->name), err);
        if (st == TS_OK)
            st = put_u32(w, (uint32_t)t->n_dims, err);
        for (int j = 0; j < t->n_dims && st == TS_OK; j++)
            st = put_u64(w, (uint64_t)t->ne[j], err);
        if (st == TS_OK)
            st = put_u32(w, (uint32_t)t->type, err);
        if (st == TS_OK)
            st = put_u64(w, t->offset, err);
    }
    return st == TS_OK ? put_pad(w, err) : st;
}

/* Zero-byte tensors have nothing to stream; step over them. */
static void skip_empty(ts_gguf_writer *w)
{
    while (w->cur < w->n_t && w->t[w->cur].nbytes == 0)
        w->cur++;
}

static ts_status fail_writing(ts_gguf_writer *w, ts_status st)
{
    if (w->state == W_WRITING)
        ts_atomic_abort(&w->f);
    w->state = W_FAILED;
    return st;
}

static void hash_tensor_info(XXH3_state_t *h, const char *name, int n_dims, const int64_t *ne, ts_dtype type)
{
    uint8_t b[8];
    XXH3_64bits_update(h, name, strlen(name) + 1);
    uint32_t u = (uint32_t)n_dims;
    ts_gguf_encode_scalar(TS_GGUF_UINT32, &u, b);
    XXH3_64bits_update(h, b, 4);
    for (int j = 0; j < n_dims; j++) {
        ts_gguf_encode_scalar(TS_GGUF_INT64, &ne[j], b);
        XXH3_64bits_update(h, b, 8);
    }
    u = (uint32_t)type;
    ts_gguf_encode_scalar(TS_GGUF_UINT32, &u, b);
    XXH3_64bits_update(h, b, 4);
}

uint64_t ts_gguf_tensor_info_hash(const ts_gguf *g)
{
    XXH3_state_t h; /* on the stack: XXH3_createState could fail */
    XXH3_INITSTATE(&h);
    XXH3_64bits_reset(&h);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const ts_tensor *t = &g->tensors[i].t;
        hash_tensor_info(&h, t->name, t->n_dims, t->ne, t->dtype);
    }
    return XXH3_64bits_digest(&h);
}

/* The checksums are only known once the data is written, but the header
 * comes first: reserve a zero-filled array of one u64 per tensor here (its
 * size does not depend on the values) and patch it in finish. Keys copied
 * from an input file are dropped either way: they describe other bytes. */
static ts_status reserve_checksums(ts_gguf_writer *w, const char *path, ts_err *err)
{
    ts_gguf_writer_remove(w, TS_GGUF_KEY_CHECKSUM_ALGO);
    ts_gguf_writer_remove(w, TS_GGUF_KEY_CHECKSUM_TENSOR_INFO);
    ts_gguf_writer_remove(w, TS_GGUF_KEY_CHECKSUM_TENSORS);
    free(w->sums);
    w->sums = NULL;
    if (!w->checksums || w->n_t == 0)
        return TS_OK;
    if (w->n_t > SIZE_MAX / sizeof *w->sums || !(w->sums = calloc((size_t)w->n_t, sizeof *w->sums)) ||
        (!w->xxh && !(w->xxh = XXH3_createState())))
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory for %llu tensor checksums", path,
                       (unsigned long long)w->n_t);
    XXH3_64bits_reset(w->xxh);
    for (uint64_t i = 0; i < w->n_t; i++)
        hash_tensor_info(w->xxh, w->t[i].name, w->t[i].n_dims, w->t[i].ne, w->t[i].type);
    ts_status st = ts_gguf_set_str(w, TS_GGUF_KEY_CHECKSUM_ALGO, TS_GGUF_CHECKSUM_ALGO);
    if (st == TS_OK)
        st = ts_gguf_set_u64(w, TS_GGUF_KEY_CHECKSUM_TENSOR_INFO, XXH3_64bits_digest(w->xxh));
    if (st == TS_OK)
        st = ts_gguf_set_arr(w, TS_GGUF_KEY_CHECKSUM_TENSORS, TS_GGUF_UINT64, w->sums, w->n_t);
    if (st != TS_OK)
        return ts_fail(err, st, "%s: cannot reserve the tensor checksums", path);
    for (uint64_t i = 0; i < w->n_t; i++)
        if (w->t[i].nbytes == 0) /* never streamed: hash of no bytes */
            w->sums[i] = XXH3_64bits("", 0);
    return TS_OK;
}

ts_status ts_gguf_writer_begin(ts_gguf_writer *w, const char *path, const char *const *inputs, ts_err *err)
{
    if (w->state != W_COLLECT)
        return ts_fail(err, TS_ERR_ARG, "%s: writer already begun", path);
    int64_t a = find_key(w, "general.alignment");
    w->alignment = TS_GGUF_DEFAULT_ALIGNMENT; /* a failed begin may be retried after edits */
    if (a >= 0) {
        const ts_gguf_value *v = &w->kv[a].value;
        if (v->type != TS_GGUF_UINT32 || v->u32 == 0 || (v->u32 & (v->u32 - 1)) != 0)
            return ts_fail(err, TS_ERR_ARG, "%s: general.alignment must be a UINT32 nonzero power of two", path);
        w->alignment = v->u32;
    }
    ts_status st = reserve_checksums(w, path, err);
    if (st != TS_OK)
        return st;
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        uint64_t padded;
        w->t[i].offset = off;
        if (!ts_add_u64(w->t[i].nbytes, w->alignment - 1, &padded) ||
            !ts_add_u64(off, padded / w->alignment * w->alignment, &off))
            return ts_fail(err, TS_ERR_LIMIT, "%s: tensor data size overflows at tensor '%s'", path, w->t[i].name);
    }
    if ((st = ts_atomic_open(path, inputs, &w->f, err)) != TS_OK)
        return st;
    w->state = W_WRITING;
    if ((st = put_header(w, err)) != TS_OK)
        return fail_writing(w, st);
    w->cur = 0;
    w->cur_written = 0;
    skip_empty(w);
    return TS_OK;
}

ts_status ts_gguf_write_tensor_data(ts_gguf_writer *w, const void *data, uint64_t nbytes, ts_err *err)
{
    if (w->state != W_WRITING)
        return ts_fail(err, TS_ERR_ARG, "tensor data written outside begin..finish (or after an earlier error)");
    if (nbytes == 0)
        return TS_OK;
    const char *path = w->f.path;
    if (w->cur >= w->n_t) {
        ts_fail(err, TS_ERR_ARG, "%s: all %llu tensors are already written; %llu more bytes given", path,
                (unsigned long long)w->n_t, (unsigned long long)nbytes);
        return fail_writing(w, TS_ERR_ARG);
    }
    wtensor *t = &w->t[w->cur];
    if (nbytes > t->nbytes - w->cur_written) {
        ts_fail(err, TS_ERR_ARG, "%s: tensor '%s': %llu bytes given but only %llu of its %llu bytes remain", path,
                t->name, (unsigned long long)nbytes, (unsigned long long)(t->nbytes - w->cur_written),
                (unsigned long long)t->nbytes);
        return fail_writing(w, TS_ERR_ARG);
    }
    ts_status st = put(w, data, (size_t)nbytes, err);
    if (st != TS_OK)
        return fail_writing(w, st);
    if (w->sums) {
        if (w->cur_written == 0)
            XXH3_64bits_reset(w->xxh);
        XXH3_64bits_update(w->xxh, data, (size_t)nbytes);
    }
    w->cur_written += nbytes;
    if (w->cur_written == t->nbytes) {
        if (w->sums)
            w->sums[w->cur] = XXH3_64bits_digest(w->xxh);
        if ((st = put_pad(w, err)) != TS_OK)
            return fail_writing(w, st);
        w->cur++;
        w->cur_written = 0;
        skip_empty(w);
    }
    return TS_OK;
}

/* Overwrites the zeros reserved in the header with the checksums, in place
 * in the temp file (still unrenamed, so no reader ever sees the zeros). */
static ts_status patch_checksums(ts_gguf_writer *w, ts_err *err)
{
    if (!w->sums)
        return TS_OK;
    if (fflush(w->f.fp) != 0)
        return ts_fail(err, TS_ERR_IO, "%s: flush failed: %s", w->f.path, strerror(errno));
    int fd = fileno(w->f.fp);
    uint8_t buf[4096];
    uint64_t i = 0;
    while (i < w->n_t) {
        size_t n = 0;
        for (; i < w->n_t && n < sizeof buf; i++, n += 8)
            ts_gguf_encode_scalar(TS_GGUF_UINT64, &w->sums[i], buf + n);
        off_t at = (off_t)(w->sums_offset + (i * 8 - n));
        for (size_t done = 0; done < n;) {
            ssize_t k = pwrite(fd, buf + done, n - done, at + (off_t)done);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                return ts_fail(err, TS_ERR_IO, "%s: writing the tensor checksums at offset %llu failed: %s",
                               w->f.path, (unsigned long long)at, k < 0 ? strerror(errno) : "no progress");
            done += (size_t)k;
        }
    }
    return TS_OK;
}

ts_status ts_gguf_writer_finish(ts_gguf_writer *w, ts_err *err)
{
    if (w->state != W_WRITING)
        return ts_fail(err, TS_ERR_ARG, "finish called without a successful begin (or after an earlier error)");
    if (w->cur < w->n_t) {
        const wtensor *t = &w->t[w->cur];
        ts_fail(err, TS_ERR_ARG, "%s: tensor '%s' (%llu of %llu) has %llu of its %llu bytes written; nothing was saved",
                w->f.path, t->name, (unsigned long long)w->cur + 1, (unsigned long long)w->n_t,
                (unsigned long long)w->cur_written, (unsigned long long)t->nbytes);
        return fail_writing(w, TS_ERR_ARG);
    }
    ts_status st = patch_checksums(w, err);
    if (st != TS_OK)
        return fail_writing(w, st);
    st = ts_atomic_commit(&w->f, err); /* a failed commit removes the temp file */
    w->state = st == TS_OK ? W_DONE : W_FAILED;
    return st;
}

/* ---- read access for formats/gguf_split.c (gguf_internal.h) ---- */

uint64_t ts_gguf_writer_n_kv(const ts_gguf_writer *w) { return w->n_kv; }

const ts_gguf_kv *ts_gguf_writer_kv(const ts_gguf_writer *w, uint64_t i) { return i < w->n_kv ? &w->kv[i] : NULL; }

bool ts_gguf_writer_checksums(const ts_gguf_writer *w) { return w->checksums; }

void ts_gguf_writer_tensor_info(const ts_gguf_writer *w, uint64_t i, const char **name, ts_dtype *type, int *n_dims,
                                const int64_t **ne)
{
    const wtensor *t = &w->t[i];
    *name = t->name;
    *type = t->type;
    *n_dims = t->n_dims;
    *ne = t->ne;
}
