/* tessera verify: is a GGUF fit to publish? Structural checks (the file
 * parses, every tensor the architecture needs is there with its shape and a
 * readable type, every block's scales are finite), the tessera.checksum.*
 * tensor checksums convert and quantize store, and accuracy gates against a
 * base model (mean KLD, PPL ratio, same-top agreement, measured the way
 * `tessera perplexity --kld` does). The checks, their names and the JSON
 * report are documented in docs/verify.md; cli/cmd_verify.c maps the
 * outcome to exit codes. */
#ifndef TS_VERIFY_H
#define TS_VERIFY_H

#include "core/ts.h"
#include "formats/gguf.h"
#include "verify/perplexity.h"

#include <jansson.h>

typedef enum {
    TS_CHECK_PASS, /* measured and within its limit */
    TS_CHECK_FAIL, /* measured and outside it, or the thing checked is broken */
    TS_CHECK_SKIP, /* not applicable (no base given, no checksums stored) */
    TS_CHECK_INFO, /* measured, but no limit was given */
} ts_check_status;

const char *ts_check_status_name(ts_check_status s); /* "pass", "fail", "skip", "info" */

#define TS_CHECK_MAX_FAILURES 16 /* failing tensors listed per check; the count is always exact */
#define TS_VERIFY_MAX_CHECKS 12

typedef struct {
    const char *name;    /* static: "gguf", "tensor_types", "model", "block_data", "checksums",
                            "kld", "ppl_ratio", "same_top" */
    ts_check_status status;
    double value, limit; /* NAN when there is none */
    const char *compare; /* "<=" or ">=": how value must relate to limit; NULL without a limit */
    char detail[512];    /* one sentence for people */
    uint64_t n_failures; /* tensors (or items) that failed */
    char failures[TS_CHECK_MAX_FAILURES][192];
} ts_check;

typedef struct {
    ts_check checks[TS_VERIFY_MAX_CHECKS];
    size_t n_checks;
    uint64_t n_tensors, tensor_bytes;
    bool has_accuracy;      /* the gates ran: accuracy holds the measurement */
    ts_ppl_result accuracy; /* has_kld is set; ppl is the model's */
} ts_verify_report;

typedef void (*ts_verify_progress_fn)(void *ctx, const char *phase, const ts_ppl_progress *p);

typedef struct {
    const char *base;       /* BASE.gguf or BASE.kld (by content, not name); NULL: no accuracy gates */
    const char *text;       /* text to score; required with a .gguf base, unused with a .kld one */
    int64_t n_ctx;          /* tokens per chunk with a .gguf base (< 4: 512); a .kld base's own is used */
    int64_t max_chunks;     /* <= 0: every chunk */
    int n_threads;          /* < 1: the CPU count */
    bool require_checksums; /* absent checksums fail instead of being skipped */
    double max_kld;         /* gates; NAN: measured but not gated */
    double max_ppl_ratio;
    double min_same_top;    /* percent, 0..100 */
    ts_verify_progress_fn progress; /* after each chunk of each run, or NULL */
    void *progress_ctx;
} ts_verify_opts;

/* Options with every gate off and the defaults above. */
void ts_verify_opts_init(ts_verify_opts *o);

/* Runs every check on the GGUF at path, appending them to r (zeroed by the
 * caller). Returns TS_OK when every check could run, whatever its outcome
 * (ts_verify_passed says that). Otherwise the input was bad: the model file
 * unreadable or not a valid GGUF, the base or text unreadable, a base that
 * does not fit the model (vocabulary), too little text; err says which, and
 * r holds the checks that ran, the last one failed. */
ts_status ts_verify(const char *path, const ts_verify_opts *o, ts_verify_report *r, ts_err *err);

/* The structural checks on an open GGUF alone: tensor_types, block_data and
 * checksums (not model: that needs ts_model_load). */
void ts_verify_tensors(const ts_gguf *g, const ts_verify_opts *o, ts_verify_report *r);

/* True when no check failed. */
bool ts_verify_passed(const ts_verify_report *r);
/* The check named name, or NULL. */
const ts_check *ts_verify_find(const ts_verify_report *r, const char *name);

/* The first non-finite scale (or element, for float tensors) in nbytes of
 * type's blocks: returns its block (element) index and sets *field to what
 * it is ("d", "dmin", "e", "value"), or returns -1 when all are finite or
 * the type has no floats. NaN sets *is_nan. */
int64_t ts_verify_block_data(ts_dtype type, const void *data, uint64_t nbytes, const char **field, bool *is_nan);

/* The stored checksums, n_tensors u64 values (pointing into the GGUF's
 * metadata); NULL when the file has none, with *why set when the keys are
 * malformed, or *stale when they were written for another tensor table
 * (tessera.checksum.tensor_info differs: keys copied by a tool that
 * rewrote the tensors). */
const uint64_t *ts_verify_stored_checksums(const ts_gguf *g, const char **why, bool *stale);

/* The report as docs/verify.md's JSON schema; exit_code is what the CLI
 * returns (0, 1, 2). */
json_t *ts_verify_report_json(const ts_verify_report *r, const char *model, const ts_verify_opts *o, int exit_code,
                              const char *error);

#endif
