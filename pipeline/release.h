/* tessera release: every quantized variant of a model from one pass over
 * it, measured on the written files, with a model card and checksums.
 *
 * The work comes in steps a scheduler can also run one by one
 * (docs/release.md):
 *   prepare  the output folder, the unquantized GGUF the measurements
 *            need (a checkpoint is converted into DIR/.work/base.gguf),
 *            and with imatrix "auto" DIR/imatrix.gguf from the calibration
 *            text;
 *   produce  some variants (or one part of one split variant) in one pass
 *            over the input: ts_quantize_multi, each file byte for byte what
 *            `tessera quantize` writes for that type alone;
 *   collect  reads the written files only: checks every file's structure
 *            and tensor checksums, measures perplexity / KLD / same-top
 *            against the unquantized model (tessera verify's code), and
 *            writes DIR/README.md, DIR/release.json and DIR/SHA256SUMS.
 * ts_release runs the three, skipping variants already complete from an
 * interrupted run. Nothing here prints: progress goes to opts->log. */
#ifndef TS_RELEASE_H
#define TS_RELEASE_H

#include "core/ts.h"

typedef void (*ts_release_log_fn)(void *ctx, const char *msg);

typedef struct {
    const char *input;             /* checkpoint (directory or file) or GGUF */
    const char *out_dir;
    const char *const *types;      /* ftype names ("Q4_K_M"), case-insensitive */
    size_t n_types;
    const char *imatrix;           /* a file, "auto" (from calib), or NULL */
    const char *calib;             /* calibration text; required with imatrix "auto" */
    const char *eval;              /* text for perplexity / KLD; NULL: not measured */
    uint64_t split_max_bytes;      /* 0: never split */
    int n_threads;                 /* <= 0: CPU count */
    int64_t n_ctx;                 /* tokens per chunk for eval and calibration (< 16: 512) */
    int64_t eval_chunks;           /* <= 0: every chunk of the eval text */
    int64_t calib_chunks;          /* <= 0: every chunk of the calibration text */
    const char *command;           /* the command line, recorded on the card; may be NULL */
    const char *tool_version;      /* "tessera 0.1.0", recorded on the card */
    ts_release_log_fn log;         /* one line per step, or NULL */
    void *log_ctx;
} ts_release_opts;

/* One variant as collect found and measured it. */
typedef struct {
    char type[16];               /* canonical ftype name */
    size_t n_files;
    char **files;                /* final paths: one, or the split parts in order */
    char **sha256;               /* hex, per file */
    uint64_t file_bytes;         /* all files together */
    uint64_t tensor_bytes, n_elements;
    double bpw;                  /* tensor bits per weight */
    bool reused;                 /* complete from an earlier run: not written again */
    bool measured;               /* eval given: the fields below are set */
    int64_t tokens_scored;
    double ppl, ppl_err, ppl_ratio, kld, kld_err, kld_p99, same_top, same_top_err; /* same_top in percent */
} ts_release_variant;

typedef struct {
    size_t n;
    ts_release_variant *v;       /* in the order of opts->types */
    char name[256];              /* the model's name in file names */
    char arch[64];
    int64_t n_expert;            /* > 0: a MoE model */
    bool has_base;               /* eval given */
    char base_path[4096];
    double base_ppl, base_ppl_err;
    uint64_t base_bytes;         /* the base file's size, and its tensor bits per weight */
    double base_bpw;
    int64_t n_ctx, chunks;
    char imatrix[4096];          /* the imatrix used, or "" */
    size_t imatrix_entries;      /* what prepare read from it, for the resume checks */
    int64_t imatrix_chunks;
    bool imatrix_written;        /* collected in this run: no earlier variant used it */
    double seconds_prepare, seconds_write, seconds_collect;
} ts_release_result;

void ts_release_result_free(ts_release_result *r);

/* The whole release: prepare, produce the variants not yet complete (one
 * pass), collect. Variants whose files exist and pass their checks are
 * kept (r->v[i].reused). */
ts_status ts_release(const ts_release_opts *o, ts_release_result *r, ts_err *err);

/* ---- the steps ---- */

/* Checks the options (types known and distinct, imatrix "auto" with a
 * calibration text, readable texts) and fills r->name / r->v[].type. */
ts_status ts_release_check(const ts_release_opts *o, ts_release_result *r, ts_err *err);
/* Creates out_dir and out_dir/.work, the base GGUF when one is needed, and
 * the imatrix for "auto" (reused when DIR/imatrix.gguf was collected from
 * the same text and chunk size). */
ts_status ts_release_prepare(const ts_release_opts *o, ts_release_result *r, ts_err *err);
/* The final path of variant i (unsplit name: DIR/NAME-TYPE.gguf; parts are
 * named after it). Heap string. */
char *ts_release_variant_path(const ts_release_opts *o, const ts_release_result *r, size_t i);
/* True when variant i's files exist and pass structure and checksum checks
 * with this run's options (type, imatrix, split size). */
bool ts_release_variant_complete(const ts_release_opts *o, const ts_release_result *r, size_t i);
/* Writes variants which[0..n) in one pass; part 0: all of each, k >= 1:
 * only part k (n must be 1). Stale temp files of those outputs, and files
 * of the other layout (split / unsplit), are removed first. */
ts_status ts_release_produce(const ts_release_opts *o, const ts_release_result *r, const size_t *which, size_t n,
                             size_t part, ts_err *err);
/* Reads, checks and measures every variant's files and writes the card,
 * release.json and SHA256SUMS. Fails when a variant is missing or broken. */
ts_status ts_release_collect(const ts_release_opts *o, ts_release_result *r, ts_err *err);

/* "45G", "500M", "1234": bytes (K, M, G, T are powers of 1000, as
 * gguf-split's; KiB, MiB, GiB, TiB powers of 1024). False when malformed or 0. */
bool ts_release_parse_size(const char *s, uint64_t *out);

/* ---- scale-out (release_plan.c, docs/release.md "Scale-out") ---- */

/* A plan: the options frozen in DIR/.work/plan.json so that jobs on other
 * machines run the same release. */
typedef struct {
    ts_release_opts o;           /* strings point into json */
    const char *types[64];
    char id[17];                 /* hex FNV-1a of the options: each job line names it */
    const char *cwd;             /* the folder relative paths are relative to */
    size_t n_jobs;
    void *json;
} ts_release_plan;

/* Writes DIR/.work/plan.json and jobs_path: line 1 prepare, then one line
 * per variant, then collect; each line a complete shell command running
 * tessera_bin. *n_jobs: the lines written. */
ts_status ts_release_plan_write(const ts_release_opts *o, const char *tessera_bin, const char *jobs_path,
                                size_t *n_jobs, ts_err *err);
/* Reads DIR/.work/plan.json; fails when another tool version than
 * tool_version wrote it, or when id is given and differs (a job line of
 * another plan). */
ts_status ts_release_plan_load(const char *out_dir, const char *id, const char *tool_version, ts_release_plan *p,
                               ts_err *err);
void ts_release_plan_free(ts_release_plan *p);
/* Line k (1-based) of a jobs file (heap, no newline); TS_ERR_ARG naming the
 * range when k is outside it. */
ts_status ts_release_plan_line(const char *jobs_path, size_t k, char **line, size_t *n_lines, ts_err *err);
/* For a job after prepare: the imatrix prepare left (its entry and chunk
 * counts, for the completeness checks); an error when it is not there. */
ts_status ts_release_attach(const ts_release_opts *o, ts_release_result *r, ts_err *err);

#endif
