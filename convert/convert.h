/* tessera convert: a checkpoint directory -> one GGUF file, streamed. */
#ifndef TS_CONVERT_H
#define TS_CONVERT_H

#include "core/ts.h"
#include "formats/gguf.h"
#include "formats/gguf_split.h"

/* One planned output tensor, as a plan hook sees it. */
typedef struct {
    const char *name;
    int n_dims;
    int64_t ne[TS_MAX_DIMS];
    ts_dtype type;          /* in: convert's choice for --outtype; out: the type to write */
    const float *imatrix;   /* out: ne[0] * ne[2] importance weights for quantizing, or NULL */
} ts_convert_tensor;

/* The model facts a hook's rules need (from config.json). */
typedef struct {
    const char *arch;       /* GGUF architecture */
    int64_t n_layer, n_head, n_head_kv, n_expert;
} ts_convert_model;

/* Called once the plan is complete, before anything is written (also in a
 * dry run): may change each tensor's type (any type quant/quant.h can write,
 * rows permitting) and attach imatrix weights, and set metadata on w (it runs
 * after general.file_type is set, so it may replace it). The imatrix arrays
 * must outlive ts_convert. tessera quantize uses this to go from a checkpoint
 * to a quantized GGUF in one pass. */
typedef ts_status (*ts_convert_plan_fn)(void *ctx, const ts_convert_model *m, ts_convert_tensor *tensors, size_t n,
                                        ts_gguf_writer *w, ts_err *err);

/* One output of a fan-out conversion (tessera release): the same model
 * written to several GGUFs in one pass over the checkpoint, each with its
 * own plan hook (its types and metadata) and split options. Output k is
 * byte for byte what a ts_convert with output and plan_fn alone writes. */
typedef struct {
    const char *output;
    ts_gguf_split_opts split;
    ts_convert_plan_fn plan_fn; /* optional */
    void *plan_ctx;
    uint64_t bytes_out;         /* out: bytes of the file(s) written */
    size_t n_files;             /* out: 1, or the split parts */
} ts_convert_output;

typedef struct {
    const char *input;   /* model directory, .safetensors file or index */
    const char *output;  /* .gguf path */
    const char *outtype; /* "auto" (keep F32/F16/BF16 as stored), "f32", "f16", "bf16", "q8_0" */
    int n_threads;       /* <= 0: CPU count */
    bool vocab_only;     /* tokenizer-only GGUF */
    const char *arch;    /* vocab-only: the GGUF architecture name when there is no config.json */
    const char *name;    /* general.name; NULL: the directory name */
    bool dry_run;        /* plan only: fill stats, write nothing */
    bool verbose;        /* print the plan (one line per tensor) to stderr */
    ts_convert_plan_fn plan_fn; /* optional */
    void *plan_ctx;
    const char *progress_label; /* NULL: "convert" */
    /* n_outputs > 0: write these instead of output / plan_fn (not with vocab_only) */
    ts_convert_output *outputs;
    size_t n_outputs;
} ts_convert_opts;

typedef struct {
    uint64_t n_tensors;
    uint64_t bytes_in;   /* tensor bytes read */
    uint64_t bytes_out;  /* size of the written file */
    double seconds;
    char arch[64];
    char file_type[16];
} ts_convert_stats;

ts_status ts_convert(const ts_convert_opts *opts, ts_convert_stats *stats, ts_err *err);

#endif
