/* safetensors reader: single files and sharded checkpoints. The layout and the
 * list of what is refused are in docs/formats/safetensors.md. */
#define _GNU_SOURCE
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The reference implementation's limit; real headers are a few MB at most. */
#define ST_MAX_HEADER 100000000ull
#define ST_MAX_INDEX 100000000ull
#define ST_INDEX_NAME "model.safetensors.index.json"

static const struct {
    const char *name;
    ts_dtype type;
} st_dtypes[] = {
    {"F64", TS_F64}, {"F32", TS_F32}, {"F16", TS_F16}, {"BF16", TS_BF16},
    {"I64", TS_I64}, {"I32", TS_I32}, {"I16", TS_I16}, {"I8", TS_I8},
    {"U64", TS_U64}, {"U32", TS_U32}, {"U16", TS_U16}, {"U8", TS_U8},
    {"BOOL", TS_BOOL}, {"F8_E4M3", TS_F8_E4M3}, {"F8_E5M2", TS_F8_E5M2},
};

ts_dtype ts_st_dtype_from_string(const char *s)
{
    for (size_t i = 0; s && i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, s) == 0)
            return st_dtypes[i].type;
    return TS_DTYPE_INVALID;
}

/* ---- one safetensors image ---------------------------------------------- */

/* Where one image's pieces are, for messages and pointers. */
typedef struct {
    const char *name;      /* file path (or caller's name) for messages */
    const uint8_t *base;
    uint64_t area_off;     /* 8 + header length: where data_offsets count from */
    uint64_t area_size;
    uint32_t file_index;
} st_image;

/* "[4096, 256]" as written in the file (safetensors order). */
static void shape_text(json_t *shape, char *buf, size_t n)
{
    size_t off = 0, i;
    json_t *d;
    off += (size_t)snprintf(buf, n, "[");
    json_array_foreach(shape, i, d) {
        if (off >= n)
            break;
        off += (size_t)snprintf(buf + off, n - off, "%s%lld", i ? ", " : "",
                                (long long)json_integer_value(d));
    }
    if (off < n)
        snprintf(buf + off, n - off, "]");
}

static ts_status get_u64(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return TS_ERR_FORMAT;
    *out = (uint64_t)json_integer_value(v);
    return TS_OK;
}

static ts_status parse_shape(const st_image *im, const char *tname, json_t *shape, ts_tensor *t, ts_err *err)
{
    if (!json_is_array(shape))
        return ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s': \"shape\" is not an array", im->name, tname);
    size_t nd = json_array_size(shape);
    if (nd > TS_MAX_DIMS)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: tensor '%s' has %zu dimensions; at most %d are supported",
                       im->name, tname, nd, TS_MAX_DIMS);
    for (int i = 0; i < TS_MAX_DIMS; i++)
        t->ne[i] = 1;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (get_u64(json_array_get(shape, i), &d) != TS_OK)
            return ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative integer",
                           im->name, tname, i);
        t->ne[nd - 1 - i] = (int64_t)d; /* ggml order: innermost first */
    }
    t->n_dims = nd ? (int)nd : 1; /* scalars become [1], see safetensors.h */
    return TS_OK;
}

static ts_status parse_tensor(const st_image *im, const char *tname, json_t *v, ts_st_tensor *out, ts_err *err)
{
    memset(out, 0, sizeof *out);
    size_t len = strlen(tname);
    if (len == 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: a tensor has an empty name", im->name);
    if (len >= TS_MAX_NAME)
        return ts_fail(err, TS_ERR_LIMIT, "%s: tensor name '%.64s...' is %zu bytes; at most %d are supported",
                       im->name, tname, len, TS_MAX_NAME - 1);
    memcpy(out->t.name, tname, len + 1);
    if (!json_is_object(v))
        return ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", im->name, tname);
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return ts_fail(err, TS_ERR_UNSUPPORTED,
                           "%s: tensor '%s': unexpected key \"%s\" (expected dtype, shape, data_offsets)",
                           im->name, tname, key);
    }
    json_t *jd = json_object_get(v, "dtype");
    if (!json_is_string(jd))
        return ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is missing or not a string", im->name, tname);
    out->t.dtype = ts_st_dtype_from_string(json_string_value(jd));
    if (out->t.dtype == TS_DTYPE_INVALID)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: tensor '%s': unknown dtype \"%.32s\"", im->name, tname,
                       json_string_value(jd));
    json_t *shape = json_object_get(v, "shape");
    ts_status st = parse_shape(im, tname, shape, &out->t, err);
    if (st != TS_OK)
        return st;

    json_t *offs = json_object_get(v, "data_offsets");
    uint64_t begin, end;
    if (!json_is_array(offs) || json_array_size(offs) != 2)
        return ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" is not an array of 2 integers",
                       im->name, tname);
    if (get_u64(json_array_get(offs, 0), &begin) != TS_OK || get_u64(json_array_get(offs, 1), &end) != TS_OK)
        return ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s': data_offsets are not non-negative integers",
                       im->name, tname);
    if (begin > end)
        return ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s': data_offsets begin %llu > end %llu", im->name,
                       tname, (unsigned long long)begin, (unsigned long long)end);
    if (end > im->area_size)
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets end %llu (file offset %llu) is beyond the data area "
                       "(%llu bytes from offset %llu)",
                       im->name, tname, (unsigned long long)end, (unsigned long long)(im->area_off + end),
                       (unsigned long long)im->area_size, (unsigned long long)im->area_off);

    char stext[128];
    uint64_t n, nbytes;
    if (!ts_shape_nelements(TS_MAX_DIMS, out->t.ne, &n) || !ts_dtype_row_bytes(out->t.dtype, n, &nbytes)) {
        shape_text(shape, stext, sizeof stext);
        return ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s': shape %s overflows 64 bits", im->name, tname, stext);
    }
    if (nbytes != end - begin) {
        shape_text(shape, stext, sizeof stext);
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: tensor '%s': %s %s needs %llu bytes but data_offsets [%llu, %llu] span %llu",
                       im->name, tname, json_string_value(jd), stext, (unsigned long long)nbytes,
                       (unsigned long long)begin, (unsigned long long)end, (unsigned long long)(end - begin));
    }
    out->t.nbytes = nbytes;
    out->file_index = im->file_index;
    out->offset = im->area_off + begin;
    out->t.data = im->base + out->offset;
    return TS_OK;
}

static ts_status parse_meta(const st_image *im, json_t *v, ts_st_model *m, bool keep, ts_err *err)
{
    if (!json_is_object(v))
        return ts_fail(err, TS_ERR_FORMAT, "%s: \"__metadata__\" is not a JSON object", im->name);
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        if (!json_is_string(val))
            return ts_fail(err, TS_ERR_FORMAT, "%s: \"__metadata__\" key \"%.200s\" is not a string", im->name, key);
    }
    if (!keep)
        return TS_OK;
    m->meta = calloc(json_object_size(v) ? json_object_size(v) : 1, sizeof *m->meta);
    if (!m->meta)
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", im->name);
    json_object_foreach(v, key, val) {
        ts_st_meta *e = &m->meta[m->n_meta];
        e->key = strdup(key);
        e->value = strdup(json_string_value(val));
        if (!e->key || !e->value) {
            free(e->key);
            free(e->value);
            return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", im->name);
        }
        m->n_meta++;
    }
    return TS_OK;
}

static int cmp_offset(const void *a, const void *b)
{
    const ts_st_tensor *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    if (x->t.nbytes != y->t.nbytes)
        return x->t.nbytes < y->t.nbytes ? -1 : 1;
    return strcmp(x->t.name, y->t.name);
}

/* Sort one file's tensors by offset and refuse overlapping spans (holes are allowed). */
static ts_status check_overlaps(const st_image *im, ts_st_tensor *v, size_t n, ts_err *err)
{
    qsort(v, n, sizeof *v, cmp_offset);
    const ts_st_tensor *reach = NULL; /* the tensor whose span ends furthest so far */
    for (size_t i = 0; i < n; i++) {
        if (reach && v[i].offset < reach->offset + reach->t.nbytes)
            return ts_fail(err, TS_ERR_FORMAT,
                           "%s: tensors '%s' (bytes %llu..%llu) and '%s' (bytes %llu..%llu) overlap", im->name,
                           reach->t.name, (unsigned long long)reach->offset,
                           (unsigned long long)(reach->offset + reach->t.nbytes), v[i].t.name,
                           (unsigned long long)v[i].offset, (unsigned long long)(v[i].offset + v[i].t.nbytes));
        if (!reach || v[i].offset + v[i].t.nbytes > reach->offset + reach->t.nbytes)
            reach = &v[i];
    }
    return TS_OK;
}

/* Parse one image and append its tensors (sorted by offset) to m. */
static ts_status parse_image(ts_st_model *m, const uint8_t *data, uint64_t size, const char *name,
                             uint32_t file_index, ts_err *err)
{
    if (size < 8)
        return ts_fail(err, TS_ERR_FORMAT, "%s: %llu bytes, too short for the 8-byte header length", name,
                       (unsigned long long)size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | data[i];
    if (hlen > size - 8)
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: header length %llu at offset 0 goes beyond the end of the file (%llu bytes)", name,
                       (unsigned long long)hlen, (unsigned long long)size);
    if (hlen > ST_MAX_HEADER)
        return ts_fail(err, TS_ERR_LIMIT, "%s: header length %llu at offset 0 exceeds the limit of %llu bytes",
                       name, (unsigned long long)hlen, ST_MAX_HEADER);
    st_image im = {name, data, 8 + hlen, size - 8 - hlen, file_index};

    json_error_t jerr;
    json_t *root = json_loadb((const char *)data + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        enum json_error_code c = json_error_code(&jerr);
        return ts_fail(err, TS_ERR_FORMAT, "%s: header JSON is invalid at file offset %llu: %s%s", name,
                       (unsigned long long)(8 + (uint64_t)jerr.position), jerr.text,
                       c == json_error_invalid_utf8      ? " (not valid UTF-8)"
                       : c == json_error_duplicate_key ? " (duplicate tensor name)"
                                                       : "");
    }
    ts_status st = TS_OK;
    if (!json_is_object(root)) {
        st = ts_fail(err, TS_ERR_FORMAT, "%s: header at offset 8 is not a JSON object", name);
        goto out;
    }
    size_t want = m->n_tensors + json_object_size(root);
    ts_st_tensor *grown = realloc(m->tensors, (want ? want : 1) * sizeof *grown);
    if (!grown) {
        st = ts_fail(err, TS_ERR_NOMEM, "%s: out of memory for %zu tensors", name, want);
        goto out;
    }
    m->tensors = grown;
    size_t first = m->n_tensors;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0)
            st = parse_meta(&im, val, m, file_index == 0, err);
        else if ((st = parse_tensor(&im, key, val, &m->tensors[m->n_tensors], err)) == TS_OK)
            m->n_tensors++;
        if (st != TS_OK)
            goto out;
    }
    st = check_overlaps(&im, m->tensors + first, m->n_tensors - first, err);
out:
    json_decref(root);
    return st;
}

/* ---- model ---------------------------------------------------------------- */

static ts_st_model *model_new(size_t n_files, ts_err *err)
{
    ts_st_model *m = calloc(1, sizeof *m);
    if (m)
        m->files = calloc(n_files, sizeof *m->files);
    if (!m || !m->files) {
        free(m);
        ts_fail(err, TS_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n_files; i++)
        m->files[i].fd = -1;
    return m;
}

void ts_st_close(ts_st_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_files; i++) {
        if (m->borrowed)
            free(m->files[i].path);
        else
            ts_unmap_file(&m->files[i]);
    }
    for (size_t i = 0; i < m->n_meta; i++) {
        free(m->meta[i].key);
        free(m->meta[i].value);
    }
    free(m->files);
    free(m->tensors);
    free(m->meta);
    free(m->by_name);
    free(m);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const ts_st_tensor *const *)a)->t.name, (*(const ts_st_tensor *const *)b)->t.name);
}

/* Build the name index for ts_st_find; a name held by two shards is an error. */
static ts_status build_name_index(ts_st_model *m, ts_err *err)
{
    size_t n = m->n_tensors ? m->n_tensors : 1;
    const ts_st_tensor **order = malloc(n * sizeof *order);
    m->by_name = malloc(n * sizeof *m->by_name);
    if (!order || !m->by_name) {
        free(order);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < m->n_tensors; i++)
        order[i] = &m->tensors[i];
    qsort(order, m->n_tensors, sizeof *order, cmp_tensor_name); /* C11 qsort has no context argument */
    ts_status st = TS_OK;
    for (size_t i = 0; i < m->n_tensors; i++) {
        m->by_name[i] = (size_t)(order[i] - m->tensors);
        if (i && st == TS_OK && strcmp(order[i - 1]->t.name, order[i]->t.name) == 0)
            st = ts_fail(err, TS_ERR_FORMAT, "tensor '%s' appears in both %s and %s", order[i]->t.name,
                         m->files[order[i - 1]->file_index].path, m->files[order[i]->file_index].path);
    }
    free(order);
    return st;
}

const ts_st_tensor *ts_st_find(const ts_st_model *m, const char *name)
{
    size_t lo = 0, hi = m->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const ts_st_tensor *t = &m->tensors[m->by_name[mid]];
        int c = strcmp(name, t->t.name);
        if (c == 0)
            return t;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static ts_status finish(ts_st_model *m, ts_status st, ts_st_model **out)
{
    if (st != TS_OK) {
        ts_st_close(m);
        return st;
    }
    *out = m;
    return TS_OK;
}

ts_status ts_st_open_memory(const void *data, size_t size, const char *name, ts_st_model **out, ts_err *err)
{
    *out = NULL;
    if (!name)
        name = "<memory>";
    ts_st_model *m = model_new(1, err);
    if (!m)
        return TS_ERR_NOMEM;
    m->borrowed = true;
    m->n_files = 1;
    m->files[0].data = data;
    m->files[0].size = size;
    m->files[0].path = strdup(name);
    if (!m->files[0].path)
        return finish(m, ts_fail(err, TS_ERR_NOMEM, "out of memory"), out);
    ts_status st = parse_image(m, data, size, name, 0, err);
    if (st == TS_OK)
        st = build_name_index(m, err);
    return finish(m, st, out);
}

static ts_status open_single(const char *path, ts_st_model **out, ts_err *err)
{
    ts_st_model *m = model_new(1, err);
    if (!m)
        return TS_ERR_NOMEM;
    m->n_files = 1;
    ts_status st = ts_map_file(path, &m->files[0], err);
    if (st == TS_OK)
        st = parse_image(m, m->files[0].data, m->files[0].size, path, 0, err);
    if (st == TS_OK)
        st = build_name_index(m, err);
    return finish(m, st, out);
}

/* ---- sharded checkpoints ------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Split "model-00001-of-00002.safetensors" into the prefix "model" and the
 * count "00002"; false when the name is not part of such a series. */
static bool series_parts(const char *name, size_t *prefix_len, const char **count, size_t *count_len)
{
    static const char suffix[] = ".safetensors";
    if (!ends_with(name, suffix))
        return false;
    size_t end = strlen(name) - (sizeof suffix - 1), b = end;
    while (b > 0 && name[b - 1] >= '0' && name[b - 1] <= '9')
        b--;
    if (b == end || b < 4 || memcmp(name + b - 4, "-of-", 4) != 0)
        return false;
    *count = name + b;
    *count_len = end - b;
    size_t kend = b - 4, k = kend;
    while (k > 0 && name[k - 1] >= '0' && name[k - 1] <= '9')
        k--;
    if (k == kend || k < 1 || name[k - 1] != '-')
        return false;
    *prefix_len = k - 1;
    return true;
}

static bool same_series(const char *a, const char *b)
{
    size_t pa, pb, ca, cb;
    const char *xa, *xb;
    return series_parts(a, &pa, &xa, &ca) && series_parts(b, &pb, &xb, &cb) && pa == pb &&
           memcmp(a, b, pa) == 0 && ca == cb && memcmp(xa, xb, ca) == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A shard file of a series the index uses, but which the index never names,
 * means the index and the files disagree about what the checkpoint is. */
static ts_status check_extra_shards(const char *index_path, const char *dir, const char **names, size_t n,
                                    ts_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return ts_fail(err, TS_ERR_IO, "%s: cannot list %s: %s", index_path, dir, strerror(errno));
    ts_status st = TS_OK;
    struct dirent *e;
    while (st == TS_OK && (e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (bsearch(&name, names, n, sizeof *names, cmp_str))
            continue;
        for (size_t i = 0; i < n; i++) {
            if (same_series(names[i], name)) {
                st = ts_fail(err, TS_ERR_FORMAT,
                             "%s: shard file %s/%s belongs to the same series as %s but the index does not "
                             "reference it",
                             index_path, dir, name, names[i]);
                break;
            }
        }
    }
    closedir(d);
    return st;
}

static ts_status check_shard_name(const char *index_path, const char *tname, const char *shard, ts_err *err)
{
    if (!*shard || strchr(shard, '/') || strchr(shard, '\\') || strstr(shard, ".."))
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: tensor '%s' is assigned to shard \"%.200s\"; a shard must be a plain file name "
                       "in the index's directory",
                       index_path, tname, shard);
    return TS_OK;
}

/* Every tensor of shard i must be assigned to shard i by the index. */
static ts_status check_shard_tensors(const char *index_path, json_t *wm, const ts_st_model *m, size_t first,
                                     const char *shard, ts_err *err)
{
    for (size_t k = first; k < m->n_tensors; k++) {
        const char *tname = m->tensors[k].t.name;
        json_t *s = json_object_get(wm, tname);
        if (!s)
            return ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s' is in shard %s but not in the index", index_path,
                           tname, shard);
        if (strcmp(json_string_value(s), shard) != 0)
            return ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s' is in shard %s but the index assigns it to %s",
                           index_path, tname, shard, json_string_value(s));
    }
    return TS_OK;
}

/* The distinct shard names of the weight map, sorted (00001 first). */
static ts_status index_shards(const char *index_path, json_t *wm, const char ***out, size_t *n_out, ts_err *err)
{
    const char **names = malloc((json_object_size(wm) ? json_object_size(wm) : 1) * sizeof *names);
    if (!names)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    size_t n = 0;
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val)) {
            free(names);
            return ts_fail(err, TS_ERR_FORMAT, "%s: weight_map entry for tensor '%s' is not a string", index_path,
                           key);
        }
        ts_status st = check_shard_name(index_path, key, json_string_value(val), err);
        if (st != TS_OK) {
            free(names);
            return st;
        }
        names[n++] = json_string_value(val);
    }
    qsort(names, n, sizeof *names, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || strcmp(names[u - 1], names[i]) != 0)
            names[u++] = names[i];
    *out = names;
    *n_out = u;
    return TS_OK;
}

static ts_status load_shards(const char *index_path, const char *dir, json_t *wm, const char **names,
                             ts_st_model *m, ts_err *err)
{
    for (size_t i = 0; i < m->n_files; i++) {
        char *path = ts_path_join(dir, names[i]);
        if (!path)
            return ts_fail(err, TS_ERR_NOMEM, "out of memory");
        ts_status st = TS_OK;
        if (!ts_file_exists(path))
            st = ts_fail(err, TS_ERR_IO, "%s: shard %s named by the index does not exist", index_path, path);
        if (st == TS_OK)
            st = ts_map_file(path, &m->files[i], err);
        size_t first = m->n_tensors;
        if (st == TS_OK)
            st = parse_image(m, m->files[i].data, m->files[i].size, path, (uint32_t)i, err);
        if (st == TS_OK)
            st = check_shard_tensors(index_path, wm, m, first, names[i], err);
        free(path);
        if (st != TS_OK)
            return st;
    }
    ts_status st = build_name_index(m, err);
    if (st != TS_OK || m->n_tensors == json_object_size(wm))
        return st;
    /* Each shard tensor matched a distinct index entry, so some entries were not found. */
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        if (!ts_st_find(m, key))
            return ts_fail(err, TS_ERR_FORMAT, "%s: the index assigns tensor '%s' to shard %s, which does not hold it",
                           index_path, key, json_string_value(val));
    }
    return ts_fail(err, TS_ERR_INTERNAL, "%s: tensor count mismatch", index_path);
}

static ts_status open_index(const char *index_path, ts_st_model **out, ts_err *err)
{
    char *text = NULL;
    size_t len = 0;
    ts_status st = ts_read_small_file(index_path, ST_MAX_INDEX, &text, &len, err);
    if (st != TS_OK)
        return st;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root)
        return ts_fail(err, TS_ERR_FORMAT, "%s: index JSON is invalid at byte offset %d: %s", index_path,
                       jerr.position, jerr.text);
    json_t *wm = json_object_get(root, "weight_map");
    json_t *meta = json_object_get(root, "metadata");
    const char **names = NULL;
    size_t n_shards = 0;
    char *dir = NULL;
    ts_st_model *m = NULL;
    if (!json_is_object(root) || !json_is_object(wm) || json_object_size(wm) == 0)
        st = ts_fail(err, TS_ERR_FORMAT, "%s: expected a JSON object with a non-empty \"weight_map\" object",
                     index_path);
    else if (meta && !json_is_object(meta))
        st = ts_fail(err, TS_ERR_FORMAT, "%s: \"metadata\" is not a JSON object", index_path);
    else
        st = index_shards(index_path, wm, &names, &n_shards, err);
    if (st == TS_OK) {
        const char *slash = strrchr(index_path, '/');
        dir = slash ? strndup(index_path, slash == index_path ? 1 : (size_t)(slash - index_path)) : strdup(".");
        m = model_new(n_shards, err);
        if (!dir || !m)
            st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    if (st == TS_OK) {
        m->n_files = n_shards;
        st = load_shards(index_path, dir, wm, names, m, err);
    }
    if (st == TS_OK)
        st = check_extra_shards(index_path, dir, names, n_shards, err);
    free(names);
    free(dir);
    json_decref(root);
    if (!m)
        return st;
    return finish(m, st, out);
}

/* A directory: the index, else model.safetensors, else its only *.safetensors file. */
static ts_status open_dir(const char *dir, ts_st_model **out, ts_err *err)
{
    const char *prefer[] = {ST_INDEX_NAME, "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char *p = ts_path_join(dir, prefer[i]);
        if (!p)
            return ts_fail(err, TS_ERR_NOMEM, "out of memory");
        if (ts_file_exists(p)) {
            ts_status st = i == 0 ? open_index(p, out, err) : open_single(p, out, err);
            free(p);
            return st;
        }
        free(p);
    }
    DIR *d = opendir(dir);
    if (!d)
        return ts_fail(err, TS_ERR_IO, "%s: cannot list directory: %s", dir, strerror(errno));
    char *found = NULL, *second = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!ends_with(e->d_name, ".safetensors") || n++ >= 2)
            continue;
        char **slot = n == 1 ? &found : &second;
        *slot = strdup(e->d_name);
    }
    closedir(d);
    ts_status st;
    if (n == 0)
        st = ts_fail(err, TS_ERR_ARG, "%s: no %s and no *.safetensors file in this directory", dir, ST_INDEX_NAME);
    else if (n > 1)
        st = ts_fail(err, TS_ERR_ARG,
                     "%s: %zu .safetensors files (%s, %s, ...) but no %s saying how they fit together", dir, n,
                     found ? found : "?", second ? second : "?", ST_INDEX_NAME);
    else if (!found)
        st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    else {
        char *p = ts_path_join(dir, found);
        st = p ? open_single(p, out, err) : ts_fail(err, TS_ERR_NOMEM, "out of memory");
        free(p);
    }
    free(found);
    free(second);
    return st;
}

ts_status ts_st_open(const char *path, ts_st_model **out, ts_err *err)
{
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return ts_fail(err, TS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return open_dir(path, out, err);
    if (ends_with(path, ".json"))
        return open_index(path, out, err);
    return open_single(path, out, err);
}
