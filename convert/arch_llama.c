/* LlamaForCausalLM, MistralForCausalLM and MixtralForCausalLM -> llama.cpp
 * "llama". Q/K rows are permuted from HF's rotate-half layout to ggml's
 * interleaved RoPE. Mixtral's experts (w1 gate, w2 down, w3 up) stack into
 * 3-D ffn_*_exps tensors and its router becomes ffn_gate_inp; llama.cpp's
 * llama graph switches to the MoE FFN when expert_count > 0. */
#include "arch.h"

#include <string.h>

static const ts_name_rule llama_rules[] = {
    {"model.embed_tokens.weight", "token_embd.weight", TS_XF_NONE},
    {"model.norm.weight", "output_norm.weight", TS_XF_NONE},
    {"lm_head.weight", "output.weight", TS_XF_NONE},
    {"model.layers.{L}.input_layernorm.weight", "blk.{L}.attn_norm.weight", TS_XF_NONE},
    {"model.layers.{L}.self_attn.q_proj.weight", "blk.{L}.attn_q.weight", TS_XF_PERMUTE_Q},
    {"model.layers.{L}.self_attn.k_proj.weight", "blk.{L}.attn_k.weight", TS_XF_PERMUTE_K},
    {"model.layers.{L}.self_attn.v_proj.weight", "blk.{L}.attn_v.weight", TS_XF_NONE},
    {"model.layers.{L}.self_attn.q_proj.bias", "blk.{L}.attn_q.bias", TS_XF_PERMUTE_Q},
    {"model.layers.{L}.self_attn.k_proj.bias", "blk.{L}.attn_k.bias", TS_XF_PERMUTE_K},
    {"model.layers.{L}.self_attn.v_proj.bias", "blk.{L}.attn_v.bias", TS_XF_NONE},
    {"model.layers.{L}.self_attn.o_proj.weight", "blk.{L}.attn_output.weight", TS_XF_NONE},
    {"model.layers.{L}.self_attn.o_proj.bias", "blk.{L}.attn_output.bias", TS_XF_NONE},
    {"model.layers.{L}.post_attention_layernorm.weight", "blk.{L}.ffn_norm.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.gate_proj.weight", "blk.{L}.ffn_gate.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.up_proj.weight", "blk.{L}.ffn_up.weight", TS_XF_NONE},
    {"model.layers.{L}.mlp.down_proj.weight", "blk.{L}.ffn_down.weight", TS_XF_NONE},
    {"model.layers.{L}.block_sparse_moe.gate.weight", "blk.{L}.ffn_gate_inp.weight", TS_XF_NONE},
    {"model.layers.{L}.block_sparse_moe.experts.{E}.w1.weight", "blk.{L}.ffn_gate_exps.weight", TS_XF_NONE},
    {"model.layers.{L}.block_sparse_moe.experts.{E}.w2.weight", "blk.{L}.ffn_down_exps.weight", TS_XF_NONE},
    {"model.layers.{L}.block_sparse_moe.experts.{E}.w3.weight", "blk.{L}.ffn_up_exps.weight", TS_XF_NONE},
    {"model.layers.{L}.self_attn.rotary_emb.inv_freq", NULL, TS_XF_NONE},
    {NULL, NULL, TS_XF_NONE},
};

static ts_status llama_params(ts_conv *c, ts_err *err)
{
    if (!strcmp(c->arch->hf_name, "MixtralForCausalLM") && c->hp.n_expert < 1)
        return ts_fail(err, TS_ERR_FORMAT, "%s: MixtralForCausalLM needs num_local_experts > 0", c->hf->config.path);
    ts_gguf_set_u32(c->w, ts_conv_key(c, "vocab_size"), (uint32_t)c->hp.n_vocab);
    ts_gguf_set_u32(c->w, ts_conv_key(c, "rope.dimension_count"), (uint32_t)c->hp.head_dim);
    return TS_OK;
}

const ts_arch ts_arch_llama = {"LlamaForCausalLM", "llama", llama_rules, llama_params};
const ts_arch ts_arch_mistral = {"MistralForCausalLM", "llama", llama_rules, llama_params};
const ts_arch ts_arch_mixtral = {"MixtralForCausalLM", "llama", llama_rules, llama_params};
