#include "checkpoint.h"
#include "safetensors.h"

#include <stdlib.h>
#include <string.h>

struct ts_checkpoint {
    ts_checkpoint_kind kind;
    ts_st_model *st;
    const char **files;
};

ts_status ts_checkpoint_open(const char *path, ts_checkpoint **out, ts_err *err)
{
    *out = NULL;
    ts_checkpoint *c = calloc(1, sizeof *c);
    if (!c)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    c->kind = TS_CKPT_SAFETENSORS;
    ts_status st = ts_st_open(path, &c->st, err);
    if (st != TS_OK) {
        free(c);
        return st;
    }
    c->files = calloc(c->st->n_files + 1, sizeof *c->files);
    if (!c->files) {
        ts_checkpoint_close(c);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < c->st->n_files; i++)
        c->files[i] = c->st->files[i].path;
    *out = c;
    return TS_OK;
}

void ts_checkpoint_close(ts_checkpoint *c)
{
    if (!c)
        return;
    if (c->st)
        ts_st_close(c->st);
    free(c->files);
    free(c);
}

ts_checkpoint_kind ts_checkpoint_kind_of(const ts_checkpoint *c) { return c->kind; }
size_t ts_checkpoint_n_tensors(const ts_checkpoint *c) { return c->st->n_tensors; }
const ts_tensor *ts_checkpoint_tensor(const ts_checkpoint *c, size_t i) { return &c->st->tensors[i].t; }

const ts_tensor *ts_checkpoint_find(const ts_checkpoint *c, const char *name)
{
    const ts_st_tensor *t = ts_st_find(c->st, name);
    return t ? &t->t : NULL;
}

const char *const *ts_checkpoint_files(const ts_checkpoint *c) { return c->files; }

uint64_t ts_checkpoint_data_bytes(const ts_checkpoint *c)
{
    uint64_t n = 0;
    for (size_t i = 0; i < c->st->n_tensors; i++)
        n += c->st->tensors[i].t.nbytes;
    return n;
}

ts_status ts_checkpoint_data(const ts_checkpoint *c, const ts_tensor *t, const void **data, ts_err *err)
{
    (void)c;
    (void)err;
    *data = t->data; /* safetensors: always mapped and contiguous */
    return TS_OK;
}

void ts_checkpoint_release(const ts_checkpoint *c, const ts_tensor *t)
{
    /* ts_st_tensor starts with its ts_tensor, so the descriptor leads back to its shard. */
    const ts_st_tensor *st = (const ts_st_tensor *)t;
    const ts_mapped_file *f = &c->st->files[st->file_index];
    ts_mapped_release(f, st->offset, t->nbytes);
}
