/* Block-scaled FP8 checkpoints (DeepSeek-V3, Kimi K2 and other "fp8"
 * releases): config.json quantization_config {"quant_method": "fp8",
 * "weight_block_size": [128, 128]} and beside each F8_E4M3 weight W a tensor
 * W_scale_inv of shape [ceil(rows/128), ceil(cols/128)]; the real weight is
 * W[r][c] * W_scale_inv[r/128][c/128] (edge blocks partial). The plan pairs
 * each source with its scale and convert dequantizes row by row while
 * streaming (convert/xform.c); no tensor is ever dequantized whole.
 * Layout and checks: docs/convert.md. */
#ifndef TS_FP8_H
#define TS_FP8_H

#include "plan.h"

typedef struct {
    bool active;          /* quantization_config.quant_method is "fp8" */
    bool blocked;         /* weight_block_size given; else per-tensor or per-row scales */
    int64_t block[2];     /* rows, columns per scale (ggml: ne[1], ne[0]) */
    const char *method;   /* quant_method as written, or NULL when there is no quantization_config */
} ts_fp8_config;

/* Reads config.json quantization_config. No config or another method:
 * active = false (method says which; the architecture decides what to do). */
ts_status ts_fp8_read_config(const ts_json_file *cfg, ts_fp8_config *out, ts_err *err);
/* Tensors an fp8 checkpoint stores beside its weights (W_scale_inv and the
 * unused activation scales); the planner leaves them to ts_fp8_pair. */
bool ts_fp8_side_tensor(const ts_fp8_config *q, const char *name);
/* Gives every planned source that has a W_scale_inv its scale (checking shape
 * and dtype), and refuses F8 sources without one, scales without a weight
 * and F8 data in a checkpoint whose config is not fp8. */
ts_status ts_fp8_pair(const ts_fp8_config *q, const ts_conv *c, const ts_checkpoint *ckpt, ts_plan *plan,
                      ts_err *err);
/* Map / drop the scales of o around its streaming. */
ts_status ts_fp8_acquire(ts_out_tensor *o, const ts_checkpoint *ckpt, ts_err *err);
void ts_fp8_release(ts_out_tensor *o, const ts_checkpoint *ckpt);
/* Multiplies n values of source row `row` of source e, starting at column
 * col0, by their block scales. No-op without a scale. */
void ts_fp8_scale_row(const ts_out_tensor *o, size_t e, int64_t row, int64_t col0, float *f, int64_t n);

#endif
