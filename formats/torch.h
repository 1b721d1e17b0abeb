/* PyTorch checkpoints read without executing them: the zip container
 * (torch >= 1.6), the legacy container, plain pickles of tensors, sharded
 * pytorch_model.bin with an index, and Meta/Mistral consolidated.NN.pth
 * tensor-parallel shards. Layout: docs/formats/pytorch.md; what is refused
 * and why: docs/security.md. */
#ifndef TS_TORCH_H
#define TS_TORCH_H

#include "core/ts.h"
#include "core/mapped_file.h"

typedef enum { TS_TORCH_ZIP, TS_TORCH_LEGACY, TS_TORCH_PICKLE } ts_torch_format;

/* One storage: a flat run of bytes that tensors view. */
typedef struct {
    ts_dtype dtype;
    uint64_t nbytes;
    const uint8_t *data;  /* mapped bytes; NULL when its zip entry is compressed */
    uint64_t file_offset; /* where data starts in the file (valid when in_file) */
    bool in_file;         /* data lies in the mapped file (not in a decoded pickle blob) */
    int64_t zip_entry;    /* its entry in the zip directory, -1 for other formats */
} ts_torch_storage;

/* A 0-d tensor is reported as n_dims 1, ne {1,1,1,1} (like safetensors.h);
 * empty tensors keep their zero dims and have nbytes 0. */
typedef struct {
    ts_tensor t;        /* name: dotted path from the top-level object ("model.tok_embeddings.weight");
                           ne in ggml order; t.data mapped when contiguous and stored, else NULL */
    uint32_t storage;
    uint64_t offset;    /* bytes into the storage of element 0 */
    int64_t stride[TS_MAX_DIMS]; /* elements; stride[i] steps ne[i] (ggml order) */
    bool contiguous;    /* C order without gaps: the bytes are one run */
} ts_torch_tensor;

struct ts_torch_private;

typedef struct {
    char *path;
    ts_torch_format format;
    size_t n_tensors;
    ts_torch_tensor *tensors;   /* in storage order: the order that reads the file sequentially */
    size_t n_storages;
    ts_torch_storage *storages;
    /* The state dict was found under a key of a training checkpoint ("model",
     * "state_dict", "module", "model_state_dict"): every name starts with
     * that key and a dot, prefix_len bytes. 0 for a top-level state dict. */
    size_t prefix_len;
    struct ts_torch_private *priv;
} ts_torch_model;

/* path: a torch.save file of either container, or a plain pickle. */
ts_status ts_torch_open(const char *path, ts_torch_model **out, ts_err *err);
/* The same from memory (fuzzing, tests); data must outlive the model. */
ts_status ts_torch_open_memory(const void *data, size_t size, const char *name, ts_torch_model **out, ts_err *err);
void ts_torch_close(ts_torch_model *m);
const ts_torch_tensor *ts_torch_find(const ts_torch_model *m, const char *name);
/* The tensor's bytes in C order. Mapped when they are one stored run;
 * otherwise materialized into *owned (the caller frees it). The zip CRC-32 of
 * a storage is checked the first time any tensor of it is read. */
ts_status ts_torch_data(const ts_torch_model *m, const ts_torch_tensor *t, const void **data, void **owned,
                        ts_err *err);
/* Drop the mapped pages of t (streaming keeps RSS bounded). */
void ts_torch_release(const ts_torch_model *m, const ts_torch_tensor *t);
/* True when the file starts like a zip or a pickle (first bytes only). */
bool ts_torch_sniff(const uint8_t *head, size_t n);

/* ---- checkpoints of one or more files (torch_set.c, torch_consolidated.c) ---- */

typedef struct {
    ts_tensor t;               /* name without the state-dict prefix; data as the source's */
    uint32_t shard;            /* first (or only) source file */
    const ts_torch_tensor *src;
    /* consolidated tensor-parallel shards: n_parts > 1 slices, concatenated on
     * torch dimension axis (materialized on read) */
    uint32_t n_parts;
    int axis;
    const ts_torch_tensor **parts;
} ts_torch_entry;

typedef struct {
    size_t n_shards;
    ts_torch_model **shards;
    const char **files;        /* NULL-terminated shard paths */
    size_t n_tensors;
    ts_torch_entry *tensors;   /* sorted by (shard, storage order) */
    size_t *by_name;
    bool consolidated;         /* Meta/Mistral consolidated.NN.pth */
} ts_torch_set;

/* path: a .bin/.pt/.pth/.pkl file, a *.bin.index.json, or a directory with
 * pytorch_model.bin, pytorch_model.bin.index.json + shards, or
 * consolidated.NN.pth (+ params.json). */
ts_status ts_torch_set_open(const char *path, ts_torch_set **out, ts_err *err);
void ts_torch_set_close(ts_torch_set *s);
const ts_torch_entry *ts_torch_set_find(const ts_torch_set *s, const char *name);
ts_status ts_torch_set_data(const ts_torch_set *s, const ts_torch_entry *e, const void **data, void **owned,
                            ts_err *err);
void ts_torch_set_release(const ts_torch_set *s, const ts_torch_entry *e);
/* Whether a directory holds a PyTorch layout this reader knows (and no
 * safetensors, which is preferred). */
bool ts_torch_dir_has_checkpoint(const char *dir);

/* consolidated.NN.pth shards (torch_consolidated.c); used by ts_torch_set_open. */
ts_status ts_torch_consolidated_open(const char *dir, char **paths, size_t n_paths, ts_torch_set *s, ts_err *err);
ts_status ts_torch_consolidated_data(const ts_torch_set *s, const ts_torch_entry *e, void **owned, ts_err *err);

#endif
