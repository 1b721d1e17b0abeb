/* One PyTorch file: container dispatch (zip, legacy, plain pickle) and the
 * zip records torch.save writes (data.pkl, data/<key>, byteorder, version).
 * The walk over the unpickled object and tensor bytes: torch_tensors.c. */
#define _GNU_SOURCE
#include "torch_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PICKLE_BYTES (1ull << 30)


bool ts_torch_sniff(const uint8_t *head, size_t n)
{
    return (n >= 4 && !memcmp(head, "PK\x03\x04", 4)) || (n >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5);
}

ts_status tm_bind_storages(ts_torch_model *m, const tp_vm *vm, ts_err *err)
{
    m->n_storages = vm->n_storages;
    m->storages = calloc(vm->n_storages ? vm->n_storages : 1, sizeof *m->storages);
    m->priv->crc_ok = calloc(vm->n_storages ? vm->n_storages : 1, sizeof *m->priv->crc_ok);
    if (!m->storages || !m->priv->crc_ok)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < vm->n_storages; i++) {
        m->storages[i].dtype = vm->storages[i].dtype;
        m->storages[i].nbytes = vm->storages[i].nbytes;
        m->storages[i].data = vm->storages[i].data;
        m->storages[i].zip_entry = -1;
    }
    return TS_OK;
}

/* ---- zip container ------------------------------------------------------------- */

static ts_status small_entry(const ts_torch_model *m, const char *prefix, const char *name, char *buf, size_t n,
                             bool *found, ts_err *err)
{
    char full[512];
    snprintf(full, sizeof full, "%s/%s", prefix, name);
    const tz_entry *e = tz_find(&m->priv->zip, full);
    *found = e != NULL;
    if (!e)
        return TS_OK;
    uint8_t *p;
    ts_status st = tz_read(&m->priv->zip, e, n - 1, &p, err);
    if (st)
        return st;
    memcpy(buf, p, (size_t)e->usize + 1);
    free(p);
    size_t len = strlen(buf); /* the record is text; a trailing newline is allowed */
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = 0;
    return TS_OK;
}

static ts_status find_prefix(const ts_torch_model *m, char *prefix, size_t n, ts_err *err)
{
    const tz_archive *z = &m->priv->zip;
    const char *found = NULL;
    for (size_t i = 0; i < z->n; i++) {
        const char *name = z->e[i].name, *slash = strchr(name, '/');
        if (slash && !strcmp(slash, "/data.pkl")) {
            if (found)
                return ts_fail(err, TS_ERR_FORMAT, "%s: two data.pkl records ('%s' and '%s')", m->path, found, name);
            found = name;
        }
    }
    if (!found) {
        for (size_t i = 0; i < z->n; i++)
            if (strstr(z->e[i].name, "/constants.pkl") || strstr(z->e[i].name, "/code/"))
                return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: a TorchScript archive (torch.jit.save), not a "
                               "torch.save checkpoint", m->path);
        return ts_fail(err, TS_ERR_FORMAT, "%s: zip archive without a <name>/data.pkl record: not a torch.save "
                       "checkpoint", m->path);
    }
    size_t len = (size_t)(strchr(found, '/') - found);
    if (len >= n)
        return ts_fail(err, TS_ERR_FORMAT, "%s: archive prefix too long", m->path);
    memcpy(prefix, found, len);
    prefix[len] = 0;
    return TS_OK;
}

static ts_status zip_read(ts_torch_model *m, tp_obj **root, ts_err *err)
{
    struct ts_torch_private *p = m->priv;
    ts_status st = tz_open(p->base, p->size, m->path, &p->zip, err);
    p->has_zip = true;
    if (st)
        return st;
    char prefix[256], text[32];
    bool found;
    if ((st = find_prefix(m, prefix, sizeof prefix, err)) ||
        (st = small_entry(m, prefix, "byteorder", text, sizeof text, &found, err)))
        return st;
    if (found && strcmp(text, "little") != 0)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: byteorder is '%s'; only little-endian checkpoints are supported",
                       m->path, text);
    if ((st = small_entry(m, prefix, "version", text, sizeof text, &found, err)))
        return st;
    char *end;
    long version = found ? strtol(text, &end, 10) : 1;
    if (found && (end == text || *end || version < 1 || version > 1000))
        return ts_fail(err, TS_ERR_FORMAT, "%s: %s/version holds '%s', expected a format number", m->path, prefix,
                       text);
    char name[512];
    snprintf(name, sizeof name, "%s/data.pkl", prefix);
    if ((st = tz_read(&p->zip, tz_find(&p->zip, name), MAX_PICKLE_BYTES, &p->pickle, err)))
        return st;
    char what[600];
    snprintf(what, sizeof what, "%s: %s", m->path, name);
    tp_vm_init(&p->vm, strdup(what), false, true);
    if (!p->vm.what)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    size_t used;
    if ((st = tp_run(&p->vm, p->pickle, (size_t)tz_find(&p->zip, name)->usize, &used, root, err)) ||
        (st = tm_bind_storages(m, &p->vm, err)))
        return st;
    for (size_t i = 0; i < m->n_storages; i++) {
        ts_torch_storage *s = &m->storages[i];
        if (s->data)
            continue; /* came with its bytes (_load_from_bytes) */
        snprintf(name, sizeof name, "%s/data/%s", prefix, p->vm.storages[i].key);
        const tz_entry *e = tz_find(&p->zip, name);
        if (!e)
            return ts_fail(err, TS_ERR_FORMAT, "%s: storage '%s' has no record %s", m->path, p->vm.storages[i].key,
                           name);
        if (e->usize != s->nbytes)
            return ts_fail(err, TS_ERR_FORMAT, "%s: record %s holds %llu bytes; its storage is %llu elements of %s "
                           "(%llu bytes)", m->path, name, (unsigned long long)e->usize,
                           (unsigned long long)p->vm.storages[i].numel, ts_dtype_name(s->dtype),
                           (unsigned long long)s->nbytes);
        s->zip_entry = e - p->zip.e;
        if (e->method == 0) {
            s->data = p->base + e->data_offset;
            s->file_offset = e->data_offset;
            s->in_file = true;
        }
    }
    return TS_OK;
}

/* ---- open / close ---------------------------------------------------------------- */

static ts_status open_impl(ts_torch_model *m, ts_err *err)
{
    struct ts_torch_private *p = m->priv;
    tp_obj *root = NULL;
    ts_status st;
    if (p->size >= 4 && !memcmp(p->base, "PK\x03\x04", 4)) {
        m->format = TS_TORCH_ZIP;
        st = zip_read(m, &root, err);
    } else if (p->size >= 2 && p->base[0] == 0x80) {
        tp_vm_init(&p->vm, strdup(m->path), false, false);
        if (!p->vm.what)
            return ts_fail(err, TS_ERR_NOMEM, "out of memory");
        st = tl_read(m, &p->vm, p->base, p->size, &root, err);
    } else if (p->size >= 262 && !memcmp(p->base + 257, "ustar", 5)) {
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: the tar-based format of PyTorch before 0.1.10 is not supported",
                       m->path);
    } else {
        return ts_fail(err, TS_ERR_FORMAT, "%s: not a PyTorch checkpoint (neither a zip archive nor a pickle)",
                       m->path);
    }
    if (st)
        return st;
    return tm_collect(m, &p->vm, root, err);
}

static ts_status new_model(const char *name, ts_torch_model **out, ts_err *err)
{
    *out = NULL;
    ts_torch_model *m = calloc(1, sizeof *m);
    if (m)
        m->priv = calloc(1, sizeof *m->priv);
    if (m && m->priv)
        m->path = strdup(name);
    if (!m || !m->priv || !m->path) {
        if (m)
            free(m->priv);
        free(m);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    *out = m;
    return TS_OK;
}

ts_status ts_torch_open(const char *path, ts_torch_model **out, ts_err *err)
{
    ts_torch_model *m;
    ts_status st = new_model(path, &m, err);
    if (st)
        return st;
    if ((st = ts_map_file(path, &m->priv->file, err))) {
        ts_torch_close(m);
        return st;
    }
    m->priv->mapped = true;
    m->priv->base = m->priv->file.data;
    m->priv->size = m->priv->file.size;
    if ((st = open_impl(m, err))) {
        ts_torch_close(m);
        return st;
    }
    *out = m;
    return TS_OK;
}

ts_status ts_torch_open_memory(const void *data, size_t size, const char *name, ts_torch_model **out, ts_err *err)
{
    ts_torch_model *m;
    ts_status st = new_model(name, &m, err);
    if (st)
        return st;
    m->priv->base = data;
    m->priv->size = size;
    if ((st = open_impl(m, err))) {
        ts_torch_close(m);
        return st;
    }
    *out = m;
    return TS_OK;
}

void ts_torch_close(ts_torch_model *m)
{
    if (!m)
        return;
    struct ts_torch_private *p = m->priv;
    free(m->tensors);
    free(m->storages);
    if (p) {
        if (p->has_zip)
            tz_close(&p->zip);
        free((char *)p->vm.what);
        tp_vm_free(&p->vm);
        free(p->pickle);
        free(p->by_name);
        free(p->crc_ok);
        if (p->mapped)
            ts_unmap_file(&p->file);
        free(p);
    }
    free(m->path);
    free(m);
}

