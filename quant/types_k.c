/* q2_K q3_K q4_K q5_K q6_K (kernels in kernels/quant_k*.c). */
#include "quant.h"
#include "kernels/quant_kernels.h"

typedef void (*row_fn)(const float *, void *, int64_t, const float *);

/* One row at a time: each row takes the imatrix for its columns. */
static size_t rows(row_fn fn, size_t block_bytes, const float *src, void *dst, int64_t n_rows, int64_t n_per_row,
                   const float *imatrix)
{
    const size_t row_bytes = (size_t)(n_per_row / TS_QK_K) * block_bytes;
    for (int64_t r = 0; r < n_rows; r++)
        fn(src + r * n_per_row, (uint8_t *)dst + (size_t)r * row_bytes, n_per_row, imatrix);
    return row_bytes * (size_t)n_rows;
}

#define TS_K_ROWS(name, BYTES)                                                                                 \
    static size_t rows_##name(const float *src, void *dst, int64_t n_rows, int64_t n_per_row,                  \
                              const float *imatrix)                                                            \
    {                                                                                                          \
        return rows(ts_k_quantize_row_##name, BYTES, src, dst, n_rows, n_per_row, imatrix);                    \
    }
TS_K_ROWS(q2_k, TS_Q2_K_BLOCK_BYTES)
TS_K_ROWS(q3_k, TS_Q3_K_BLOCK_BYTES)
TS_K_ROWS(q4_k, TS_Q4_K_BLOCK_BYTES)
TS_K_ROWS(q5_k, TS_Q5_K_BLOCK_BYTES)

const ts_quant_type ts_quant_types_k[] = {
    {TS_Q2_K, rows_q2_k, ts_k_dequantize_row_q2_k},
    {TS_Q3_K, rows_q3_k, ts_k_dequantize_row_q3_k},
    {TS_Q4_K, rows_q4_k, ts_k_dequantize_row_q4_k},
    {TS_Q5_K, rows_q5_k, ts_k_dequantize_row_q5_k},
    {TS_DTYPE_INVALID, NULL, NULL},
};
