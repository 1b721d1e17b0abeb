/* GGUF v3: a validating reader over a mapped file and a streaming writer.
 * Layout: docs/formats/gguf.md. */
#ifndef TS_GGUF_H
#define TS_GGUF_H

#include "core/ts.h"
#include "core/mapped_file.h"

typedef enum {
    TS_GGUF_UINT8 = 0, TS_GGUF_INT8 = 1, TS_GGUF_UINT16 = 2, TS_GGUF_INT16 = 3,
    TS_GGUF_UINT32 = 4, TS_GGUF_INT32 = 5, TS_GGUF_FLOAT32 = 6, TS_GGUF_BOOL = 7,
    TS_GGUF_STRING = 8, TS_GGUF_ARRAY = 9, TS_GGUF_UINT64 = 10, TS_GGUF_INT64 = 11,
    TS_GGUF_FLOAT64 = 12,
} ts_gguf_type;

#define TS_GGUF_DEFAULT_ALIGNMENT 32

/* A GGUF string: not NUL-terminated in the file; ours are heap copies with a
 * terminating NUL added (len excludes it). Embedded NULs are refused by the reader. */
typedef struct {
    char *s;
    uint64_t len;
} ts_gguf_string;

typedef struct {
    ts_gguf_type type;
    union {
        uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
        uint64_t u64; int64_t i64; float f32; double f64; bool b;
        ts_gguf_string str;
        struct {
            ts_gguf_type elem_type; /* never ARRAY (nested arrays are refused) */
            uint64_t n;
            void *data; /* n elements of the C type of elem_type; ts_gguf_string[] for STRING */
        } arr;
    };
} ts_gguf_value;

typedef struct {
    char *key;
    ts_gguf_value value;
} ts_gguf_kv;

typedef struct {
    ts_tensor t;          /* t.data points into the mapping */
    uint64_t offset;      /* relative to data_offset, as stored */
} ts_gguf_tensor;

typedef struct {
    ts_mapped_file file;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset; /* absolute offset of the tensor data area */
    uint64_t n_kv;
    ts_gguf_kv *kv;
    uint64_t n_tensors;
    ts_gguf_tensor *tensors;
} ts_gguf;

/* Open and validate a GGUF file (v2 and v3 read; v1 refused). Every count,
 * length, type, dimension, offset and size is checked against the file size;
 * tensors must lie inside the data area, be aligned and not overlap; keys and
 * tensor names must be valid UTF-8 and unique. */
ts_status ts_gguf_open(const char *path, ts_gguf **out, ts_err *err);
/* Same over a caller-owned buffer (fuzzing, tests); name is used in messages. */
ts_status ts_gguf_open_memory(const void *data, size_t size, const char *name, ts_gguf **out, ts_err *err);
void ts_gguf_close(ts_gguf *g);

const ts_gguf_kv *ts_gguf_find_kv(const ts_gguf *g, const char *key);
/* Index of the tensor or -1. */
int64_t ts_gguf_find_tensor(const ts_gguf *g, const char *name);
/* Typed getters: false when missing or of another type (ints widen between
 * integer types when the value fits). */
bool ts_gguf_get_u64(const ts_gguf *g, const char *key, uint64_t *out);
bool ts_gguf_get_i64(const ts_gguf *g, const char *key, int64_t *out);
bool ts_gguf_get_f64(const ts_gguf *g, const char *key, double *out); /* FLOAT32/FLOAT64 */
bool ts_gguf_get_bool(const ts_gguf *g, const char *key, bool *out);
const char *ts_gguf_get_str(const ts_gguf *g, const char *key);
const char *ts_gguf_type_name(ts_gguf_type t);

/* ---- writer ----
 * Usage: new -> set_* / add_tensor (any order; a key set twice is replaced in
 * place) -> begin(path) writes the header -> write_tensor_data for every tensor
 * in the order added (each call may pass part of a tensor's bytes; padding is
 * written automatically once a tensor is complete) -> finish renames the temp
 * file onto path. free() without finish removes the temp file. */
typedef struct ts_gguf_writer ts_gguf_writer;

ts_status ts_gguf_writer_new(ts_gguf_writer **out, ts_err *err);
void ts_gguf_writer_free(ts_gguf_writer *w);

ts_status ts_gguf_set_u8(ts_gguf_writer *w, const char *key, uint8_t v);
ts_status ts_gguf_set_i8(ts_gguf_writer *w, const char *key, int8_t v);
ts_status ts_gguf_set_u16(ts_gguf_writer *w, const char *key, uint16_t v);
ts_status ts_gguf_set_i16(ts_gguf_writer *w, const char *key, int16_t v);
ts_status ts_gguf_set_u32(ts_gguf_writer *w, const char *key, uint32_t v);
ts_status ts_gguf_set_i32(ts_gguf_writer *w, const char *key, int32_t v);
ts_status ts_gguf_set_u64(ts_gguf_writer *w, const char *key, uint64_t v);
ts_status ts_gguf_set_i64(ts_gguf_writer *w, const char *key, int64_t v);
ts_status ts_gguf_set_f32(ts_gguf_writer *w, const char *key, float v);
ts_status ts_gguf_set_f64(ts_gguf_writer *w, const char *key, double v);
ts_status ts_gguf_set_bool(ts_gguf_writer *w, const char *key, bool v);
ts_status ts_gguf_set_str(ts_gguf_writer *w, const char *key, const char *v);
/* Array of a scalar type: data holds n elements of elem_type's C type (bool as 1 byte). */
ts_status ts_gguf_set_arr(ts_gguf_writer *w, const char *key, ts_gguf_type elem_type, const void *data, uint64_t n);
ts_status ts_gguf_set_arr_str(ts_gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
/* Copy any value (e.g. from a reader). */
ts_status ts_gguf_set_value(ts_gguf_writer *w, const char *key, const ts_gguf_value *v);
bool ts_gguf_writer_has_key(const ts_gguf_writer *w, const char *key);
/* Remove a key if present. */
void ts_gguf_writer_remove(ts_gguf_writer *w, const char *key);
/* Sets general.alignment too when != 32. Must be called before begin. */
ts_status ts_gguf_set_alignment(ts_gguf_writer *w, uint32_t alignment);

/* ne in ggml order. Refuses duplicate names, names over 63 bytes (GGML_MAX_NAME-1),
 * a row length that is not a multiple of the type's block size. */
ts_status ts_gguf_add_tensor(ts_gguf_writer *w, const char *name, ts_dtype type, int n_dims,
                             const int64_t *ne, ts_err *err);
uint64_t ts_gguf_writer_n_tensors(const ts_gguf_writer *w);
/* Byte size of tensor i as it will be written (without padding). */
uint64_t ts_gguf_writer_tensor_bytes(const ts_gguf_writer *w, uint64_t i);

/* Tensor checksums (docs/formats/gguf.md, "Tensor checksums"): when on, begin
 * adds TS_GGUF_KEY_CHECKSUM_ALGO = "xxh3_64", TS_GGUF_KEY_CHECKSUM_TENSOR_INFO
 * (ts_gguf_tensor_info_hash of the tensor table the checksums describe) and
 * TS_GGUF_KEY_CHECKSUM_TENSORS, a UINT64 array holding XXH3_64bits (seed 0)
 * of each tensor's data bytes (padding excluded) in tensor order, reserved
 * as zeros and filled in by finish. Files without tensors get no keys. Off
 * (the default), begin drops those keys if they were copied from another
 * file. Call before begin. */
#define TS_GGUF_KEY_CHECKSUM_ALGO "tessera.checksum.algo"
#define TS_GGUF_KEY_CHECKSUM_TENSOR_INFO "tessera.checksum.tensor_info"
#define TS_GGUF_KEY_CHECKSUM_TENSORS "tessera.checksum.tensors"
#define TS_GGUF_CHECKSUM_ALGO "xxh3_64"
void ts_gguf_writer_enable_checksums(ts_gguf_writer *w, bool on);
/* XXH3-64 of the tensor table without offsets: per tensor in order, the name
 * and a NUL, u32 n_dims, n_dims x i64 ne, u32 type (little-endian). Tools
 * that copy every key into a file with other tensors (llama-quantize does)
 * carry stale checksums; this tells them apart from damaged data. */
uint64_t ts_gguf_tensor_info_hash(const ts_gguf *g);

/* inputs: NULL-terminated list of input paths that must not be overwritten. */
ts_status ts_gguf_writer_begin(ts_gguf_writer *w, const char *path, const char *const *inputs, ts_err *err);
ts_status ts_gguf_write_tensor_data(ts_gguf_writer *w, const void *data, uint64_t nbytes, ts_err *err);
ts_status ts_gguf_writer_finish(ts_gguf_writer *w, ts_err *err);

#endif
