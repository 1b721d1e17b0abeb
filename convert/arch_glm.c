/* Glm4MoeForCausalLM (GLM-4.5, GLM-4.5-Air) -> llama.cpp "glm4moe".
 *
 * What differs from the Qwen MoE families:
 * - partial NeoX RoPE: rope.dimension_count = head_dim * partial_rotary_factor
 *   (no Q/K permutation, llama.cpp applies NeoX RoPE to glm4moe);
 * - q/k/v biases; post_attention_layernorm is "post_attention_norm", not ffn_norm;
 * - the first first_k_dense_replace layers have a dense MLP, the others routed
 *   experts plus shared experts (ffn_*_shexp) and a sigmoid router whose
 *   e_score_correction_bias (used only to choose experts) is exp_probs_b.bias;
 * - the NextN / MTP layers (model.layers.N for N >= num_hidden_layers) are
 *   kept, as llama.cpp's converter does by default: block_count counts them,
 *   nextn_predict_layers says how many, and their extra tensors are
 *   blk.N.nextn.{eh_proj,enorm,hnorm,embed_tokens,shared_head_head,shared_head_norm}.
 *   llama.cpp's forward pass skips them; they serve speculative decoding. */
#include "arch.h"

static const ts_name_rule glm4moe_rules[] = {
    {"model.embed_tokens.weight", "token_embd.weight", TS_XF_NONE},
    {"model.norm.weight", "output_norm.weight", TS_XF_NONE},
    {"lm_head.weight", "output.weight", TS_XF_NONE},
    {"model.layers.{L}.input_layernorm.weight", "blk.{L}.attn_norm.weight", TS_XF_NONE},
    {"model.layers.{L}.self_attn.q_proj.weight", "blk.{L}.attn_q.weight", TS_XF_NONE},
    {"model.layers.{L}.self_attn.k_proj.weight", "blk.{L}.attn_k.weight", TS_XF_NONE},
    {"model.layers.{L}.self_attn.v_proj.weight", "blk.{L}.attn_v.weight", TS_XF_NONE},
    {"model.layers.{L}.self_attn.q_proj.bias", "blk.{L}.attn_q.bias", TS_XF_NONE},
    {"model.layers.{L}.self_attn.k_proj.bias", "blk.{L}.attn_k.bias", TS_XF_NONE},
    {"model.layers.{L}.self_attn.v_proj.bias", "blk.{L}.attn_v.bias", TS_XF_NONE},
    {"model.layers.{L}.self_attn.o_proj.weight", "blk.{L}.attn_output.weight", TS_XF_NONE},
    /* use_qk_norm (GLM-4.5 355B) */
    {"model.layers.{L}.self_attn.q_norm.weight", "blk.{L}.attn_q_norm.weight", TS_XF_NONE},
    {"model.layers.{L}.self_attn.k_norm.weight", "blk.{L}.attn_k_norm.weight", TS_XF_NONE},
    {"model.layers.{L}.post_attention_layernorm.weight", "blk.{L}.post_attention_norm.weight", TS_XF_NONE},
    /* dense first layers */
    {"model.layers.{L}.mlp.gate_proj.weight", "blk.{L}.ffn_gate.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.up_proj.weight", "blk.{L}.ffn_up.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.down_proj.weight", "blk.{L}.ffn_down.weight", TS_XF_NONE},
    /* MoE layers */
    {"model.layers.{L}.mlp.gate.weight", "blk.{L}.ffn_gate_inp.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.gate.e_score_correction_bias", "blk.{L}.exp_probs_b.bias", TS_XF_NONE},
    {"model.layers.{L}.mlp.experts.{E}.gate_proj.weight", "blk.{L}.ffn_gate_exps.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.experts.{E}.up_proj.weight", "blk.{L}.ffn_up_exps.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.experts.{E}.down_proj.weight", "blk.{L}.ffn_down_exps.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.shared_experts.gate_proj.weight", "blk.{L}.ffn_gate_shexp.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.shared_experts.up_proj.weight", "blk.{L}.ffn_up_shexp.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.shared_experts.down_proj.weight", "blk.{L}.ffn_down_shexp.weight", TS_XF_NONE},
    /* NextN / MTP layers */
    {"model.layers.{L}.eh_proj.weight", "blk.{L}.nextn.eh_proj.weight", TS_XF_NONE},
    {"model.layers.{L}.enorm.weight", "blk.{L}.nextn.enorm.weight", TS_XF_NONE},
    {"model.layers.{L}.hnorm.weight", "blk.{L}.nextn.hnorm.weight", TS_XF_NONE},
    {"model.layers.{L}.embed_tokens.weight", "blk.{L}.nextn.embed_tokens.weight", TS_XF_NONE},
    {"model.layers.{L}.shared_head.head.weight", "blk.{L}.nextn.shared_head_head.weight", TS_XF_NONE},
    {"model.layers.{L}.shared_head.norm.weight", "blk.{L}.nextn.shared_head_norm.weight", TS_XF_NONE},
    {"model.layers.{L}.self_attn.rotary_emb.inv_freq", NULL, TS_XF_NONE},
    {NULL, NULL, TS_XF_NONE},
};

/* llama.cpp's expert_gating_func values (LLAMA_EXPERT_GATING_FUNC_TYPE_*). */
#define GATING_SIGMOID 2u

/* partial_rotary_factor: top level, or inside rope_parameters (transformers >= 4.56); 0.5 when absent, as
 * llama.cpp's converter assumes for GLM. */
static ts_status rotary_factor(const ts_json_file *cfg, double *out, ts_err *err)
{
    json_t *rp = json_object_get(cfg->root, "rope_parameters");
    double def = 0.5;
    ts_status st;
    if (rp && json_is_object(rp) && (st = ts_json_obj_num(rp, "config.json rope_parameters", "partial_rotary_factor",
                                                         def, &def, err)))
        return st;
    if ((st = ts_json_num_opt(cfg, "partial_rotary_factor", def, out, err)))
        return st;
    if (!(*out > 0 && *out <= 1))
        return ts_fail(err, TS_ERR_FORMAT, "%s: partial_rotary_factor %g: expected a value in (0, 1]", cfg->path, *out);
    return TS_OK;
}

static ts_status glm4moe_params(ts_conv *c, ts_err *err)
{
    const ts_json_file *cfg = &c->hf->config;
    ts_hparams *hp = &c->hp;
    ts_gguf_writer *w = c->w;
    int64_t n_shared, dense_lead, n_group, topk_group, nextn;
    double prf, routed_scale;
    bool norm_topk;
    ts_status st;
    if ((st = rotary_factor(cfg, &prf, err)) || (st = ts_json_int_opt(cfg, "n_shared_experts", 0, 0, &n_shared, err)) ||
        (st = ts_json_int_opt(cfg, "first_k_dense_replace", 0, 0, &dense_lead, err)) ||
        (st = ts_json_int_opt(cfg, "n_group", 0, 0, &n_group, err)) ||
        (st = ts_json_int_opt(cfg, "topk_group", 0, 0, &topk_group, err)) ||
        (st = ts_json_int_opt(cfg, "num_nextn_predict_layers", 0, 0, &nextn, err)) ||
        (st = ts_json_num_opt(cfg, "routed_scaling_factor", 1.0, &routed_scale, err)) ||
        (st = ts_json_bool_opt(cfg, "norm_topk_prob", true, &norm_topk, err)))
        return st;
    if (hp->n_expert < 1 || hp->n_ff_exp < 1)
        return ts_fail(err, TS_ERR_FORMAT, "%s: Glm4MoeForCausalLM needs n_routed_experts and moe_intermediate_size > 0",
                       cfg->path);
    if (dense_lead > hp->n_layer)
        return ts_fail(err, TS_ERR_FORMAT, "%s: first_k_dense_replace %lld exceeds num_hidden_layers %lld", cfg->path,
                       (long long)dense_lead, (long long)hp->n_layer);
    if (n_group > 1 && (hp->n_expert % n_group || topk_group < 1 || topk_group >= n_group))
        return ts_fail(err, TS_ERR_FORMAT, "%s: n_group %lld / topk_group %lld do not fit %lld experts", cfg->path,
                       (long long)n_group, (long long)topk_group, (long long)hp->n_expert);
    if (nextn > 16)
        return ts_fail(err, TS_ERR_FORMAT, "%s: num_nextn_predict_layers %lld: expected at most 16", cfg->path,
                       (long long)nextn);
    /* The MTP layers are blocks too; the plan then expects their tensors. */
    hp->n_layer += nextn;
    ts_gguf_set_u32(w, ts_conv_key(c, "block_count"), (uint32_t)hp->n_layer);
    if (ts_json_has(cfg, "num_nextn_predict_layers"))
        ts_gguf_set_u32(w, ts_conv_key(c, "nextn_predict_layers"), (uint32_t)nextn);
    ts_gguf_set_u32(w, ts_conv_key(c, "rope.dimension_count"), (uint32_t)((double)hp->head_dim * prf));
    ts_gguf_set_u32(w, ts_conv_key(c, "expert_feed_forward_length"), (uint32_t)hp->n_ff_exp);
    ts_gguf_set_u32(w, ts_conv_key(c, "expert_shared_count"), (uint32_t)n_shared);
    ts_gguf_set_u32(w, ts_conv_key(c, "leading_dense_block_count"), (uint32_t)dense_lead);
    if (ts_json_has(cfg, "n_group"))
        ts_gguf_set_u32(w, ts_conv_key(c, "expert_group_count"), (uint32_t)n_group);
    if (ts_json_has(cfg, "topk_group"))
        ts_gguf_set_u32(w, ts_conv_key(c, "expert_group_used_count"), (uint32_t)topk_group);
    ts_gguf_set_u32(w, ts_conv_key(c, "expert_gating_func"), GATING_SIGMOID);
    /* written with transformers' defaults (1.0, true) when config.json omits them */
    ts_gguf_set_f32(w, ts_conv_key(c, "expert_weights_scale"), (float)routed_scale);
    ts_gguf_set_bool(w, ts_conv_key(c, "expert_weights_norm"), norm_topk);
    return TS_OK;
}

const ts_arch ts_arch_glm4moe = {"Glm4MoeForCausalLM", "glm4moe", glm4moe_rules, glm4moe_params};
