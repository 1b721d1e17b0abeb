/* The quantization type table: one row per GGUF type Tessera can write, like
 * ggml's type traits. Block layouts are ggml's (ggml-common.h), byte for byte;
 * see docs/formats/quant-types.md. */
#ifndef TS_QUANT_H
#define TS_QUANT_H

#include "core/ts.h"

/* Quantizes n_rows rows of n_per_row floats (rows contiguous in src and dst).
 * imatrix: n_per_row importance weights (sum of squared activations per input
 * column), or NULL. n_per_row is a multiple of the type's block size.
 * Returns the bytes written. Pure: no allocation beyond the stack, no I/O. */
typedef size_t (*ts_quantize_rows_fn)(const float *src, void *dst, int64_t n_rows, int64_t n_per_row,
                                      const float *imatrix);
/* Dequantizes one row of n elements (n a multiple of the block size). */
typedef void (*ts_dequantize_row_fn)(const void *src, float *dst, int64_t n);

typedef struct {
    ts_dtype type;
    ts_quantize_rows_fn quantize_rows;
    ts_dequantize_row_fn dequantize_row;
} ts_quant_type;

/* NULL when Tessera cannot quantize to t. F32/F16/BF16 are included
 * (plain conversions). */
const ts_quant_type *ts_quant_type_get(ts_dtype t);

/* Tables contributed by the files that implement each family (terminated by
 * an entry with quantize_rows == NULL). */
extern const ts_quant_type ts_quant_types_plain[];  /* quant/types.c: f32, f16, bf16, q8_0 */
extern const ts_quant_type ts_quant_types_legacy[]; /* quant/types_legacy.c: q4_0 q4_1 q5_0 q5_1 iq4_nl iq4_xs */
extern const ts_quant_type ts_quant_types_k[];      /* quant/types_k.c: q2_K q3_K q4_K q5_K q6_K */
extern const ts_quant_type ts_quant_types_mxfp4[];  /* quant/types_mxfp4.c: mxfp4 */

#endif
