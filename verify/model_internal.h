/* Private to verify/model_load.c, forward.c, attention.c, matmul.c: the
 * Config / Weights / RunState of a loaded model (llama2.c's names), and the
 * building blocks forward.c strings together. */
#ifndef TS_MODEL_INTERNAL_H
#define TS_MODEL_INTERNAL_H

#include "verify/model.h"
#include "quant/quant.h"

typedef enum { TS_MARCH_LLAMA, TS_MARCH_QWEN2, TS_MARCH_QWEN3, TS_MARCH_QWEN3MOE } ts_model_arch_id;

/* Hyperparameters, from the {arch}.* keys convert writes (docs/convert.md). */
typedef struct {
    ts_model_arch_id arch;
    const char *arch_name;
    int64_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, head_dim_v, n_ff, n_ctx_train;
    int64_t n_expert, n_expert_used, n_ff_exp;
    float norm_eps;
    float kq_scale;             /* 1/sqrt(head_dim) unless attention.scale says otherwise */
    float expert_weights_scale; /* 0 = none */
    /* RoPE as ggml_rope_ext takes it (llama.cpp's llama-context.cpp derives
     * these from the GGUF keys; see rope_params() in model_load.c). */
    bool rope_neox;
    int64_t n_rot;
    float rope_base, rope_freq_scale, rope_ext_factor, rope_attn_factor, rope_beta_fast, rope_beta_slow;
    int64_t rope_n_ctx_orig;
} ts_config;

/* One weight matrix, or a stack of n_mat expert matrices, as stored:
 * n_out rows of n_in elements of type `type`, row_bytes apart. */
typedef struct {
    const char *name;
    ts_dtype type;
    int64_t n_in, n_out, n_mat;
    const uint8_t *data;
    uint64_t row_bytes;
    const ts_quant_type *qt;
} ts_weight;

typedef struct {
    float *attn_norm, *ffn_norm, *q_norm, *k_norm; /* q/k norms: qwen3, qwen3moe */
    float *bq, *bk, *bv, *bo;                      /* optional biases (qwen2) */
    ts_weight wq, wk, wv, wo;
    bool moe;
    ts_weight ffn_gate, ffn_up, ffn_down; /* dense */
    float *ffn_gate_b, *ffn_up_b, *ffn_down_b;
    ts_weight gate_inp, gate_exps, up_exps, down_exps; /* moe: router, stacked experts */
} ts_layer_weights;

typedef struct {
    ts_weight tok_embd, output; /* output is tok_embd when the file has none (tied) */
    float *output_norm;
    float *rope_freqs; /* n_rot / 2 frequency divisors (llama 3), or NULL */
    ts_layer_weights *layers;
} ts_weights;

/* Scratch for one evaluation, grown to the longest sequence seen. Row-major
 * activations, one row per token. */
typedef struct {
    int64_t cap; /* tokens the buffers hold */
    float *x;    /* residual stream, cap x n_embd */
    float *xb;   /* normed input of a block, cap x n_embd */
    float *q, *k, *v, *att; /* cap x n_head*head_dim, cap x n_head_kv*head_dim, ..., cap x n_head*head_dim_v */
    float *hb, *hb2;        /* ffn: cap x n_ff (moe: cap*n_expert_used x n_ff_exp) */
    float *ffn_out;         /* cap x n_embd (moe: cap*n_expert_used x n_embd) */
    float *moe_x;           /* moe: gathered inputs, cap*n_expert_used x n_embd */
    float *router;          /* cap x n_expert */
    int32_t *sel;           /* cap x n_expert_used: chosen experts */
    float *sel_w;           /* cap x n_expert_used: their weights */
    int64_t *sel_row;       /* cap x n_expert_used: row of (token, slot) in the expert-sorted buffers */
    float *rope_cs;         /* cap x n_rot: cos, sin pairs per position */
    float *act;             /* matmul inputs rounded as llama.cpp does (grown by ts_mm_run) */
    int64_t act_cap;
    float *xn;              /* final norm, cap x n_embd */
    /* per thread */
    float *tile;  /* n_threads x (TS_MM_ROWS x TS_MM_KC): dequantized weight rows */
    float *panel; /* n_threads x (TS_MM_KC x TS_GEMM_NR) */
    float *attn;  /* n_threads x attention scratch (attention.c) */
    int64_t attn_per_thread;
} ts_run_state;

struct ts_model {
    ts_gguf *g;
    ts_config c;
    ts_weights w;
    ts_run_state s;
    int n_threads;
    bool kv_f16, ggml_act;
    ts_matmul_hook hook;
    void *hook_ctx;
    float **owned; /* vectors converted to f32 at load, freed with the model */
    size_t n_owned, cap_owned;
};

/* ---- matmul.c ---- */
#define TS_MM_KC 256  /* k-block: a multiple of every block size (32, 256) */
#define TS_MM_ROWS 32 /* weight rows per work item = one packed panel */

/* y[t][o] = sum_i x[t][i] * W[o][i] for t in [0, n_tok): one product of a
 * batch. expert selects the matrix of a stack (0 for dense weights). */
typedef struct {
    const ts_weight *w;
    int expert;
    const float *x;
    int64_t n_tok;
    float *y;
} ts_mm_job;

/* Runs several independent products in one parallel pass (e.g. Q, K and V,
 * or every expert's gate and up), calling the matmul hook for each first.
 * x rows are n_in apart, y rows n_out apart. */
ts_status ts_mm_run(ts_model *m, ts_mm_job *jobs, int n_jobs, ts_err *err);
/* Rounds n values the way llama.cpp's CPU backend rounds a matmul input for
 * weights of type t (n a multiple of the type's block size); false when no
 * rounding applies (out untouched). */
bool ts_mm_round_activations(ts_dtype t, const float *x, float *out, int64_t n);

/* ---- attention.c ---- */
/* Causal multi-head attention with grouped K/V heads over n_seq independent
 * sequences of n tokens (rows s*n .. s*n+n-1 of q, k, v): rows s*n+r0 ..
 * s*n+n-1 of att receive softmax(q k^T * kq_scale) v. */
ts_status ts_attention(ts_model *m, int64_t n_seq, int64_t n, int64_t r0, ts_err *err);
int64_t ts_attention_scratch_floats(const ts_config *c, int64_t n);

/* ---- model_load.c ---- */
ts_status ts_run_state_reserve(ts_model *m, int64_t n, ts_err *err);

#endif
