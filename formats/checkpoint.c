#define _GNU_SOURCE
#include "checkpoint.h"
#include "core/mapped_file.h"
#include "safetensors.h"
#include "torch.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ts_checkpoint {
    ts_checkpoint_kind kind;
    ts_st_model *st;
    ts_torch_set *pt;
    void **owned; /* torch: bytes materialized for tensor i, freed on release */
    const char **files;
};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static bool dir_has_safetensors(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool found = false;
    struct dirent *de;
    while (!found && (de = readdir(d)))
        found = ends_with(de->d_name, ".safetensors") || !strcmp(de->d_name, "model.safetensors.index.json");
    closedir(d);
    return found;
}

/* Which reader: safetensors unless the path is clearly PyTorch (by name or first bytes). */
static bool is_torch_path(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return false;
    if (S_ISDIR(sb.st_mode))
        return !dir_has_safetensors(path) && ts_torch_dir_has_checkpoint(path);
    if (ends_with(path, ".safetensors") || ends_with(path, ".safetensors.index.json"))
        return false;
    if (ends_with(path, ".index.json"))
        return true;
    uint8_t head[8];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, head, sizeof head);
    close(fd);
    return n > 0 && ts_torch_sniff(head, (size_t)n);
}

static ts_status open_torch(ts_checkpoint *c, const char *path, ts_err *err)
{
    c->kind = TS_CKPT_TORCH;
    ts_status st = ts_torch_set_open(path, &c->pt, err);
    if (st)
        return st;
    c->owned = calloc(c->pt->n_tensors ? c->pt->n_tensors : 1, sizeof *c->owned);
    if (!c->owned)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    c->files = (const char **)c->pt->files;
    return TS_OK;
}

ts_status ts_checkpoint_open(const char *path, ts_checkpoint **out, ts_err *err)
{
    *out = NULL;
    ts_checkpoint *c = calloc(1, sizeof *c);
    if (!c)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    ts_status st;
    if (is_torch_path(path)) {
        if ((st = open_torch(c, path, err))) {
            ts_checkpoint_close(c);
            return st;
        }
        *out = c;
        return TS_OK;
    }
    c->kind = TS_CKPT_SAFETENSORS;
    st = ts_st_open(path, &c->st, err);
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
    if (c->st) {
        ts_st_close(c->st);
        free(c->files);
    }
    if (c->pt) {
        for (size_t i = 0; c->owned && i < c->pt->n_tensors; i++)
            free(c->owned[i]);
        ts_torch_set_close(c->pt); /* owns files */
    }
    free(c->owned);
    free(c);
}

ts_checkpoint_kind ts_checkpoint_kind_of(const ts_checkpoint *c) { return c->kind; }

size_t ts_checkpoint_n_tensors(const ts_checkpoint *c) { return c->pt ? c->pt->n_tensors : c->st->n_tensors; }

const ts_tensor *ts_checkpoint_tensor(const ts_checkpoint *c, size_t i)
{
    return c->pt ? &c->pt->tensors[i].t : &c->st->tensors[i].t;
}

const ts_tensor *ts_checkpoint_find(const ts_checkpoint *c, const char *name)
{
    if (c->pt) {
        const ts_torch_entry *e = ts_torch_set_find(c->pt, name);
        return e ? &e->t : NULL;
    }
    const ts_st_tensor *t = ts_st_find(c->st, name);
    return t ? &t->t : NULL;
}

const char *const *ts_checkpoint_files(const ts_checkpoint *c) { return c->files; }

uint64_t ts_checkpoint_data_bytes(const ts_checkpoint *c)
{
    uint64_t n = 0;
    for (size_t i = 0; i < ts_checkpoint_n_tensors(c); i++)
        n += ts_checkpoint_tensor(c, i)->nbytes;
    return n;
}

/* Descriptors start their entry structs, so t leads back to its entry. */
static size_t torch_index(const ts_checkpoint *c, const ts_tensor *t)
{
    return (size_t)((const ts_torch_entry *)t - c->pt->tensors);
}

ts_status ts_checkpoint_data(const ts_checkpoint *c, const ts_tensor *t, const void **data, ts_err *err)
{
    if (!c->pt) {
        *data = t->data; /* safetensors: always mapped and contiguous */
        return TS_OK;
    }
    size_t i = torch_index(c, t);
    if (c->owned[i]) { /* materialized already and not released */
        *data = c->owned[i];
        return TS_OK;
    }
    return ts_torch_set_data(c->pt, &c->pt->tensors[i], data, &c->owned[i], err);
}

void ts_checkpoint_release(const ts_checkpoint *c, const ts_tensor *t)
{
    if (c->pt) {
        size_t i = torch_index(c, t);
        free(c->owned[i]);
        c->owned[i] = NULL;
        ts_torch_set_release(c->pt, &c->pt->tensors[i]);
        return;
    }
    /* ts_st_tensor starts with its ts_tensor, so the descriptor leads back to its shard. */
    const ts_st_tensor *st = (const ts_st_tensor *)t;
    const ts_mapped_file *f = &c->st->files[st->file_index];
    ts_mapped_release(f, st->offset, t->nbytes);
}

void ts_checkpoint_release_range(const ts_checkpoint *c, const ts_tensor *t, uint64_t offset, uint64_t len)
{
    if (c->pt || c->st->borrowed || offset >= t->nbytes)
        return;
    if (len > t->nbytes - offset)
        len = t->nbytes - offset;
    const ts_st_tensor *st = (const ts_st_tensor *)t;
    const ts_mapped_file *f = &c->st->files[st->file_index];
    /* Outwards to whole pages (ts_mapped_release rounds inwards, which would
     * keep every page that straddles two successive ranges): the file is
     * mapped read-only, so a neighbour's page dropped here is only re-read. */
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), start = st->offset + offset;
    uint64_t back = start % page, end = start + len;
    end = (end + page - 1) / page * page;
    ts_mapped_release(f, start - back, end - (start - back));
}

void ts_checkpoint_release_all(const ts_checkpoint *c)
{
    if (c->pt || c->st->borrowed)
        return;
    for (size_t i = 0; i < c->st->n_files; i++)
        ts_mapped_release(&c->st->files[i], 0, c->st->files[i].size);
}
