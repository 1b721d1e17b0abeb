/* From the unpickled object to tensor descriptors: which dict is the state
 * dict, the dotted names, shapes in ggml order, bounds and contiguity; then
 * each tensor's bytes in C order on demand. */
#define _GNU_SOURCE
#include "torch_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keys under which training checkpoints keep the weights, in order of preference. */
static const char *const state_dict_keys[] = {"state_dict", "model_state_dict", "model", "module"};

typedef struct {
    ts_torch_model *m;
    tp_vm *vm;
    ts_err *err;
} walk_ctx;

static bool has_tensor_value(const tp_obj *dict)
{
    for (size_t i = 1; i < dict->u.seq.n; i += 2)
        if (dict->u.seq.v[i]->kind == TP_TENSOR)
            return true;
    return false;
}

static ts_status add_tensor(walk_ctx *w, const char *name, const tp_tensor *pt)
{
    ts_torch_model *m = w->m;
    struct ts_torch_private *p = m->priv;
    if (pt->n_dims > TS_MAX_DIMS)
        return ts_fail(w->err, TS_ERR_UNSUPPORTED, "%s: tensor '%s' has %d dimensions; at most %d are supported",
                       m->path, name, pt->n_dims, TS_MAX_DIMS);
    uint32_t es = tp_dtype_size(pt->dtype);
    if (!es)
        return ts_fail(w->err, TS_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s is not supported", m->path, name,
                       ts_dtype_name(pt->dtype));
    if (m->n_tensors == p->n_alloc) {
        size_t ncap = p->n_alloc ? p->n_alloc * 2 : 64;
        ts_torch_tensor *nt = realloc(m->tensors, ncap * sizeof *nt);
        if (!nt)
            return ts_fail(w->err, TS_ERR_NOMEM, "out of memory");
        m->tensors = nt;
        p->n_alloc = ncap;
    }
    ts_torch_tensor *t = &m->tensors[m->n_tensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->t.name, sizeof t->t.name, "%s", name);
    t->t.dtype = pt->dtype;
    t->t.n_dims = pt->n_dims ? pt->n_dims : 1;
    t->storage = pt->storage;
    t->offset = pt->offset * es; /* in bounds: checked when the tensor was rebuilt */
    uint64_t numel = 1, expect = 1;
    t->contiguous = true;
    for (int i = 0; i < TS_MAX_DIMS; i++) {
        t->t.ne[i] = 1;
        t->stride[i] = 0;
    }
    for (int i = 0; i < pt->n_dims; i++) {
        int d = pt->n_dims - 1 - i; /* torch dim d is ggml dim i */
        t->t.ne[i] = pt->size[d];
        t->stride[i] = pt->stride[d];
        numel *= (uint64_t)pt->size[d];
        if (pt->size[d] != 1 && (uint64_t)pt->stride[d] != expect)
            t->contiguous = false;
        expect *= (uint64_t)pt->size[d];
    }
    const ts_torch_storage *s = &m->storages[t->storage];
    if (!ts_mul_u64(numel, es, &t->t.nbytes) || (t->t.nbytes > s->nbytes && t->t.nbytes > TP_MAX_EXPANDED))
        return ts_fail(w->err, TS_ERR_LIMIT, "%s: tensor '%s' repeats the elements of its %llu-byte storage into "
                       "%llu elements; refusing to materialize more than %llu bytes", m->path, name,
                       (unsigned long long)s->nbytes, (unsigned long long)numel,
                       (unsigned long long)TP_MAX_EXPANDED);
    if (t->contiguous && s->data && t->t.nbytes)
        t->t.data = s->data + t->offset;
    return TS_OK;
}

static ts_status walk(walk_ctx *w, tp_obj *o, char *path, size_t len, int depth)
{
    if (o->kind == TP_TENSOR)
        return add_tensor(w, path, o->u.tensor);
    if (o->kind != TP_DICT && o->kind != TP_LIST && o->kind != TP_TUPLE)
        return TS_OK; /* scalars, strings, sets carry no tensors we read */
    if (o->visited)
        return TS_OK; /* shared or cyclic: each container is walked once */
    if (depth >= TP_MAX_DEPTH)
        return ts_fail(w->err, TS_ERR_LIMIT, "%s: objects nested deeper than %d levels at '%s'", w->m->path,
                       TP_MAX_DEPTH, path);
    o->visited = 1;
    bool dict = o->kind == TP_DICT;
    for (size_t i = 0; i < o->u.seq.n; i += dict ? 2 : 1) {
        tp_obj *child = dict ? o->u.seq.v[i + 1] : o->u.seq.v[i];
        if (child->kind != TP_TENSOR && child->kind != TP_DICT && child->kind != TP_LIST && child->kind != TP_TUPLE)
            continue;
        char key[TS_MAX_NAME];
        const tp_obj *k = dict ? o->u.seq.v[i] : NULL;
        if (!dict)
            snprintf(key, sizeof key, "%zu", i);
        else if (k->kind == TP_INT)
            snprintf(key, sizeof key, "%lld", (long long)k->u.i);
        else if (tp_is_text(k) && k->u.s.n < sizeof key && !memchr(k->u.s.p, 0, k->u.s.n)) {
            memcpy(key, k->u.s.p, k->u.s.n);
            key[k->u.s.n] = 0;
        } else if (child->kind == TP_TENSOR) {
            return ts_fail(w->err, TS_ERR_UNSUPPORTED, "%s: a tensor under '%s' has a %s key, not a name", w->m->path,
                           len ? path : "(top level)", tp_kind_name(k));
        } else {
            continue;
        }
        size_t klen = strlen(key);
        if (len + (len ? 1 : 0) + klen >= TS_MAX_NAME)
            return ts_fail(w->err, TS_ERR_LIMIT, "%s: tensor name '%s.%s' is longer than %d bytes", w->m->path, path,
                           key, TS_MAX_NAME - 1);
        size_t nlen = len;
        if (len)
            path[nlen++] = '.';
        memcpy(path + nlen, key, klen + 1);
        ts_status st = walk(w, child, path, nlen + klen, depth + 1);
        path[len] = 0;
        if (st)
            return st;
    }
    return TS_OK;
}

static int read_order(const void *a, const void *b, void *ctx)
{
    const ts_torch_model *m = ctx;
    const ts_torch_tensor *x = a, *y = b;
    const ts_torch_storage *sx = &m->storages[x->storage], *sy = &m->storages[y->storage];
    uint64_t px = sx->in_file ? sx->file_offset : UINT64_MAX, py = sy->in_file ? sy->file_offset : UINT64_MAX;
    if (px != py)
        return px < py ? -1 : 1;
    if (x->storage != y->storage)
        return x->storage < y->storage ? -1 : 1;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return strcmp(x->t.name, y->t.name);
}

static int name_order(const void *a, const void *b, void *ctx)
{
    const ts_torch_model *m = ctx;
    return strcmp(m->tensors[*(const size_t *)a].t.name, m->tensors[*(const size_t *)b].t.name);
}

ts_status tm_collect(ts_torch_model *m, tp_vm *vm, tp_obj *root, ts_err *err)
{
    if (root->kind != TP_DICT)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: the top-level object is a %s; expected a dict (a state dict or "
                       "a training checkpoint)", m->path, tp_kind_name(root));
    walk_ctx w = {m, vm, err};
    char path[TS_MAX_NAME] = "";
    tp_obj *sel = root;
    if (!has_tensor_value(root)) {
        for (size_t i = 0; i < sizeof state_dict_keys / sizeof state_dict_keys[0]; i++) {
            tp_obj *v = tp_dict_get(root, state_dict_keys[i]);
            if (v && v->kind == TP_DICT) {
                sel = v;
                snprintf(path, sizeof path, "%s", state_dict_keys[i]);
                m->prefix_len = strlen(path) + 1;
                break;
            }
        }
    }
    ts_status st = walk(&w, sel, path, strlen(path), 0);
    if (st)
        return st;
    if (m->n_tensors > 1)
        qsort_r(m->tensors, m->n_tensors, sizeof *m->tensors, read_order, m);
    struct ts_torch_private *p = m->priv;
    p->by_name = malloc((m->n_tensors ? m->n_tensors : 1) * sizeof *p->by_name);
    if (!p->by_name)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < m->n_tensors; i++)
        p->by_name[i] = i;
    qsort_r(p->by_name, m->n_tensors, sizeof *p->by_name, name_order, m);
    for (size_t i = 0; i + 1 < m->n_tensors; i++)
        if (!strcmp(m->tensors[p->by_name[i]].t.name, m->tensors[p->by_name[i + 1]].t.name))
            return ts_fail(err, TS_ERR_FORMAT, "%s: tensor name '%s' appears twice", m->path,
                           m->tensors[p->by_name[i]].t.name);
    return TS_OK;
}

const ts_torch_tensor *ts_torch_find(const ts_torch_model *m, const char *name)
{
    size_t lo = 0, hi = m->n_tensors;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const ts_torch_tensor *t = &m->tensors[m->priv->by_name[mid]];
        int c = strcmp(t->t.name, name);
        if (!c)
            return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- bytes ------------------------------------------------------------------------- */

/* Copies t's elements from the storage bytes at src (element 0 of the
 * storage) into dst in C order. Innermost runs are memcpy'd when stride 1. */
static void gather(const ts_torch_tensor *t, const uint8_t *src, uint8_t *dst)
{
    uint32_t es = tp_dtype_size(t->t.dtype);
    const int64_t *ne = t->t.ne, *sd = t->stride;
    src += t->offset;
    for (int64_t i3 = 0; i3 < ne[3]; i3++)
        for (int64_t i2 = 0; i2 < ne[2]; i2++)
            for (int64_t i1 = 0; i1 < ne[1]; i1++) {
                const uint8_t *row = src + (uint64_t)(i3 * sd[3] + i2 * sd[2] + i1 * sd[1]) * es;
                if (sd[0] == 1 || ne[0] == 1) {
                    memcpy(dst, row, (size_t)ne[0] * es);
                    dst += (size_t)ne[0] * es;
                } else {
                    for (int64_t i0 = 0; i0 < ne[0]; i0++, dst += es)
                        memcpy(dst, row + (uint64_t)(i0 * sd[0]) * es, es);
                }
            }
}

static ts_status check_crc(const ts_torch_model *m, uint32_t storage, ts_err *err)
{
    struct ts_torch_private *p = m->priv;
    const ts_torch_storage *s = &m->storages[storage];
    if (s->zip_entry < 0 || !s->data || atomic_load(&p->crc_ok[storage]))
        return TS_OK;
    ts_status st = tz_check_crc(&p->zip, &p->zip.e[s->zip_entry], err);
    if (st == TS_OK)
        atomic_store(&p->crc_ok[storage], 1); /* two threads may both check: harmless */
    return st;
}

ts_status ts_torch_data(const ts_torch_model *m, const ts_torch_tensor *t, const void **data, void **owned,
                        ts_err *err)
{
    static const uint8_t empty[1];
    *owned = NULL;
    *data = empty;
    if (!t->t.nbytes)
        return TS_OK;
    const ts_torch_storage *s = &m->storages[t->storage];
    ts_status st = check_crc(m, t->storage, err);
    if (st)
        return st;
    if (s->data && t->contiguous) {
        *data = s->data + t->offset;
        return TS_OK;
    }
    uint8_t *whole = NULL; /* a compressed storage, decoded */
    const uint8_t *src = s->data;
    if (!src) {
        if ((st = tz_read(&m->priv->zip, &m->priv->zip.e[s->zip_entry], s->nbytes, &whole, err)))
            return st;
        src = whole;
        if (t->contiguous && t->offset == 0 && t->t.nbytes == s->nbytes) {
            *owned = whole;
            *data = whole;
            return TS_OK;
        }
    }
    uint8_t *buf = malloc((size_t)t->t.nbytes);
    if (!buf) {
        free(whole);
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory materializing '%s' (%llu bytes)", m->path, t->t.name,
                       (unsigned long long)t->t.nbytes);
    }
    if (t->contiguous)
        memcpy(buf, src + t->offset, (size_t)t->t.nbytes);
    else
        gather(t, src, buf);
    free(whole);
    *owned = buf;
    *data = buf;
    return TS_OK;
}

void ts_torch_release(const ts_torch_model *m, const ts_torch_tensor *t)
{
    const ts_torch_storage *s = &m->storages[t->storage];
    if (!m->priv->mapped || !s->in_file || !t->t.nbytes)
        return;
    uint64_t last = 0; /* element offset of the last element, relative to element 0 */
    for (int i = 0; i < TS_MAX_DIMS; i++)
        last += (uint64_t)(t->t.ne[i] - 1) * (uint64_t)t->stride[i];
    uint64_t span = (last + 1) * tp_dtype_size(t->t.dtype);
    ts_mapped_release(&m->priv->file, s->file_offset + t->offset, span);
}
