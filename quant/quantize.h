/* tessera quantize: a GGUF (F32/F16/BF16, or quantized with allow_requantize)
 * or a Hugging Face checkpoint -> a GGUF in one of llama.cpp's mixes, planned
 * first (planner.h), then streamed tensor by tensor, row chunk by row chunk,
 * into an atomically renamed file. See docs/quantize.md. */
#ifndef TS_QUANTIZE_H
#define TS_QUANTIZE_H

#include "formats/gguf.h"
#include "formats/gguf_split.h"
#include "planner.h"

typedef struct {
    const char *input;    /* GGUF file, or model directory / .safetensors / PyTorch checkpoint */
    const char *output;   /* .gguf path (unused in a dry run) */
    const char *ftype;    /* "Q4_K_M", case-insensitive */
    int n_threads;        /* <= 0: CPU count */
    const char *output_tensor_type;   /* ggml type name, or NULL */
    const char *token_embedding_type; /* ggml type name, or NULL */
    const char *const *tensor_types;  /* "REGEX=TYPE" rules, first match wins */
    size_t n_tensor_types;
    bool pure;
    bool allow_requantize;
    const char *imatrix;  /* imatrix file, or NULL */
    bool dry_run;         /* plan only */
    /* gguf-split parts (formats/gguf_split.h) when the file would pass
     * split_max_bytes (0: one file whatever its size); split_part k >= 1
     * writes only part k (a scale-out job), 0 every part. */
    uint64_t split_max_bytes;
    size_t split_part;
} ts_quantize_opts;

typedef struct {
    ts_qplan plan;        /* every tensor's type and size, in output order */
    const ts_ftype_info *ftype;
    char arch[64];
    bool from_checkpoint; /* the input was a checkpoint, converted on the way */
    size_t imatrix_entries; /* entries in the imatrix file (0 without one) */
    uint64_t file_bytes;  /* size of the written file(s) (0 in a dry run) */
    size_t n_files;       /* files written: 1, or the split parts */
    double seconds;
    ts_imatrix *imatrix;  /* owned (or NULL when an earlier result of the same
                             ts_quantize_multi owns it): the plan's imatrix
                             pointers point into it */
} ts_quantize_result;

ts_status ts_quantize(const ts_quantize_opts *opts, ts_quantize_result *res, ts_err *err);
void ts_quantize_result_free(ts_quantize_result *res);

/* Several outputs of one input in one pass (tessera release): each tensor
 * is read and widened to f32 once and quantized to every output's type, the
 * outputs written side by side. opts[i] may differ in everything but input,
 * n_threads and dry_run, which come from opts[0]; outputs naming the same
 * imatrix file share one copy. Output i is byte for byte what
 * ts_quantize(&opts[i]) writes. res: n results, filled on success only;
 * free every one with ts_quantize_result_free. */
ts_status ts_quantize_multi(const ts_quantize_opts *opts, size_t n, ts_quantize_result *res, ts_err *err);

/* Internal to quant/: streams every tensor of g into outs (open) as the
 * plans say. */
ts_status ts_quantize_stream(const ts_gguf *g, const ts_qplan *const *plans, ts_gguf_out *const *outs, size_t n_out,
                             int n_threads, ts_err *err);

#endif
