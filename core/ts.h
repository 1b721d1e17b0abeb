/* Tessera core: status codes, error messages, dtypes and the tensor descriptor.
 * Shared by every room; knows nothing about any file format or model. */
#ifndef TS_CORE_H
#define TS_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#if defined(__GNUC__)
#define TS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TS_PRINTF(a, b)
#endif

typedef enum {
    TS_OK = 0,
    TS_ERR_IO,        /* open/read/write/mmap failed */
    TS_ERR_FORMAT,    /* input bytes do not follow the format */
    TS_ERR_UNSUPPORTED, /* valid input we do not handle (yet) */
    TS_ERR_ARG,       /* bad argument from the caller/user */
    TS_ERR_NOMEM,
    TS_ERR_LIMIT,     /* a count/size exceeds a safety limit */
    TS_ERR_INTERNAL,
} ts_status;

/* Every function that can fail takes a ts_err* and fills msg with a sentence
 * naming the file, tensor or offset and what was expected. */
typedef struct {
    ts_status code;
    char msg[1024];
} ts_err;

/* Set err (if not NULL) and return code. */
ts_status ts_fail(ts_err *err, ts_status code, const char *fmt, ...) TS_PRINTF(3, 4);
/* Prefix an existing message: "<prefix>: <old msg>". Returns err->code. */
ts_status ts_err_prefix(ts_err *err, const char *fmt, ...) TS_PRINTF(2, 3);
const char *ts_status_name(ts_status s);

/* Element/block types. Values below 64 are ggml's type ids (they go into GGUF
 * unchanged); the others exist only in input formats. */
typedef enum {
    TS_F32 = 0, TS_F16 = 1, TS_Q4_0 = 2, TS_Q4_1 = 3, TS_Q5_0 = 6, TS_Q5_1 = 7,
    TS_Q8_0 = 8, TS_Q8_1 = 9, TS_Q2_K = 10, TS_Q3_K = 11, TS_Q4_K = 12,
    TS_Q5_K = 13, TS_Q6_K = 14, TS_Q8_K = 15, TS_IQ2_XXS = 16, TS_IQ2_XS = 17,
    TS_IQ3_XXS = 18, TS_IQ1_S = 19, TS_IQ4_NL = 20, TS_IQ3_S = 21, TS_IQ2_S = 22,
    TS_IQ4_XS = 23, TS_I8 = 24, TS_I16 = 25, TS_I32 = 26, TS_I64 = 27,
    TS_F64 = 28, TS_IQ1_M = 29, TS_BF16 = 30, TS_TQ1_0 = 34, TS_TQ2_0 = 35,
    TS_MXFP4 = 39,
    TS_GGML_TYPE_COUNT = 43,
    /* input-only dtypes */
    TS_U8 = 100, TS_BOOL = 101, TS_F8_E4M3 = 102, TS_F8_E5M2 = 103,
    TS_U16 = 104, TS_U32 = 105, TS_U64 = 106,
    TS_DTYPE_INVALID = -1,
} ts_dtype;

typedef struct {
    ts_dtype type;
    const char *name;      /* ggml name ("f32", "q4_K") or safetensors name for input-only types */
    uint32_t block_size;   /* elements per block (1 for plain types) */
    uint32_t block_bytes;  /* bytes per block */
    bool is_ggml;          /* may appear in a GGUF file */
    bool is_float;         /* plain float element type (F64/F32/F16/BF16/F8) */
} ts_dtype_info;

/* NULL for unknown types. */
const ts_dtype_info *ts_dtype_get(ts_dtype t);
const char *ts_dtype_name(ts_dtype t);
/* Case-insensitive lookup by ggml name ("q8_0", "bf16"); TS_DTYPE_INVALID if unknown. */
ts_dtype ts_dtype_from_name(const char *name);
/* Bytes for n elements (n must be a multiple of block_size); false on overflow
 * or a partial block. */
bool ts_dtype_row_bytes(ts_dtype t, uint64_t n, uint64_t *out_bytes);

#define TS_MAX_DIMS 4
#define TS_MAX_NAME 256

/* A tensor descriptor. Shape is in ggml order: ne[0] is the innermost
 * (contiguous) dimension, i.e. the reverse of the PyTorch/safetensors shape.
 * Unused trailing dims are 1. */
typedef struct {
    char name[TS_MAX_NAME];
    ts_dtype dtype;
    int n_dims;
    int64_t ne[TS_MAX_DIMS];
    const void *data;   /* mapped bytes, or NULL when not yet materialized */
    uint64_t nbytes;
} ts_tensor;

/* Total elements; false on overflow or a negative dim. */
bool ts_shape_nelements(int n_dims, const int64_t *ne, uint64_t *out);
/* "[4096, 11008]" in ggml order into buf. */
const char *ts_shape_str(int n_dims, const int64_t *ne, char *buf, size_t n);

/* Checked arithmetic. */
static inline bool ts_add_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_add_overflow(a, b, r); }
static inline bool ts_mul_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_mul_overflow(a, b, r); }

#endif
