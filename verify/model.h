/* The reference forward pass: a decoder-only transformer (llama, qwen2,
 * qwen3, qwen3moe; deepseek2, glm4moe and gpt-oss in forward_deepseek.c /
 * forward_glm.c / forward_moe2.c / forward_gptoss.c) read straight from a
 * GGUF in any type the quant table can dequantize, evaluated a whole sequence at a time (causal, from an empty
 * cache), multithreaded. Numerics follow llama.cpp's CPU backend closely
 * enough that perplexities agree to well under 0.1% (docs/perplexity.md,
 * "Numerics"). The code reads top to bottom like llama2.c's run.c:
 * model_load.c (Config, Weights), forward.c (rmsnorm, rope, ffn, forward),
 * attention.c, matmul.c. */
#ifndef TS_MODEL_H
#define TS_MODEL_H

#include "core/ts.h"
#include "formats/gguf.h"

typedef struct ts_model ts_model;

/* Maps and validates a GGUF: the architecture, every hyperparameter and
 * every tensor the architecture needs (names, shapes, types). n_threads < 1
 * means the CPU count. */
ts_status ts_model_load(const char *path, int n_threads, ts_model **out, ts_err *err);
void ts_model_free(ts_model *m);

/* Evaluates ids[0..n) as one sequence at positions 0..n-1. logits receives
 * n rows of n_vocab floats (NULL: the pass runs, e.g. for a hook, and no
 * logits are computed). */
ts_status ts_model_eval(ts_model *m, const int32_t *ids, int64_t n, float *logits, ts_err *err);
/* The same, computing logits only for positions first..n-1 (n - first rows):
 * perplexity scores the second half of a chunk, and the output matrix is
 * the largest one in small models. */
ts_status ts_model_eval_tail(ts_model *m, const int32_t *ids, int64_t n, int64_t first, float *logits,
                             ts_err *err);

/* n_seq independent sequences of n tokens each, one after the other in ids
 * (each at positions 0..n-1, attending only within itself), evaluated as
 * one batch: weights are read once for all of them. logits receives n -
 * first rows per sequence, sequence after sequence. */
ts_status ts_model_eval_seqs(ts_model *m, const int32_t *ids, int64_t n_seq, int64_t n, int64_t first,
                             float *logits, ts_err *err);

int64_t ts_model_n_vocab(const ts_model *m);
int64_t ts_model_n_ctx_train(const ts_model *m);
const char *ts_model_arch(const ts_model *m);
/* The open GGUF (for the tokenizer and metadata); owned by the model. */
const ts_gguf *ts_model_gguf(const ts_model *m);
int ts_model_n_threads(const ts_model *m);

/* Precision choices that change results slightly (defaults in brackets):
 * kv_f16 [false]: round K and V to f16 as llama.cpp's default F16 KV cache
 *   does (llama-perplexity's setting; `ts_llama logits` uses F32).
 * ggml_activations [true]: round each matmul's input the way llama.cpp's CPU
 *   backend does for the weight's type before its dot products: to f16 for
 *   F16 weights, bf16 for BF16, q8_0 for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/IQ4_NL/MXFP4,
 *   q8_K for the k-quants and IQ4_XS. false: exact f32 activations. */
void ts_model_set_kv_f16(ts_model *m, bool on);
void ts_model_set_ggml_activations(ts_model *m, bool on);

/* Called with every matmul's input activations (n_tokens rows of n_in
 * floats, before any rounding) on the evaluating thread, before the
 * product; expert is the expert index for stacked expert tensors, -1 for
 * dense weights. Used for imatrix collection. NULL removes it. */
typedef void (*ts_matmul_hook)(void *ctx, const char *weight_name, int expert, const float *x, int64_t n_tokens,
                               int64_t n_in);
void ts_model_set_matmul_hook(ts_model *m, ts_matmul_hook hook, void *ctx);

#endif
