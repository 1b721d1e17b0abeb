/* Architecture table: what convert knows about one model family.
 * Adding a family = one arch_<family>.c file defining a ts_arch and one line
 * in registry.c. */
#ifndef TS_ARCH_H
#define TS_ARCH_H

#include "core/ts.h"
#include "formats/gguf.h"
#include "formats/hf_config.h"

/* Row transforms applied while streaming. */
typedef enum {
    TS_XF_NONE = 0,
    TS_XF_PERMUTE_Q, /* Llama: HF rotate-half rows -> ggml interleaved RoPE rows, n_head groups */
    TS_XF_PERMUTE_K, /* same with n_head_kv groups */
    /* deepseek2 MLA: kv_b_proj [n_head * (nope + v), kv_lora] split per head
     * into attn_k_b (the nope rows, transposed: ne {nope, kv_lora, n_head})
     * and attn_v_b (the v rows: ne {kv_lora, v, n_head}); convert/xform.c.
     * Two rules with the same hf pattern feed both from one source. */
    TS_XF_MLA_K_B,
    TS_XF_MLA_V_B,
} ts_xform;

/* HF tensor name pattern -> GGUF name pattern. In hf, "{L}" matches a layer
 * index and "{E}" an expert index; in gguf, "{L}" is replaced by the layer.
 * A rule with "{E}" stacks experts 0..n_expert-1 into one 3-D tensor.
 * gguf == NULL means the tensor is known and deliberately dropped. */
typedef struct {
    const char *hf;
    const char *gguf;
    ts_xform xform;
} ts_name_rule;

/* Hyperparameters every supported family has, read once from config.json. */
typedef struct {
    int64_t n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx;
    int64_t n_expert, n_expert_used, n_ff_exp;
    double rope_theta, norm_eps;
    bool tied_embeddings;
    bool head_dim_in_config;
    int64_t qk_nope_dim; /* MLA (deepseek2): key rows per head of kv_b_proj without RoPE; set by set_params */
} ts_hparams;

/* A tensor convert generates itself (e.g. Llama 3 rope_freqs), always F32. */
typedef struct {
    char name[TS_MAX_NAME];
    int n_dims;
    int64_t ne[TS_MAX_DIMS];
    float *data; /* heap, owned by the conversion */
} ts_gen_tensor;

typedef struct ts_conv ts_conv;
struct ts_checkpoint;
struct ts_custom_tensor;

/* Produces output row r (0 .. ne[1]*ne[2]*ne[3]-1) of a custom tensor from the
 * mapped bytes of its sources (src[i] belongs to t->src[i]). Either writes the
 * row in `type` to dst and returns true, or writes ne[0] floats to f32 and
 * returns false (convert then converts them to `type`, which a plan hook such
 * as quantize may have changed). */
typedef bool (*ts_custom_row_fn)(const struct ts_custom_tensor *t, const void *const *src, int64_t r, ts_dtype type,
                                 void *dst, float *f32);

/* An output tensor an architecture assembles itself where a name rule cannot:
 * from several checkpoint tensors, or from part of one (gpt-oss: MXFP4 blocks
 * + scales repacked, gate/up halves of interleaved rows). */
typedef struct ts_custom_tensor {
    char name[TS_MAX_NAME];
    ts_dtype type; /* output type */
    int n_dims;
    int64_t ne[TS_MAX_DIMS];
    int64_t layer; /* for the tensor order; -1 = not in a layer */
    size_t n_src;
    const ts_tensor *src[4];
    ts_custom_row_fn row;
    int64_t arg; /* the row function's own parameter */
} ts_custom_tensor;

/* Fills *out (heap array, owned by the plan even on failure) with an
 * architecture's custom tensors; target as for ts_plan_build. Their sources must also match a rule
 * with gguf == NULL, so that the plan's rule pass skips them. */
typedef ts_status (*ts_custom_plan_fn)(const ts_conv *c, const struct ts_checkpoint *ckpt, ts_dtype target,
                                       ts_custom_tensor **out, size_t *n_out, ts_err *err);

typedef struct ts_arch {
    const char *hf_name;   /* config.json "architectures"[0] */
    const char *gguf_arch; /* general.architecture */
    const ts_name_rule *rules; /* terminated by {NULL} */
    /* Family-specific metadata beyond ts_conv_write_common_params. */
    ts_status (*set_params)(ts_conv *c, ts_err *err);
} ts_arch;

/* What an arch callback can see and do. */
struct ts_conv {
    const ts_arch *arch;
    const ts_hf_files *hf;
    ts_gguf_writer *w;
    ts_hparams hp;
    size_t n_gen;
    ts_gen_tensor gen[4];
    /* set_params may set: drop every model.layers.N.* with N >= n_layer
     * (DeepSeek's MTP layers, which llama.cpp's converter skips). */
    bool drop_extra_layers;
    /* set_params may set: the architecture's custom tensors (arch.h ts_custom_tensor). */
    ts_custom_plan_fn custom_tensors;
};

const ts_arch *ts_arch_find(const char *hf_name);
/* Comma-separated list of supported HF architectures (static buffer). */
const char *ts_arch_list(void);
/* GGUF arch name -> the first table entry with it (for --vocab-only --arch). */
const ts_arch *ts_arch_find_gguf(const char *gguf_arch);

/* "{arch}.<suffix>" for the current architecture (static buffer, valid until next call). */
const char *ts_conv_key(const ts_conv *c, const char *suffix);
/* Reads ts_hparams from config.json (validating ranges). */
ts_status ts_conv_read_hparams(ts_conv *c, ts_err *err);
/* Writes the keys every family shares: context/embedding length, block count,
 * feed-forward length, heads, KV heads, key/value length, rms eps, rope base,
 * rope scaling (linear, yarn; llama3 adds a rope_freqs tensor), expert counts. */
ts_status ts_conv_write_common_params(ts_conv *c, ts_err *err);
/* Adds a generated F32 tensor (takes ownership of data). */
ts_status ts_conv_add_generated(ts_conv *c, const char *name, int n_dims, const int64_t *ne, float *data, ts_err *err);

#endif
