/* DeepseekV3ForCausalLM (DeepSeek-V3, V3.1, R1; Kimi K2) -> llama.cpp "deepseek2".
 *
 * Multi-head latent attention is written the way llama.cpp v0.5.0 runs it
 * (MQA over the compressed KV, "absorbed" weights): q_a/q_b (or plain q when
 * q_lora_rank is null), kv_a_proj_with_mqa, and kv_b_proj split per head into
 * attn_k_b (transposed) and attn_v_b. The first first_k_dense_replace layers
 * have a dense MLP, the rest routed experts (stacked) plus shared experts
 * (*_shexp) with a sigmoid router whose e_score_correction_bias becomes
 * exp_probs_b. The MTP layer past num_hidden_layers is dropped, as llama.cpp's
 * converter does. FP8 block scales are handled by the planner (convert/fp8.c).
 * Keys and their sources: docs/convert.md. */
#include "arch.h"
#include "fp8.h"

#include <string.h>

#define LAYER "model.layers.{L}."
#define BLK "blk.{L}."

static const ts_name_rule deepseek_rules[] = {
    {"model.embed_tokens.weight", "token_embd.weight", TS_XF_NONE},
    {"model.norm.weight", "output_norm.weight", TS_XF_NONE},
    {"lm_head.weight", "output.weight", TS_XF_NONE},
    {LAYER "input_layernorm.weight", BLK "attn_norm.weight", TS_XF_NONE},
    {LAYER "self_attn.q_proj.weight", BLK "attn_q.weight", TS_XF_NONE},
    {LAYER "self_attn.q_a_proj.weight", BLK "attn_q_a.weight", TS_XF_NONE},
    {LAYER "self_attn.q_a_layernorm.weight", BLK "attn_q_a_norm.weight", TS_XF_NONE},
    {LAYER "self_attn.q_b_proj.weight", BLK "attn_q_b.weight", TS_XF_NONE},
    {LAYER "self_attn.kv_a_proj_with_mqa.weight", BLK "attn_kv_a_mqa.weight", TS_XF_NONE},
    {LAYER "self_attn.kv_a_layernorm.weight", BLK "attn_kv_a_norm.weight", TS_XF_NONE},
    /* one source, two outputs: the planner applies both rules */
    {LAYER "self_attn.kv_b_proj.weight", BLK "attn_k_b.weight", TS_XF_MLA_K_B},
    {LAYER "self_attn.kv_b_proj.weight", BLK "attn_v_b.weight", TS_XF_MLA_V_B},
    {LAYER "self_attn.o_proj.weight", BLK "attn_output.weight", TS_XF_NONE},
    {LAYER "post_attention_layernorm.weight", BLK "ffn_norm.weight", TS_XF_NONE},
    /* the first_k_dense_replace dense layers */
    {LAYER "mlp.gate_proj.weight", BLK "ffn_gate.weight", TS_XF_NONE},
    {LAYER "mlp.up_proj.weight", BLK "ffn_up.weight", TS_XF_NONE},
    {LAYER "mlp.down_proj.weight", BLK "ffn_down.weight", TS_XF_NONE},
    /* mixture-of-experts layers */
    {LAYER "mlp.gate.weight", BLK "ffn_gate_inp.weight", TS_XF_NONE},
    {LAYER "mlp.gate.e_score_correction_bias", BLK "exp_probs_b.bias", TS_XF_NONE},
    {LAYER "mlp.experts.{E}.gate_proj.weight", BLK "ffn_gate_exps.weight", TS_XF_NONE},
    {LAYER "mlp.experts.{E}.up_proj.weight", BLK "ffn_up_exps.weight", TS_XF_NONE},
    {LAYER "mlp.experts.{E}.down_proj.weight", BLK "ffn_down_exps.weight", TS_XF_NONE},
    {LAYER "mlp.shared_experts.gate_proj.weight", BLK "ffn_gate_shexp.weight", TS_XF_NONE},
    {LAYER "mlp.shared_experts.up_proj.weight", BLK "ffn_up_shexp.weight", TS_XF_NONE},
    {LAYER "mlp.shared_experts.down_proj.weight", BLK "ffn_down_shexp.weight", TS_XF_NONE},
    {LAYER "self_attn.rotary_emb.inv_freq", NULL, TS_XF_NONE},
    {NULL, NULL, TS_XF_NONE},
};

typedef struct {
    int64_t q_lora, kv_lora, nope, rope, v, dense_lead, n_shared, n_group, topk_group, moe_freq, n_ff_exp;
    double routed_scale;
    bool has_routed_scale, norm_topk;
    const char *scoring, *act;
} mla_config;

static ts_status read_config(const ts_conv *c, mla_config *m, ts_err *err)
{
    const ts_json_file *cfg = &c->hf->config;
    const ts_hparams *hp = &c->hp;
    ts_status st;
    memset(m, 0, sizeof *m);
    if ((st = ts_json_int_opt(cfg, "q_lora_rank", 0, 0, &m->q_lora, err)) ||
        (st = ts_json_int_req(cfg, "kv_lora_rank", 1, &m->kv_lora, err)) ||
        (st = ts_json_int_req(cfg, "qk_nope_head_dim", 1, &m->nope, err)) ||
        (st = ts_json_int_req(cfg, "qk_rope_head_dim", 2, &m->rope, err)) ||
        (st = ts_json_int_req(cfg, "v_head_dim", 1, &m->v, err)) ||
        (st = ts_json_int_opt(cfg, "first_k_dense_replace", hp->n_expert > 0 ? 0 : hp->n_layer, 0, &m->dense_lead,
                              err)) ||
        (st = ts_json_int_opt(cfg, "n_shared_experts", 0, 0, &m->n_shared, err)) ||
        (st = ts_json_int_opt(cfg, "n_group", 0, 0, &m->n_group, err)) ||
        (st = ts_json_int_opt(cfg, "topk_group", 0, 0, &m->topk_group, err)) ||
        (st = ts_json_int_opt(cfg, "moe_layer_freq", 1, 1, &m->moe_freq, err)) ||
        (st = ts_json_bool_opt(cfg, "norm_topk_prob", false, &m->norm_topk, err)) ||
        (st = ts_json_str_opt(cfg, "scoring_func", &m->scoring, err)) ||
        (st = ts_json_str_opt(cfg, "hidden_act", &m->act, err)))
        return st;
    m->has_routed_scale = ts_json_has(cfg, "routed_scaling_factor");
    if ((st = ts_json_num_opt(cfg, "routed_scaling_factor", 1.0, &m->routed_scale, err)))
        return st;
    m->n_ff_exp = hp->n_ff_exp > 0 ? hp->n_ff_exp : hp->n_ff;
    return TS_OK;
}

/* Shapes llama.cpp's loader or graph would reject, refused here with the key to blame. */
static ts_status check_config(const ts_conv *c, const mla_config *m, ts_err *err)
{
    const char *path = c->hf->config.path;
    const ts_hparams *hp = &c->hp;
    if (m->act && strcmp(m->act, "silu") != 0)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: hidden_act \"%s\": deepseek2 uses silu", path, m->act);
    if (m->moe_freq != 1)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: moe_layer_freq %lld: llama.cpp's deepseek2 has experts in every "
                       "layer after first_k_dense_replace (expected 1)", path, (long long)m->moe_freq);
    if (m->dense_lead > hp->n_layer)
        return ts_fail(err, TS_ERR_FORMAT, "%s: first_k_dense_replace %lld exceeds num_hidden_layers %lld", path,
                       (long long)m->dense_lead, (long long)hp->n_layer);
    if (m->dense_lead < hp->n_layer && (hp->n_expert <= 0 || m->n_ff_exp <= 0))
        return ts_fail(err, TS_ERR_FORMAT, "%s: layers from first_k_dense_replace %lld on are mixture-of-experts; "
                       "expected n_routed_experts and moe_intermediate_size", path, (long long)m->dense_lead);
    if (m->n_group > 1 && hp->n_expert % m->n_group != 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: n_routed_experts %lld is not a multiple of n_group %lld", path,
                       (long long)hp->n_expert, (long long)m->n_group);
    if (m->n_group > 1 && m->topk_group < 1)
        return ts_fail(err, TS_ERR_FORMAT, "%s: topk_group must be at least 1 with n_group %lld", path,
                       (long long)m->n_group);
    if (m->rope % 2 != 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: qk_rope_head_dim %lld must be even", path, (long long)m->rope);
    return TS_OK;
}

static ts_status write_routing(ts_conv *c, const mla_config *m, ts_err *err)
{
    ts_gguf_writer *w = c->w;
    ts_gguf_set_u32(w, ts_conv_key(c, "expert_feed_forward_length"), (uint32_t)m->n_ff_exp);
    ts_gguf_set_u32(w, ts_conv_key(c, "expert_shared_count"), (uint32_t)m->n_shared);
    if (m->has_routed_scale)
        ts_gguf_set_f32(w, ts_conv_key(c, "expert_weights_scale"), (float)m->routed_scale);
    if (m->norm_topk)
        ts_gguf_set_bool(w, ts_conv_key(c, "expert_weights_norm"), true);
    /* Group-limited routing. llama.cpp asserts topk_group < n_group when
     * n_group > 1; topk_group >= n_group keeps every group, the same routing
     * as no groups, so the keys are then left out. */
    if (m->n_group > 0 && !(m->n_group > 1 && m->topk_group >= m->n_group)) {
        ts_gguf_set_u32(w, ts_conv_key(c, "expert_group_count"), (uint32_t)m->n_group);
        if (ts_json_has(&c->hf->config, "topk_group"))
            ts_gguf_set_u32(w, ts_conv_key(c, "expert_group_used_count"), (uint32_t)m->topk_group);
    }
    if (m->scoring) {
        /* gguf-py ExpertGatingFuncType */
        uint32_t fn = !strcmp(m->scoring, "softmax") ? 1 : !strcmp(m->scoring, "sigmoid") ? 2
                    : !strcmp(m->scoring, "sqrtsoftplus") ? 4 : 0;
        if (!fn)
            return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: scoring_func \"%s\": expected softmax, sigmoid or "
                           "sqrtsoftplus", c->hf->config.path, m->scoring);
        ts_gguf_set_u32(w, ts_conv_key(c, "expert_gating_func"), fn);
    }
    return TS_OK;
}

/* yarn_log_multiplier: llama.cpp's converter stores 0.1 * mscale_all_dim and
 * its loader divides by 0.1 again (its TAG_DEEPSEEK2_YARN_LOG_MUL_FIX). */
static ts_status write_yarn_log_mul(ts_conv *c, ts_err *err)
{
    json_t *rs = json_object_get(c->hf->config.root, "rope_scaling");
    if (!json_is_object(rs))
        rs = json_object_get(c->hf->config.root, "rope_parameters");
    if (!json_is_object(rs) || !json_object_get(rs, "mscale_all_dim") || json_is_null(json_object_get(rs, "mscale_all_dim")))
        return TS_OK;
    double msa;
    ts_status st = ts_json_obj_num(rs, "config.json rope_scaling", "mscale_all_dim", 0, &msa, err);
    if (st == TS_OK)
        ts_gguf_set_f32(c->w, ts_conv_key(c, "rope.scaling.yarn_log_multiplier"), (float)(0.1 * msa));
    return st;
}

static ts_status deepseek_params(ts_conv *c, ts_err *err)
{
    ts_fp8_config q;
    mla_config m;
    ts_status st;
    if ((st = ts_fp8_read_config(&c->hf->config, &q, err)))
        return st;
    if (q.method && !q.active)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: quantization_config.quant_method \"%s\" is not supported for "
                       "%s (known: fp8, block-scaled E4M3 with weight_scale_inv)", c->hf->config.path, q.method,
                       c->arch->hf_name);
    if ((st = read_config(c, &m, err)) || (st = check_config(c, &m, err)))
        return st;
    ts_gguf_writer *w = c->w;
    /* MLA runs as MQA over the compressed KV: one KV head of kv_lora + rope */
    ts_gguf_set_u32(w, ts_conv_key(c, "attention.head_count_kv"), 1);
    ts_gguf_set_u32(w, ts_conv_key(c, "leading_dense_block_count"), (uint32_t)m.dense_lead);
    ts_gguf_set_u32(w, ts_conv_key(c, "vocab_size"), (uint32_t)c->hp.n_vocab);
    /* llama.cpp's converter omits q_lora_rank when it is null, but v0.5.0's
     * loader requires the key for every layer count but the "lite" ones
     * (26, 27); 0 means plain attn_q to it, so it is always written. */
    ts_gguf_set_u32(w, ts_conv_key(c, "attention.q_lora_rank"), (uint32_t)m.q_lora);
    ts_gguf_set_u32(w, ts_conv_key(c, "attention.kv_lora_rank"), (uint32_t)m.kv_lora);
    ts_gguf_set_u32(w, ts_conv_key(c, "attention.key_length"), (uint32_t)(m.kv_lora + m.rope));
    ts_gguf_set_u32(w, ts_conv_key(c, "attention.value_length"), (uint32_t)m.kv_lora);
    ts_gguf_set_u32(w, ts_conv_key(c, "attention.key_length_mla"), (uint32_t)(m.nope + m.rope));
    ts_gguf_set_u32(w, ts_conv_key(c, "attention.value_length_mla"), (uint32_t)m.v);
    ts_gguf_set_u32(w, ts_conv_key(c, "rope.dimension_count"), (uint32_t)m.rope);
    if ((st = write_routing(c, &m, err)) || (st = write_yarn_log_mul(c, err)))
        return st;
    c->hp.qk_nope_dim = m.nope;
    c->drop_extra_layers = true;
    return TS_OK;
}

const ts_arch ts_arch_deepseek3 = {
    .hf_name = "DeepseekV3ForCausalLM",
    .gguf_arch = "deepseek2",
    .rules = deepseek_rules,
    .set_params = deepseek_params,
};
