/* tessera quantize: a GGUF (F32/F16/BF16, or quantized with allow_requantize)
 * or a Hugging Face checkpoint -> a GGUF in one of llama.cpp's mixes, planned
 * first (planner.h), then streamed tensor by tensor, row chunk by row chunk,
 * into an atomically renamed file. See docs/quantize.md. */
#ifndef TS_QUANTIZE_H
#define TS_QUANTIZE_H

#include "formats/gguf.h"
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
} ts_quantize_opts;

typedef struct {
    ts_qplan plan;        /* every tensor's type and size, in output order */
    const ts_ftype_info *ftype;
    char arch[64];
    bool from_checkpoint; /* the input was a checkpoint, converted on the way */
    size_t imatrix_entries; /* entries in the imatrix file (0 without one) */
    uint64_t file_bytes;  /* size of the written file (0 in a dry run) */
    double seconds;
    ts_imatrix *imatrix;  /* owned: the plan's imatrix pointers point into it */
} ts_quantize_result;

ts_status ts_quantize(const ts_quantize_opts *opts, ts_quantize_result *res, ts_err *err);
void ts_quantize_result_free(ts_quantize_result *res);

/* Internal to quant/: streams every tensor of g into w (begun) as plan says. */
ts_status ts_quantize_stream(const ts_gguf *g, const ts_qplan *plan, ts_gguf_writer *w, int n_threads, ts_err *err);

#endif
