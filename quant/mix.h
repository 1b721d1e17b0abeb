/* The mixes users know (Q4_K_M, Q3_K_S, ...): llama.cpp's ftypes and the rule
 * that picks each tensor's type within one, reproduced from llama.cpp's
 * src/llama-quant.cpp (llama_tensor_get_type_impl) for the ftypes Tessera
 * writes. The planner (planner.h) walks the tensors, keeps the counters and
 * applies overrides and fallbacks around this rule. */
#ifndef TS_QUANT_MIX_H
#define TS_QUANT_MIX_H

#include "core/ts.h"

/* llama_ftype values (llama.h): they go into general.file_type unchanged. */
typedef enum {
    TS_FTYPE_F32 = 0,
    TS_FTYPE_F16 = 1,
    TS_FTYPE_Q4_0 = 2,
    TS_FTYPE_Q4_1 = 3,
    TS_FTYPE_Q8_0 = 7,
    TS_FTYPE_Q5_0 = 8,
    TS_FTYPE_Q5_1 = 9,
    TS_FTYPE_Q2_K = 10,
    TS_FTYPE_Q3_K_S = 11,
    TS_FTYPE_Q3_K_M = 12,
    TS_FTYPE_Q3_K_L = 13,
    TS_FTYPE_Q4_K_S = 14,
    TS_FTYPE_Q4_K_M = 15,
    TS_FTYPE_Q5_K_S = 16,
    TS_FTYPE_Q5_K_M = 17,
    TS_FTYPE_Q6_K = 18,
    TS_FTYPE_Q2_K_S = 21,
    TS_FTYPE_IQ4_NL = 25,
    TS_FTYPE_IQ4_XS = 30,
    TS_FTYPE_BF16 = 32,
} ts_ftype;

typedef struct {
    const char *name;      /* "Q4_K_M", as llama-quantize spells it */
    ts_ftype ftype;
    ts_dtype default_type; /* the type of every tensor no rule singles out */
    const char *summary;   /* one line for --help */
} ts_ftype_info;

/* Case-insensitive; accepts llama-quantize's aliases Q3_K, Q4_K, Q5_K (the _M
 * mixes). NULL when unknown. */
const ts_ftype_info *ts_ftype_find(const char *name);
const ts_ftype_info *ts_ftype_get(ts_ftype ftype);
/* The i-th ftype in table order; NULL past the end. */
const ts_ftype_info *ts_ftype_at(size_t i);

/* Broad tensor roles, as llama.cpp's tensor_get_category sees them. */
typedef enum {
    TS_CAT_TOKEN_EMBD,
    TS_CAT_ATTN_Q,
    TS_CAT_ATTN_V,
    TS_CAT_ATTN_K,
    TS_CAT_ATTN_QKV,
    TS_CAT_ATTN_KV_B,
    TS_CAT_ATTN_OUTPUT,
    TS_CAT_FFN_UP,
    TS_CAT_FFN_GATE,
    TS_CAT_FFN_DOWN,
    TS_CAT_OUTPUT,
    TS_CAT_OTHER,
} ts_tensor_cat;

ts_tensor_cat ts_tensor_category(const char *name);
/* attn_v, attn_qkv and attn_kv_b share attn_v's rules and counter. */
bool ts_cat_is_attn_v(ts_tensor_cat cat);

/* Everything the rule looks at for one tensor. */
typedef struct {
    ts_ftype ftype;
    ts_tensor_cat cat;
    int64_t ne0;               /* row length */
    bool tied_embeddings;      /* no output.weight: token_embd gets the output rule */
    ts_dtype output_tensor_type; /* --output-tensor-type, TS_DTYPE_INVALID if unset */
    bool falcon;               /* general.architecture == falcon */
    bool is_70b;               /* llama.cpp's LLM_TYPE_70B */
    bool has_imatrix;
    int64_t n_gqa;             /* n_head / n_head_kv of layer 0 (0 when n_head_kv is 0) */
    int64_t n_expert;
    int i_attn_v, n_attn_v;    /* index among attn_v-like tensors, and their count */
    int i_layer, n_layer;      /* ffn_down/gate/up: layer (counter, or from the name for MoE) */
} ts_mix_ctx;

/* The type llama.cpp's mix gives this tensor before the shape fallback. */
ts_dtype ts_mix_type(const ts_mix_ctx *m);

#endif
