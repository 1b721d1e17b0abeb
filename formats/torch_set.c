/* A PyTorch checkpoint of one or more files: a single .bin/.pt/.pth, a
 * sharded pytorch_model-0000N-of-0000M.bin set with its index, or (through
 * torch_consolidated.c) Meta/Mistral consolidated.NN.pth shards. Presents one
 * flat list of tensors named without the training-checkpoint prefix. */
#define _GNU_SOURCE
#include "torch.h"
#include "torch_internal.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define INDEX_MAX_BYTES (100u << 20)

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* "consolidated.00.pth": digits between the dots. */
static bool consolidated_name(const char *name)
{
    const char *p = name + strlen("consolidated.");
    if (strncmp(name, "consolidated.", strlen("consolidated.")) || !*p)
        return false;
    const char *dot = strchr(p, '.');
    if (!dot || dot == p || strcmp(dot, ".pth") != 0)
        return false;
    for (const char *q = p; q < dot; q++)
        if (*q < '0' || *q > '9')
            return false;
    return true;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted, heap-allocated names in dir accepted by keep(). */
static ts_status list_dir(const char *dir, bool (*keep)(const char *), char ***out, size_t *n, ts_err *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return ts_fail(err, TS_ERR_IO, "%s: cannot list the directory", dir);
    size_t cap = 0;
    struct dirent *de;
    ts_status st = TS_OK;
    while ((de = readdir(d)) && st == TS_OK) {
        if (!keep(de->d_name))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            char **nl = realloc(*out, cap * sizeof *nl);
            if (!nl) {
                st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
                break;
            }
            *out = nl;
        }
        if (!((*out)[*n] = strdup(de->d_name)))
            st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
        else
            (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(*out, *n, sizeof **out, cmp_str);
    return st;
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

static bool torch_file_name(const char *name)
{
    return name[0] != '.' && (ends_with(name, ".bin") || ends_with(name, ".pt") || ends_with(name, ".pth"));
}

bool ts_torch_dir_has_checkpoint(const char *dir)
{
    char **l = NULL;
    size_t n;
    ts_err err;
    if (list_dir(dir, torch_file_name, &l, &n, &err) != TS_OK)
        return false;
    free_list(l, n);
    if (n)
        return true;
    char *idx = ts_path_join(dir, "pytorch_model.bin.index.json");
    bool has = idx && ts_file_exists(idx);
    free(idx);
    return has;
}

/* ---- building the entry list ---------------------------------------------------------- */

ts_status tset_add_shard(ts_torch_set *s, const char *path, ts_err *err)
{
    ts_torch_model **ns = realloc(s->shards, (s->n_shards + 1) * sizeof *ns);
    const char **nf = realloc(s->files, (s->n_shards + 2) * sizeof *nf);
    if (ns)
        s->shards = ns;
    if (nf)
        s->files = nf;
    if (!ns || !nf)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    ts_status st = ts_torch_open(path, &s->shards[s->n_shards], err);
    if (st)
        return st;
    s->files[s->n_shards] = s->shards[s->n_shards]->path;
    s->files[++s->n_shards] = NULL;
    return TS_OK;
}

static int entry_name_cmp(const void *a, const void *b, void *ctx)
{
    const ts_torch_set *s = ctx;
    return strcmp(s->tensors[*(const size_t *)a].t.name, s->tensors[*(const size_t *)b].t.name);
}

/* Sorts the name index; refuses a name found twice (in two shards). */
ts_status tset_index_names(ts_torch_set *s, ts_err *err)
{
    s->by_name = malloc((s->n_tensors ? s->n_tensors : 1) * sizeof *s->by_name);
    if (!s->by_name)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n_tensors; i++)
        s->by_name[i] = i;
    qsort_r(s->by_name, s->n_tensors, sizeof *s->by_name, entry_name_cmp, s);
    for (size_t i = 0; i + 1 < s->n_tensors; i++) {
        const ts_torch_entry *a = &s->tensors[s->by_name[i]], *b = &s->tensors[s->by_name[i + 1]];
        if (!strcmp(a->t.name, b->t.name))
            return ts_fail(err, TS_ERR_FORMAT, "tensor '%s' is in both %s and %s", a->t.name,
                           s->shards[a->shard]->path, s->shards[b->shard]->path);
    }
    return TS_OK;
}

/* One entry per tensor of every shard, in file order. */
ts_status tset_plain_entries(ts_torch_set *s, ts_err *err)
{
    size_t total = 0;
    for (size_t i = 0; i < s->n_shards; i++)
        total += s->shards[i]->n_tensors;
    s->tensors = calloc(total ? total : 1, sizeof *s->tensors);
    if (!s->tensors)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n_shards; i++) {
        const ts_torch_model *m = s->shards[i];
        for (size_t k = 0; k < m->n_tensors; k++) {
            ts_torch_entry *e = &s->tensors[s->n_tensors++];
            e->t = m->tensors[k].t;
            memmove(e->t.name, e->t.name + m->prefix_len, strlen(e->t.name + m->prefix_len) + 1);
            e->shard = (uint32_t)i;
            e->src = &m->tensors[k];
            e->n_parts = 1;
            e->axis = -1;
        }
    }
    return tset_index_names(s, err);
}

/* ---- pytorch_model.bin.index.json --------------------------------------------------------- */

static ts_status open_index(ts_torch_set *s, const char *index_path, ts_err *err)
{
    char *text = NULL;
    size_t len;
    ts_status st = ts_read_small_file(index_path, INDEX_MAX_BYTES, &text, &len, err);
    if (st)
        return st;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    json_t *map = root ? json_object_get(root, "weight_map") : NULL;
    if (!map || !json_is_object(map)) {
        json_decref(root);
        return ts_fail(err, TS_ERR_FORMAT, "%s: expected a JSON object with a \"weight_map\" object%s%s", index_path,
                       root ? "" : ": ", root ? "" : je.text);
    }
    char *dir = strdup(index_path), *slash = dir ? strrchr(dir, '/') : NULL;
    if (!dir) {
        json_decref(root);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    if (slash)
        *slash = 0;
    else
        strcpy(dir, ".");
    /* the distinct shard names, sorted */
    const char *key;
    json_t *v;
    char **names = NULL;
    size_t n = 0;
    json_object_foreach(map, key, v) {
        const char *f = json_is_string(v) ? json_string_value(v) : NULL;
        if (!f || !*f || strchr(f, '/') || !strcmp(f, "..") || !strcmp(f, ".")) {
            st = ts_fail(err, TS_ERR_FORMAT, "%s: weight_map[\"%s\"]: expected a file name in the same directory",
                         index_path, key);
            break;
        }
        size_t i;
        for (i = 0; i < n && strcmp(names[i], f); i++)
            ;
        if (i < n)
            continue;
        char **nn = realloc(names, (n + 1) * sizeof *nn);
        if (!nn || !(nn[n] = strdup(f))) {
            names = nn ? nn : names;
            st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
            break;
        }
        names = nn;
        n++;
    }
    if (st == TS_OK && n)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && st == TS_OK; i++) {
        char *p = ts_path_join(dir, names[i]);
        st = p ? tset_add_shard(s, p, err) : ts_fail(err, TS_ERR_NOMEM, "out of memory");
        free(p);
    }
    if (st == TS_OK)
        st = tset_plain_entries(s, err);
    /* every tensor where the index says, and nothing else */
    for (size_t i = 0; i < s->n_tensors && st == TS_OK; i++) {
        const ts_torch_entry *e = &s->tensors[i];
        json_t *f = json_object_get(map, e->t.name);
        const char *base = strrchr(s->shards[e->shard]->path, '/');
        base = base ? base + 1 : s->shards[e->shard]->path;
        if (!f || strcmp(json_string_value(f), base))
            st = ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s' is in %s but the index %s", index_path, e->t.name, base,
                         f ? "places it elsewhere" : "does not list it");
    }
    json_object_foreach(map, key, v) {
        if (st != TS_OK)
            break;
        if (!ts_torch_set_find(s, key))
            st = ts_fail(err, TS_ERR_FORMAT, "%s: tensor '%s' is listed for %s but that file does not hold it",
                         index_path, key, json_string_value(v));
    }
    free_list(names, n);
    free(dir);
    json_decref(root);
    return st;
}

/* ---- entry points ------------------------------------------------------------------------- */

static ts_status open_dir(ts_torch_set *s, const char *dir, ts_err *err)
{
    char *idx = ts_path_join(dir, "pytorch_model.bin.index.json");
    char *single = ts_path_join(dir, "pytorch_model.bin");
    ts_status st;
    char **l = NULL;
    size_t n = 0;
    if (!idx || !single)
        st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    else if (ts_file_exists(idx))
        st = open_index(s, idx, err);
    else if (ts_file_exists(single))
        st = (st = tset_add_shard(s, single, err)) ? st : tset_plain_entries(s, err);
    else if ((st = list_dir(dir, consolidated_name, &l, &n, err)) == TS_OK && n) {
        char **paths = calloc(n, sizeof *paths);
        for (size_t i = 0; paths && i < n; i++)
            paths[i] = ts_path_join(dir, l[i]);
        st = paths ? ts_torch_consolidated_open(dir, paths, n, s, err) : ts_fail(err, TS_ERR_NOMEM, "out of memory");
        free_list(paths, paths ? n : 0);
    } else if (st == TS_OK) {
        free_list(l, n);
        l = NULL;
        if ((st = list_dir(dir, torch_file_name, &l, &n, err)) == TS_OK) {
            if (n == 1) {
                char *p = ts_path_join(dir, l[0]);
                st = p ? tset_add_shard(s, p, err) : ts_fail(err, TS_ERR_NOMEM, "out of memory");
                free(p);
                if (st == TS_OK)
                    st = tset_plain_entries(s, err);
            } else {
                st = ts_fail(err, TS_ERR_FORMAT, "%s: no pytorch_model.bin, pytorch_model.bin.index.json or "
                             "consolidated.NN.pth, and %zu other .bin/.pt/.pth files; name the file to read", dir, n);
            }
        }
    }
    free_list(l, n);
    free(idx);
    free(single);
    return st;
}

/* One consolidated shard of several would read as slices: refuse and say why. */
static ts_status check_lone_shard(const char *path, ts_err *err)
{
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    if (!consolidated_name(base))
        return TS_OK;
    char *dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
    char **l = NULL;
    size_t n = 0;
    ts_status st = dir ? list_dir(dir, consolidated_name, &l, &n, err) : ts_fail(err, TS_ERR_NOMEM, "out of memory");
    if (st == TS_OK) {
        free_list(l, n);
        if (n > 1)
            st = ts_fail(err, TS_ERR_ARG, "%s is one of %zu tensor-parallel shards; pass the directory %s to read "
                         "them merged", path, n, dir);
    }
    free(dir);
    return st;
}

ts_status ts_torch_set_open(const char *path, ts_torch_set **out, ts_err *err)
{
    *out = NULL;
    ts_torch_set *s = calloc(1, sizeof *s);
    if (!s)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    ts_status st;
    if (is_dir(path))
        st = open_dir(s, path, err);
    else if (ends_with(path, ".index.json"))
        st = open_index(s, path, err);
    else if (!(st = check_lone_shard(path, err)) && !(st = tset_add_shard(s, path, err)))
        st = tset_plain_entries(s, err);
    if (st) {
        ts_torch_set_close(s);
        return st;
    }
    *out = s;
    return TS_OK;
}

void ts_torch_set_close(ts_torch_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_tensors; i++)
        if (s->tensors[i].n_parts > 1)
            free(s->tensors[i].parts);
    for (size_t i = 0; i < s->n_shards; i++)
        ts_torch_close(s->shards[i]);
    free(s->shards);
    free(s->files);
    free(s->tensors);
    free(s->by_name);
    free(s);
}

const ts_torch_entry *ts_torch_set_find(const ts_torch_set *s, const char *name)
{
    size_t lo = 0, hi = s->by_name ? s->n_tensors : 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const ts_torch_entry *e = &s->tensors[s->by_name[mid]];
        int c = strcmp(e->t.name, name);
        if (!c)
            return e;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

ts_status ts_torch_set_data(const ts_torch_set *s, const ts_torch_entry *e, const void **data, void **owned,
                            ts_err *err)
{
    if (e->n_parts > 1) {
        ts_status st = ts_torch_consolidated_data(s, e, owned, err);
        *data = st ? NULL : *owned;
        return st;
    }
    return ts_torch_data(s->shards[e->shard], e->src, data, owned, err);
}

void ts_torch_set_release(const ts_torch_set *s, const ts_torch_entry *e)
{
    if (e->n_parts > 1) {
        for (uint32_t p = 0; p < e->n_parts; p++)
            ts_torch_release(s->shards[p], e->parts[p]);
        return;
    }
    ts_torch_release(s->shards[e->shard], e->src);
}
