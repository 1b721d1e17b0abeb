/* Private to verify/model_load.c, forward*.c, attention.c, matmul.c: the
 * Config / Weights / RunState of a loaded model (llama2.c's names), and the
 * building blocks forward.c strings together. */
#ifndef TS_MODEL_INTERNAL_H
#define TS_MODEL_INTERNAL_H

#include "verify/model.h"
#include "quant/quant.h"

typedef enum {
    TS_MARCH_LLAMA, TS_MARCH_QWEN2, TS_MARCH_QWEN3, TS_MARCH_QWEN3MOE,
    TS_MARCH_DEEPSEEK2, /* forward_deepseek.c */
    TS_MARCH_GLM4MOE,   /* forward_glm.c */
    TS_MARCH_GPTOSS,    /* forward_gptoss.c */
} ts_model_arch_id;

/* llama.cpp's expert_gating_func values (LLAMA_EXPERT_GATING_FUNC_TYPE_*). */
enum { TS_GATING_SOFTMAX = 1, TS_GATING_SIGMOID = 2 };

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
    /* DeepSeek-style routed experts (forward_moe2.c; deepseek2, glm4moe):
     * gating function, exp_probs_b selection bias, expert groups, weight
     * normalization, shared experts. moe2 selects that path. */
    bool moe2;
    int expert_gating;
    bool expert_weights_norm;
    int64_t n_expert_shared, n_expert_groups, n_group_used, n_layer_dense_lead;
    /* deepseek2 MLA (forward_deepseek.c): q/kv LoRA ranks and the per-head
     * sizes of the decompressed form (head_dim / head_dim_v are the MQA
     * sizes kv_lora + rope and kv_lora there). */
    int64_t n_lora_q, n_lora_kv, head_dim_k_mla, head_dim_v_mla;
    /* gpt-oss (forward_gptoss.c): the sliding window of its windowed
     * layers, and YaRN's correction range left unrounded as the official
     * code computes it (rope.scaling truncate: false; ggml floors/ceils it). */
    int64_t n_swa;
    bool rope_yarn_exact;
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
    float *exp_probs_b;                                /* moe2: selection bias */
    ts_weight gate_shexp, up_shexp, down_shexp;        /* moe2: shared experts (optional) */
    /* deepseek2 MLA: q = wq_b(q_a_norm(wq_a x)) (or wq x), kv_a_mqa x =
     * [compressed kv | k rope part], wk_b / wv_b: per-head stacks. */
    ts_weight wq_a, wq_b, wkv_a_mqa, wk_b, wv_b;
    float *q_a_norm, *kv_a_norm;
    /* gpt-oss: per-head sink logits, sliding-window layer, router bias,
     * per-expert biases (n_expert rows of n_ff_exp / n_embd). */
    float *attn_sinks;
    bool swa;
    float *gate_inp_b, *gate_exps_b, *up_exps_b, *down_exps_b;
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
    float *ext;  /* architecture-specific scratch (forward_<arch>.c), grown by ts_run_state_ext */
    int64_t ext_cap;
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
/* At least n floats of s->ext (kept between evaluations). */
ts_status ts_run_state_ext(ts_model *m, int64_t n, ts_err *err);
/* Loaders the forward_<arch>.c files share: a 1-D f32 vector (NULL when
 * absent and optional), a matrix [n_in, n_out] or stack [n_in, n_out,
 * n_mat] (zeroed when absent and optional), optional {arch}.* keys (out
 * kept when absent), a tensor by name. */
ts_status ts_ml_vec(ts_model *m, const char *name, int64_t n, bool required, float **out, ts_err *err);
ts_status ts_ml_weight(ts_model *m, const char *name, int64_t n_in, int64_t n_out, int64_t n_mat, bool required,
                       ts_weight *w, ts_err *err);
ts_status ts_ml_int(const ts_model *m, const char *suffix, bool required, int64_t min, int64_t max, int64_t *out,
                    ts_err *err);
ts_status ts_ml_float(const ts_model *m, const char *suffix, bool required, float *out, ts_err *err);
bool ts_ml_has(const ts_model *m, const char *name);
/* Frees p with the model (p is freed on failure too). */
ts_status ts_ml_keep(ts_model *m, float *p, ts_err *err);

/* ---- forward.c: steps the forward_<arch>.c files reuse ---- */
void ts_fw_rmsnorm_rows(float *o, const float *x, const float *w, int64_t rows, int64_t n, float eps);
void ts_fw_swiglu(float *gate, const float *up, int64_t n);
void ts_fw_round_f16(float *x, int64_t n);
/* RoPE (c->rope_neox pairing, cos/sin from s->rope_cs) on n_heads slices of
 * c->n_rot floats starting head_stride apart at x + t * ld, row t at
 * position t % n. */
void ts_fw_rope(const ts_config *c, const float *cs, float *x, int64_t rows, int64_t ld, int64_t n_heads,
                int64_t head_stride, int64_t n);
/* Runs the experts chosen in s->sel / s->sel_w (rows x n_expert_used) on
 * s->xb: each expert's SwiGLU once over its tokens (gpt-oss: with l's
 * expert biases and its clamped SwiGLU), outputs weighted and summed in slot
 * order into s->ffn_out. Overwrites s->xb. */
ts_status ts_fw_moe_experts(ts_model *m, const ts_layer_weights *l, int64_t rows, ts_err *err);

/* ---- forward_moe2.c ---- */
/* FFN of a moe2 layer on s->xb (rows tokens) into s->ffn_out: shared
 * experts plus routed experts chosen by the gating function, exp_probs_b and
 * groups, as llama.cpp's build_moe_ffn. */
ts_status ts_moe2_ffn(ts_model *m, const ts_layer_weights *l, int64_t rows, ts_err *err);
/* The {arch}.* routing keys. */
ts_status ts_moe2_config(ts_model *m, ts_err *err);
/* Layer il's router, exp_probs_b, stacked and shared experts (sets l->moe),
 * or its dense ffn_gate / ffn_up / ffn_down. */
ts_status ts_moe2_load_layer(ts_model *m, int64_t il, ts_layer_weights *l, bool bias_required, ts_err *err);
ts_status ts_moe2_load_dense(ts_model *m, int64_t il, ts_layer_weights *l, ts_err *err);

/* ---- forward_deepseek.c ---- */
ts_status ts_deepseek_config(ts_model *m, ts_err *err);
ts_status ts_deepseek_load_layer(ts_model *m, int64_t il, ts_err *err);
/* MLA attention block, same contract as forward.c's attention_block. */
ts_status ts_deepseek_attention(ts_model *m, const ts_layer_weights *l, int64_t n_seq, int64_t n, int64_t r0,
                                int64_t *rows_out, ts_err *err);

/* ---- forward_glm.c ---- */
ts_status ts_glm_config(ts_model *m, ts_err *err);
ts_status ts_glm_load_layer(ts_model *m, int64_t il, ts_err *err);

/* ---- forward_gptoss.c ---- */
ts_status ts_gptoss_config(ts_model *m, ts_err *err);
ts_status ts_gptoss_load_layer(ts_model *m, int64_t il, ts_err *err);
/* ts_attention with l's sink logits and, on sliding-window layers, keys
 * limited to the last n_swa positions. */
ts_status ts_gptoss_attention(ts_model *m, const ts_layer_weights *l, int64_t n_seq, int64_t n, int64_t r0,
                              ts_err *err);
/* Router (bias, top-k of the logits, softmax over the chosen) and experts
 * on s->xb into s->ffn_out. */
ts_status ts_gptoss_ffn(ts_model *m, const ts_layer_weights *l, int64_t rows, ts_err *err);
/* gpt-oss's clamped SwiGLU in place in gate: min(g, 7) * sigmoid(1.702 *
 * min(g, 7)) * (clamp(u, -7, 7) + 1). */
void ts_gptoss_swiglu(float *gate, const float *up, int64_t n);

#endif
