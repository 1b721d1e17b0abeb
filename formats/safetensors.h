/* safetensors: single files and sharded checkpoints (model.safetensors.index.json),
 * mapped, validated. Layout: docs/formats/safetensors.md. */
#ifndef TS_SAFETENSORS_H
#define TS_SAFETENSORS_H

#include "core/ts.h"
#include "core/mapped_file.h"

/* A 0-d (scalar) tensor is reported as n_dims 1, ne {1,1,1,1}: ggml has no 0-d
 * tensors and every consumer handles [1]. Zero-sized dims are kept (nbytes 0). */
typedef struct {
    ts_tensor t;         /* t.ne in ggml order (reversed safetensors shape); t.data mapped */
    uint32_t file_index; /* which shard */
    uint64_t offset;     /* absolute byte offset of the data in that shard */
} ts_st_tensor;

typedef struct {
    char *key;
    char *value;
} ts_st_meta;

typedef struct {
    size_t n_files;
    ts_mapped_file *files;   /* shards sorted by file name, i.e. 00001-of-N first (one for a single file) */
    size_t n_tensors;
    ts_st_tensor *tensors;   /* sorted by (file_index, offset): the order that streams well */
    size_t n_meta;
    ts_st_meta *meta;        /* __metadata__ of the first file (string -> string) */
    /* private */
    bool borrowed;           /* files[0].data belongs to the caller (ts_st_open_memory) */
    size_t *by_name;         /* tensor indices sorted by name, for ts_st_find */
} ts_st_model;

/* path: a .safetensors file, a model.safetensors.index.json, or a directory
 * holding either. For an index: every shard it names must exist and hold
 * exactly the tensors the index assigns to it (a missing shard, a tensor in
 * the wrong shard, an extra tensor or an extra *.safetensors shard file of the
 * same series is an error naming it). */
ts_status ts_st_open(const char *path, ts_st_model **out, ts_err *err);
/* Parse one safetensors image from memory (fuzzing, tests). */
ts_status ts_st_open_memory(const void *data, size_t size, const char *name, ts_st_model **out, ts_err *err);
void ts_st_close(ts_st_model *m);
/* NULL when absent. */
const ts_st_tensor *ts_st_find(const ts_st_model *m, const char *name);
/* safetensors dtype string ("BF16", "F8_E4M3") -> ts_dtype, TS_DTYPE_INVALID if unknown. */
ts_dtype ts_st_dtype_from_string(const char *s);

#endif
