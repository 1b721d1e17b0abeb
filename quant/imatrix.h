/* Importance matrices as llama.cpp's llama-imatrix writes them: the GGUF
 * format (tensors "<name>.in_sum2" [n_per_row, n_mat] and "<name>.counts"
 * [1, n_mat], keys imatrix.datasets / chunk_count / chunk_size) and the
 * legacy .dat format. Both become per-column weights the way llama-quantize
 * makes them: sums / count per matrix (expert), 1 for an expert that saw no
 * calibration tokens. Layout: docs/quantize.md#imatrix-files. */
#ifndef TS_QUANT_IMATRIX_H
#define TS_QUANT_IMATRIX_H

#include "core/ts.h"

typedef struct {
    char *name;           /* model tensor name, "blk.0.ffn_down_exps.weight" */
    int64_t n_values;     /* n_per_row * n_mat */
    int64_t n_mat;        /* matrices the statistics were kept for: 1, or the expert count */
    float *weights;       /* n_values importance weights, expert-major */
    int64_t n_mat_unseen; /* experts with a zero count (their weights are all 1) */
} ts_imatrix_entry;

typedef struct {
    char *path;
    bool legacy;          /* .dat format */
    size_t n_entries;
    ts_imatrix_entry *entries; /* sorted by name */
    size_t n_datasets;
    char **datasets;
    int64_t chunk_count;  /* -1 when the file does not say */
    int64_t chunk_size;   /* tokens per chunk; -1 when the file does not say (always for .dat) */
} ts_imatrix;

/* Reads either format (GGUF when the file starts with "GGUF"). Refuses a file
 * with no entries, sums without counts (or the reverse), non-F32 tensors,
 * sizes that do not divide, truncated data, and non-finite or negative values. */
ts_status ts_imatrix_load(const char *path, ts_imatrix **out, ts_err *err);
void ts_imatrix_free(ts_imatrix *im);
const ts_imatrix_entry *ts_imatrix_find(const ts_imatrix *im, const char *name);

#endif
