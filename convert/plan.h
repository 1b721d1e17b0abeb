/* The conversion plan: every output tensor, its type, shape, sources and
 * row transform, decided before a byte is written. */
#ifndef TS_PLAN_H
#define TS_PLAN_H

#include "arch.h"
#include "formats/checkpoint.h"

typedef struct {
    char name[TS_MAX_NAME];
    ts_dtype type;            /* output type */
    int n_dims;
    int64_t ne[TS_MAX_DIMS];  /* ggml order */
    ts_xform xform;
    int64_t xform_groups;     /* heads for a Q/K permutation */
    size_t n_src;             /* 1, or the expert count for a stacked tensor */
    const ts_tensor **src;    /* sources; NULL for generated tensors */
    const void **src_data;    /* their bytes, set while the tensor streams */
    const ts_gen_tensor *gen; /* generated data (F32) */
    const ts_custom_tensor *custom; /* assembled by the architecture's row function; src = custom->src */
    const float *imatrix;     /* importance weights for a quantized type, ne[0] per expert; or NULL */
    /* Block-scaled sources (FP8 weight_scale_inv, convert/fp8.c): per source
     * its scale tensor (NULL = none), mapped while the tensor streams; each
     * scale covers scale_block[0] rows x scale_block[1] columns. */
    const ts_tensor **scale;
    const void **scale_data;
    int64_t scale_block[2];
    int64_t xform_dim;        /* MLA split: nope rows per head of kv_b_proj */
    int sort_group, sort_layer, sort_rule;
} ts_out_tensor;

typedef struct {
    size_t n;
    ts_out_tensor *t;
    size_t n_custom;
    ts_custom_tensor *custom; /* the architecture's custom tensors, owned */
} ts_plan;

/* target: TS_DTYPE_INVALID keeps the stored float type ("auto"). */
ts_status ts_plan_build(const ts_conv *c, const ts_checkpoint *ckpt, ts_dtype target, ts_plan *plan, ts_err *err);
void ts_plan_free(ts_plan *plan);
/* Matches name against an hf pattern with {L} and {E}; -1 where absent. */
bool ts_name_match(const char *pattern, const char *name, int64_t *layer, int64_t *expert);

#endif
