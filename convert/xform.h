/* Source transforms that do not map one source row to one output row as is:
 * block-scaled (FP8) rows and deepseek2's MLA kv_b split. convert.c streams
 * these through ts_xform_row; plain rows keep its copy / convert fast path. */
#ifndef TS_XFORM_H
#define TS_XFORM_H

#include "plan.h"

/* Shape of an MLA split output from kv_b_proj t (ne {kv_lora, n_head * (nope + v)}):
 * attn_k_b {nope, kv_lora, n_head}, attn_v_b {kv_lora, v, n_head}. */
ts_status ts_xform_mla_shape(const ts_hparams *hp, const ts_tensor *t, ts_xform x, ts_out_tensor *o, ts_err *err);
/* True when o's rows go through ts_xform_row. */
bool ts_xform_custom(const ts_out_tensor *o);
/* Output row r (counted within source e, after any Q/K permutation) of o as n
 * floats: gathered, converted and scaled. scratch holds n * 8 bytes. */
void ts_xform_row(const ts_out_tensor *o, size_t e, int64_t r, int64_t n, float *dst, uint8_t *scratch);

#endif
