/* Qwen2ForCausalLM -> "qwen2" (QKV biases), Qwen3ForCausalLM -> "qwen3"
 * (per-head q/k RMSNorm), Qwen3MoeForCausalLM -> "qwen3moe" (experts stacked
 * into 3-D ffn_*_exps, router ffn_gate_inp). llama.cpp applies NeoX RoPE to
 * these, so no Q/K permutation. */
#include "arch.h"

#define QWEN_ATTN                                                                                \
    {"model.embed_tokens.weight", "token_embd.weight", TS_XF_NONE},                              \
    {"model.norm.weight", "output_norm.weight", TS_XF_NONE},                                     \
    {"lm_head.weight", "output.weight", TS_XF_NONE},                                             \
    {"model.layers.{L}.input_layernorm.weight", "blk.{L}.attn_norm.weight", TS_XF_NONE},         \
    {"model.layers.{L}.self_attn.q_proj.weight", "blk.{L}.attn_q.weight", TS_XF_NONE},           \
    {"model.layers.{L}.self_attn.k_proj.weight", "blk.{L}.attn_k.weight", TS_XF_NONE},           \
    {"model.layers.{L}.self_attn.v_proj.weight", "blk.{L}.attn_v.weight", TS_XF_NONE},           \
    {"model.layers.{L}.self_attn.q_proj.bias", "blk.{L}.attn_q.bias", TS_XF_NONE},               \
    {"model.layers.{L}.self_attn.k_proj.bias", "blk.{L}.attn_k.bias", TS_XF_NONE},               \
    {"model.layers.{L}.self_attn.v_proj.bias", "blk.{L}.attn_v.bias", TS_XF_NONE},               \
    {"model.layers.{L}.self_attn.o_proj.weight", "blk.{L}.attn_output.weight", TS_XF_NONE},      \
    {"model.layers.{L}.self_attn.q_norm.weight", "blk.{L}.attn_q_norm.weight", TS_XF_NONE},      \
    {"model.layers.{L}.self_attn.k_norm.weight", "blk.{L}.attn_k_norm.weight", TS_XF_NONE},      \
    {"model.layers.{L}.post_attention_layernorm.weight", "blk.{L}.ffn_norm.weight", TS_XF_NONE}, \
    {"model.layers.{L}.self_attn.rotary_emb.inv_freq", NULL, TS_XF_NONE}

static const ts_name_rule qwen_dense_rules[] = {
    QWEN_ATTN,
    {"model.layers.{L}.mlp.gate_proj.weight", "blk.{L}.ffn_gate.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.up_proj.weight", "blk.{L}.ffn_up.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.down_proj.weight", "blk.{L}.ffn_down.weight", TS_XF_NONE},
    {NULL, NULL, TS_XF_NONE},
};

static const ts_name_rule qwen3moe_rules[] = {
    QWEN_ATTN,
    {"model.layers.{L}.mlp.gate.weight", "blk.{L}.ffn_gate_inp.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.experts.{E}.gate_proj.weight", "blk.{L}.ffn_gate_exps.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.experts.{E}.up_proj.weight", "blk.{L}.ffn_up_exps.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.experts.{E}.down_proj.weight", "blk.{L}.ffn_down_exps.weight", TS_XF_NONE},
    /* layers listed in mlp_only_layers keep a dense MLP */
    {"model.layers.{L}.mlp.gate_proj.weight", "blk.{L}.ffn_gate.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.up_proj.weight", "blk.{L}.ffn_up.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.down_proj.weight", "blk.{L}.ffn_down.weight", TS_XF_NONE},
    {NULL, NULL, TS_XF_NONE},
};

static ts_status qwen_dense_params(ts_conv *c, ts_err *err)
{
    (void)c;
    (void)err;
    return TS_OK;
}

static ts_status qwen3moe_params(ts_conv *c, ts_err *err)
{
    if (c->hp.n_expert <= 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: Qwen3MoeForCausalLM needs num_experts > 0", c->hf->config.path);
    if (c->hp.n_ff_exp > 0)
        ts_gguf_set_u32(c->w, ts_conv_key(c, "expert_feed_forward_length"), (uint32_t)c->hp.n_ff_exp);
    return TS_OK;
}

const ts_arch ts_arch_qwen2 = {"Qwen2ForCausalLM", "qwen2", qwen_dense_rules, qwen_dense_params};
const ts_arch ts_arch_qwen3 = {"Qwen3ForCausalLM", "qwen3", qwen_dense_rules, qwen_dense_params};
const ts_arch ts_arch_qwen3moe = {"Qwen3MoeForCausalLM", "qwen3moe", qwen3moe_rules, qwen3moe_params};
