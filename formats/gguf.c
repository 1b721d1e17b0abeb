/* GGUF reader: every count, length, type, shape and offset is checked against
 * the file size before it is used. Layout and the list of refusals:
 * docs/formats/gguf.md. The writer lives in gguf_write.c. */
#include "gguf_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Smallest possible encodings, used to refuse counts that cannot fit in the
 * bytes left before anything is allocated (CVE-2024-21836/-23605 class). */
#define KV_MIN_BYTES 14 /* key len 8 + 1-byte key + type 4 + 1-byte value */
#define TI_MIN_BYTES 33 /* name len 8 + 1-byte name + n_dims 4 + ne 8 + type 4 + offset 8 */

/* ---- shared helpers (also used by the writer) ---- */

size_t ts_gguf_scalar_size(ts_gguf_type t)
{
    switch (t) {
    case TS_GGUF_UINT8: case TS_GGUF_INT8: case TS_GGUF_BOOL: return 1;
    case TS_GGUF_UINT16: case TS_GGUF_INT16: return 2;
    case TS_GGUF_UINT32: case TS_GGUF_INT32: case TS_GGUF_FLOAT32: return 4;
    case TS_GGUF_UINT64: case TS_GGUF_INT64: case TS_GGUF_FLOAT64: return 8;
    case TS_GGUF_STRING: case TS_GGUF_ARRAY: return 0;
    }
    return 0;
}

bool ts_gguf_type_known(uint32_t t) { return t <= TS_GGUF_FLOAT64; }

const char *ts_gguf_type_name(ts_gguf_type t)
{
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                  "bool", "str", "arr", "u64", "i64", "f64"};
    return ts_gguf_type_known((uint32_t)t) ? names[t] : "unknown";
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
bool ts_gguf_utf8_valid(const uint8_t *s, uint64_t n)
{
    uint64_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        unsigned len;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return false;
        if (n - i < len)
            return false;
        for (unsigned k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* Little-endian on disk whatever the host; the union members of ts_gguf_value
 * all start at its first byte, so dst/src may point at v->u8. */
void ts_gguf_decode_scalar(ts_gguf_type t, const uint8_t *src, void *dst)
{
    size_t n = ts_gguf_scalar_size(t);
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)src[i] << (8 * i);
    uint8_t u8 = (uint8_t)v; uint16_t u16 = (uint16_t)v; uint32_t u32 = (uint32_t)v;
    switch (n) {
    case 1: memcpy(dst, &u8, 1); break;
    case 2: memcpy(dst, &u16, 2); break;
    case 4: memcpy(dst, &u32, 4); break;
    case 8: memcpy(dst, &v, 8); break;
    }
}

void ts_gguf_encode_scalar(ts_gguf_type t, const void *src, uint8_t *dst)
{
    size_t n = ts_gguf_scalar_size(t);
    uint64_t v = 0;
    uint8_t u8; uint16_t u16; uint32_t u32;
    switch (n) {
    case 1: memcpy(&u8, src, 1); v = u8; break;
    case 2: memcpy(&u16, src, 2); v = u16; break;
    case 4: memcpy(&u32, src, 4); v = u32; break;
    case 8: memcpy(&v, src, 8); break;
    }
    if (t == TS_GGUF_BOOL) /* a caller's byte array may hold any non-zero value */
        v = v != 0;
    for (size_t i = 0; i < n; i++)
        dst[i] = (uint8_t)(v >> (8 * i));
}

void ts_gguf_value_free(ts_gguf_value *v)
{
    if (v->type == TS_GGUF_STRING)
        free(v->str.s);
    else if (v->type == TS_GGUF_ARRAY)
        free(v->arr.data); /* string arrays are one block: headers then bytes */
    memset(v, 0, sizeof *v);
}

/* Byte size of a tensor, or a reason it has none. */
const char *ts_gguf_tensor_size(ts_dtype type, int n_dims, const int64_t *ne, uint64_t *out)
{
    const ts_dtype_info *info = ts_dtype_get(type);
    if (!info || !info->is_ggml)
        return "unknown ggml type";
    if (n_dims < 1 || n_dims > TS_MAX_DIMS)
        return "n_dims is not in 1..4";
    uint64_t n;
    for (int i = 0; i < n_dims; i++)
        if (ne[i] < 0)
            return "a dimension is negative";
    if (!ts_shape_nelements(n_dims, ne, &n) || n > (uint64_t)INT64_MAX)
        return "the element count overflows int64";
    /* Checked apart from ne[0]: a zero row length must not hide a row count
     * that overflows (consumers compute ne[1] * ne[2] * ne[3]). */
    uint64_t row, rows = 1;
    for (int i = 1; i < n_dims; i++)
        if (!ts_mul_u64(rows, (uint64_t)ne[i], &rows) || rows > (uint64_t)INT64_MAX)
            return "the element count overflows int64";
    if ((uint64_t)ne[0] % info->block_size != 0)
        return "the row length is not a multiple of the type's block size";
    if (!ts_dtype_row_bytes(type, (uint64_t)ne[0], &row) || !ts_mul_u64(row, rows, out) ||
        *out > (uint64_t)INT64_MAX)
        return "the byte size overflows";
    return NULL;
}

/* ---- name index: open addressing over indices, so duplicate checks and
 * lookups stay linear even for crafted files with 10^5 keys ---- */

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

int64_t ts_gguf_ix_find(const ts_gguf_index *ix, const char *name, ts_gguf_name_fn fn, const void *ctx)
{
    if (!ix->slots)
        return -1;
    for (uint64_t h = hash_name(name) & ix->mask;; h = (h + 1) & ix->mask) {
        uint64_t s = ix->slots[h];
        if (!s)
            return -1;
        if (strcmp(fn(ctx, s - 1), name) == 0)
            return (int64_t)(s - 1);
    }
}

static void ix_place(ts_gguf_index *ix, const char *name, uint64_t idx)
{
    uint64_t h = hash_name(name) & ix->mask;
    while (ix->slots[h])
        h = (h + 1) & ix->mask;
    ix->slots[h] = idx + 1;
}

/* Adds idx (whose name fn returns); keeps the table at most half full. */
bool ts_gguf_ix_add(ts_gguf_index *ix, uint64_t idx, ts_gguf_name_fn fn, const void *ctx)
{
    if ((ix->count + 1) * 2 > ix->mask + 1 || !ix->slots) {
        uint64_t cap = ix->slots ? (ix->mask + 1) * 2 : 64;
        uint64_t *slots = calloc(cap, sizeof *slots);
        if (!slots)
            return false;
        ts_gguf_index next = {slots, cap - 1, ix->count};
        for (uint64_t h = 0; ix->slots && h <= ix->mask; h++)
            if (ix->slots[h])
                ix_place(&next, fn(ctx, ix->slots[h] - 1), ix->slots[h] - 1);
        free(ix->slots);
        *ix = next;
    }
    ix_place(ix, fn(ctx, idx), idx);
    ix->count++;
    return true;
}

void ts_gguf_ix_free(ts_gguf_index *ix)
{
    free(ix->slots);
    memset(ix, 0, sizeof *ix);
}

/* ---- reader ---- */

typedef struct {
    ts_gguf pub;
    bool mapped; /* pub.file owns an mmap; otherwise only its path is ours */
    ts_gguf_index kv_ix, t_ix;
    uint64_t cap_kv, cap_t;
} gguf_impl;

typedef struct {
    const uint8_t *p;
    uint64_t size, pos;
    const char *name;
    ts_err *err;
} cursor;

static const char *kv_name(const void *ctx, uint64_t i) { return ((const ts_gguf *)ctx)->kv[i].key; }
static const char *t_name(const void *ctx, uint64_t i) { return ((const ts_gguf *)ctx)->tensors[i].t.name; }

static ts_status fail_at(cursor *c, ts_status code, uint64_t at, const char *fmt, ...) TS_PRINTF(4, 5);
static ts_status fail_at(cursor *c, ts_status code, uint64_t at, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ts_fail(c->err, code, "%s: offset %llu: %s", c->name, (unsigned long long)at, msg);
}

static ts_status need(cursor *c, uint64_t n, const char *what)
{
    if (n > c->size - c->pos)
        return fail_at(c, TS_ERR_FORMAT, c->pos, "%s needs %llu bytes but the file ends at %llu (runs past the end)",
                       what, (unsigned long long)n, (unsigned long long)c->size);
    return TS_OK;
}

static ts_status rd_u32(cursor *c, uint32_t *v, const char *what)
{
    ts_status st = need(c, 4, what);
    if (st == TS_OK) {
        ts_gguf_decode_scalar(TS_GGUF_UINT32, c->p + c->pos, v);
        c->pos += 4;
    }
    return st;
}

static ts_status rd_u64(cursor *c, uint64_t *v, const char *what)
{
    ts_status st = need(c, 8, what);
    if (st == TS_OK) {
        ts_gguf_decode_scalar(TS_GGUF_UINT64, c->p + c->pos, v);
        c->pos += 8;
    }
    return st;
}

/* Checks a string's length and bytes and steps over it; *bytes points into the file. */
static ts_status rd_str(cursor *c, const char *what, const uint8_t **bytes, uint64_t *len)
{
    uint64_t at = c->pos;
    ts_status st = rd_u64(c, len, what);
    if (st != TS_OK)
        return st;
    if (*len > TS_GGUF_MAX_STRING)
        return fail_at(c, TS_ERR_LIMIT, at, "%s length %llu exceeds the 1 GiB limit", what,
                       (unsigned long long)*len);
    if (*len > c->size - c->pos)
        return fail_at(c, TS_ERR_FORMAT, at, "%s of %llu bytes runs past the end of the file (%llu bytes)",
                       what, (unsigned long long)*len, (unsigned long long)c->size);
    *bytes = c->p + c->pos;
    if (memchr(*bytes, 0, (size_t)*len))
        return fail_at(c, TS_ERR_FORMAT, at, "%s contains a NUL byte", what);
    c->pos += *len;
    return TS_OK;
}

static char *dup_bytes(const uint8_t *p, uint64_t n)
{
    char *s = malloc((size_t)n + 1);
    if (s) {
        if (n)
            memcpy(s, p, (size_t)n);
        s[n] = 0;
    }
    return s;
}

/* A key or tensor name: non-empty, valid UTF-8, at most max_len bytes. */
static ts_status rd_name(cursor *c, const char *what, uint64_t max_len, char **out)
{
    uint64_t at = c->pos, len;
    const uint8_t *b = NULL;
    ts_status st = rd_str(c, what, &b, &len);
    if (st != TS_OK)
        return st;
    if (len == 0)
        return fail_at(c, TS_ERR_FORMAT, at, "%s is empty", what);
    if (len > max_len)
        return fail_at(c, TS_ERR_FORMAT, at, "%s is %llu bytes, more than the %llu allowed (GGML_MAX_NAME 64)",
                       what, (unsigned long long)len, (unsigned long long)max_len);
    if (!ts_gguf_utf8_valid(b, len))
        return fail_at(c, TS_ERR_FORMAT, at, "%s is not valid UTF-8", what);
    if (!(*out = dup_bytes(b, len)))
        return ts_fail(c->err, TS_ERR_NOMEM, "%s: out of memory", c->name);
    return TS_OK;
}

static ts_status rd_scalar(cursor *c, const char *key, ts_gguf_type t, void *dst)
{
    uint64_t at = c->pos;
    ts_status st = need(c, ts_gguf_scalar_size(t), "value");
    if (st != TS_OK)
        return st;
    if (t == TS_GGUF_BOOL && c->p[at] > 1) /* loading 2 into a C bool is undefined */
        return fail_at(c, TS_ERR_FORMAT, at, "key '%s': bool value %u is neither 0 nor 1", key, c->p[at]);
    ts_gguf_decode_scalar(t, c->p + at, dst);
    c->pos += ts_gguf_scalar_size(t);
    return TS_OK;
}

static ts_status rd_str_array(cursor *c, const char *key, uint64_t n, ts_gguf_value *v)
{
    /* Pass 1 checks every string and sums the bytes so one block holds them all. */
    uint64_t start = c->pos, total = 0;
    char what[128];
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *b = NULL;
        uint64_t len;
        snprintf(what, sizeof what, "key '%.64s' string element %llu", key, (unsigned long long)i);
        ts_status st = rd_str(c, what, &b, &len);
        if (st != TS_OK)
            return st;
        total += len + 1; /* bounded by the file size */
    }
    uint8_t *block = malloc((size_t)(n * sizeof(ts_gguf_string) + total) + 1);
    if (!block)
        return ts_fail(c->err, TS_ERR_NOMEM, "%s: key '%s': out of memory for %llu strings", c->name, key,
                       (unsigned long long)n);
    ts_gguf_string *strs = (ts_gguf_string *)block;
    char *chars = (char *)(block + n * sizeof(ts_gguf_string));
    c->pos = start;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len;
        ts_gguf_decode_scalar(TS_GGUF_UINT64, c->p + c->pos, &len);
        memcpy(chars, c->p + c->pos + 8, (size_t)len);
        chars[len] = 0;
        strs[i].s = chars;
        strs[i].len = len;
        chars += len + 1;
        c->pos += 8 + len;
    }
    v->arr.data = block;
    return TS_OK;
}

static ts_status rd_array(cursor *c, const char *key, ts_gguf_value *v)
{
    uint32_t et;
    uint64_t n, at = c->pos;
    ts_status st = rd_u32(c, &et, "array element type");
    if (st == TS_OK)
        st = rd_u64(c, &n, "array length");
    if (st != TS_OK)
        return st;
    if (et == TS_GGUF_ARRAY)
        return fail_at(c, TS_ERR_FORMAT, at, "key '%s': nested array (arrays of arrays are refused)", key);
    if (!ts_gguf_type_known(et))
        return fail_at(c, TS_ERR_FORMAT, at, "key '%s': unknown value type %u for array elements", key, et);
    size_t esize = ts_gguf_scalar_size((ts_gguf_type)et);
    uint64_t left = c->size - c->pos, min = esize ? esize : 8;
    if (n > left / min)
        return fail_at(c, TS_ERR_FORMAT, at, "key '%s': array of %llu %s elements cannot fit in the %llu bytes left",
                       key, (unsigned long long)n, ts_gguf_type_name((ts_gguf_type)et), (unsigned long long)left);
    v->type = TS_GGUF_ARRAY;
    v->arr.elem_type = (ts_gguf_type)et;
    v->arr.n = n;
    v->arr.data = NULL;
    if (n == 0)
        return TS_OK;
    if (!esize)
        return rd_str_array(c, key, n, v);
    if (!(v->arr.data = malloc((size_t)(n * esize))))
        return ts_fail(c->err, TS_ERR_NOMEM, "%s: key '%s': out of memory", c->name, key);
    for (uint64_t i = 0; i < n; i++)
        if ((st = rd_scalar(c, key, (ts_gguf_type)et, (uint8_t *)v->arr.data + i * esize)) != TS_OK)
            return st;
    return TS_OK;
}

static ts_status rd_value(cursor *c, const char *key, ts_gguf_value *v)
{
    uint32_t t;
    uint64_t at = c->pos;
    ts_status st = rd_u32(c, &t, "value type");
    if (st != TS_OK)
        return st;
    if (!ts_gguf_type_known(t))
        return fail_at(c, TS_ERR_FORMAT, at, "key '%s': unknown value type %u", key, t);
    if (t == TS_GGUF_ARRAY)
        return rd_array(c, key, v);
    if (t == TS_GGUF_STRING) {
        const uint8_t *b = NULL;
        uint64_t len;
        char what[96];
        snprintf(what, sizeof what, "key '%.64s' string value", key);
        if ((st = rd_str(c, what, &b, &len)) != TS_OK)
            return st;
        if (!(v->str.s = dup_bytes(b, len)))
            return ts_fail(c->err, TS_ERR_NOMEM, "%s: out of memory", c->name);
        v->str.len = len;
        v->type = TS_GGUF_STRING;
        return TS_OK;
    }
    v->type = (ts_gguf_type)t;
    return rd_scalar(c, key, v->type, &v->u8);
}

/* Grows an array geometrically so memory follows what was parsed, not what
 * the header claims. */
static bool grow(void **p, uint64_t *cap, uint64_t need_n, size_t elem)
{
    if (need_n <= *cap)
        return true;
    uint64_t n = *cap ? *cap * 2 : 64;
    void *q = realloc(*p, (size_t)(n * elem));
    if (!q)
        return false;
    memset((uint8_t *)q + *cap * elem, 0, (size_t)((n - *cap) * elem));
    *p = q;
    *cap = n;
    return true;
}

static ts_status rd_header(gguf_impl *g, cursor *c, uint64_t *n_kv, uint64_t *n_t)
{
    if (c->size < 4 || memcmp(c->p, "GGUF", 4) != 0)
        return fail_at(c, TS_ERR_FORMAT, 0, "not a GGUF file (bad magic, expected 'GGUF')");
    c->pos = 4;
    uint32_t ver;
    ts_status st = rd_u32(c, &ver, "version");
    if (st != TS_OK)
        return st;
    if (ver == 0)
        return fail_at(c, TS_ERR_FORMAT, 4, "version 0 is invalid");
    if ((ver & 0xFFFF) == 0)
        return fail_at(c, TS_ERR_UNSUPPORTED, 4, "version 0x%08x looks byte-swapped: big-endian GGUF is not supported", ver);
    if (ver == 1)
        return fail_at(c, TS_ERR_UNSUPPORTED, 4, "GGUF version 1 is not supported (only 2 and 3)");
    if (ver > 3)
        return fail_at(c, TS_ERR_UNSUPPORTED, 4, "GGUF version %u is newer than the supported 3", ver);
    g->pub.version = ver;
    if ((st = rd_u64(c, n_t, "n_tensors")) != TS_OK || (st = rd_u64(c, n_kv, "n_kv")) != TS_OK)
        return st;
    uint64_t left = c->size - c->pos;
    if (*n_kv > left / KV_MIN_BYTES)
        return fail_at(c, TS_ERR_FORMAT, 16, "n_kv %llu cannot fit: each key/value needs >= %d bytes and %llu remain",
                       (unsigned long long)*n_kv, KV_MIN_BYTES, (unsigned long long)left);
    if (*n_t > left / TI_MIN_BYTES || *n_kv * KV_MIN_BYTES + *n_t * TI_MIN_BYTES > left)
        return fail_at(c, TS_ERR_FORMAT, 8, "n_tensors %llu cannot fit: each tensor info needs >= %d bytes and %llu remain",
                       (unsigned long long)*n_t, TI_MIN_BYTES, (unsigned long long)left);
    return TS_OK;
}

static ts_status rd_kvs(gguf_impl *g, cursor *c, uint64_t n_kv)
{
    ts_gguf *p = &g->pub;
    for (uint64_t i = 0; i < n_kv; i++) {
        if (!grow((void **)&p->kv, &g->cap_kv, i + 1, sizeof *p->kv))
            return ts_fail(c->err, TS_ERR_NOMEM, "%s: out of memory", c->name);
        uint64_t at = c->pos;
        ts_gguf_kv *kv = &p->kv[i];
        ts_status st = rd_name(c, "key", TS_GGUF_MAX_STRING, &kv->key);
        if (st != TS_OK)
            return st;
        p->n_kv = i + 1; /* from here on close() frees this entry */
        int64_t dup = ts_gguf_ix_find(&g->kv_ix, kv->key, kv_name, p);
        if (dup >= 0)
            return fail_at(c, TS_ERR_FORMAT, at, "duplicate key '%s' (entries %lld and %llu)", kv->key,
                           (long long)dup, (unsigned long long)i);
        if (!ts_gguf_ix_add(&g->kv_ix, i, kv_name, p))
            return ts_fail(c->err, TS_ERR_NOMEM, "%s: out of memory", c->name);
        if ((st = rd_value(c, kv->key, &kv->value)) != TS_OK)
            return st;
    }
    p->alignment = TS_GGUF_DEFAULT_ALIGNMENT;
    const ts_gguf_kv *a = ts_gguf_find_kv(p, "general.alignment");
    if (a && a->value.type != TS_GGUF_UINT32)
        return ts_fail(c->err, TS_ERR_FORMAT, "%s: general.alignment must be UINT32, not %s", c->name,
                       ts_gguf_type_name(a->value.type));
    if (a && (a->value.u32 == 0 || (a->value.u32 & (a->value.u32 - 1)) != 0))
        return ts_fail(c->err, TS_ERR_FORMAT, "%s: general.alignment %u is not a nonzero power of two", c->name,
                       a->value.u32);
    if (a)
        p->alignment = a->value.u32;
    return TS_OK;
}

static ts_status rd_tensor_info(gguf_impl *g, cursor *c, uint64_t i)
{
    ts_gguf *p = &g->pub;
    ts_gguf_tensor *gt = &p->tensors[i];
    uint64_t at = c->pos;
    char *name;
    ts_status st = rd_name(c, "tensor name", TS_GGUF_MAX_NAME, &name);
    if (st != TS_OK)
        return st;
    memcpy(gt->t.name, name, strlen(name) + 1);
    free(name);
    p->n_tensors = i + 1;
    int64_t dup = ts_gguf_ix_find(&g->t_ix, gt->t.name, t_name, p);
    if (dup >= 0)
        return fail_at(c, TS_ERR_FORMAT, at, "duplicate tensor name '%s' (tensors %lld and %llu)", gt->t.name,
                       (long long)dup, (unsigned long long)i);
    if (!ts_gguf_ix_add(&g->t_ix, i, t_name, p))
        return ts_fail(c->err, TS_ERR_NOMEM, "%s: out of memory", c->name);
    uint32_t n_dims, type;
    at = c->pos;
    if ((st = rd_u32(c, &n_dims, "n_dims")) != TS_OK)
        return st;
    if (n_dims < 1 || n_dims > TS_MAX_DIMS)
        return fail_at(c, TS_ERR_FORMAT, at, "tensor '%s': n_dims %u is not in 1..4", gt->t.name, n_dims);
    gt->t.n_dims = (int)n_dims;
    for (int j = 0; j < TS_MAX_DIMS; j++) {
        uint64_t ne = 1;
        if ((uint32_t)j < n_dims && (st = rd_u64(c, &ne, "dimension")) != TS_OK)
            return st;
        gt->t.ne[j] = (int64_t)ne;
    }
    at = c->pos;
    if ((st = rd_u32(c, &type, "tensor type")) != TS_OK)
        return st;
    const ts_dtype_info *info = type < 64 ? ts_dtype_get((ts_dtype)type) : NULL;
    if (!info || !info->is_ggml)
        return fail_at(c, TS_ERR_FORMAT, at, "tensor '%s': unknown ggml type %u", gt->t.name, type);
    gt->t.dtype = (ts_dtype)type;
    const char *why = ts_gguf_tensor_size(gt->t.dtype, gt->t.n_dims, gt->t.ne, &gt->t.nbytes);
    if (why) {
        char shape[160];
        return fail_at(c, TS_ERR_FORMAT, at, "tensor '%s' (%s, ne %s, block size %u): %s", gt->t.name, info->name,
                       ts_shape_str(gt->t.n_dims, gt->t.ne, shape, sizeof shape), info->block_size, why);
    }
    at = c->pos;
    if ((st = rd_u64(c, &gt->offset, "tensor offset")) != TS_OK)
        return st;
    if (gt->offset % p->alignment != 0)
        return fail_at(c, TS_ERR_FORMAT, at, "tensor '%s': offset %llu is not a multiple of the alignment %llu",
                       gt->t.name, (unsigned long long)gt->offset, (unsigned long long)p->alignment);
    return TS_OK;
}

static int cmp_offset(const void *a, const void *b)
{
    const ts_gguf_tensor *x = *(const ts_gguf_tensor *const *)a, *y = *(const ts_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Every tensor inside the file, and no two sharing a byte. */
static ts_status check_data(gguf_impl *g, cursor *c)
{
    ts_gguf *p = &g->pub;
    uint64_t end_info = c->pos;
    p->data_offset = (end_info + p->alignment - 1) / p->alignment * p->alignment;
    if (p->n_tensors == 0) {
        if (p->data_offset > c->size)
            p->data_offset = end_info; /* metadata-only file without trailing padding */
        return TS_OK;
    }
    if (p->data_offset > c->size)
        return fail_at(c, TS_ERR_FORMAT, end_info, "the data section would start at %llu, past the end of the file",
                       (unsigned long long)p->data_offset);
    uint64_t room = c->size - p->data_offset;
    for (uint64_t i = 0; i < p->n_tensors; i++) {
        ts_gguf_tensor *t = &p->tensors[i];
        if (t->offset > room || t->t.nbytes > room - t->offset)
            return ts_fail(c->err, TS_ERR_FORMAT,
                           "%s: tensor '%s' (offset %llu, %llu bytes) runs past the end of the file (data area is %llu bytes)",
                           c->name, t->t.name, (unsigned long long)t->offset, (unsigned long long)t->t.nbytes,
                           (unsigned long long)room);
        t->t.data = c->p + p->data_offset + t->offset;
    }
    ts_gguf_tensor **order = malloc((size_t)p->n_tensors * sizeof *order);
    if (!order)
        return ts_fail(c->err, TS_ERR_NOMEM, "%s: out of memory", c->name);
    uint64_t n = 0;
    for (uint64_t i = 0; i < p->n_tensors; i++)
        if (p->tensors[i].t.nbytes) /* empty tensors occupy no bytes */
            order[n++] = &p->tensors[i];
    qsort(order, (size_t)n, sizeof *order, cmp_offset);
    ts_status st = TS_OK;
    for (uint64_t i = 1; i < n && st == TS_OK; i++)
        if (order[i - 1]->offset + order[i - 1]->t.nbytes > order[i]->offset)
            st = ts_fail(c->err, TS_ERR_FORMAT, "%s: tensors '%s' (offset %llu, %llu bytes) and '%s' (offset %llu) overlap",
                         c->name, order[i - 1]->t.name, (unsigned long long)order[i - 1]->offset,
                         (unsigned long long)order[i - 1]->t.nbytes, order[i]->t.name,
                         (unsigned long long)order[i]->offset);
    free(order);
    return st;
}

static ts_status parse(gguf_impl *g, ts_err *err)
{
    cursor c = {g->pub.file.data, g->pub.file.size, 0, g->pub.file.path, err};
    uint64_t n_kv, n_t;
    ts_status st = rd_header(g, &c, &n_kv, &n_t);
    if (st == TS_OK)
        st = rd_kvs(g, &c, n_kv);
    for (uint64_t i = 0; st == TS_OK && i < n_t; i++) {
        if (!grow((void **)&g->pub.tensors, &g->cap_t, i + 1, sizeof *g->pub.tensors))
            return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", c.name);
        st = rd_tensor_info(g, &c, i);
    }
    if (st == TS_OK)
        st = check_data(g, &c);
    return st;
}

static ts_status open_impl(gguf_impl *g, ts_gguf **out, ts_err *err)
{
    ts_status st = parse(g, err);
    if (st != TS_OK) {
        ts_gguf_close(&g->pub);
        return st;
    }
    *out = &g->pub;
    return TS_OK;
}

ts_status ts_gguf_open(const char *path, ts_gguf **out, ts_err *err)
{
    *out = NULL;
    gguf_impl *g = calloc(1, sizeof *g);
    if (!g)
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", path);
    ts_status st = ts_map_file(path, &g->pub.file, err);
    if (st != TS_OK) {
        free(g);
        return st;
    }
    g->mapped = true;
    return open_impl(g, out, err);
}

ts_status ts_gguf_open_memory(const void *data, size_t size, const char *name, ts_gguf **out, ts_err *err)
{
    *out = NULL;
    gguf_impl *g = calloc(1, sizeof *g);
    if (!g || !(g->pub.file.path = strdup(name ? name : "<memory>"))) {
        free(g);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    g->pub.file.data = data;
    g->pub.file.size = size;
    g->pub.file.fd = -1;
    return open_impl(g, out, err);
}

void ts_gguf_close(ts_gguf *pub)
{
    if (!pub)
        return;
    gguf_impl *g = (gguf_impl *)pub; /* pub is the first member */
    for (uint64_t i = 0; i < pub->n_kv; i++) {
        free(pub->kv[i].key);
        ts_gguf_value_free(&pub->kv[i].value);
    }
    free(pub->kv);
    free(pub->tensors);
    ts_gguf_ix_free(&g->kv_ix);
    ts_gguf_ix_free(&g->t_ix);
    if (g->mapped)
        ts_unmap_file(&pub->file);
    else
        free(pub->file.path);
    free(g);
}

const ts_gguf_kv *ts_gguf_find_kv(const ts_gguf *pub, const char *key)
{
    const gguf_impl *g = (const gguf_impl *)pub;
    int64_t i = ts_gguf_ix_find(&g->kv_ix, key, kv_name, pub);
    return i < 0 ? NULL : &pub->kv[i];
}

int64_t ts_gguf_find_tensor(const ts_gguf *pub, const char *name)
{
    const gguf_impl *g = (const gguf_impl *)pub;
    return ts_gguf_ix_find(&g->t_ix, name, t_name, pub);
}

/* Integer value as a sign flag plus magnitude, so both getters share one switch. */
static bool get_int(const ts_gguf *g, const char *key, bool *neg, uint64_t *mag)
{
    const ts_gguf_kv *kv = ts_gguf_find_kv(g, key);
    if (!kv)
        return false;
    const ts_gguf_value *v = &kv->value;
    int64_t s;
    switch (v->type) {
    case TS_GGUF_UINT8: *neg = false; *mag = v->u8; return true;
    case TS_GGUF_UINT16: *neg = false; *mag = v->u16; return true;
    case TS_GGUF_UINT32: *neg = false; *mag = v->u32; return true;
    case TS_GGUF_UINT64: *neg = false; *mag = v->u64; return true;
    case TS_GGUF_INT8: s = v->i8; break;
    case TS_GGUF_INT16: s = v->i16; break;
    case TS_GGUF_INT32: s = v->i32; break;
    case TS_GGUF_INT64: s = v->i64; break;
    default: return false;
    }
    *neg = s < 0;
    *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    return true;
}

bool ts_gguf_get_u64(const ts_gguf *g, const char *key, uint64_t *out)
{
    bool neg;
    uint64_t mag;
    if (!get_int(g, key, &neg, &mag) || neg)
        return false;
    *out = mag;
    return true;
}

bool ts_gguf_get_i64(const ts_gguf *g, const char *key, int64_t *out)
{
    bool neg;
    uint64_t mag;
    if (!get_int(g, key, &neg, &mag))
        return false;
    if (neg) {
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
        return true;
    }
    if (mag > (uint64_t)INT64_MAX)
        return false;
    *out = (int64_t)mag;
    return true;
}

bool ts_gguf_get_f64(const ts_gguf *g, const char *key, double *out)
{
    const ts_gguf_kv *kv = ts_gguf_find_kv(g, key);
    if (!kv || (kv->value.type != TS_GGUF_FLOAT32 && kv->value.type != TS_GGUF_FLOAT64))
        return false;
    *out = kv->value.type == TS_GGUF_FLOAT32 ? kv->value.f32 : kv->value.f64;
    return true;
}

bool ts_gguf_get_bool(const ts_gguf *g, const char *key, bool *out)
{
    const ts_gguf_kv *kv = ts_gguf_find_kv(g, key);
    if (!kv || kv->value.type != TS_GGUF_BOOL)
        return false;
    *out = kv->value.b;
    return true;
}

const char *ts_gguf_get_str(const ts_gguf *g, const char *key)
{
    const ts_gguf_kv *kv = ts_gguf_find_kv(g, key);
    return kv && kv->value.type == TS_GGUF_STRING ? kv->value.str.s : NULL;
}
