/* tessera convert: a checkpoint directory -> one GGUF file, streamed. */
#ifndef TS_CONVERT_H
#define TS_CONVERT_H

#include "core/ts.h"

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
