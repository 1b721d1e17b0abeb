/* Meta/Mistral original checkpoints (consolidated.NN.pth + params.json) ->
 * llama.cpp "llama". formats/ merges the tensor-parallel shards; this maps
 * Meta's tensor names and reads params.json. */
#ifndef TS_ARCH_META_H
#define TS_ARCH_META_H

#include "arch.h"
#include "formats/checkpoint.h"

extern const ts_arch ts_arch_llama_meta;

/* True when dir holds params.json and no config.json (Meta's layout). */
bool ts_meta_layout(const char *dir);
/* Loads dir/params.json into hf->config, where config.json would be. */
ts_status ts_meta_load_params(ts_hf_files *hf, ts_err *err);
/* ts_hparams from params.json (dim, n_layers, n_heads, n_kv_heads, norm_eps,
 * rope_theta, vocab_size, hidden_dim or multiple_of/ffn_dim_multiplier,
 * max_seq_len), checked against the tensors; vocab_size -1 and a missing
 * hidden_dim are read from tok_embeddings / layers.0.feed_forward.w1. */
ts_status ts_meta_read_hparams(ts_conv *c, const ts_checkpoint *ckpt, ts_err *err);

#endif
