/* FP8 block scales: reading quantization_config, pairing W with W_scale_inv
 * in the plan, and applying the scales to rows while they stream. */
#include "fp8.h"
#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* A positive integral JSON number (config.json integers may load as reals). */
static bool json_pos_int(const json_t *v, int64_t max, int64_t *out)
{
    if (!json_is_number(v))
        return false;
    double d = json_number_value(v);
    if (!(d >= 1 && d <= (double)max) || d != (double)(int64_t)d)
        return false;
    *out = (int64_t)d;
    return true;
}

ts_status ts_fp8_read_config(const ts_json_file *cfg, ts_fp8_config *out, ts_err *err)
{
    memset(out, 0, sizeof *out);
    json_t *q = cfg->root ? json_object_get(cfg->root, "quantization_config") : NULL;
    if (!q || json_is_null(q))
        return TS_OK;
    if (!json_is_object(q))
        return ts_fail(err, TS_ERR_FORMAT, "%s: quantization_config: expected an object", cfg->path);
    json_t *m = json_object_get(q, "quant_method");
    if (!json_is_string(m))
        return ts_fail(err, TS_ERR_FORMAT, "%s: quantization_config.quant_method: expected a string", cfg->path);
    out->method = json_string_value(m);
    if (strcmp(out->method, "fp8") != 0)
        return TS_OK;
    out->active = true;
    json_t *bs = json_object_get(q, "weight_block_size");
    if (!bs || json_is_null(bs))
        return TS_OK; /* per-tensor or per-row scales, told apart by the scale's shape */
    if (!json_is_array(bs) || json_array_size(bs) != 2 || !json_pos_int(json_array_get(bs, 0), 1 << 20, &out->block[0]) ||
        !json_pos_int(json_array_get(bs, 1), 1 << 20, &out->block[1]))
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: quantization_config.weight_block_size: expected [rows, columns] (two positive integers)",
                       cfg->path);
    out->blocked = true;
    return TS_OK;
}

bool ts_fp8_side_tensor(const ts_fp8_config *q, const char *name)
{
    return q->active &&
           (ends_with(name, "_scale_inv") || ends_with(name, ".activation_scale") || ends_with(name, "_activation_scale"));
}

static bool is_f8(ts_dtype t)
{
    return t == TS_F8_E4M3 || t == TS_F8_E5M2;
}

/* Torch-order shape string ("[576, 7168]") for messages. */
static const char *torch_shape(const ts_tensor *t, char *buf, size_t n)
{
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = t->n_dims - 1; i >= 0 && o < n; i--)
        o += (size_t)snprintf(buf + o, n - o, "%lld%s", (long long)t->ne[i], i ? ", " : "");
    if (o < n)
        snprintf(buf + o, n - o, "]");
    return buf;
}

/* Which rows x columns each element of scale s covers for weight w. */
static ts_status scale_block(const ts_fp8_config *q, const ts_tensor *w, const ts_tensor *s, int64_t block[2],
                             ts_err *err)
{
    char ws[64], ss[64];
    if (s->dtype != TS_F32 && s->dtype != TS_BF16 && s->dtype != TS_F16)
        return ts_fail(err, TS_ERR_FORMAT, "tensor %s: dtype %s; expected F32 (or BF16/F16) block scales", s->name,
                       ts_dtype_name(s->dtype));
    int64_t rows = w->n_dims >= 2 ? w->ne[1] : 1, cols = w->ne[0];
    int64_t numel = s->ne[0] * s->ne[1] * s->ne[2] * s->ne[3];
    if (q->blocked) {
        int64_t br = q->block[0], bc = q->block[1];
        int64_t want_r = (rows + br - 1) / br, want_c = (cols + bc - 1) / bc;
        if (w->n_dims != 2 || s->n_dims != 2 || s->ne[1] != want_r || s->ne[0] != want_c)
            return ts_fail(err, TS_ERR_FORMAT,
                           "tensor %s: shape %s; expected [%lld, %lld]: one scale per %lldx%lld block of %s %s "
                           "(config.json weight_block_size, edge blocks partial)",
                           s->name, torch_shape(s, ss, sizeof ss), (long long)want_r, (long long)want_c,
                           (long long)br, (long long)bc, w->name, torch_shape(w, ws, sizeof ws));
        block[0] = br;
        block[1] = bc;
    } else if (numel == 1) {
        block[0] = rows;
        block[1] = cols;
    } else if ((s->n_dims == 1 && s->ne[0] == rows) || (s->n_dims == 2 && s->ne[0] == 1 && s->ne[1] == rows)) {
        block[0] = 1;
        block[1] = cols;
    } else {
        return ts_fail(err, TS_ERR_FORMAT,
                       "tensor %s: shape %s; without weight_block_size in config.json expected one scale per tensor "
                       "or per row of %s %s",
                       s->name, torch_shape(s, ss, sizeof ss), w->name, torch_shape(w, ws, sizeof ws));
    }
    return TS_OK;
}

static ts_status pair_source(const ts_fp8_config *q, const ts_checkpoint *ckpt, ts_out_tensor *o, size_t e,
                             ts_err *err)
{
    const ts_tensor *w = o->src[e];
    char name[TS_MAX_NAME + 16];
    snprintf(name, sizeof name, "%s_scale_inv", w->name);
    const ts_tensor *s = ts_checkpoint_find(ckpt, name);
    if (!s) {
        if (is_f8(w->dtype))
            return ts_fail(err, TS_ERR_FORMAT,
                           "tensor %s: %s weight without its scale tensor %s (config.json quantization_config is fp8)",
                           w->name, ts_dtype_name(w->dtype), name);
        return TS_OK; /* a layer the release kept in BF16 */
    }
    int64_t block[2] = {0, 0};
    ts_status st = scale_block(q, w, s, block, err);
    if (st != TS_OK)
        return st;
    if (!o->scale) {
        o->scale = calloc(o->n_src, sizeof *o->scale);
        o->scale_data = calloc(o->n_src, sizeof *o->scale_data);
        if (!o->scale || !o->scale_data)
            return ts_fail(err, TS_ERR_NOMEM, "out of memory");
        o->scale_block[0] = block[0];
        o->scale_block[1] = block[1];
    } else if (o->scale_block[0] != block[0] || o->scale_block[1] != block[1]) {
        return ts_fail(err, TS_ERR_FORMAT, "tensor %s: its scale blocks differ from the other experts of %s", s->name,
                       o->name);
    }
    o->scale[e] = s;
    return TS_OK;
}

/* Each stacked tensor's experts are all scaled or none is. */
static ts_status check_all_scaled(const ts_out_tensor *o, ts_err *err)
{
    for (size_t e = 0; o->scale && e < o->n_src; e++)
        if (!o->scale[e])
            return ts_fail(err, TS_ERR_FORMAT, "tensor %s: no %s_scale_inv, although other experts of %s have one",
                           o->src[e]->name, o->src[e]->name, o->name);
    return TS_OK;
}

ts_status ts_fp8_pair(const ts_fp8_config *q, const ts_conv *c, const ts_checkpoint *ckpt, ts_plan *plan,
                      ts_err *err)
{
    (void)c;
    ts_status st;
    for (size_t i = 0; i < plan->n; i++) {
        ts_out_tensor *o = &plan->t[i];
        for (size_t e = 0; !o->gen && !o->custom && e < o->n_src; e++) {
            const ts_tensor *w = o->src[e];
            if (!w)
                continue; /* a missing expert: check_plan names it */
            if (!q->active && is_f8(w->dtype)) {
                if (q->method)
                    return ts_fail(err, TS_ERR_UNSUPPORTED,
                                   "tensor %s: %s weights with quantization_config.quant_method \"%s\" are not "
                                   "supported; expected \"fp8\" with block scales (W_scale_inv)",
                                   w->name, ts_dtype_name(w->dtype), q->method);
                return ts_fail(err, TS_ERR_FORMAT,
                               "tensor %s: %s weight, but config.json has no quantization_config; expected "
                               "quant_method \"fp8\" and a %s_scale_inv tensor",
                               w->name, ts_dtype_name(w->dtype), w->name);
            }
            if (q->active && (st = pair_source(q, ckpt, o, e, err)))
                return st;
        }
        if ((st = check_all_scaled(o, err)))
            return st;
    }
    /* A scale whose weight is absent means a truncated or mislabeled checkpoint. */
    size_t n = ts_checkpoint_n_tensors(ckpt);
    for (size_t i = 0; q->active && i < n; i++) {
        const ts_tensor *s = ts_checkpoint_tensor(ckpt, i);
        if (!ends_with(s->name, "_scale_inv"))
            continue;
        char wname[TS_MAX_NAME];
        snprintf(wname, sizeof wname, "%.*s", (int)(strlen(s->name) - strlen("_scale_inv")), s->name);
        if (!ts_checkpoint_find(ckpt, wname))
            return ts_fail(err, TS_ERR_FORMAT, "tensor %s: the checkpoint has no weight %s for this scale", s->name,
                           wname);
    }
    return TS_OK;
}

ts_status ts_fp8_acquire(ts_out_tensor *o, const ts_checkpoint *ckpt, ts_err *err)
{
    for (size_t e = 0; o->scale && e < o->n_src; e++) {
        ts_status st = ts_checkpoint_data(ckpt, o->scale[e], &o->scale_data[e], err);
        if (st != TS_OK)
            return st; /* ts_fp8_release drops those already mapped */
    }
    return TS_OK;
}

void ts_fp8_release(ts_out_tensor *o, const ts_checkpoint *ckpt)
{
    for (size_t e = 0; o->scale && e < o->n_src; e++)
        if (o->scale_data[e]) {
            ts_checkpoint_release(ckpt, o->scale[e]);
            o->scale_data[e] = NULL;
        }
}

/* Element i of a scale tensor (safetensors data need not be aligned). */
static float scale_value(ts_dtype t, const uint8_t *p, int64_t i)
{
    if (t == TS_F32) {
        float f;
        memcpy(&f, p + i * 4, 4);
        return f;
    }
    uint16_t h;
    float f;
    memcpy(&h, p + i * 2, 2);
    if (t == TS_BF16)
        ts_k_bf16_to_f32(&h, &f, 1);
    else
        ts_k_f16_to_f32(&h, &f, 1);
    return f;
}

void ts_fp8_scale_row(const ts_out_tensor *o, size_t e, int64_t row, int64_t col0, float *f, int64_t n)
{
    if (!o->scale || !o->scale[e])
        return;
    const ts_tensor *s = o->scale[e];
    int64_t br = o->scale_block[0], bc = o->scale_block[1];
    int64_t n_col_blocks = (o->src[e]->ne[0] + bc - 1) / bc;
    const uint8_t *srow = (const uint8_t *)o->scale_data[e];
    int64_t first = (row / br) * n_col_blocks;
    for (int64_t i = 0; i < n;) {
        int64_t b = (col0 + i) / bc, end = (b + 1) * bc - col0;
        if (end > n)
            end = n;
        float sc = scale_value(s->dtype, srow, first + b);
        for (; i < end; i++)
            f[i] *= sc;
    }
}
