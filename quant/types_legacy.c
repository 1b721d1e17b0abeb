/* q4_0 q4_1 q5_0 q5_1 iq4_nl iq4_xs q6_K: rows of blocks, each row
 * quantized with its imatrix slice (kernels in kernels/quant_legacy.c,
 * kernels/quant_iq4.c and kernels/quant_q6k.c). */
#include "quant.h"
#include "kernels/quant_kernels.h"

typedef void (*row_kernel)(const float *x, void *dst, int64_t n, const float *imatrix);

static size_t rows(row_kernel k, size_t block_elems, size_t block_bytes, const float *src, void *dst,
                   int64_t n_rows, int64_t n_per_row, const float *imatrix)
{
    size_t row_bytes = (size_t)n_per_row / block_elems * block_bytes;
    for (int64_t r = 0; r < n_rows; r++)
        k(src + r * n_per_row, (uint8_t *)dst + (size_t)r * row_bytes, n_per_row, imatrix);
    return row_bytes * (size_t)n_rows;
}

#define ROWS_FN(name, block_elems, block_bytes)                                                          \
    static size_t rows_##name(const float *src, void *dst, int64_t n_rows, int64_t n_per_row,            \
                              const float *imatrix)                                                      \
    {                                                                                                    \
        return rows(ts_k_quantize_row_##name, block_elems, block_bytes, src, dst, n_rows, n_per_row,     \
                    imatrix);                                                                            \
    }

ROWS_FN(q4_0, 32, TS_Q4_0_BLOCK_BYTES)
ROWS_FN(q4_1, 32, TS_Q4_1_BLOCK_BYTES)
ROWS_FN(q5_0, 32, TS_Q5_0_BLOCK_BYTES)
ROWS_FN(q5_1, 32, TS_Q5_1_BLOCK_BYTES)
ROWS_FN(iq4_nl, 32, TS_IQ4_NL_BLOCK_BYTES)
ROWS_FN(iq4_xs, TS_QK_K, TS_IQ4_XS_BLOCK_BYTES)
ROWS_FN(q6_k, TS_QK_K, TS_Q6_K_BLOCK_BYTES)

const ts_quant_type ts_quant_types_legacy[] = {
    {TS_Q4_0, rows_q4_0, ts_k_dequantize_row_q4_0},
    {TS_Q4_1, rows_q4_1, ts_k_dequantize_row_q4_1},
    {TS_Q5_0, rows_q5_0, ts_k_dequantize_row_q5_0},
    {TS_Q5_1, rows_q5_1, ts_k_dequantize_row_q5_1},
    {TS_IQ4_NL, rows_iq4_nl, ts_k_dequantize_row_iq4_nl},
    {TS_IQ4_XS, rows_iq4_xs, ts_k_dequantize_row_iq4_xs},
    /* q6_K lives here, not in types_k.c, only because its kernel does. */
    {TS_Q6_K, rows_q6_k, ts_k_dequantize_row_q6_k},
    {TS_DTYPE_INVALID, NULL, NULL},
};
