/* The type table lookup, and the plain types (f32, f16, bf16, q8_0) whose
 * kernels live in kernels/kernels.h. */
#include "quant.h"
#include "kernels/kernels.h"

#include <string.h>

static size_t rows_f32(const float *src, void *dst, int64_t n_rows, int64_t n_per_row, const float *imatrix)
{
    (void)imatrix;
    size_t n = (size_t)(n_rows * n_per_row);
    memcpy(dst, src, n * sizeof(float));
    return n * sizeof(float);
}

static size_t rows_f16(const float *src, void *dst, int64_t n_rows, int64_t n_per_row, const float *imatrix)
{
    (void)imatrix;
    size_t n = (size_t)(n_rows * n_per_row);
    ts_k_f32_to_f16(src, dst, n);
    return n * 2;
}

static size_t rows_bf16(const float *src, void *dst, int64_t n_rows, int64_t n_per_row, const float *imatrix)
{
    (void)imatrix;
    size_t n = (size_t)(n_rows * n_per_row);
    ts_k_f32_to_bf16(src, dst, n);
    return n * 2;
}

/* Q8_0 ignores the imatrix, as ggml's does. */
static size_t rows_q8_0(const float *src, void *dst, int64_t n_rows, int64_t n_per_row, const float *imatrix)
{
    (void)imatrix;
    size_t row_bytes = (size_t)(n_per_row / 32) * 34;
    for (int64_t r = 0; r < n_rows; r++)
        ts_k_quantize_row_q8_0(src + r * n_per_row, (uint8_t *)dst + (size_t)r * row_bytes, n_per_row);
    return row_bytes * (size_t)n_rows;
}

static void deq_f32(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }
static void deq_f16(const void *src, float *dst, int64_t n) { ts_k_f16_to_f32(src, dst, (size_t)n); }
static void deq_bf16(const void *src, float *dst, int64_t n) { ts_k_bf16_to_f32(src, dst, (size_t)n); }

const ts_quant_type ts_quant_types_plain[] = {
    {TS_F32, rows_f32, deq_f32},
    {TS_F16, rows_f16, deq_f16},
    {TS_BF16, rows_bf16, deq_bf16},
    {TS_Q8_0, rows_q8_0, ts_k_dequantize_row_q8_0},
    {TS_DTYPE_INVALID, NULL, NULL},
};

const ts_quant_type *ts_quant_type_get(ts_dtype t)
{
    const ts_quant_type *tables[] = {ts_quant_types_plain, ts_quant_types_legacy, ts_quant_types_k,
                                     ts_quant_types_mxfp4};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        for (const ts_quant_type *q = tables[i]; q->quantize_rows; q++)
            if (q->type == t)
                return q;
    return NULL;
}
