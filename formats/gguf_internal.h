/* Pieces shared by the GGUF reader (gguf.c) and writer (gguf_write.c).
 * Not a public header: only formats/gguf*.c include it. */
#ifndef TS_GGUF_INTERNAL_H
#define TS_GGUF_INTERNAL_H

#include "gguf.h"

#define TS_GGUF_MAX_STRING (1ull << 30) /* same cap as llama.cpp's GGUF_MAX_STRING_LENGTH */
#define TS_GGUF_MAX_NAME 63             /* GGML_MAX_NAME (64) minus the NUL */

/* Bytes of one element of a scalar type; 0 for STRING, ARRAY and unknown. */
size_t ts_gguf_scalar_size(ts_gguf_type t);
bool ts_gguf_type_known(uint32_t t);
bool ts_gguf_utf8_valid(const uint8_t *s, uint64_t n);
/* Little-endian file bytes <-> the C value (dst/src may be &value->u8). */
void ts_gguf_decode_scalar(ts_gguf_type t, const uint8_t *src, void *dst);
void ts_gguf_encode_scalar(ts_gguf_type t, const void *src, uint8_t *dst);
/* Frees what a value owns (a string array is one block: headers then bytes). */
void ts_gguf_value_free(ts_gguf_value *v);
/* Byte size of a ggml tensor; NULL on success, else the reason it has none. */
const char *ts_gguf_tensor_size(ts_dtype type, int n_dims, const int64_t *ne, uint64_t *out);

/* Open-addressing index from names to array positions. */
typedef const char *(*ts_gguf_name_fn)(const void *ctx, uint64_t i);
typedef struct {
    uint64_t *slots; /* position + 1; 0 = empty */
    uint64_t mask;
    uint64_t count;
} ts_gguf_index;

int64_t ts_gguf_ix_find(const ts_gguf_index *ix, const char *name, ts_gguf_name_fn fn, const void *ctx);
bool ts_gguf_ix_add(ts_gguf_index *ix, uint64_t idx, ts_gguf_name_fn fn, const void *ctx);
void ts_gguf_ix_free(ts_gguf_index *ix);

/* Read access to a writer's key/values and tensor table (gguf_split.c builds
 * split parts from a complete writer). i must be below the counts. */
uint64_t ts_gguf_writer_n_kv(const ts_gguf_writer *w);
const ts_gguf_kv *ts_gguf_writer_kv(const ts_gguf_writer *w, uint64_t i);
bool ts_gguf_writer_checksums(const ts_gguf_writer *w);
void ts_gguf_writer_tensor_info(const ts_gguf_writer *w, uint64_t i, const char **name, ts_dtype *type, int *n_dims,
                                const int64_t **ne);

#endif
