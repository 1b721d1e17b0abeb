/* Rows of block-scaled and MLA-split sources. See xform.h. */
#include "xform.h"
#include "fp8.h"
#include "kernels/kernels.h"

#include <string.h>

ts_status ts_xform_mla_shape(const ts_hparams *hp, const ts_tensor *t, ts_xform x, ts_out_tensor *o, ts_err *err)
{
    int64_t heads = hp->n_head, nope = hp->qk_nope_dim;
    int64_t kv_lora = t->ne[0], rows = t->ne[1];
    if (t->n_dims != 2 || heads <= 0 || nope <= 0 || rows % heads != 0 || rows / heads <= nope)
        return ts_fail(err, TS_ERR_FORMAT,
                       "tensor %s: %lld rows do not split into %lld heads of qk_nope_head_dim %lld + v_head_dim "
                       "rows each", t->name, (long long)rows, (long long)heads, (long long)nope);
    o->n_dims = 3;
    o->ne[0] = x == TS_XF_MLA_K_B ? nope : kv_lora;
    o->ne[1] = x == TS_XF_MLA_K_B ? kv_lora : rows / heads - nope;
    o->ne[2] = heads;
    o->ne[3] = 1;
    o->xform_dim = nope;
    return TS_OK;
}

bool ts_xform_custom(const ts_out_tensor *o)
{
    return o->scale || o->xform == TS_XF_MLA_K_B || o->xform == TS_XF_MLA_V_B;
}

/* The float types convert reads (the planner refuses the others). */
static void to_f32(ts_dtype t, const void *src, float *dst, int64_t n)
{
    switch (t) {
    case TS_F32: memcpy(dst, src, (size_t)n * 4); break;
    case TS_F16: ts_k_f16_to_f32(src, dst, (size_t)n); break;
    case TS_BF16: ts_k_bf16_to_f32(src, dst, (size_t)n); break;
    case TS_F64: ts_k_f64_to_f32(src, dst, (size_t)n); break;
    case TS_F8_E4M3: ts_k_f8e4m3_to_f32(src, dst, (size_t)n); break;
    case TS_F8_E5M2: ts_k_f8e5m2_to_f32(src, dst, (size_t)n); break;
    default: memset(dst, 0, (size_t)n * 4); break;
    }
}

/* n values of source row `row` from column col0, scaled. */
static void source_span(const ts_out_tensor *o, size_t e, int64_t row, int64_t col0, int64_t n, float *dst,
                        uint8_t *scratch)
{
    const ts_tensor *s = o->src[e];
    uint32_t esize = ts_dtype_get(s->dtype)->block_bytes;
    const uint8_t *p = (const uint8_t *)o->src_data[e] + ((uint64_t)row * (uint64_t)s->ne[0] + (uint64_t)col0) * esize;
    if ((uintptr_t)p % esize != 0) { /* safetensors does not promise aligned data */
        memcpy(scratch, p, (size_t)n * esize);
        p = scratch;
    }
    to_f32(s->dtype, p, dst, n);
    ts_fp8_scale_row(o, e, row, col0, dst, n);
}

void ts_xform_row(const ts_out_tensor *o, size_t e, int64_t r, int64_t n, float *dst, uint8_t *scratch)
{
    const ts_tensor *s = o->src[e];
    if (o->xform == TS_XF_MLA_K_B) {
        /* row (h, c) of attn_k_b is column c of head h's first nope rows */
        int64_t kv_lora = o->ne[1], head_rows = s->ne[1] / o->ne[2];
        int64_t h = r / kv_lora, c = r % kv_lora;
        for (int64_t j = 0; j < n; j++)
            source_span(o, e, h * head_rows + j, c, 1, dst + j, scratch);
    } else if (o->xform == TS_XF_MLA_V_B) {
        /* row (h, i) of attn_v_b is row nope + i of head h */
        int64_t v = o->ne[1], head_rows = s->ne[1] / o->ne[2];
        int64_t h = r / v, i = r % v;
        source_span(o, e, h * head_rows + o->xform_dim + i, 0, n, dst, scratch);
    } else {
        source_span(o, e, r, 0, n, dst, scratch);
    }
}
