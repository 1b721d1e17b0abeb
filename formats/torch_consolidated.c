/* Meta/Mistral original checkpoints: consolidated.00.pth .. consolidated.NN.pth
 * (+ params.json). With several files each holds one tensor-parallel slice
 * (Meta's fairscale layers): ColumnParallelLinear weights (wq, wk, wv, w1, w3,
 * output) are split on torch dim 0, RowParallelLinear weights (wo, w2) on dim
 * 1, ParallelEmbedding (Llama 1/2 tok_embeddings) on dim 1 and
 * VocabParallelEmbedding (Llama 3) on dim 0; norms are replicated. The merged
 * tensors keep Meta's names; mapping them to GGUF is convert's business. */
#define _GNU_SOURCE
#include "torch.h"
#include "torch_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *suffix;
    int axis;
} split_rules[] = {
    {".attention.wq.weight", 0}, {".attention.wk.weight", 0}, {".attention.wv.weight", 0},
    {".attention.wo.weight", 1}, {".w1.weight", 0}, {".w3.weight", 0}, {".w2.weight", 1},
};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* params.json "dim" tells the two embedding splits apart; 0 when unknown. */
static int64_t params_dim(const char *dir)
{
    char *path = ts_path_join(dir, "params.json");
    json_t *root = path ? json_load_file(path, JSON_REJECT_DUPLICATES, NULL) : NULL;
    free(path);
    json_t *d = root ? json_object_get(root, "dim") : NULL;
    int64_t dim = d && json_is_integer(d) ? (int64_t)json_integer_value(d) : 0;
    json_decref(root);
    return dim;
}

/* Torch dimension the shards are concatenated on, -1 for replicated, -2 unknown. */
static int split_axis(const char *name, const ts_tensor *t0, int64_t dim)
{
    if (t0->n_dims == 1)
        return -1;
    if (!strcmp(name, "output.weight"))
        return 0;
    if (!strcmp(name, "tok_embeddings.weight"))
        return dim > 0 && t0->ne[0] == dim ? 0 : 1; /* ne[0] is torch dim 1 */
    for (size_t i = 0; i < sizeof split_rules / sizeof split_rules[0]; i++)
        if (ends_with(name, split_rules[i].suffix))
            return split_rules[i].axis;
    return -2;
}

static ts_status merge_entry(ts_torch_set *s, ts_torch_entry *e, const ts_torch_tensor *t0, int64_t dim, ts_err *err)
{
    size_t n = s->n_shards;
    const ts_torch_model *m0 = s->shards[0];
    e->t = t0->t;
    memmove(e->t.name, e->t.name + m0->prefix_len, strlen(e->t.name + m0->prefix_len) + 1);
    e->t.data = NULL;
    e->shard = 0;
    e->src = t0;
    e->n_parts = (uint32_t)n;
    e->parts = calloc(n, sizeof *e->parts);
    if (!e->parts)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    e->axis = split_axis(e->t.name, &t0->t, dim);
    if (e->axis == -2)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: tensor '%s': unknown how tensor-parallel shards split it "
                       "(known: wq wk wv w1 w3 output on dim 0, wo w2 on dim 1, tok_embeddings, 1-D replicated)",
                       m0->path, e->t.name);
    int g = e->axis >= 0 ? t0->t.n_dims - 1 - e->axis : -1; /* the ggml dim that grows */
    int64_t merged = 0;
    for (size_t k = 0; k < n; k++) {
        const ts_torch_tensor *t = ts_torch_find(s->shards[k], t0->t.name);
        if (!t)
            return ts_fail(err, TS_ERR_FORMAT, "tensor '%s' is in %s but not in %s", t0->t.name, m0->path,
                           s->shards[k]->path);
        if (t->t.dtype != t0->t.dtype || t->t.n_dims != t0->t.n_dims)
            return ts_fail(err, TS_ERR_FORMAT, "tensor '%s': %s and %s disagree on dtype or rank", t0->t.name,
                           m0->path, s->shards[k]->path);
        for (int d = 0; d < TS_MAX_DIMS; d++)
            if (d != g && t->t.ne[d] != t0->t.ne[d])
                return ts_fail(err, TS_ERR_FORMAT, "tensor '%s': shapes in %s and %s differ outside the split "
                               "dimension", t0->t.name, m0->path, s->shards[k]->path);
        e->parts[k] = t;
        if (g >= 0 && __builtin_add_overflow(merged, t->t.ne[g], &merged))
            return ts_fail(err, TS_ERR_FORMAT, "tensor '%s': merged size overflows", t0->t.name);
    }
    if (g >= 0)
        e->t.ne[g] = merged;
    uint64_t numel;
    if (!ts_shape_nelements(TS_MAX_DIMS, e->t.ne, &numel) ||
        !ts_mul_u64(numel, tp_dtype_size(e->t.dtype), &e->t.nbytes))
        return ts_fail(err, TS_ERR_FORMAT, "tensor '%s': merged size overflows", t0->t.name);
    return TS_OK;
}

ts_status ts_torch_consolidated_open(const char *dir, char **paths, size_t n_paths, ts_torch_set *s, ts_err *err)
{
    s->consolidated = true;
    ts_status st = TS_OK;
    for (size_t i = 0; i < n_paths && st == TS_OK; i++)
        st = tset_add_shard(s, paths[i], err);
    if (st || n_paths == 1)
        return st ? st : tset_plain_entries(s, err);
    const ts_torch_model *m0 = s->shards[0];
    for (size_t k = 1; k < s->n_shards; k++)
        if (s->shards[k]->n_tensors != m0->n_tensors)
            return ts_fail(err, TS_ERR_FORMAT, "%s holds %zu tensors but %s holds %zu: not slices of one model",
                           m0->path, m0->n_tensors, s->shards[k]->path, s->shards[k]->n_tensors);
    s->tensors = calloc(m0->n_tensors ? m0->n_tensors : 1, sizeof *s->tensors);
    if (!s->tensors)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    int64_t dim = params_dim(dir);
    for (size_t i = 0; i < m0->n_tensors && st == TS_OK; i++)
        st = merge_entry(s, &s->tensors[s->n_tensors++], &m0->tensors[i], dim, err);
    return st ? st : tset_index_names(s, err);
}

ts_status ts_torch_consolidated_data(const ts_torch_set *s, const ts_torch_entry *e, void **owned, ts_err *err)
{
    *owned = NULL;
    uint32_t n = e->n_parts;
    const void **src = calloc(n, sizeof *src);
    void **own = calloc(n, sizeof *own);
    uint8_t *buf = malloc(e->t.nbytes ? (size_t)e->t.nbytes : 1);
    ts_status st = src && own && buf ? TS_OK
                                     : ts_fail(err, TS_ERR_NOMEM, "out of memory merging '%s' (%llu bytes)", e->t.name,
                                               (unsigned long long)e->t.nbytes);
    for (uint32_t p = 0; p < n && st == TS_OK; p++)
        st = ts_torch_data(s->shards[p], e->parts[p], &src[p], &own[p], err);
    if (st == TS_OK && e->axis < 0) {
        memcpy(buf, src[0], (size_t)e->t.nbytes);
        for (uint32_t p = 1; p < n && st == TS_OK; p++)
            if (memcmp(src[p], buf, (size_t)e->t.nbytes))
                st = ts_fail(err, TS_ERR_FORMAT, "replicated tensor '%s' differs between %s and %s", e->t.name,
                             s->shards[0]->path, s->shards[p]->path);
    } else if (st == TS_OK) {
        /* torch order: outer = dims before the axis; each part contributes one
         * contiguous chunk (dims from the axis on) per outer index */
        int nd = e->t.n_dims, g = nd - 1 - e->axis;
        uint64_t outer = 1, es = tp_dtype_size(e->t.dtype);
        for (int d = g + 1; d < nd; d++)
            outer *= (uint64_t)e->t.ne[d];
        uint8_t *dst = buf;
        for (uint64_t o = 0; o < outer; o++)
            for (uint32_t p = 0; p < n; p++) {
                uint64_t chunk = es;
                for (int d = 0; d <= g; d++)
                    chunk *= (uint64_t)e->parts[p]->t.ne[d];
                memcpy(dst, (const uint8_t *)src[p] + o * chunk, (size_t)chunk);
                dst += chunk;
            }
    }
    for (uint32_t p = 0; own && p < n; p++)
        free(own[p]);
    free(own);
    free(src);
    if (st) {
        free(buf);
        return st;
    }
    *owned = buf;
    return TS_OK;
}
