/* Importance-matrix collection, the way llama.cpp's llama-imatrix
 * (tools/imatrix/imatrix.cpp) does it, over the reference forward pass:
 * the calibration text's tokens cut into chunks of n_ctx (each chunk's
 * first token replaced by BOS when the model adds one), every token of
 * every chunk evaluated, and for each weight matrix the forward pass
 * multiplies, per input column, the sum of the squared input activations
 * and the number of tokens that went through it. Stacked expert tensors
 * keep one row of sums and one count per expert (the tokens routed to it).
 * Written in llama.cpp's GGUF imatrix layout (docs/imatrix.md), which
 * quant/imatrix.h reads back. */
#ifndef TS_IMATRIX_COLLECT_H
#define TS_IMATRIX_COLLECT_H

#include "verify/model.h"

/* One weight's statistics: sums[e * n_per_row + j] and counts[e] for
 * matrix (expert) e of n_mat. */
typedef struct {
    char *name; /* the weight's tensor name, "blk.0.attn_q.weight" */
    int64_t n_per_row, n_mat;
    float *sums;
    int64_t *counts;
} ts_imatrix_stat;

typedef struct {
    size_t n_stats;
    ts_imatrix_stat *stats; /* sorted by name (strcmp), as llama-imatrix stores them */
    size_t n_datasets;
    char **datasets;     /* calibration file names */
    int64_t chunk_count; /* max count / chunk_size, as llama-imatrix's m_last_chunk */
    int64_t chunk_size;  /* tokens per chunk (n_ctx) */
} ts_imatrix_data;

void ts_imatrix_data_free(ts_imatrix_data *d);

typedef struct {
    int64_t n_ctx;       /* tokens per chunk, at least 16 */
    int64_t max_chunks;  /* <= 0: every whole chunk the text holds */
    int64_t n_seq;       /* chunks evaluated together (llama-imatrix: n_batch / n_ctx); < 1 means 1 */
    bool add_bos;        /* replace each chunk's first token by bos */
    int32_t bos;
    bool process_output; /* also collect output.weight (llama-imatrix --process-output) */
    const char *dataset; /* recorded in imatrix.datasets; may be NULL */
} ts_imatrix_params;

typedef struct {
    int64_t chunk, n_chunks;
    double seconds;
} ts_imatrix_progress;
typedef void (*ts_imatrix_progress_fn)(void *ctx, const ts_imatrix_progress *p);

/* Collects over tokens[0..n_tokens) (the whole text, tokenized with BOS
 * added where the model adds one). Fails with TS_ERR_ARG when the text holds
 * fewer than 2 * n_ctx tokens (llama-imatrix's rule), TS_ERR_FORMAT when an
 * activation is not finite. The model's matmul hook is used (and removed
 * again). */
ts_status ts_imatrix_collect(ts_model *m, const int32_t *tokens, int64_t n_tokens, const ts_imatrix_params *p,
                             ts_imatrix_progress_fn cb, void *cb_ctx, ts_imatrix_data *out, ts_err *err);

/* Writes d in llama-imatrix's GGUF layout: general.type = "imatrix",
 * imatrix.datasets (string array), imatrix.chunk_count and chunk_size
 * (u32), then per entry in name order "<name>.in_sum2" (F32, [n_per_row,
 * n_mat]) and "<name>.counts" (F32, [1, n_mat]); trailing dimensions of 1
 * dropped as ggml's writer does. Atomic (temp file + rename); keep: NULL-
 * terminated paths that must not be overwritten. */
ts_status ts_imatrix_write(const ts_imatrix_data *d, const char *path, const char *const *keep, ts_err *err);

#endif
