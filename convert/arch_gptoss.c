/* GptOssForCausalLM (gpt-oss-20b, gpt-oss-120b) -> llama.cpp "gpt-oss".
 *
 * Attention: q/k/v/o with biases, one learned sink logit per head
 * (self_attn.sinks -> attn_sinks.weight), NeoX RoPE with YaRN (no Q/K
 * permutation), sliding-window attention on the layers layer_types marks
 * "sliding_attention" (llama.cpp's default pattern: even layers).
 * MoE: router with bias (ffn_gate_inp), experts stored stacked per layer with
 * gate and up interleaved by row (gate = even rows, up = odd rows), all with
 * biases; llama.cpp's gpt-oss graph has the clamped SwiGLU (alpha 1.702,
 * limit 7) built in.
 *
 * The release stores the experts as MXFP4 (quantization_config.quant_method
 * "mxfp4"): *_blocks U8 [E, rows, cols/32, 16] and *_scales U8 [E, rows,
 * cols/32]. They are repacked into ggml block_mxfp4 bit for bit (layout:
 * docs/convert.md, "gpt-oss"), never requantized: they stay MXFP4 for every
 * --outtype but f32, as with llama.cpp's converter (f32 expands them exactly). Checkpoints with dequantized
 * experts (gate_up_proj [E, H, 2I], down_proj [E, I, H], transposed against
 * nn.Linear) are converted to --outtype like any weight. */
#include "arch.h"
#include "formats/checkpoint.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ts_name_rule gptoss_rules[] = {
    {"model.embed_tokens.weight", "token_embd.weight", TS_XF_NONE},
    {"model.norm.weight", "output_norm.weight", TS_XF_NONE},
    {"lm_head.weight", "output.weight", TS_XF_NONE},
    {"model.layers.{L}.input_layernorm.weight", "blk.{L}.attn_norm.weight", TS_XF_NONE},
    {"model.layers.{L}.post_attention_layernorm.weight", "blk.{L}.post_attention_norm.weight", TS_XF_NONE},
    {"model.layers.{L}.self_attn.q_proj.weight", "blk.{L}.attn_q.weight", TS_XF_NONE},
    {"model.layers.{L}.self_attn.k_proj.weight", "blk.{L}.attn_k.weight", TS_XF_NONE},
    {"model.layers.{L}.self_attn.v_proj.weight", "blk.{L}.attn_v.weight", TS_XF_NONE},
    {"model.layers.{L}.self_attn.o_proj.weight", "blk.{L}.attn_output.weight", TS_XF_NONE},
    {"model.layers.{L}.self_attn.q_proj.bias", "blk.{L}.attn_q.bias", TS_XF_NONE},
    {"model.layers.{L}.self_attn.k_proj.bias", "blk.{L}.attn_k.bias", TS_XF_NONE},
    {"model.layers.{L}.self_attn.v_proj.bias", "blk.{L}.attn_v.bias", TS_XF_NONE},
    {"model.layers.{L}.self_attn.o_proj.bias", "blk.{L}.attn_output.bias", TS_XF_NONE},
    {"model.layers.{L}.self_attn.sinks", "blk.{L}.attn_sinks.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.router.weight", "blk.{L}.ffn_gate_inp.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.router.bias", "blk.{L}.ffn_gate_inp.bias", TS_XF_NONE},
    /* [E, H] is already ggml's [H, E] */
    {"model.layers.{L}.mlp.experts.down_proj_bias", "blk.{L}.ffn_down_exps.bias", TS_XF_NONE},
    /* made by gptoss_custom (split, repacked or transposed) */
    {"model.layers.{L}.mlp.experts.gate_up_proj_bias", NULL, TS_XF_NONE},
    {"model.layers.{L}.mlp.experts.gate_up_proj_blocks", NULL, TS_XF_NONE},
    {"model.layers.{L}.mlp.experts.gate_up_proj_scales", NULL, TS_XF_NONE},
    {"model.layers.{L}.mlp.experts.down_proj_blocks", NULL, TS_XF_NONE},
    {"model.layers.{L}.mlp.experts.down_proj_scales", NULL, TS_XF_NONE},
    {"model.layers.{L}.mlp.experts.gate_up_proj", NULL, TS_XF_NONE},
    {"model.layers.{L}.mlp.experts.down_proj", NULL, TS_XF_NONE},
    {"model.layers.{L}.self_attn.rotary_emb.inv_freq", NULL, TS_XF_NONE},
    {NULL, NULL, TS_XF_NONE},
};

static ts_status gptoss_custom(const ts_conv *c, const ts_checkpoint *ckpt, ts_dtype target, ts_custom_tensor **out,
                               size_t *n_out, ts_err *err);

/* ---- metadata ---- */

static ts_status check_quant_method(const ts_json_file *cfg, ts_err *err)
{
    json_t *qc = json_object_get(cfg->root, "quantization_config");
    if (!qc || json_is_null(qc))
        return TS_OK;
    json_t *m = json_is_object(qc) ? json_object_get(qc, "quant_method") : NULL;
    if (!m || !json_is_string(m))
        return ts_fail(err, TS_ERR_FORMAT, "%s: quantization_config.quant_method: expected a string", cfg->path);
    if (strcmp(json_string_value(m), "mxfp4") != 0)
        return ts_fail(err, TS_ERR_UNSUPPORTED,
                       "%s: quantization_config.quant_method \"%s\" is not supported for GptOssForCausalLM "
                       "(known: mxfp4, or no quantization_config)", cfg->path, json_string_value(m));
    return TS_OK;
}

/* llama.cpp marks layer il sliding when il % 2 == 0 unless the GGUF lists
 * the layers; the list is written only when layer_types differs from that. */
static ts_status sliding_pattern(ts_conv *c, ts_err *err)
{
    const ts_json_file *cfg = &c->hf->config;
    json_t *lt = json_object_get(cfg->root, "layer_types");
    if (!lt || json_is_null(lt))
        return TS_OK;
    int64_t n = c->hp.n_layer;
    if (!json_is_array(lt) || (int64_t)json_array_size(lt) != n)
        return ts_fail(err, TS_ERR_FORMAT, "%s: layer_types: expected a list of %lld layer types", cfg->path,
                       (long long)n);
    uint8_t *swa = malloc((size_t)n);
    if (!swa)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    bool standard = true;
    for (int64_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(lt, (size_t)i));
        if (!s || (strcmp(s, "sliding_attention") && strcmp(s, "full_attention"))) {
            free(swa);
            return ts_fail(err, TS_ERR_FORMAT, "%s: layer_types[%lld]: expected \"sliding_attention\" or "
                           "\"full_attention\"", cfg->path, (long long)i);
        }
        swa[i] = !strcmp(s, "sliding_attention");
        standard = standard && swa[i] == (i % 2 == 0);
    }
    ts_status st = TS_OK;
    if (!standard && ts_gguf_set_arr(c->w, ts_conv_key(c, "attention.sliding_window_pattern"), TS_GGUF_BOOL, swa,
                                     (uint64_t)n))
        st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    free(swa);
    return st;
}

static ts_status gptoss_params(ts_conv *c, ts_err *err)
{
    const ts_json_file *cfg = &c->hf->config;
    int64_t window;
    double limit;
    ts_status st;
    if ((st = check_quant_method(cfg, err)) || (st = ts_json_int_req(cfg, "sliding_window", 1, &window, err)) ||
        (st = ts_json_num_opt(cfg, "swiglu_limit", 7.0, &limit, err)))
        return st;
    if (c->hp.n_expert < 1 || c->hp.n_ff < 32)
        return ts_fail(err, TS_ERR_FORMAT, "%s: GptOssForCausalLM needs num_local_experts > 0 and intermediate_size",
                       cfg->path);
    /* llama.cpp's gpt-oss graph hard-codes the clamp; another limit would silently compute something else */
    if (limit != 7.0)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: swiglu_limit %g: llama.cpp's gpt-oss graph fixes it at 7.0",
                       cfg->path, limit);
    ts_gguf_set_u32(c->w, ts_conv_key(c, "expert_feed_forward_length"), (uint32_t)c->hp.n_ff);
    ts_gguf_set_u32(c->w, ts_conv_key(c, "attention.sliding_window"), (uint32_t)window);
    c->custom_tensors = gptoss_custom;
    return sliding_pattern(c, err);
}

/* ---- expert rows ---- */

/* FP4 E2M1 code -> value (OCP MX spec; ggml's kvalues_mxfp4 are these doubled,
 * with the scale halved, which gives the same products). */
static const float FP4_VALUE[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                    -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

/* Code k (0..31) of a 16-byte source block: element 2j in the low nibble of byte j, 2j+1 in the high one. */
static inline unsigned fp4_code(const uint8_t *blk, int k)
{
    return (blk[k >> 1] >> ((k & 1) * 4)) & 15u;
}

/* Source row of output row r: the t->arg-th half of interleaved gate/up rows (0 gate, 1 up), or all rows (-1). */
static int64_t source_row(const ts_custom_tensor *t, int64_t r)
{
    int64_t rows = t->ne[1], e = r / rows, i = r % rows;
    return t->arg < 0 ? r : e * 2 * rows + 2 * i + t->arg;
}

/* block_mxfp4: E8M0 scale byte, then 16 bytes where byte k holds element k in
 * the low nibble and element k+16 in the high one. */
static bool mxfp4_row(const ts_custom_tensor *t, const void *const *src, int64_t r, ts_dtype type, void *dst,
                      float *f32)
{
    int64_t nb = t->ne[0] / 32, sr = source_row(t, r);
    const uint8_t *blocks = (const uint8_t *)src[0] + sr * nb * 16, *scales = (const uint8_t *)src[1] + sr * nb;
    if (type == TS_MXFP4) {
        uint8_t *out = dst;
        for (int64_t b = 0; b < nb; b++, out += 17) {
            const uint8_t *blk = blocks + b * 16;
            out[0] = scales[b];
            for (int k = 0; k < 16; k++)
                out[1 + k] = (uint8_t)(fp4_code(blk, k) | fp4_code(blk, k + 16) << 4);
        }
        return true;
    }
    /* a plan hook asked for another type: dequantize exactly (every value is representable in F32) */
    for (int64_t b = 0; b < nb; b++)
        for (int k = 0; k < 32; k++)
            f32[b * 32 + k] = ldexpf(FP4_VALUE[fp4_code(blocks + b * 16, k)], (int)scales[b] - 127);
    return false;
}

static float element_f32(ts_dtype dt, const uint8_t *p)
{
    uint16_t h;
    float f;
    switch (dt) {
    case TS_F16: memcpy(&h, p, 2); ts_k_f16_to_f32(&h, &f, 1); return f;
    case TS_BF16: memcpy(&h, p, 2); ts_k_bf16_to_f32(&h, &f, 1); return f;
    default: memcpy(&f, p, 4); return f; /* F32: the only other type gptoss_custom accepts */
    }
}

/* Dequantized experts, [E, K, C] in torch order (K = the output row length):
 * output row (e, i) is column source_row's column of expert e's K x C matrix. */
static bool float_expert_row(const ts_custom_tensor *t, const void *const *src, int64_t r, ts_dtype type, void *dst,
                             float *f32)
{
    (void)type, (void)dst;
    const ts_tensor *s = t->src[0];
    int64_t cols = s->ne[0], k_len = t->ne[0], rows = t->ne[1], e = r / rows;
    int64_t col = source_row(t, r) - e * (t->arg < 0 ? rows : 2 * rows);
    uint32_t es = ts_dtype_get(s->dtype)->block_bytes;
    const uint8_t *base = (const uint8_t *)src[0] + (uint64_t)(e * k_len * cols + col) * es;
    for (int64_t k = 0; k < k_len; k++)
        f32[k] = element_f32(s->dtype, base + (uint64_t)(k * cols) * es);
    return false;
}

/* gate_up_proj_bias [E, 2I] -> ffn_{gate,up}_exps.bias [I, E]: every other element of row e. */
static bool bias_row(const ts_custom_tensor *t, const void *const *src, int64_t r, ts_dtype type, void *dst, float *f32)
{
    (void)type, (void)dst;
    const ts_tensor *s = t->src[0];
    uint32_t es = ts_dtype_get(s->dtype)->block_bytes;
    const uint8_t *row = (const uint8_t *)src[0] + (uint64_t)(r * s->ne[0]) * es;
    for (int64_t i = 0; i < t->ne[0]; i++)
        f32[i] = element_f32(s->dtype, row + (uint64_t)(2 * i + t->arg) * es);
    return false;
}

/* ---- planning ---- */

/* "[8, 128, 2, 16]": torch order, as safetensors headers show shapes. */
static const char *torch_shape(const ts_tensor *t, char *buf, size_t n)
{
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int d = t->n_dims - 1; d >= 0 && o < n; d--)
        o += (size_t)snprintf(buf + o, n - o, "%lld%s", (long long)t->ne[d], d ? ", " : "]");
    return buf;
}

/* t must be dtype (or any float type when dtype is TS_DTYPE_INVALID) with torch shape want[0..n_dims). */
static ts_status expect(const ts_tensor *t, ts_dtype dtype, int n_dims, const int64_t *want, const char *why,
                        ts_err *err)
{
    bool ok = t->n_dims == n_dims;
    for (int d = 0; ok && d < n_dims; d++)
        ok = t->ne[d] == want[n_dims - 1 - d];
    bool type_ok = dtype != TS_DTYPE_INVALID ? t->dtype == dtype
                                             : t->dtype == TS_F32 || t->dtype == TS_F16 || t->dtype == TS_BF16;
    if (ok && type_ok)
        return TS_OK;
    char got[96], exp[96] = "[";
    size_t o = 1;
    for (int d = 0; d < n_dims; d++)
        o += (size_t)snprintf(exp + o, sizeof exp - o, "%lld%s", (long long)want[d], d + 1 < n_dims ? ", " : "]");
    return ts_fail(err, TS_ERR_FORMAT, "tensor %s: %s %s, expected %s %s (%s)", t->name, ts_dtype_name(t->dtype),
                   torch_shape(t, got, sizeof got), dtype != TS_DTYPE_INVALID ? ts_dtype_name(dtype) : "F32/F16/BF16",
                   exp, why);
}

typedef struct {
    ts_custom_tensor *t;
    size_t n, cap;
} custom_list;

static ts_custom_tensor *push(custom_list *l, const char *name, int64_t layer, ts_dtype type, int n_dims,
                              const int64_t *ne, ts_custom_row_fn row, int64_t arg, ts_err *err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        ts_custom_tensor *g = realloc(l->t, cap * sizeof *g);
        if (!g) {
            ts_fail(err, TS_ERR_NOMEM, "out of memory");
            return NULL;
        }
        l->t = g;
        l->cap = cap;
    }
    ts_custom_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, name, (long long)layer);
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < TS_MAX_DIMS; d++)
        t->ne[d] = d < n_dims ? ne[d] : 1;
    t->layer = layer;
    t->row = row;
    t->arg = arg;
    return t;
}

static const ts_tensor *find(const ts_checkpoint *ckpt, int64_t layer, const char *suffix)
{
    char name[TS_MAX_NAME];
    snprintf(name, sizeof name, "model.layers.%lld.mlp.experts.%s", (long long)layer, suffix);
    return ts_checkpoint_find(ckpt, name);
}

/* One MXFP4 projection: blocks [E, rows, nb, 16] + scales [E, rows, nb], rows = n_out * (split ? 2 : 1). */
static ts_status plan_mxfp4(custom_list *l, const ts_checkpoint *ckpt, int64_t layer, const char *what,
                            int64_t n_expert, int64_t n_out, int64_t n_in, bool split, ts_dtype target, ts_err *err)
{
    char bname[64], sname[64];
    snprintf(bname, sizeof bname, "%s_blocks", what);
    snprintf(sname, sizeof sname, "%s_scales", what);
    const ts_tensor *blocks = find(ckpt, layer, bname), *scales = find(ckpt, layer, sname);
    if (!blocks || !scales)
        return ts_fail(err, TS_ERR_FORMAT, "tensor model.layers.%lld.mlp.experts.%s is missing (MXFP4 experts need "
                       "%s and %s)", (long long)layer, blocks ? sname : bname, bname, sname);
    int64_t rows = split ? 2 * n_out : n_out, nb = n_in / 32;
    const int64_t want_b[4] = {n_expert, rows, nb, 16}, want_s[3] = {n_expert, rows, nb};
    char why[TS_MAX_NAME + 160];
    ts_status st;
    snprintf(why, sizeof why, "%lld experts x %lld rows x %lld blocks of 32 values", (long long)n_expert,
             (long long)rows, (long long)nb);
    if ((st = expect(blocks, TS_U8, 4, want_b, why, err)))
        return st;
    char bshape[96];
    snprintf(why, sizeof why, "one E8M0 scale per 32-value block of %s %s", blocks->name,
             torch_shape(blocks, bshape, sizeof bshape));
    if ((st = expect(scales, TS_U8, 3, want_s, why, err)))
        return st;
    const int64_t ne[3] = {n_in, n_out, n_expert};
    /* --outtype f32 asks for every tensor in F32: MXFP4 values are all exact in F32, so the experts are
     * expanded without rounding (llama.cpp's CPU MXFP4 matmul rounds activations to Q8_0; an all-F32 file
     * computes like the checkpoint). Every other type keeps the release's MXFP4 bytes, as llama.cpp does. */
    ts_dtype type = target == TS_F32 ? TS_F32 : TS_MXFP4;
    for (int part = 0; part < (split ? 2 : 1); part++) {
        const char *name = !split ? "blk.%lld.ffn_down_exps.weight"
                                  : part ? "blk.%lld.ffn_up_exps.weight" : "blk.%lld.ffn_gate_exps.weight";
        ts_custom_tensor *t = push(l, name, layer, type, 3, ne, mxfp4_row, split ? part : -1, err);
        if (!t)
            return TS_ERR_NOMEM;
        t->n_src = 2;
        t->src[0] = blocks;
        t->src[1] = scales;
    }
    return TS_OK;
}

/* Dequantized experts: gate_up_proj [E, H, 2I], down_proj [E, I, H]. */
static ts_status plan_float(custom_list *l, const ts_checkpoint *ckpt, int64_t layer, int64_t n_expert, int64_t H,
                            int64_t I, ts_dtype target, ts_err *err)
{
    const ts_tensor *gu = find(ckpt, layer, "gate_up_proj"), *down = find(ckpt, layer, "down_proj");
    if (!gu || !down)
        return ts_fail(err, TS_ERR_FORMAT, "tensor model.layers.%lld.mlp.experts.%s is missing (expected MXFP4 "
                       "*_blocks/*_scales or dequantized gate_up_proj/down_proj)", (long long)layer,
                       gu ? "down_proj" : "gate_up_proj");
    const int64_t want_gu[3] = {n_expert, H, 2 * I}, want_d[3] = {n_expert, I, H};
    ts_status st;
    if ((st = expect(gu, TS_DTYPE_INVALID, 3, want_gu, "experts x hidden x 2 * intermediate", err)) ||
        (st = expect(down, TS_DTYPE_INVALID, 3, want_d, "experts x intermediate x hidden", err)))
        return st;
    ts_dtype type = target != TS_DTYPE_INVALID ? target : gu->dtype;
    ts_dtype type_gu = type == TS_Q8_0 && H % 32 ? TS_F16 : type, type_d = type == TS_Q8_0 && I % 32 ? TS_F16 : type;
    const int64_t ne_gu[3] = {H, I, n_expert}, ne_d[3] = {I, H, n_expert};
    if (!push(l, "blk.%lld.ffn_gate_exps.weight", layer, type_gu, 3, ne_gu, float_expert_row, 0, err) ||
        !push(l, "blk.%lld.ffn_up_exps.weight", layer, type_gu, 3, ne_gu, float_expert_row, 1, err) ||
        !push(l, "blk.%lld.ffn_down_exps.weight", layer, type_d, 3, ne_d, float_expert_row, -1, err))
        return TS_ERR_NOMEM;
    for (size_t k = l->n - 3; k < l->n; k++) {
        l->t[k].n_src = 1;
        l->t[k].src[0] = k + 1 < l->n ? gu : down;
    }
    return TS_OK;
}

static ts_status plan_layer(custom_list *l, const ts_conv *c, const ts_checkpoint *ckpt, int64_t layer,
                            ts_dtype target, ts_err *err)
{
    int64_t E = c->hp.n_expert, H = c->hp.n_embd, I = c->hp.n_ff;
    ts_status st;
    if (find(ckpt, layer, "gate_up_proj_blocks") || find(ckpt, layer, "down_proj_blocks")) {
        if (H % 32 || I % 32)
            return ts_fail(err, TS_ERR_FORMAT, "%s: MXFP4 experts need hidden_size (%lld) and intermediate_size "
                           "(%lld) to be multiples of 32", c->hf->config.path, (long long)H, (long long)I);
        if ((st = plan_mxfp4(l, ckpt, layer, "gate_up_proj", E, I, H, true, target, err)) ||
            (st = plan_mxfp4(l, ckpt, layer, "down_proj", E, H, I, false, target, err)))
            return st;
    } else if ((st = plan_float(l, ckpt, layer, E, H, I, target, err))) {
        return st;
    }
    const ts_tensor *gub = find(ckpt, layer, "gate_up_proj_bias"), *db = find(ckpt, layer, "down_proj_bias");
    if (!gub || !db)
        return ts_fail(err, TS_ERR_FORMAT, "tensor model.layers.%lld.mlp.experts.%s is missing", (long long)layer,
                       gub ? "down_proj_bias" : "gate_up_proj_bias");
    const int64_t want_gub[2] = {E, 2 * I}, want_db[2] = {E, H}, ne[2] = {I, E};
    if ((st = expect(gub, TS_DTYPE_INVALID, 2, want_gub, "experts x 2 * intermediate", err)) ||
        (st = expect(db, TS_DTYPE_INVALID, 2, want_db, "experts x hidden", err)))
        return st;
    for (int part = 0; part < 2; part++) {
        ts_custom_tensor *t = push(l, part ? "blk.%lld.ffn_up_exps.bias" : "blk.%lld.ffn_gate_exps.bias", layer,
                                   TS_F32, 2, ne, bias_row, part, err);
        if (!t)
            return TS_ERR_NOMEM;
        t->n_src = 1;
        t->src[0] = gub;
    }
    return TS_OK;
}

/* Every expert tensor must belong to a layer the config has (the rule pass skips them unchecked). */
static ts_status check_layers(const ts_conv *c, const ts_checkpoint *ckpt, ts_err *err)
{
    size_t n = ts_checkpoint_n_tensors(ckpt);
    for (size_t i = 0; i < n; i++) {
        const ts_tensor *t = ts_checkpoint_tensor(ckpt, i);
        long long layer;
        int end = 0;
        if (sscanf(t->name, "model.layers.%lld.mlp.experts.%n", &layer, &end) == 1 && end > 0 &&
            layer >= c->hp.n_layer)
            return ts_fail(err, TS_ERR_FORMAT, "tensor %s: layer %lld, but config.json has %lld layers", t->name,
                           layer, (long long)c->hp.n_layer);
    }
    return TS_OK;
}

static ts_status gptoss_custom(const ts_conv *c, const ts_checkpoint *ckpt, ts_dtype target, ts_custom_tensor **out,
                               size_t *n_out, ts_err *err)
{
    custom_list l = {0};
    ts_status st = check_layers(c, ckpt, err);
    for (int64_t layer = 0; layer < c->hp.n_layer && st == TS_OK; layer++)
        st = plan_layer(&l, c, ckpt, layer, target, err);
    *out = l.t;
    *n_out = l.n;
    return st;
}

const ts_arch ts_arch_gptoss = {"GptOssForCausalLM", "gpt-oss", gptoss_rules, gptoss_params};
