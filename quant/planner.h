/* The quantization planner: a type for every tensor, decided before a byte is
 * written, the way llama.cpp's llama_model_quantize decides it (which tensors
 * are quantized at all, the mix rules with their per-layer counters, the
 * --tensor-type / --output-tensor-type / --token-embedding-type / --pure
 * controls, the fallback when a row does not fit a type's block, the imatrix
 * requirements). The result is a plain table that --dry-run prints. */
#ifndef TS_QUANT_PLANNER_H
#define TS_QUANT_PLANNER_H

#include "core/ts.h"
#include "imatrix.h"
#include "mix.h"

/* What the rules need to know about the model (GGUF metadata or config.json). */
typedef struct {
    char arch[64];          /* general.architecture */
    int64_t n_layer;        /* {arch}.block_count */
    int64_t n_layer_nextn;  /* {arch}.nextn_predict_layers, 0 when absent */
    int64_t n_head;         /* of layer 0 */
    int64_t n_head_kv;      /* of layer 0 (n_head when absent) */
    int64_t n_expert;       /* {arch}.expert_count, 0 when absent */
} ts_qmodel;

/* --tensor-type REGEX=TYPE rules: PCRE2, searched anywhere in the name,
 * case-insensitively (llama-quantize lowercases the pattern); the first rule
 * that matches wins. */
typedef struct ts_qoverrides ts_qoverrides;
/* Appends one rule, creating the list on first use. Refuses a missing '=',
 * an empty pattern, an unknown or unwritable type, a pattern that does not compile. */
ts_status ts_qoverrides_add(ts_qoverrides **ov, const char *spec, ts_err *err);
size_t ts_qoverrides_count(const ts_qoverrides *ov);
/* "REGEX=type" of rule i, normalized (for the output's metadata). */
const char *ts_qoverrides_spec(const ts_qoverrides *ov, size_t i);
void ts_qoverrides_free(ts_qoverrides *ov);
/* The type of the first rule whose pattern matches name; false when none does. */
bool ts_qoverrides_match(const ts_qoverrides *ov, const char *name, ts_dtype *type);

/* Types tessera quantize may be asked to write (with --tensor-type and the
 * like): F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K, IQ4_NL, IQ4_XS, MXFP4. */
bool ts_quant_type_writable(ts_dtype t);
/* A ggml type name (case-insensitive) that is writable; what names the option in the error. */
ts_status ts_quant_parse_type(const char *what, const char *name, ts_dtype *out, ts_err *err);

typedef struct {
    ts_ftype ftype;
    ts_dtype output_tensor_type;   /* TS_DTYPE_INVALID: the mix decides */
    ts_dtype token_embedding_type; /* TS_DTYPE_INVALID: the mix decides */
    bool pure;                     /* every quantizable tensor gets the ftype's default type */
    /* Quantized input tensors may be converted. Without it, MXFP4 input
     * tensors (gpt-oss experts) keep their type unless a --tensor-type rule
     * names them, and any other quantized input is refused. */
    bool allow_requantize;
    const ts_qoverrides *overrides;
    const ts_imatrix *imatrix;
    bool dry_run;                  /* a missing imatrix is noted (needs_imatrix), not an error */
} ts_qplan_opts;

typedef struct {
    char name[TS_MAX_NAME];
    int n_dims;
    int64_t ne[TS_MAX_DIMS];
    ts_dtype src_type;
    ts_dtype type;
    uint64_t src_bytes, bytes;
    bool quantizable;       /* llama.cpp's tensor_allows_quantization */
    bool overridden;        /* type from --tensor-type, --output-tensor-type or --token-embedding-type */
    bool fallback;          /* the row did not fit the chosen type's block */
    bool requires_imatrix;  /* llama.cpp refuses this type for this tensor without an imatrix */
    const float *imatrix;   /* ne[0] * ne[2] weights (expert-major) used when converting; or NULL */
} ts_qplan_tensor;

typedef struct {
    size_t n;
    ts_qplan_tensor *t;     /* in input order */
    int n_fallback;
    bool needs_imatrix;     /* dry run without an imatrix: the real run would refuse */
    size_t n_imatrix_used;  /* tensors converted with imatrix weights */
    uint64_t n_elements, bytes_in, bytes_out;
} ts_qplan;

/* tensors: the input's tensors in file order (name, dtype, n_dims, ne). The
 * imatrix (opts->imatrix) is checked against them: every entry must name a
 * tensor, with ne[0] * ne[2] values. */
ts_status ts_qplan_build(const ts_qmodel *m, const ts_tensor *const *tensors, size_t n, const ts_qplan_opts *opts,
                         ts_qplan *plan, ts_err *err);
void ts_qplan_free(ts_qplan *plan);

/* llama.cpp's tensor_allows_quantization for a tensor of n_dims (ggml_n_dims:
 * trailing dimensions of 1 do not count). */
bool ts_quant_tensor_allowed(const char *name, int n_dims);

#endif
