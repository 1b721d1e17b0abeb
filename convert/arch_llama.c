/* LlamaForCausalLM and MistralForCausalLM -> llama.cpp "llama".
 * Q/K rows are permuted from HF's rotate-half layout to ggml's interleaved RoPE. */
#include "arch.h"

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
    {"model.layers.{L}.self_attn.rotary_emb.inv_freq", NULL, TS_XF_NONE},
    {NULL, NULL, TS_XF_NONE},
};

static ts_status llama_params(ts_conv *c, ts_err *err)
{
    (void)err;
    ts_gguf_set_u32(c->w, ts_conv_key(c, "vocab_size"), (uint32_t)c->hp.n_vocab);
    ts_gguf_set_u32(c->w, ts_conv_key(c, "rope.dimension_count"), (uint32_t)c->hp.head_dim);
    return TS_OK;
}

const ts_arch ts_arch_llama = {"LlamaForCausalLM", "llama", llama_rules, llama_params};
const ts_arch ts_arch_mistral = {"MistralForCausalLM", "llama", llama_rules, llama_params};
